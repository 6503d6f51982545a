#include "core/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace recforge {
namespace fs = std::filesystem;

namespace {
std::atomic<FileMode> g_file_mode{FileMode::kUmask};

mode_t file_bits(FileMode m) { return m == FileMode::kOwner ? 0600 : m == FileMode::kGroup ? 0640 : 0666; }
mode_t dir_bits(FileMode m) { return m == FileMode::kOwner ? 0700 : m == FileMode::kGroup ? 0750 : 0777; }
}  // namespace

FileMode file_mode_from(const std::string& name) {
  if (name == "owner") return FileMode::kOwner;
  if (name == "group") return FileMode::kGroup;
  if (name == "umask") return FileMode::kUmask;
  fail("privacy.file_mode \"{}\": expected owner, group or umask", name);
}

void set_file_mode(FileMode mode) { g_file_mode.store(mode); }

FileMode file_mode() { return g_file_mode.load(); }

int create_file(const std::string& path, int flags) {
  const FileMode m = file_mode();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, file_bits(m));
  if (fd < 0 || m == FileMode::kUmask) return fd;
  // The umask may have removed bits that the setting grants (group read with umask 077).
  if (::fchmod(fd, file_bits(m)) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

int open_or_create_file(const std::string& path, int flags) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags);
    if (fd >= 0 || errno != ENOENT) return fd;
    const int made = create_file(path, flags | O_EXCL);
    if (made >= 0 || errno != EEXIST) return made;  // else another process made it meanwhile
  }
  return -1;
}

std::FILE* create_file_stream(const std::string& path) {
  const int fd = create_file(path);
  if (fd < 0) return nullptr;
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    const int err = errno;
    ::close(fd);
    errno = err;
  }
  return f;
}

int make_directory(const std::string& path) {
  const FileMode m = file_mode();
  if (::mkdir(path.c_str(), dir_bits(m)) != 0) return -1;
  if (m != FileMode::kUmask && ::chmod(path.c_str(), dir_bits(m)) != 0) return -1;
  return 0;
}

bool create_directories(const std::string& path, std::error_code& ec,
                        std::vector<std::string>* made) {
  ec.clear();
  if (path.empty()) return true;
  // The missing directories, deepest first; existing ones are never touched.
  std::vector<fs::path> missing;
  for (fs::path p = fs::path(path).lexically_normal(); !p.empty() && p != p.root_path();
       p = p.parent_path()) {
    if (p.filename().empty()) continue;  // "a/b/" → "a/b"
    if (fs::exists(p, ec)) break;
    ec.clear();
    missing.push_back(p);
    if (!p.has_parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (make_directory(it->string()) != 0) {
      if (errno == EEXIST) continue;  // made meanwhile by someone else: not ours
      ec = std::error_code(errno, std::generic_category());
      return false;
    }
    if (made) made->push_back(it->string());
  }
  if (!fs::is_directory(path, ec)) {
    if (!ec) ec = std::make_error_code(std::errc::not_a_directory);
    return false;
  }
  return true;
}

bool MadeDirs::create(const std::string& path, std::error_code& ec) {
  bool ok = false;
  // Made and registered with the cleanup held off, so that a signal between the two cannot
  // leave one behind.
  without_interrupt_cleanup([&] {
    std::vector<std::string> made;
    ok = create_directories(path, ec, &made);
    for (const std::string& d : made) {
      add_interrupt_cleanup(d, false);  // outermost first: removed after what is inside
      made_.push_back(d);
    }
  });
  return ok;
}

void MadeDirs::keep() {
  for (const std::string& d : made_) remove_interrupt_cleanup(d);
  made_.clear();
}

MadeDirs::~MadeDirs() {
  without_interrupt_cleanup([this] {
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
      remove_interrupt_cleanup(*it);
      ::rmdir(it->c_str());  // only while empty: another run may have begun to use it
    }
  });
}

void apply_file_mode(const std::string& path, bool directory) {
  const FileMode m = file_mode();
  if (m == FileMode::kUmask) return;
  if (::chmod(path.c_str(), directory ? dir_bits(m) : file_bits(m)) != 0)
    fail("{}: cannot set its mode (privacy.file_mode): {}", path, std::strerror(errno));
}

void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("{}: cannot open to flush it to disk: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail("{}: cannot flush to disk: {}", path, std::strerror(err));
}

