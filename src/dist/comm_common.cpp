/// @file comm_common.cpp
/// The parts of dist::Comm that do not depend on MPI (comm_common.h), in both builds.
#include "dist/comm_common.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "dist/comm.h"
#include "dist/errors.h"

namespace recforge::dist {
namespace {

int64_t g_piece_bytes = detail::kMaxPieceBytes;

// A positive integer from the environment, or 0.
int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end == '\0' && n > 0 && n <= (1L << 30)) ? static_cast<int>(n) : 0;
}

}  // namespace

namespace detail {

int64_t piece_bytes() { return g_piece_bytes; }

int64_t whole_elements(int64_t bytes, size_t elem) {
  RF_ASSERT(bytes >= 0 && bytes % static_cast<int64_t>(elem) == 0,
            "dist: a block's size is not a whole number of elements");
  return bytes / static_cast<int64_t>(elem);
}

void copy_bytes(void* dst, const void* src, int64_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, static_cast<size_t>(bytes));
}

}  // namespace detail

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") ||
         std::getenv("PMI_RANK");
}

int launched_size() {
  if (!launched_by_mpi()) return 1;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    if (const int n = env_int(name)) return n;
  }
  return 1;
}

Comm& world() {
  static Comm w;
  return w;
}

std::vector<std::string> allgather_strings(const Comm& comm, const std::string& mine) {
  std::vector<int64_t> lengths;
  const std::vector<char> all = comm.allgatherv(std::vector<char>(mine.begin(), mine.end()), &lengths);
  std::vector<std::string> out;
  size_t pos = 0;
  for (const int64_t n : lengths) {
    out.emplace_back(all.data() + pos, static_cast<size_t>(n));
    pos += static_cast<size_t>(n);
  }
  return out;
}

void agree(const Comm& comm, const std::string& error) {
  if (!comm.any(!error.empty())) return;
  const std::vector<std::string> errors = allgather_strings(comm, error);
  if (std::all_of(errors.begin(), errors.end(), [&](const std::string& e) { return e == errors[0]; }))
    throw CollectiveError(errors[0]);
  for (size_t r = 0; r < errors.size(); ++r)
    if (!errors[r].empty())
      throw CollectiveError(fmt::format("process {} of {}: {}", r, comm.size(), errors[r]));
}

int64_t set_max_piece_bytes(int64_t bytes) {
  RF_ASSERT(bytes >= 1 && bytes <= detail::kMaxPieceBytes,
            "dist: piece size outside 1 byte .. 1 GiB");
  const int64_t previous = g_piece_bytes;
  g_piece_bytes = bytes;
  return previous;
}

}  // namespace recforge::dist
