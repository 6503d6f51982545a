#pragma once
/// @file memory.h
/// Memory the CPU models will need, estimated before they allocate, against what the process can
/// still get: /proc/meminfo's MemAvailable and the address space left under RLIMIT_AS
/// (`ulimit -v`). Under an address-space limit OpenBLAS does not fail an allocation it cannot
/// map: it retries forever (the process hung, spinning), so the budget is checked up front.

#include <cstdint>
#include <string>
#include <vector>

namespace recforge::models {

/// One part of an estimate, in bytes.
struct MemoryPart {
  std::string what;
  double bytes = 0;
};

/// Address space that every CPU thread calling BLAS reserves besides the model's own arrays:
/// OpenBLAS's work buffer (128 MiB, mapped on a thread's first BLAS call) and a glibc malloc
/// arena (64 MiB reserved per thread).
constexpr double kPerThreadReserve = (128.0 + 64.0) * 1024 * 1024;

/// Bytes the process can still obtain: the smaller of MemAvailable and, under RLIMIT_AS, the
/// limit minus the current address space. `source` (optional) names the binding one
/// ("MemAvailable" or "ulimit -v"). Negative when neither is known.
double available_memory(std::string* source = nullptr);

/// "1.5 GiB", "300 MiB", "12 KiB".
std::string format_bytes(double bytes);

/// The threads whose per-thread buffers a memory estimate counts: `train_threads`, or OpenBLAS's
/// own pool when it is larger. `lower` receives what lowers them: "train.threads", or, when the
/// pool is the larger, its environment variable with the counts.
int buffer_threads(int train_threads, std::string* lower);

/// Fails (recforge::Error) when the parts sum to more than available_memory(): one sentence
/// with `what` (e.g. "iALS with model.factors 10000000"), the estimated total, its largest parts,
/// the memory available and `lower` (the settings to lower).
void check_memory(const std::string& what, const std::vector<MemoryPart>& parts,
                  const std::string& lower);

}  // namespace recforge::models