namespace {

// The temporary file beside `path` that write_atomic and write_files_atomic write first.
std::string temporary_name(const std::string& path) {
  return fmt::format("{}.tmp.{}", path, getpid());
}

// Writes `text` to `tmp`, flushed to disk; `mode` (when >= 0) is given to it. On failure `tmp`
// is removed and the error names `path`.
void write_synced_file(const std::string& tmp, const std::string& path, const std::string& text,
                       int mode) {
  const int fd = create_file(tmp);
  if (fd < 0) fail("{}: cannot write file: {}", path, std::strerror(errno));
  int err = 0;
  if (mode >= 0 && ::fchmod(fd, static_cast<mode_t>(mode)) != 0) err = errno;
  for (size_t done = 0; err == 0 && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;  // the contents on disk before the name
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail("{}: write failed: {}", path, std::strerror(err));
  }
}

// Renames the finished `tmp` to `path` (the caller holds the interrupt cleanup off); on failure
// `tmp` is removed and the error names `path`.
void move_into_place(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    const std::string why = fs::is_directory(path) ? "it is a directory" : ec.message();
    std::error_code ignored;
    fs::remove(tmp, ignored);
    fail("{}: cannot move the finished file into place: {}", path, why);
  }
}

// Test hook: RECFORGE_TEST_OUTPUT_PAUSE=<file name> makes write_output_file say on stderr that
// the temporary file of an output of that name is written, and sleep before moving it into
// place, so that a test can interrupt it there.
void maybe_pause_output(const std::string& path) {
  const char* want = std::getenv("RECFORGE_TEST_OUTPUT_PAUSE");
  if (want == nullptr || fs::path(path).filename() != want) return;
  std::fprintf(stderr, "output: paused before moving %s into place\n", path.c_str());
  std::fflush(stderr);
  for (;;) ::pause();
}

// write_file_atomic and write_output_file. `output`: a user's --out file, whose symbolic link is
// followed (the file it names is replaced, the link stays) and whose permission bits are kept
// when it exists (under privacy.file_mode umask).
void write_atomic(std::string path, const std::string& text, bool output) {
  int mode = -1;
  if (output) path = output_target(path, &mode);
  const std::string tmp = temporary_name(path);
  // Removed if SIGINT or SIGTERM stops the process while it is written (a recommend --all
  // output can take minutes and gigabytes).
  const InterruptCleanup cleanup(tmp);
  write_synced_file(tmp, path, text, mode);
  if (output) maybe_pause_output(path);
  without_interrupt_cleanup([&] { move_into_place(tmp, path); });
}

}  // namespace

std::string output_target(const std::string& path, int* mode) {
  std::error_code ec;
  std::string target = path;
  if (fs::is_symlink(path, ec)) {
    const fs::path resolved = fs::weakly_canonical(path, ec);
    if (!ec) target = resolved.string();
  }
  struct stat existing {};
  *mode = file_mode() == FileMode::kUmask && ::stat(target.c_str(), &existing) == 0 &&
                  S_ISREG(existing.st_mode)
              ? static_cast<int>(existing.st_mode & 07777)
              : -1;
  return target;
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  std::list<InterruptCleanup> cleanups;  // one per temporary, until the renames are done
  const auto remove_temporaries = [&](size_t from, size_t to) {
    for (size_t j = from; j < to; ++j) ::unlink(temporary_name(files[j].first).c_str());
  };
  size_t written = 0;
  try {
    for (const auto& [path, text] : files) {
      cleanups.emplace_back(temporary_name(path));
      write_synced_file(temporary_name(path), path, text, -1);  // removes its own on failure
      ++written;
    }
  } catch (...) {
    remove_temporaries(0, written);
    throw;
  }
  without_interrupt_cleanup([&] {
    for (size_t i = 0; i < files.size(); ++i) {
      try {
        move_into_place(temporary_name(files[i].first), files[i].first);
      } catch (...) {
        remove_temporaries(i + 1, files.size());
        throw;
      }
    }
  });
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_atomic(path, text, false);
}

void write_output_file(const std::string& path, const std::string& text) {
  write_atomic(path, text, true);
}

