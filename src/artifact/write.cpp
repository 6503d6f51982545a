// Writing an export: stage every file in a sibling directory, then swap it into place.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "artifact/artifact.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"

namespace recforge::artifact {

namespace fs = std::filesystem;

const std::vector<std::string>& data_files() {
  static const std::vector<std::string> files = {
      "item_factors.npy", "user_factors.npy", "item_ids.txt", "user_ids.txt",
      "seen_indptr.npy",  "seen_indices.npy", "index.faiss"};
  return files;
}

const std::vector<std::string>& optional_files() {
  static const std::vector<std::string> files = {"opt_out.txt", kSeenDataFile};
  return files;
}

nlohmann::json fold_in_section(const nlohmann::json& config, double train_weight_total) {
  auto section = [&](const char* name) -> const nlohmann::json* {
    const auto it = config.find(name);
    return it != config.end() && it->is_object() ? &*it : nullptr;
  };
  const nlohmann::json* model = section("model");
  const nlohmann::json* weighting = section("weighting");
  if (!config.is_object() || !model || !weighting) return nullptr;
  nlohmann::json out = {{"model", *model}, {"weighting", *weighting}};
  // Keys added after exports were first read, written only when they change the fold-in, so
  // that a server of an earlier recforge (whose fold-in refuses a key it does not know) still
  // opens the exports that do not use them.
  for (const auto& [key, fresh] : {std::pair<const char*, const char*>{"observed_weight", "added"}})
    if (out["model"].contains(key) && out["model"][key] == fresh) out["model"].erase(key);
  if (const nlohmann::json* run = section("run"); run && run->contains("seed"))
    out["seed"] = (*run)["seed"];
  if (const nlohmann::json* train = section("train"); train && train->contains("threads"))
    out["threads"] = (*train)["threads"];
  out["train_weight_total"] = train_weight_total;
  return out;
}

bool is_artifact(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "manifest.json", ec) ||
         fs::is_symlink(fs::path(dir) / kCurrentLink, ec);
}

bool has_export_manifest(const std::string& dir) {
  std::error_code ec;
  const fs::path manifest = fs::path(dir) / "manifest.json";
  if (!fs::is_regular_file(manifest, ec)) return false;
  std::ifstream mf(manifest);
  const auto j = nlohmann::json::parse(mf, nullptr, false);
  return j.is_object() && j.contains("format") && j["format"] == kFormatName;
}

std::string recforge_owner(const std::string& path, bool self, bool runs) {
  std::error_code ec;
  fs::path d = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) return "";
  if (!self) d = d.parent_path();
  for (; !d.empty(); d = d.parent_path()) {
    if (runs && is_run_directory(d.string())) return "the run directory " + d.string();
    if (has_export_manifest(d.string())) return "the export " + d.string();
    if (d == d.root_path()) break;
  }
  return "";
}

namespace {

/// Test hook: RECFORGE_TEST_EXPORT_PAUSE_AFTER=<step> makes the writer announce the step on
/// stderr and sleep there, so that a test can kill it at a known point. Steps are the file
/// names (written into the staging directory), "version" (renamed to v-<N>, `current` not yet
/// replaced), "moved-aside" and "swapped".
void maybe_pause(const std::string& step) {
  const char* want = std::getenv("RECFORGE_TEST_EXPORT_PAUSE_AFTER");
  if (want == nullptr || step != want) return;
  std::fprintf(stderr, "export: paused after %s\n", step.c_str());
  std::fflush(stderr);
  for (;;) pause();
}

/// Whether process `pid` is gone (its staging directories are stale).
bool process_gone(long pid) { return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

/// The pid in "<name>.<tag>-<pid>", or -1 when `entry` is not such a name.
long sibling_pid(const std::string& entry, const std::string& name, const std::string& tag) {
  const std::string prefix = name + "." + tag + "-";
  if (entry.compare(0, prefix.size(), prefix) != 0 || entry.size() == prefix.size()) return -1;
  const std::string digits = entry.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) return -1;
  return std::stol(digits);
}

/// The largest process id of this system (/proc/sys/kernel/pid_max): a name with a larger
/// number was not made by a process.
long max_pid() {
  long v = 0;
  if (std::FILE* f = std::fopen("/proc/sys/kernel/pid_max", "r")) {
    if (std::fscanf(f, "%ld", &v) != 1) v = 0;
    std::fclose(f);
  }
  return v > 0 ? v : 4194304;  // the kernel's limit (PID_MAX_LIMIT on 64-bit)
}

/// Whether `dir` holds what an export's staging directory beside `out` holds (v-1, and then
/// the `current` link and the links to its files), or what an atomic exchange put there (the
/// flat-layout export it replaced: manifest.json and the files), and nothing else: a user's
/// directory of the same name pattern holds other things, and is left alone.
bool is_staging_dir(const fs::path& dir) {
  std::error_code ec;
  bool has_export_part = false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string entry = e.path().filename().string();
    if (entry == "v-1" || entry == "manifest.json") {
      has_export_part = true;
      continue;
    }
    const auto& files = data_files();
    const auto& optional = optional_files();
    if (entry != kCurrentLink && std::find(files.begin(), files.end(), entry) == files.end() &&
        std::find(optional.begin(), optional.end(), entry) == optional.end())
      return false;
  }
  return !ec && has_export_part;
}

