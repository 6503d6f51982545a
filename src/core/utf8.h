#pragma once
/// @file utf8.h
/// Checking that text read from the user (YAML configs, sweep files, --set, string ids) is UTF-8.

#include <string>
#include <string_view>

namespace recforge {

/// Offset of the first byte of `text` that is not part of valid UTF-8 (as require_utf8 defines
/// it), or std::string::npos when all of it is.
size_t first_non_utf8(std::string_view text);

/// Length in bytes of the UTF-8 sequence that starts at `text[i]` (i < text.size()), or 0 when
/// none valid starts there.
size_t utf8_sequence_length(std::string_view text, size_t i);

/// Throws recforge::Error naming `name`, the line and column of the first byte of `text` that is
/// not part of valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF included).
/// YAML is Unicode text; a string holding other bytes could not be written back into a resolved
/// config or into JSON. `name` is a file name, or e.g. "--set".
void require_utf8(const std::string& text, const std::string& name);

}  // namespace recforge