bool is_run_directory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !fs::is_regular_file(fs::path(dir) / "run.json", ec))
    return false;
  std::ifstream in(fs::path(dir) / "run.json");
  const auto j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() && j.contains("recforge_version") && j["recforge_version"].is_string() &&
         j.contains("status") && j["status"].is_string();
}

namespace {

/// Whether process `pid` is gone (what it left behind is stale).
bool process_gone(long pid) {
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

/// The pid that ends `entry` after `tag` ("<...><tag><digits>"), or -1 when there is none.
long pid_after(const std::string& entry, const std::string& tag) {
  const size_t p = entry.rfind(tag);
  if (p == std::string::npos) return -1;
  const std::string digits = entry.substr(p + tag.size());
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stol(digits);
}

/// Whether every entry of `dir` is a file that a run writes into its staging directory (or its
/// temporary file while being written), so that removing it cannot remove anything else.
bool holds_only_run_files(const fs::path& dir) {
  static const char* const known[] = {"config.yaml",      "log.txt",         "stats.json",
                                      "metrics.json",     "run.json",        "user_factors.npy",
                                      "item_factors.npy", "export",          "chain_users.txt",
                                      "exports.txt"};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    bool ours = false;
    for (const char* k : known) {
      const std::string name = k;
      // "run.json", "run.json.tmp.<pid>", "export.tmp-<pid>", ...
      if (f == name || f.rfind(name + ".", 0) == 0) ours = true;
    }
    if (!ours) return false;
  }
  return !ec;
}

/// The pid of another live process whose staging directory `.<leaf>.partial-<pid>` is in
/// `root` (it claims the name `leaf`), or -1 when there is none.
long other_claim(const std::string& root, const std::string& leaf) {
  const std::string prefix = "." + leaf + ".partial-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string f = e.path().filename().string();
    if (f.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = pid_after(f, ".partial-");
    if (pid > 0 && f.size() == prefix.size() + std::to_string(pid).size() && pid != getpid() &&
        !process_gone(pid))
      return pid;
  }
  return -1;
}

/// Swaps `a` and `b` atomically; false (nothing changed) when the file system cannot.
/// RECFORGE_TEST_RUN_NO_EXCHANGE forces false, to test the fallback.
bool exchange_paths(const std::string& a, const std::string& b) {
  if (std::getenv("RECFORGE_TEST_RUN_NO_EXCHANGE") != nullptr) return false;
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return true;
  if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) return false;
  fail("{}: cannot move the finished run into place: {}", b, std::strerror(errno));
}

}  // namespace

int remove_stale_run_debris(const std::string& root, bool any_pid) {
  const auto stale = [any_pid](long pid) { return any_pid ? pid > 0 : process_gone(pid); };
  std::error_code ec;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(root, ec)) entries.push_back(e.path());
  int tidied = 0;
  // Staging directories first, so that an old run can be moved back below.
  for (const fs::path& p : entries) {
    const std::string f = p.filename().string();
    const size_t tag = f.rfind(".partial-");
    if (f.empty() || f[0] != '.' || tag == std::string::npos || tag < 2) continue;
    if (!stale(pid_after(f, ".partial-")) || !fs::is_directory(p, ec) ||
        !holds_only_run_files(p))
      continue;
    fs::remove_all(p, ec);
    if (!ec) ++tidied;
  }
  for (const fs::path& p : entries) {
    const std::string f = p.filename().string();
    const size_t tag = f.rfind(".old-");
    if (f.empty() || f[0] != '.' || tag == std::string::npos || tag < 2) continue;
    if (!stale(pid_after(f, ".old-")) || !is_run_directory(p.string())) continue;
    // An overwrite interrupted between its two renames: the old run is all there is.
    const fs::path name = p.parent_path() / f.substr(1, tag - 1);
    if (!fs::exists(name, ec)) {
      fs::rename(p, name, ec);
      if (!ec)
        log().warn("restored {} from {} (left by an interrupted run)", name.string(), p.string());
    } else {
      fs::remove_all(p, ec);
    }
    if (!ec) ++tidied;
  }
  return tidied;
}

bool valid_run_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name[0] != '.';
}

