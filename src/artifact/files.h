#pragma once
/// @file files.h
/// Reading the files of a directory through one open descriptor of it: each file is opened once
/// (openat), read whole or mapped read-only, and its size and SHA-256 are checked on the very
/// bytes that are then parsed (or, mapped, used). A directory that is renamed or replaced
/// meanwhile cannot mix its files with another's, and a file cannot change between being checked
/// and being read.

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct stat;

namespace recforge::artifact {

/// A whole file mapped read-only (mmap PROT_READ, MAP_SHARED): every process that maps the same
/// file shares the page cache's one copy of its bytes. Unmapped when destroyed; hold it by
/// shared_ptr to keep views of it (FloatStore::view) alive. The bytes stay those of the file's
/// inode even when the file is renamed or removed meanwhile; they would change only if someone
/// wrote into the file in place, which recforge's writers never do to a published version (they
/// write new files and rename them in).
class MappedFile {
 public:
  MappedFile(const char* data, size_t size) : data_(data), size_(size) {}
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  /// The file's bytes (empty for an empty file, which is not mapped).
  std::string_view bytes() const { return {data_, size_}; }

 private:
  const char* data_;
  size_t size_;
};

/// A directory opened once (an O_DIRECTORY descriptor), with the path that messages show for it.
class DirReader {
 public:
  /// Opens `entry` relative to the directory descriptor `at` (AT_FDCWD: the working directory),
  /// following symbolic links; `shown` is the path named in messages. Returns nullopt when it
  /// does not exist; throws recforge::Error when it is not a directory or cannot be opened.
  static std::optional<DirReader> open(const std::string& entry, const std::string& shown,
                                       int at = AT_FDCWD);
  ~DirReader();
  DirReader(DirReader&& other) noexcept;
  DirReader& operator=(DirReader&& other) noexcept;
  DirReader(const DirReader&) = delete;
  DirReader& operator=(const DirReader&) = delete;

  /// The descriptor.
  int fd() const { return fd_; }
  /// The path shown for `file` in this directory ("runs/a/user_factors.npy").
  std::string shown(const std::string& file) const { return shown_ + "/" + file; }
  /// The path shown for the directory.
  const std::string& shown() const { return shown_; }

  /// The whole content of the regular file `file`, or nullopt when there is no such entry.
  /// Throws recforge::Error naming the file when it is not a regular file or cannot be read.
  std::optional<std::string> read(const std::string& file) const;

  /// The regular file `file` mapped read-only, or nullptr when there is no such entry. Throws
  /// recforge::Error naming the file when it is not a regular file or cannot be mapped.
  std::shared_ptr<const MappedFile> map(const std::string& file) const;

  /// True while the directory that was opened is still the one at the path it was opened by
  /// (not removed, renamed or swapped for another since).
  bool still_in_place() const;

 private:
  DirReader(int fd, int at, std::string entry, std::string shown);
  /// `file` opened read-only and checked to be a regular file (its stat in `st`), or -1 when
  /// it does not exist; other failures throw recforge::Error naming it.
  int open_regular(const std::string& file, struct stat* st) const;
  int fd_ = -1;
  int at_ = AT_FDCWD;
  std::string entry_, shown_;
};

/// The lowercase hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

/// {"bytes": size, "sha256": hex} of `bytes`: an entry of a manifest's (or run.json's) "files".
nlohmann::json checksum_entry(std::string_view bytes);

/// Checks `bytes`, the content of the file shown as `shown`, against `entry` ({"bytes",
/// "sha256"}) from `listed_in` ("manifest.json", "run.json"). Throws recforge::Error with one
/// sentence naming the file when the size or the SHA-256 differs, or the entry is malformed.
void verify_entry(const std::string& shown, std::string_view bytes, const nlohmann::json& entry,
                  const std::string& listed_in);

}  // namespace recforge::artifact
