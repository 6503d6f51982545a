#include "core/npy.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "core/fs.h"

namespace recforge {

namespace {

/// Writes a .npy file with dtype `descr`, shape text `shape` ("(3, 4)" or "(7,)") and `bytes`
/// bytes of data, atomically (temporary file + rename).
void write_raw(const std::string& path, const char* descr, const std::string& shape,
               const void* data, size_t bytes) {
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shape);
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  std::FILE* f = create_file_stream(tmp);  // privacy.file_mode
  if (!f) fail("{}: cannot write: {}", path, std::strerror(errno));
  const unsigned char pre[10] = {0x93,
                                 'N',
                                 'U',
                                 'M',
                                 'P',
                                 'Y',
                                 1,
                                 0,
                                 static_cast<unsigned char>(header.size() & 0xff),
                                 static_cast<unsigned char>(header.size() >> 8)};
  bool ok = std::fwrite(pre, 1, 10, f) == 10 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            (bytes == 0 || std::fwrite(data, 1, bytes, f) == bytes);
  // On disk before the name: a crash must not leave a renamed file without its contents.
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    fail("{}: write failed (disk full?)", path);
  }
}

/// The header of a .npy file held in memory, and where its data starts.
struct NpyView {
  std::string header;
  std::string_view data;
};

/// Checks the magic, version, dtype `descr` (with `dtype_name` for the message) and C order of
/// the .npy bytes `bytes` of `name`.
NpyView parse_header(std::string_view bytes, const std::string& name, const char* descr,
                     const char* dtype_name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    fail("{}: not a .npy file (bad magic)", name);
  const auto* pre = reinterpret_cast<const unsigned char*>(bytes.data());
  if (pre[6] != 1)
    fail("{}: .npy format version {}.{} is not supported (expected 1.0)", name, pre[6], pre[7]);
  const size_t hlen = pre[8] | (static_cast<size_t>(pre[9]) << 8);
  if (bytes.size() - 10 < hlen) fail("{}: truncated .npy header", name);
  NpyView v;
  v.header.assign(bytes.substr(10, hlen));
  v.data = bytes.substr(10 + hlen);
  if (v.header.find(fmt::format("'descr': '{}'", descr)) == std::string::npos)
    fail("{}: expected dtype {} ('{}') in the .npy header", name, dtype_name, descr);
  if (v.header.find("'fortran_order': False") == std::string::npos)
    fail("{}: expected C order (fortran_order False) in the .npy header", name);
  return v;
}

/// A 1-D array of T with dtype `descr` from .npy bytes.
template <typename T>
std::vector<T> parse_vector(std::string_view bytes, const std::string& name, const char* descr,
                            const char* dtype_name) {
  const NpyView f = parse_header(bytes, name, descr, dtype_name);
  std::smatch sm;
  static const std::regex shape_re("'shape': \\((\\d+),\\)");
  if (!std::regex_search(f.header, sm, shape_re) || sm[1].length() > 18)
    fail("{}: expected a 1-D shape in the .npy header", name);
  const uint64_t n = std::stoull(sm[1]);
  if (f.data.size() != n * sizeof(T))
    fail("{}: truncated or padded: shape ({},) needs {} data bytes, the file has {}", name, n,
         n * sizeof(T), f.data.size());
  std::vector<T> v(static_cast<size_t>(n));
  if (n > 0) std::memcpy(v.data(), f.data.data(), f.data.size());
  return v;
}

/// The whole content of the file at `path`.
std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return bytes;
}

}  // namespace

void write_npy(const std::string& path, const Matrix& m) {
  RF_ASSERT(static_cast<int64_t>(m.data.size()) == m.rows * m.cols, "write_npy: size mismatch");
  write_raw(path, "<f4", fmt::format("({}, {})", m.rows, m.cols), std::as_const(m.data).data(),
            m.data.size() * sizeof(float));
}

void write_npy(const std::string& path, const std::vector<int64_t>& v) {
  write_raw(path, "<i8", fmt::format("({},)", v.size()), v.data(), v.size() * sizeof(int64_t));
}

