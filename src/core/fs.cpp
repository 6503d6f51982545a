#include "core/fs.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace recforge {
namespace fs = std::filesystem;

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot write file", path);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      fail("{}: write failed (disk full?)", path);
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail("{}: cannot move the finished file into place: {}", path, ec.message());
  }
}

namespace {

std::string pick_final(const std::string& root, const std::string& name, const std::string& exists) {
  const fs::path base = fs::path(root) / name;
  if (!fs::exists(base) || exists == "overwrite") return base.string();
  if (exists == "error")
    fail("run directory {} already exists (set run.exists: suffix or overwrite, or choose another "
         "run.name)",
         base.string());
  for (int k = 1;; ++k) {
    fs::path p = fs::path(root) / fmt::format("{}.{}", name, k);
    if (!fs::exists(p)) return p.string();
  }
}

}  // namespace

StagedDir::StagedDir(const std::string& root, const std::string& name, const std::string& exists)
    : root_(root), name_(name), exists_(exists) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
    fail("run.name \"{}\": expected a non-empty name without '/' that does not start with '.'",
         name);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail("{}: cannot create the runs directory: {}", root, ec.message());
  final_ = pick_final(root, name, exists);
  staging_ = (fs::path(root) / fmt::format(".{}.partial-{}", name, getpid())).string();
  fs::remove_all(staging_, ec);
  fs::create_directory(staging_, ec);
  if (ec) fail("{}: cannot create the staging directory: {}", staging_, ec.message());
}

StagedDir::~StagedDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

std::string StagedDir::file(const std::string& name) const { return staging_ + "/" + name; }

const std::string& StagedDir::commit() {
  std::error_code ec;
  if (fs::exists(final_) && exists_ == "overwrite") {
    // Move the old run aside first so the new one appears in a single rename.
    const std::string old = (fs::path(root_) / fmt::format(".{}.old-{}", name_, getpid())).string();
    fs::rename(final_, old, ec);
    if (ec) fail("{}: cannot replace the existing run directory: {}", final_, ec.message());
    fs::rename(staging_, final_, ec);
    if (ec) fail("{}: cannot move the finished run into place: {}", final_, ec.message());
    fs::remove_all(old, ec);
  } else {
    // Another run may have taken the name meanwhile: choose again.
    if (fs::exists(final_)) final_ = pick_final(root_, name_, exists_);
    fs::rename(staging_, final_, ec);
    if (ec) fail("{}: cannot move the finished run into place: {}", final_, ec.message());
  }
  committed_ = true;
  return final_;
}

}  // namespace recforge
