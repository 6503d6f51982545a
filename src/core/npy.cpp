#include "core/npy.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"

namespace recforge {

void write_npy(const std::string& path, const Matrix& m) {
  RF_ASSERT(static_cast<int64_t>(m.data.size()) == m.rows * m.cols, "write_npy: size mismatch");
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
                                   m.rows, m.cols);
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot write: {}", path, std::strerror(errno));
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                 static_cast<unsigned char>(header.size() & 0xff),
                                 static_cast<unsigned char>(header.size() >> 8)};
  bool ok = std::fwrite(pre, 1, 10, f) == 10 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            (m.data.empty() ||
             std::fwrite(m.data.data(), sizeof(float), m.data.size(), f) == m.data.size());
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    fail("{}: write failed (disk full?)", path);
  }
}

Matrix read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  unsigned char pre[10];
  if (!in.read(reinterpret_cast<char*>(pre), 10) || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    fail("{}: not a .npy file (bad magic)", path);
  if (pre[6] != 1) fail("{}: .npy format version {}.{} is not supported (expected 1.0)", path, pre[6], pre[7]);
  const size_t hlen = pre[8] | (static_cast<size_t>(pre[9]) << 8);
  std::string header(hlen, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(hlen))) fail("{}: truncated .npy header", path);
  if (header.find("'descr': '<f4'") == std::string::npos)
    fail("{}: expected dtype float32 ('<f4') in the .npy header", path);
  if (header.find("'fortran_order': False") == std::string::npos)
    fail("{}: expected C order (fortran_order False) in the .npy header", path);
  std::smatch sm;
  static const std::regex shape_re("'shape': \\((\\d+), (\\d+)\\)");
  if (!std::regex_search(header, sm, shape_re)) fail("{}: expected a 2-D shape in the .npy header", path);
  Matrix m;
  m.rows = std::stoll(sm[1]);
  m.cols = std::stoll(sm[2]);
  const uint64_t bytes = static_cast<uint64_t>(m.rows) * m.cols * sizeof(float);
  const uint64_t have = std::filesystem::file_size(path) - 10 - hlen;
  if (have != bytes)
    fail("{}: truncated or padded: shape ({}, {}) needs {} data bytes, the file has {}", path,
         m.rows, m.cols, bytes, have);
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  if (!in.read(reinterpret_cast<char*>(m.data.data()), static_cast<std::streamsize>(bytes)))
    fail("{}: read error", path);
  return m;
}

}  // namespace recforge