StagedDir::StagedDir(const std::string& root, const std::string& name, const std::string& exists)
    : root_(root), exists_(exists) {
  if (!valid_run_name(name))
    fail("run.name \"{}\": expected a non-empty name without '/' that does not start with '.'",
         name);
  std::error_code ec;
  made_.create(root, ec);
  if (ec) fail("{}: cannot create the runs directory: {}", root, ec.message());
  if (const int n = remove_stale_run_debris(root); n > 0)
    log().info("{}: tidied {} unfinished run director{} left by processes that no longer exist",
               root, n, n == 1 ? "y" : "ies");

  // The staging directory `.<final name>.partial-<pid>` claims the final name now, before any
  // work: a concurrent run sees the claim (or, once committed, the run) and takes another name.
  for (int k = 0;; ++k) {
    const std::string leaf = k == 0 ? name : fmt::format("{}.{}", name, k);
    const std::string p = (fs::path(root) / leaf).string();
    const bool existed = fs::exists(fs::symlink_status(p, ec));
    if (existed && exists == "suffix") continue;
    if (existed && exists == "error")
      fail(
          "run directory {} already exists (set run.exists: suffix or overwrite, or choose "
          "another run.name)",
          p);
    if (existed && !is_run_directory(p))  // overwrite replaces only an earlier run
      fail(
          "{}: exists and is not a recforge run directory (no run.json written by recforge); "
          "run.exists: overwrite only replaces earlier runs, so choose another run.name or "
          "remove it",
          p);
    const std::string staging =
        (fs::path(root) / fmt::format(".{}.partial-{}", leaf, getpid())).string();
    add_interrupt_cleanup(staging, true);
    long other = -1;
    int made = make_directory(staging);
    if (made != 0 && errno == ENOENT) {
      // The runs directory was removed meanwhile (another run that created it failed): again,
      // with the staging directory registered after it (removed before it on a signal).
      remove_interrupt_cleanup(staging);
      made_.create(root, ec);
      add_interrupt_cleanup(staging, true);
      if (ec) {
        remove_interrupt_cleanup(staging);
        fail("{}: cannot create the runs directory: {}", root, ec.message());
      }
      made = make_directory(staging);
    }
    if (made != 0) {
      const int err = errno;
      remove_interrupt_cleanup(staging);
      if (err != EEXIST)
        fail("{}: cannot create the staging directory: {}", staging, std::strerror(err));
      other = getpid();  // another run of this process claims the name
    } else {
      // A claim made before ours (or at the same moment), or a run committed meanwhile: the
      // name is not ours. (Of two claims, the later always sees the earlier.)
      other = other_claim(root, leaf);
      if (other < 0 && !existed && fs::exists(fs::symlink_status(p, ec))) other = 0;
      if (other >= 0) {
        fs::remove(staging, ec);
        remove_interrupt_cleanup(staging);
      }
    }
    if (other < 0) {
      final_ = p;
      staging_ = staging;
      replace_ = existed;
      break;
    }
    if (exists == "suffix") continue;
    if (other == 0 || exists == "error")
      fail(
          "run directory {} already exists or is being written by another recforge run (set "
          "run.exists: suffix, or choose another run.name)",
          p);
    fail(
        "{}: another recforge run (process {}) is being written under this name; choose "
        "another run.name or wait for it to finish",
        p, other);
  }
}

StagedDir::~StagedDir() {
  if (!committed_) abandon();
}

void StagedDir::abandon() {
  without_interrupt_cleanup([this] {
    std::error_code ec;
    if (remove_interrupt_cleanup(staging_)) fs::remove_all(staging_, ec);
  });
}

std::string StagedDir::file(const std::string& name) const { return staging_ + "/" + name; }