/// Tidies what interrupted exports of dead processes left beside `out`: an old export moved
/// aside while `out` is absent is moved back, or removed when `out` is in place; staging
/// directories are removed. Only entries named `<out>.old-<pid>` (an export) and
/// `<out>.tmp-<pid>` (a staging directory, is_staging_dir) of a process that is gone are
/// touched: anything else of those names is not recforge's.
void recover_siblings(const fs::path& out) {
  const std::string name = out.filename().string();
  const long pid_limit = max_pid();
  auto ours = [&](long pid) { return pid > 0 && pid <= pid_limit && process_gone(pid); };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const std::string entry = e.path().filename().string();
    std::error_code e2;
    if (ours(sibling_pid(entry, name, "old")) && !fs::is_symlink(e.path(), e2) &&
        is_artifact(e.path().string())) {
      if (!fs::exists(out, e2)) {
        fs::rename(e.path(), out, e2);
        log().warn("export: restored {} from {} (left by an interrupted export)", out.string(),
                   e.path().string());
      } else {
        fs::remove_all(e.path(), e2);
      }
    }
    if (ours(sibling_pid(entry, name, "tmp")) && !fs::is_symlink(e.path(), e2) &&
        is_staging_dir(e.path()))
      fs::remove_all(e.path(), e2);
  }
}

/// Writes ids one per line; ids with line breaks cannot be represented.
void write_ids(const std::string& path, const std::vector<std::string>& ids, const char* what) {
  std::string text;
  for (const std::string& id : ids) {
    if (id.find_first_of("\r\n") != std::string::npos)
      fail("export: {} id \"{}\" contains a line break; expected ids without line breaks", what,
           id);
    text += id;
    text += '\n';
  }
  write_file_atomic(path, text);
}

/// The manifest's shape field of a 2-D matrix.
nlohmann::json shape_of(const Matrix& m) { return {m.rows, m.cols}; }

/// Refuses factors with a NaN or an infinity: they would be served as nonsense scores.
void check_finite_input(const Matrix& m, const char* what) {
  for (size_t i = 0; i < m.data.size(); ++i)
    if (!std::isfinite(m.data[i]))
      fail("export: {} hold {} at row {}, column {}; expected finite values (the model diverged, "
           "or its factor files are damaged)",
           what, m.data[i], static_cast<int64_t>(i) / m.cols, static_cast<int64_t>(i) % m.cols);
}

/// What is at the export path before writing.
enum class Layout {
  kNone,       // nothing, or an empty directory
  kFlat,       // an export of earlier recforge builds: the files directly in the directory
  kVersioned,  // `current` and v-<N> directories
};

/// The pid in "<prefix><pid>" or "<prefix><pid>-<anything>", or -1.
long hidden_pid(const std::string& entry, const std::string& prefix) {
  if (entry.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string rest = entry.substr(prefix.size());
  const std::string digits = rest.substr(0, rest.find('-'));
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stol(digits);
}

/// Removes what writers that died left inside a versioned export: staging directories, links
/// being made, versions being removed.
void tidy_inside(const fs::path& out) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string entry = e.path().filename().string();
    for (const char* prefix : {".staging-", ".current-", ".removing-"}) {
      const long pid = hidden_pid(entry, prefix);
      if (pid > 0 && (pid == getpid() || process_gone(pid))) {
        std::error_code e2;
        fs::remove_all(e.path(), e2);
      }
    }
  }
}

