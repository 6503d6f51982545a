#pragma once
/// @file text.h
/// Small parsers of command-line and query-string text shared by the CLI and the server.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace recforge {

/// `s` as a decimal integer (an optional leading '+' or '-', then digits only, within int64),
/// or nullopt for anything else (empty, spaces, trailing characters, overflow).
std::optional<int64_t> parse_int64(std::string_view s);

/// The lines of `bytes` ('\n'-separated; a final '\n' ends the last line rather than starting an
/// empty one): what recforge's one-id-per-line files hold.
std::vector<std::string> split_lines(std::string_view bytes);

/// Calls `f(line)` for each line of `bytes` as split_lines splits them, without copying them.
template <typename F>
void for_each_line(std::string_view bytes, F&& f) {
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find('\n', start);
    if (end == std::string_view::npos) end = bytes.size();
    f(bytes.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace recforge