const std::string& StagedDir::commit() {
  RF_ASSERT(!committed_, "StagedDir::commit called twice");
  // Every file (the log was appended, not written atomically) and the directory on disk first.
  std::error_code list_ec;
  for (const auto& e : fs::directory_iterator(staging_, list_ec))
    if (e.is_regular_file()) sync_path(e.path().string(), false);
  if (list_ec) fail("{}: cannot list the staging directory: {}", staging_, list_ec.message());
  sync_path(staging_, true);
  without_interrupt_cleanup([this] {
    std::error_code ec;
    if (!replace_ || !fs::exists(fs::symlink_status(final_, ec))) {
      // Never over something that appeared meanwhile (not made by recforge train).
      if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, final_.c_str(), RENAME_NOREPLACE) !=
          0) {
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
          fail("{}: cannot move the finished run into place: {}", final_, std::strerror(errno));
        fs::rename(staging_, final_, ec);  // no RENAME_NOREPLACE on this file system
        if (ec) fail("{}: cannot move the finished run into place: {}", final_, ec.message());
      }
    } else {
      if (!is_run_directory(final_))
        fail("{}: is no longer a recforge run directory, so the finished run does not replace it",
             final_);
      if (exchange_paths(staging_, final_)) {
        fs::remove_all(staging_, ec);  // the old run
      } else {
        // Move the old run aside, then the new one in (a dead process's leftovers are tidied
        // by remove_stale_run_debris).
        const std::string old =
            (fs::path(root_) /
             fmt::format(".{}.old-{}", fs::path(final_).filename().string(), getpid()))
                .string();
        fs::rename(final_, old, ec);
        if (ec) fail("{}: cannot replace the existing run directory: {}", final_, ec.message());
        fs::rename(staging_, final_, ec);
        if (ec) {
          std::error_code back;
          fs::rename(old, final_, back);
          fail("{}: cannot move the finished run into place: {}", final_, ec.message());
        }
        fs::remove_all(old, ec);
      }
    }
    remove_interrupt_cleanup(staging_);
    committed_ = true;
  });
  made_.keep();
  sync_path(root_, true);
  return final_;
}

// ---- Cleanup on SIGINT / SIGTERM ---------------------------------------------------------------

namespace {

struct CleanupRegistry {
  std::recursive_mutex mu;
  std::vector<std::pair<std::string, bool>> paths;  // path, recursive
};

CleanupRegistry& registry() {
  static CleanupRegistry* r = new CleanupRegistry;  // never destroyed: usable until _exit
  return *r;
}

int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_rank{-1}, g_size{0};  // set_interrupt_process

extern "C" void on_stop_signal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

}  // namespace

void add_interrupt_cleanup(const std::string& path, bool recursive) {
  CleanupRegistry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  r.paths.emplace_back(path, recursive);
}

bool remove_interrupt_cleanup(const std::string& path) {
  CleanupRegistry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  for (auto it = r.paths.rbegin(); it != r.paths.rend(); ++it)
    if (it->first == path) {
      r.paths.erase(std::next(it).base());
      return true;
    }
  return false;
}

void without_interrupt_cleanup(const std::function<void()>& f) {
  std::lock_guard<std::recursive_mutex> lock(registry().mu);
  f();
}

void run_interrupt_cleanup() {
  CleanupRegistry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  for (auto it = r.paths.rbegin(); it != r.paths.rend(); ++it) {
    std::error_code ec;
    if (!it->second) {
      fs::remove(it->first, ec);  // a file or an empty directory only
      continue;
    }
    // Other threads may still be writing into it: a few tries.
    for (int attempt = 0; attempt < 5 && fs::exists(fs::symlink_status(it->first, ec)); ++attempt)
      fs::remove_all(it->first, ec);
  }
  r.paths.clear();
}

void set_interrupt_process(int rank, int size) {
  g_rank = rank;
  g_size = size;
}

void install_interrupt_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) return;  // no cleanup; default handling stays
    ::fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK);
    // Under a tight address-space limit (ulimit -v) the thread's stack may not be had: the
    // process then keeps the default handling of the signals instead of aborting at start.
    try {
      std::thread([] {
        unsigned char sig = 0;
        for (;;) {
          const ssize_t n = ::read(g_signal_pipe[0], &sig, 1);
          if (n == 1) break;
          if (n < 0 && errno == EINTR) continue;
          return;
        }
        run_interrupt_cleanup();
        if (g_size.load() > 1)
          std::fprintf(stderr,
                       "recforge: process %d of %d stopped by signal %d (%s), as mpirun stops "
                       "every process of the job when one of them fails or the job is stopped; "
                       "its unfinished output removed\n",
                       g_rank.load(), g_size.load(), sig, strsignal(sig));
        else
          std::fprintf(stderr,
                       "recforge: stopped by signal %d (%s); its unfinished output removed\n", sig,
                       strsignal(sig));
        ::_exit(128 + sig);
      }).detach();
    } catch (const std::system_error&) {
      ::close(g_signal_pipe[0]);
      ::close(g_signal_pipe[1]);
      return;
    }
    for (const int sig : {SIGINT, SIGTERM}) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

}  // namespace recforge
