#include "core/npy.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>

#include "core/error.h"

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
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
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
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    fail("{}: write failed (disk full?)", path);
  }
}

/// An opened .npy file positioned at its data, with its header text and data size.
struct NpyFile {
  std::ifstream in;
  std::string header;
  uint64_t data_bytes = 0;
};

/// Opens a .npy file and checks the magic, version, dtype `descr` (with `dtype_name` for the
/// message) and C order.
NpyFile open_npy(const std::string& path, const char* descr, const char* dtype_name) {
  NpyFile f;
  f.in.open(path, std::ios::binary);
  if (!f.in) fail("{}: cannot open: {}", path, std::strerror(errno));
  unsigned char pre[10];
  if (!f.in.read(reinterpret_cast<char*>(pre), 10) || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    fail("{}: not a .npy file (bad magic)", path);
  if (pre[6] != 1)
    fail("{}: .npy format version {}.{} is not supported (expected 1.0)", path, pre[6], pre[7]);
  const size_t hlen = pre[8] | (static_cast<size_t>(pre[9]) << 8);
  f.header.assign(hlen, '\0');
  if (!f.in.read(f.header.data(), static_cast<std::streamsize>(hlen)))
    fail("{}: truncated .npy header", path);
  if (f.header.find(fmt::format("'descr': '{}'", descr)) == std::string::npos)
    fail("{}: expected dtype {} ('{}') in the .npy header", path, dtype_name, descr);
  if (f.header.find("'fortran_order': False") == std::string::npos)
    fail("{}: expected C order (fortran_order False) in the .npy header", path);
  f.data_bytes = std::filesystem::file_size(path) - 10 - hlen;
  return f;
}

/// A dimension of the header's shape (its digits), or an error naming the file when it does not
/// fit in int64.
int64_t shape_dim(const std::string& path, const std::string& digits) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size())
    fail("{}: shape dimension {} in the .npy header is too large", path, digits);
  return v;
}

/// Checks that `dims` values of `item` bytes fill exactly the file's `data_bytes`. A shape whose
/// byte count does not fit in 64 bits is refused before multiplying, so that it cannot wrap round
/// to a small product (which then matched the file and was allocated in full).
void check_data_size(const std::string& path, const std::vector<int64_t>& dims, uint64_t item,
                     uint64_t data_bytes) {
  const std::string shape = dims.size() == 1 ? fmt::format("({},)", dims[0])
                                             : fmt::format("({}, {})", dims[0], dims[1]);
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / item;  // most values countable
  const bool empty = std::find(dims.begin(), dims.end(), 0) != dims.end();
  uint64_t count = empty ? 0 : 1;
  for (const int64_t d : dims) {
    if (empty) break;
    if (count > limit / static_cast<uint64_t>(d))
      fail("{}: truncated or padded: shape {} needs more data than the file's {} bytes", path,
           shape, data_bytes);
    count *= static_cast<uint64_t>(d);
  }
  if (count * item != data_bytes)
    fail("{}: truncated or padded: shape {} needs {} data bytes, the file has {}", path, shape,
         count * item, data_bytes);
}

/// Reads a 1-D array of T with dtype `descr`.
template <typename T>
std::vector<T> read_vector(const std::string& path, const char* descr, const char* dtype_name) {
  NpyFile f = open_npy(path, descr, dtype_name);
  std::smatch sm;
  static const std::regex shape_re("'shape': \\((\\d+),\\)");
  if (!std::regex_search(f.header, sm, shape_re))
    fail("{}: expected a 1-D shape in the .npy header", path);
  const int64_t n = shape_dim(path, sm[1]);
  check_data_size(path, {n}, sizeof(T), f.data_bytes);
  std::vector<T> v(static_cast<size_t>(n));
  if (!f.in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T))))
    fail("{}: read error", path);
  return v;
}

}  // namespace

void write_npy(const std::string& path, const Matrix& m) {
  RF_ASSERT(static_cast<int64_t>(m.data.size()) == m.rows * m.cols, "write_npy: size mismatch");
  write_raw(path, "<f4", fmt::format("({}, {})", m.rows, m.cols), m.data.data(),
            m.data.size() * sizeof(float));
}

void write_npy(const std::string& path, const std::vector<int64_t>& v) {
  write_raw(path, "<i8", fmt::format("({},)", v.size()), v.data(), v.size() * sizeof(int64_t));
}

void write_npy(const std::string& path, const std::vector<int32_t>& v) {
  write_raw(path, "<i4", fmt::format("({},)", v.size()), v.data(), v.size() * sizeof(int32_t));
}

Matrix read_npy(const std::string& path) {
  NpyFile f = open_npy(path, "<f4", "float32");
  std::smatch sm;
  static const std::regex shape_re("'shape': \\((\\d+), (\\d+)\\)");
  if (!std::regex_search(f.header, sm, shape_re))
    fail("{}: expected a 2-D shape in the .npy header", path);
  Matrix m;
  m.rows = shape_dim(path, sm[1]);
  m.cols = shape_dim(path, sm[2]);
  check_data_size(path, {m.rows, m.cols}, sizeof(float), f.data_bytes);
  const uint64_t bytes = f.data_bytes;
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  if (!f.in.read(reinterpret_cast<char*>(m.data.data()), static_cast<std::streamsize>(bytes)))
    fail("{}: read error", path);
  return m;
}

std::vector<int64_t> read_npy_i64(const std::string& path) {
  return read_vector<int64_t>(path, "<i8", "int64");
}

std::vector<int32_t> read_npy_i32(const std::string& path) {
  return read_vector<int32_t>(path, "<i4", "int32");
}

}  // namespace recforge
