#include "core/text.h"

#include <charconv>

namespace recforge {

std::optional<int64_t> parse_int64(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.front() == '+') return std::nullopt;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> split_lines(std::string_view bytes) {
  std::vector<std::string> lines;
  for_each_line(bytes, [&](std::string_view line) { lines.emplace_back(line); });
  return lines;
}

}  // namespace recforge