/// Makes the links `<file>` → `current/<file>` in `dir` that are missing (an entry of that name,
/// whatever it is, is left alone).
void link_files(const fs::path& dir) {
  std::vector<std::string> names = data_files();
  names.insert(names.begin(), "manifest.json");
  names.insert(names.end(), optional_files().begin(), optional_files().end());
  for (const std::string& f : names) {
    std::error_code ec;
    if (fs::symlink_status(dir / f, ec).type() != fs::file_type::not_found) continue;
    fs::create_symlink(fs::path(kCurrentLink) / f, dir / f, ec);
    if (ec) fail("{}: cannot create the link to {}/{}: {}", (dir / f).string(), kCurrentLink, f,
                 ec.message());
  }
}

/// The version numbers of the v-<N> directories in `dir`, ascending.
std::vector<long> versions_in(const fs::path& dir) {
  std::vector<long> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const long n = version_number(e.path().filename().string());
    if (n > 0 && e.is_directory(ec)) v.push_back(n);
  }
  std::sort(v.begin(), v.end());
  return v;
}

/// Holds an exclusive flock on a directory while alive.
class DirLock {
 public:
  explicit DirLock(const fs::path& dir) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) fail("{}: cannot open to lock it: {}", dir.string(), std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd_);
      fail("{}: cannot lock: {}", dir.string(), std::strerror(err));
    }
  }
  ~DirLock() { ::close(fd_); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

/// `out_arg` without a trailing '/' or '.' parts; refuses an empty path, "." and "..".
std::string normalized_target(const std::string& out_arg) {
  if (out_arg.empty()) fail("export: the output directory is empty; expected a path");
  fs::path out = fs::path(out_arg).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" → "dir"
  if (out.filename() == "." || out.filename() == "..")
    fail("{}: expected a directory name for the export, not \".\" or \"..\"", out_arg);
  return out.string();
}

/// What is at the export path `out` (shown as `out_s`); refuses anything that is not an
/// earlier export (or nothing, or an empty directory).
Layout inspect_target(const fs::path& out, const std::string& out_s,
                      const std::string& option = "--out") {
  std::error_code ec;
  Layout layout = Layout::kNone;
  // The swap renames `out` itself: through a symbolic link it would replace the link (an
  // export's own `current` included) with a directory, and the export it named would stay.
  if (fs::is_symlink(out, ec)) {
    const fs::path target = fs::read_symlink(out, ec);
    fail("{}: is a symbolic link (to {}); give the export directory itself as {}", out_s,
         target.string(), option);
  }
  // Inside an export (its version directories, its `current`): the export is the unit. (An
  // export inside a run directory is where training puts it.)
  if (const std::string owner = recforge_owner(out.string(), false, false); !owner.empty())
    fail("{}: is inside {}; give that export (or a new directory outside it) as {}", out_s,
         owner, option);
  if (fs::exists(fs::symlink_status(out, ec))) {
    if (!fs::is_directory(out, ec))
      fail("{}: exists and is not a directory; expected a new path or an earlier recforge export",
           out_s);
    if (fs::is_symlink(out / kCurrentLink, ec)) {
      const std::string target = fs::read_symlink(out / kCurrentLink, ec).string();
      if (ec || version_number(target) < 0)
        fail("{}/{}: does not point to a version directory v-<N>; expected a recforge export at "
             "{} (choose another {} or remove it)",
             out_s, kCurrentLink, out_s, option);
      layout = Layout::kVersioned;
    } else if (!fs::is_empty(out, ec)) {
      bool ours = false;
      if (fs::is_regular_file(fs::symlink_status(out / "manifest.json", ec))) {
        std::ifstream mf(out / "manifest.json");
        const auto j = nlohmann::json::parse(mf, nullptr, false);
        ours = j.is_object() && j.contains("format") && j["format"] == kFormatName;
      }
      if (!ours)
        fail(
            "{}: exists and is not a recforge export (no recforge manifest.json); choose another "
            "{} or remove it",
            out_s, option);
      // The whole directory is replaced: it must hold nothing but the export.
      std::vector<std::string> known = data_files();
      known.push_back("manifest.json");
      known.insert(known.end(), optional_files().begin(), optional_files().end());
      for (const auto& e : fs::directory_iterator(out, ec)) {
        const std::string entry = e.path().filename().string();
        if (std::find(known.begin(), known.end(), entry) == known.end())
          fail(
              "{}: holds {}, which is not part of a recforge export; move it elsewhere first "
              "(an export of this earlier layout is replaced as a whole)",
              out_s, entry);
      }
      layout = Layout::kFlat;
    }
  }

  return layout;
}

}  // namespace

