#pragma once
/// @file utf8.h
/// Checking that text read from the user (YAML configs, sweep files, --set) is UTF-8.

#include <string>

namespace recforge {

/// Offset of the first byte of `text` that is not part of valid UTF-8 (as require_utf8 defines
/// it), or std::string::npos when all of it is.
size_t first_non_utf8(const std::string& text);

/// Throws recforge::Error naming `name`, the line and column of the first byte of `text` that is
/// not part of valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF included).
/// YAML is Unicode text; a string holding other bytes could not be written back into a resolved
/// config or into JSON. `name` is a file name, or e.g. "--set".
void require_utf8(const std::string& text, const std::string& name);

}  // namespace recforge
