#pragma once
/// @file cache.h
/// Binary cache of loaded, mapped and cleaned interactions. The file name is a SHA-256 of the
/// source files' contents and the load options, so any change to either rebuilds it.
///
/// Layout (little-endian, native sizes): magic "RFCACHE\0", int32 version, uint64 payload size;
/// the payload (uint32 count and the 64 hex characters of each source file's content SHA-256,
/// id maps, parts, report, excluded users' counts and hashes); then the SHA-256 of the payload (64 hex characters) and
/// the trailer "RFCHDONE". A file is used only when every size agrees with the file size, the
/// checksum matches and every value is one the loader could have produced (`read_cache`).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/load.h"

namespace recforge::data {

/// Bumped whenever the cache layout or the loader's output changes.
inline constexpr int kCacheVersion = 5;

/// Reads a cache file written for `options` and `parts` input files (0: any number). Returns
/// nullopt when it is absent, and (after a warning) when it is not a regular file, truncated, of
/// another version, fails its checksum, or holds a value the loader would not produce with these
/// options (a non-finite or negative weight, an index out of range, unsorted or repeated ids or
/// pairs, a control character in an id, ...): the caller then re-parses the source. Never
/// throws for a damaged file, and allocates no more than the file's size justifies. Also removes
/// stale temporary files of dead writers beside it (see `sweep_stale_cache_temps`).
std::optional<Loaded> read_cache(const std::string& path, const LoadOptions& options = {},
                                 size_t parts = 0);

/// Writes a cache file atomically: a temporary file `<path>.tmp.<host>.<pid>` is written,
/// fsync'ed, renamed into place, and the directory fsync'ed. Failure to write only warns: the
/// cache is an optimisation, never a reason to fail a run.
/// `sources` are the content SHA-256 of the files `data` was loaded from (one per part, or none),
/// recorded at the start of the file so that `purge_cache_for_sources` can find it.
void write_cache(const std::string& path, const Loaded& data,
                 const std::vector<std::string>& sources = {});

/// Removes from `dir` every cache file (`<64 hex>.rfcache`, of this layout) whose user ids
/// include one that `holds` accepts, whatever it was made from: the entries of other versions
/// of the data files (edited since, or before the one a run trained on) and of other configs
/// that read them. Reads each entry's user ids only. Returns the number of entries removed (an
/// entry linked under two keys counts once); throws recforge::Error naming a matching file
/// that cannot be removed.
int purge_cache_holding_users(const std::string& dir,
                              const std::function<bool(const std::string&)>& holds);

/// Removes from `dir` every cache file (`<64 hex>.rfcache`) made from a file whose content
/// SHA-256 is in `hashes`, the temporary files being written for them (`<key>.rfcache.tmp.*`,
/// and temporaries whose own header names such a source), and the temporaries of dead writers
/// (sweep_stale_cache_temps). No other file is touched. Returns the number of files removed (an
/// entry linked under two keys counts once); `unattributed` (optional) receives the number of
/// cache files of earlier layouts, which record no sources and are left in place. Throws
/// recforge::Error naming a matching file that cannot be removed.
int purge_cache_for_sources(const std::string& dir, const std::vector<std::string>& hashes,
                            int* unattributed = nullptr);

/// The temporary file `write_cache` writes `path` through in process `pid`:
/// `<path>.tmp.<host>.<pid>`, so a later run can tell a dead writer's leftover from a live one's.
std::string cache_temp_path(const std::string& path, int64_t pid);

/// Removes the temporary cache files in `dir` that a recforge process on this host left behind
/// when it died (`<64 hex>.rfcache.tmp.<host>.<pid>` whose pid no longer exists). Files of live
/// processes, of other hosts and every other file are left alone. Returns the number removed.
int sweep_stale_cache_temps(const std::string& dir);

}  // namespace recforge::data
