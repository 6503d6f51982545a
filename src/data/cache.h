#pragma once
/// @file cache.h
/// Binary cache of loaded, mapped and cleaned interactions. The file name is a SHA-256 of the
/// source files' contents and the load options, so any change to either rebuilds it.

#include <optional>
#include <string>

#include "data/load.h"

namespace recforge::data {

/// Bumped whenever the cache layout or the loader's output changes.
inline constexpr int kCacheVersion = 1;

/// Reads a cache file; returns nullopt (after a warning for a damaged file) when it is absent,
/// truncated, of another version or otherwise unreadable, so the caller re-parses the source.
std::optional<Loaded> read_cache(const std::string& path);

/// Writes a cache file atomically (temporary file, then rename). Failure to write only warns:
/// the cache is an optimisation, never a reason to fail a run.
void write_cache(const std::string& path, const Loaded& data);

}  // namespace recforge::data
