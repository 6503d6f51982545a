#pragma once
/// @file fs.h
/// File-system helpers: atomic file writes and run directories that appear whole or not at all.

#include <string>

namespace recforge {

/// Writes `text` to `path` atomically (temporary file in the same directory, then rename).
/// Throws recforge::Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& text);

/// A run directory under construction. Files are written into a hidden staging directory beside
/// the final one; `commit()` renames it into place. If the object is destroyed uncommitted
/// (an error), the staging directory is removed, so no partial run is left behind as complete.
class StagedDir {
 public:
  /// Reserves `root/name`. `exists` decides what happens when it already exists: "suffix"
  /// (use name.1, name.2, ...), "overwrite" (replace it at commit) or "error".
  StagedDir(const std::string& root, const std::string& name, const std::string& exists);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  /// Path of `file` inside the staging directory.
  std::string file(const std::string& name) const;
  /// The staging directory.
  const std::string& staging() const { return staging_; }
  /// Where the directory will be after commit.
  const std::string& final_path() const { return final_; }
  /// Moves the staging directory into place; returns the final path.
  const std::string& commit();

 private:
  std::string root_, name_, exists_, staging_, final_;
  bool committed_ = false;
};

}  // namespace recforge
