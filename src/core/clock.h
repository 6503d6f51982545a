#pragma once
/// @file clock.h
/// Wall-clock timestamps for run and export metadata.

#include <ctime>
#include <optional>
#include <string>

namespace recforge {

/// A time in UTC as ISO 8601 ("2025-01-31T12:00:00Z").
inline std::string utc_string(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// The current time in UTC as ISO 8601 ("2025-01-31T12:00:00Z").
inline std::string utc_now() { return utc_string(std::time(nullptr)); }

/// The time that utc_string wrote, or nullopt for any other text.
inline std::optional<std::time_t> parse_utc(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return timegm(&tm);
}

}  // namespace recforge
