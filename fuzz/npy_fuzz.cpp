// Fuzz target: the .npy reader (src/core/npy.cpp): the input as a file, read as a float32
// matrix, an int64 vector and an int32 vector (what an export and `evaluate` read). A file that
// reads must hold exactly the data its header declares.
#include "core/npy.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recforge;
  const std::string path = (fuzz::scratch() / "input.npy").string();
  fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_user_errors_only([&] {
    const Matrix m = read_npy(path);
    // rows * cols compared by division: the product of a bad shape may not fit in int64.
    const auto values = static_cast<int64_t>(m.data.size());
    RF_ASSERT(m.rows >= 0 && m.cols >= 0 && values * sizeof(float) < size &&
                  (m.rows == 0 || m.cols == 0 ? values == 0
                                              : m.cols <= values / m.rows &&
                                                    m.rows * m.cols == values),
              "read_npy: matrix size disagrees with its shape or the file");
  });
  fuzz::expect_user_errors_only([&] {
    const auto v = read_npy_i64(path);
    RF_ASSERT(v.size() * sizeof(int64_t) < size, "read_npy_i64: more data than the file holds");
  });
  fuzz::expect_user_errors_only([&] {
    const auto v = read_npy_i32(path);
    RF_ASSERT(v.size() * sizeof(int32_t) < size, "read_npy_i32: more data than the file holds");
  });
  return 0;
}