void write_npy(const std::string& path, const std::vector<int32_t>& v) {
  write_raw(path, "<i4", fmt::format("({},)", v.size()), v.data(), v.size() * sizeof(int32_t));
}

void write_npy(const std::string& path, const std::vector<float>& v) {
  write_raw(path, "<f4", fmt::format("({},)", v.size()), v.data(), v.size() * sizeof(float));
}

namespace {

/// The shape of a 2-D `<f4` .npy held in `bytes`, its size checked; `values` gets the data part.
Matrix parse_shape(std::string_view bytes, const std::string& name, std::string_view* values) {
  const NpyView f = parse_header(bytes, name, "<f4", "float32");
  std::smatch sm;
  static const std::regex shape_re("'shape': \\((\\d+), (\\d+)\\)");
  if (!std::regex_search(f.header, sm, shape_re) || sm[1].length() > 12 || sm[2].length() > 6)
    fail("{}: expected a 2-D shape in the .npy header", name);
  Matrix m;
  m.rows = std::stoll(sm[1]);
  m.cols = std::stoll(sm[2]);
  const uint64_t bytes_needed = static_cast<uint64_t>(m.rows) * m.cols * sizeof(float);
  if (f.data.size() != bytes_needed)
    fail("{}: truncated or padded: shape ({}, {}) needs {} data bytes, the file has {}", name,
         m.rows, m.cols, bytes_needed, f.data.size());
  *values = f.data;
  return m;
}

}  // namespace

Matrix parse_npy(std::string_view bytes, const std::string& name) {
  std::string_view values;
  Matrix m = parse_shape(bytes, name, &values);
  std::vector<float> v(static_cast<size_t>(m.rows * m.cols));
  if (!values.empty()) std::memcpy(v.data(), values.data(), values.size());
  m.data = std::move(v);
  return m;
}

Matrix parse_npy_view(std::string_view bytes, std::shared_ptr<const void> keep,
                      const std::string& name) {
  std::string_view values;
  Matrix m = parse_shape(bytes, name, &values);
  // Format 1.0 pads the header so that the data starts at a multiple of 64 bytes; a writer that
  // did not leaves floats misaligned, which are then copied rather than viewed.
  if (reinterpret_cast<uintptr_t>(values.data()) % alignof(float) != 0)
    return parse_npy(bytes, name);
  m.data = FloatStore::view(std::move(keep), reinterpret_cast<const float*>(values.data()),
                            static_cast<size_t>(m.rows * m.cols));
  return m;
}

std::vector<int64_t> parse_npy_i64(std::string_view bytes, const std::string& name) {
  return parse_vector<int64_t>(bytes, name, "<i8", "int64");
}

std::vector<int32_t> parse_npy_i32(std::string_view bytes, const std::string& name) {
  return parse_vector<int32_t>(bytes, name, "<i4", "int32");
}

std::vector<float> parse_npy_f32_vector(std::string_view bytes, const std::string& name) {
  return parse_vector<float>(bytes, name, "<f4", "float32");
}

Matrix read_npy(const std::string& path) { return parse_npy(read_bytes(path), path); }

std::vector<int64_t> read_npy_i64(const std::string& path) {
  return parse_npy_i64(read_bytes(path), path);
}

std::vector<int32_t> read_npy_i32(const std::string& path) {
  return parse_npy_i32(read_bytes(path), path);
}

void check_finite(const Matrix& m, const std::string& name) {
  for (size_t i = 0; i < m.data.size(); ++i) {
    if (std::isfinite(m.data[i])) continue;
    const int64_t r = m.cols > 0 ? static_cast<int64_t>(i) / m.cols : 0;
    const int64_t c = m.cols > 0 ? static_cast<int64_t>(i) % m.cols : 0;
    fail("{}: row {}, column {} is {}; expected finite float32 values (the file is corrupt, or "
         "the model diverged)",
         name, r, c, m.data[i]);
  }
}

}  // namespace recforge