std::string check_target(const std::string& out_arg, const std::string& option) {
  const std::string out_s = normalized_target(out_arg);
  fs::path out(out_s);
  if (out.parent_path().empty()) out = fs::path(".") / out;
  inspect_target(out, out_s, option);
  // The nearest existing folder above it must take new entries.
  fs::path above = out.parent_path();
  std::error_code ec;
  while (!above.empty() && !fs::exists(above, ec)) above = above.parent_path();
  if (above.empty()) above = ".";
  if (!fs::is_directory(above, ec) || ::access(above.c_str(), W_OK | X_OK) != 0)
    fail("{}: cannot write the export there: {} is not a writable directory", out_s,
         above.string());
  return out_s;
}

std::string write(const ExportInput& in, const std::string& out_arg, const std::string& shown_as) {
  RF_ASSERT(in.users && in.items && in.user_ids && in.item_ids && in.seen,
            "artifact::write: missing input");
  const Matrix& users = *in.users;
  const Matrix& items = *in.items;
  const data::Csr& seen = *in.seen;
  if (users.cols != items.cols || users.rows != in.user_ids->size() ||
      items.rows != in.item_ids->size() || seen.rows != users.rows || seen.cols != items.rows)
    throw InternalError("artifact::write: inconsistent shapes", __FILE__, __LINE__);
  const std::string out_s = normalized_target(out_arg);
  fs::path out(out_s);
  if (out.parent_path().empty()) out = fs::path(".") / out;

  check_finite_input(users, "the user factors");
  check_finite_input(items, "the item factors");

  std::error_code ec;
  // Existing directories untouched; those made here are removed again if the export fails.
  MadeDirs parents;
  parents.create(out.parent_path().string(), ec);
  if (ec)
    fail("{}: cannot create the parent directory: {}", out.parent_path().string(), ec.message());
  recover_siblings(out);

  const Layout layout = inspect_target(out, out_s, in.out_option);

  // Where the files go: a new version inside a versioned export, or v-1 of a whole new export
  // directory staged beside `out`.
  const std::string name = out.filename().string();
  std::optional<DirLock> lock;
  fs::path staging;
  fs::path files_dir;
  if (layout == Layout::kVersioned) {
    lock.emplace(out);
    tidy_inside(out);
    staging = out / fmt::format(".staging-{}", getpid());
    files_dir = staging;
  } else {
    staging = out.parent_path() / fmt::format("{}.tmp-{}", name, getpid());
    files_dir = staging / "v-1";
  }
  fs::remove_all(staging, ec);
  // privacy.file_mode; with the parents, in case a concurrent export that made them removed
  // them meanwhile (the staging directories themselves go with Cleanup).
  parents.create(files_dir.string(), ec);
  if (ec) fail("{}: cannot create the staging directory: {}", staging.string(), ec.message());
  struct Cleanup {  // removes the staging directory unless it was moved into place
    fs::path p;
    std::string on_signal;  // registered for removal on SIGINT/SIGTERM while being written
    ~Cleanup() {
      if (!on_signal.empty()) remove_interrupt_cleanup(on_signal);
      if (p.empty()) return;
      std::error_code e;
      fs::remove_all(p, e);
    }
  } cleanup{staging, staging.string()};
  add_interrupt_cleanup(cleanup.on_signal);

  nlohmann::json files = nlohmann::json::object();
  auto written = [&](const std::string& file, nlohmann::json extra) {
    const std::string path = (files_dir / file).string();
    sync_path(path, false);
    extra["bytes"] = fs::file_size(path);
    extra["sha256"] = sha256_file(path);
    files[file] = std::move(extra);
    maybe_pause(file);
  };
  const std::string S = files_dir.string() + "/";

  write_npy(S + "item_factors.npy", items);
  written("item_factors.npy", {{"dtype", "float32"}, {"shape", shape_of(items)}});
  write_npy(S + "user_factors.npy", users);
  written("user_factors.npy", {{"dtype", "float32"}, {"shape", shape_of(users)}});
  write_ids(S + "item_ids.txt", in.item_ids->ids(), "item");
  written("item_ids.txt", {{"lines", items.rows}});
  // export.pseudonymize: HMAC-SHA256(key, raw id) in place of each user id, in the same rows.
  const SecretKey* key = in.pseudonym_key ? &*in.pseudonym_key : nullptr;
  auto pseudonyms = [key](const std::vector<std::string>& raw) {
    std::vector<std::string> hashed;
    hashed.reserve(raw.size());
    for (const std::string& id : raw) hashed.push_back(key->pseudonym(id));
    return hashed;
  };
  write_ids(S + "user_ids.txt", key ? pseudonyms(in.user_ids->ids()) : in.user_ids->ids(), "user");
  written("user_ids.txt", {{"lines", users.rows}});
  std::vector<std::string> opt_out = key ? pseudonyms(in.opt_out) : in.opt_out;
  std::sort(opt_out.begin(), opt_out.end());
  opt_out.erase(std::unique(opt_out.begin(), opt_out.end()), opt_out.end());
  write_ids(S + "opt_out.txt", opt_out, "opted-out user");
  written("opt_out.txt", {{"lines", opt_out.size()}});
  if (!in.chain_users.empty()) {
    RF_ASSERT(std::is_sorted(in.chain_users.begin(), in.chain_users.end()) &&
                  in.chain_salt.size() == 64,
              "export: chain users unsorted or without their salt");
    write_file_atomic(S + kChainUsersFile, chain_users_text(in.chain_users));
    written(kChainUsersFile, {{"lines", in.chain_users.size()}});
  }
  write_npy(S + "seen_indptr.npy", std::vector<int64_t>(seen.indptr.begin(), seen.indptr.end()));
  written("seen_indptr.npy", {{"dtype", "int64"}, {"shape", {seen.rows + 1}}});
  write_npy(S + "seen_indices.npy", std::vector<int32_t>(seen.indices.begin(), seen.indices.end()));
  written("seen_indices.npy", {{"dtype", "int32"}, {"shape", {seen.nnz()}}});
  // The confidences the model trained on, parallel to seen_indices (explanations need them).
  write_npy(S + kSeenDataFile, std::vector<float>(seen.data.begin(), seen.data.end()));
  written(kSeenDataFile, {{"dtype", "float32"}, {"shape", {seen.nnz()}}});

  const auto t0 = std::chrono::steady_clock::now();
  const index::ItemIndex idx = index::ItemIndex::build(items, in.index);
  const double build_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  idx.write(S + "index.faiss");
  apply_file_mode(S + "index.faiss", false);  // Faiss created it with the umask's mode
  written("index.faiss", {{"format", "faiss"}});
  nlohmann::json index_json = idx.describe();
  index_json["file"] = "index.faiss";
  index_json["build_seconds"] = build_seconds;

  // Written in this order (ordered_json) so that the file reads top-down: identity, shapes,
  // index, metrics, config, checksums.
  auto ordered = [](const nlohmann::json& j) { return nlohmann::ordered_json::parse(j.dump()); };
  nlohmann::ordered_json manifest = {
      {"format", kFormatName},
      {"format_version", kFormatVersion},
      {"created", utc_now()},
      {"recforge_version", RECFORGE_VERSION},
      {"source", ordered(in.source)},
      {"model", {{"type", in.model_type}, {"parameters", ordered(in.model_parameters)}}},
      {"counts",
       {{"users", users.rows}, {"items", items.rows}, {"dim", items.cols}, {"seen", seen.nnz()}}},
      {"dtype", "float32"},
      {"metric", index::metric_name(in.index.metric)},
      {"index", ordered(index_json)},
      {"metrics", ordered(in.metrics)},
      {"config", ordered(in.config)},
  };
  manifest["user_ids"] = {{"pseudonymized", key != nullptr}};
  if (key) {
    manifest["user_ids"]["scheme"] = kPseudonymScheme;
    manifest["user_ids"]["key_check"] = key->check_value();
  }
  if (!in.chain_users.empty())
    manifest["chain_users"] = {{"salt", in.chain_salt}, {"key_checks", in.chain_key_checks}};
  if (const nlohmann::json fold = fold_in_section(in.config, in.train_weight_total); !fold.is_null())
    manifest["fold_in"] = ordered(fold);
  manifest["files"] = ordered(files);
  write_file_atomic(S + "manifest.json", manifest.dump(2) + "\n");
  sync_path(S + "manifest.json", false);
  sync_path(files_dir.string(), true);
  maybe_pause("manifest.json");

  // Into place. From here a stop by a signal leaves the staging directory (or the old export)
  // to the next export's tidying, never half of a directory being renamed.
  remove_interrupt_cleanup(cleanup.on_signal);
  cleanup.on_signal.clear();
  if (layout == Layout::kVersioned) {
    // The next version number, the complete files renamed to it, then `current` swapped.
    const long previous = version_number(fs::read_symlink(out / kCurrentLink, ec).string());
    const std::vector<long> before = versions_in(out);
    long n = before.empty() ? 1 : before.back() + 1;
    fs::path version;
    for (;; ++n) {
      version = out / fmt::format("v-{}", n);
      if (::rename(staging.c_str(), version.c_str()) == 0) break;
      if (errno != EEXIST && errno != ENOTEMPTY)
        fail("{}: cannot move the new version into place: {}", version.string(),
             std::strerror(errno));
    }
    cleanup.p.clear();
    maybe_pause("version");
    const fs::path link = out / fmt::format(".current-{}", getpid());
    fs::remove(link, ec);
    fs::create_symlink(version.filename(), link, ec);
    if (ec) fail("{}: cannot create the link to {}: {}", link.string(), version.string(), ec.message());
    sync_path(out.string(), true);
    if (::rename(link.c_str(), (out / kCurrentLink).c_str()) != 0) {
      const int err = errno;
      fs::remove(link, ec);
      fail("{}/{}: cannot point it to {}: {}", out_s, kCurrentLink, version.filename().string(),
           std::strerror(err));
    }
    sync_path(out.string(), true);
    maybe_pause("swapped");
    link_files(out);
    // Keep the new version and the one `current` named before (the previous export, which
    // readers may still be reading); the others are renamed away first (a reader in one of them
    // sees its directory gone and starts over) and removed.
    for (long v : versions_in(out)) {
      if (v == n || v == previous) continue;
      const fs::path old = out / fmt::format("v-{}", v);
      const fs::path away = out / fmt::format(".removing-{}-v-{}", getpid(), v);
      if (::rename(old.c_str(), away.c_str()) == 0) fs::remove_all(away, ec);
    }
  } else {
    // A whole new export directory: `current`, the links, then into place.
    fs::create_symlink("v-1", staging / kCurrentLink, ec);
    if (!ec) link_files(staging);
    if (ec) fail("{}: cannot create the link to v-1: {}", (staging / kCurrentLink).string(), ec.message());
    sync_path(staging.string(), true);
    if (layout != Layout::kNone || fs::exists(out)) {
      // RECFORGE_TEST_EXPORT_NO_EXCHANGE forces the fallback below, for its test.
      bool exchanged = false;
      if (std::getenv("RECFORGE_TEST_EXPORT_NO_EXCHANGE") == nullptr) {
        if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0)
          exchanged = true;
        else if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
          fail("{}: cannot replace the existing export: {}", out_s, std::strerror(errno));
      }
      if (exchanged) {
        maybe_pause("swapped");  // staging now holds the old export; Cleanup removes it
      } else {
        // No atomic exchange here: move the old export aside, then the new one in.
        const fs::path old = out.parent_path() / fmt::format("{}.old-{}", name, getpid());
        fs::remove_all(old, ec);
        fs::rename(out, old, ec);
        if (ec) fail("{}: cannot move the existing export aside: {}", out_s, ec.message());
        maybe_pause("moved-aside");
        fs::rename(staging, out, ec);
        if (ec) {
          std::error_code back;
          fs::rename(old, out, back);
          fail("{}: cannot move the new export into place: {}", out_s, ec.message());
        }
        cleanup.p = old;
      }
    } else {
      fs::rename(staging, out, ec);
      if (ec) fail("{}: cannot move the new export into place: {}", out_s, ec.message());
      cleanup.p.clear();
    }
    sync_path(out.parent_path().string(), true);
  }
  parents.keep();
  log().info("exported {} users, {} items ({} index, {}) to {}", users.rows, items.rows,
             index::type_name(in.index.type), index::metric_name(in.index.metric),
             shown_as.empty() ? out_s : shown_as);
  return out_s;
}

}  // namespace recforge::artifact
