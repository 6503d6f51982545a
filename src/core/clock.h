#pragma once
/// @file clock.h
/// Wall-clock timestamps for run and export metadata.

#include <ctime>
#include <string>

namespace recforge {

/// The current time in UTC as ISO 8601 ("2025-01-31T12:00:00Z").
inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace recforge
