#include "models/memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/blas.h"
#include "core/error.h"

namespace recforge::models {

namespace {

// MemAvailable from /proc/meminfo, in bytes; negative when unreadable.
double mem_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    double kib = -1;
    fields >> kib;
    return kib * 1024;
  }
  return -1;
}

// The process's current address space (VmSize), in bytes; negative when unreadable.
double address_space() {
  std::ifstream in("/proc/self/statm");
  double pages = -1;
  in >> pages;
  return pages < 0 ? -1 : pages * static_cast<double>(sysconf(_SC_PAGESIZE));
}

}  // namespace

double available_memory(std::string* source) {
  double best = mem_available();
  if (source) *source = "MemAvailable";
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const double used = address_space();
    const double left = std::max(0.0, static_cast<double>(lim.rlim_cur) - std::max(0.0, used));
    if (best < 0 || left < best) {
      best = left;
      if (source) *source = "ulimit -v";
    }
  }
  return best;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} bytes", bytes) : fmt::format("{:.3g} {}", bytes, units[u]);
}

int buffer_threads(int train_threads, std::string* lower) {
  const int pool = openblas_get_num_threads();
  if (pool <= train_threads) {
    *lower = "train.threads";
    return train_threads;
  }
  *lower = fmt::format("OPENBLAS_NUM_THREADS (OpenBLAS's own pool of {} threads, more than "
                       "train.threads {})",
                       pool, train_threads);
  return pool;
}

void check_memory(const std::string& what, const std::vector<MemoryPart>& parts,
                  const std::string& lower) {
  double total = 0;
  for (const MemoryPart& p : parts) total += p.bytes;
  std::string source;
  const double available = available_memory(&source);
  if (available < 0 || total <= available) return;
  std::vector<MemoryPart> sorted = parts;
  std::sort(sorted.begin(), sorted.end(),
            [](const MemoryPart& a, const MemoryPart& b) { return a.bytes > b.bytes; });
  std::string largest;
  for (size_t j = 0; j < std::min<size_t>(2, sorted.size()); ++j)
    largest += fmt::format("{}{} {}", j ? ", " : "", sorted[j].what, format_bytes(sorted[j].bytes));
  fail("{} needs about {} of memory ({}), but only {} is available ({}); lower {}", what,
       format_bytes(total), largest, format_bytes(available), source, lower);
}

}  // namespace recforge::models
