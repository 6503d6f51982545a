#pragma once
/// @file fs.h
/// File-system helpers: durable atomic file writes, run directories that appear whole or not at
/// all, and the process-wide list of temporary paths removed when SIGINT or SIGTERM stops it.

#include <fcntl.h>

#include <cstdio>
#include <functional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace recforge {

// ---- Modes of the files and directories recforge creates ---------------------------------------

/// Who may read what recforge creates (`privacy.file_mode`): kOwner = files 0600, directories
/// 0700; kGroup = 0640 / 0750; kUmask = 0666 / 0777 less the process's umask (what plain
/// open/mkdir give).
enum class FileMode { kOwner, kGroup, kUmask };

/// The mode named by `privacy.file_mode` ("owner", "group" or "umask").
FileMode file_mode_from(const std::string& name);
/// Sets the process-wide mode of the files and directories created from now on: data cache
/// files, run directories and everything in them, checkpoints, exports. The pipeline sets it
/// from `privacy.file_mode` when it starts (train, prepare_dataset, export); before that it is
/// kUmask. The umask itself is never changed (the library shares its process, e.g. Python).
void set_file_mode(FileMode mode);
/// The process-wide mode.
FileMode file_mode();
/// Creates (or truncates a temporary of recforge's own) file `path` for writing with the
/// process-wide mode: opened with that mode, then fchmod to exactly 0600/0640 (umask: left as
/// the umask made it). `flags` are added to O_WRONLY | O_CREAT | O_CLOEXEC. Returns the fd, or -1
/// with errno set.
int create_file(const std::string& path, int flags = O_TRUNC);
/// Opens the existing file `path` for writing (`flags` added to O_WRONLY | O_CLOEXEC), leaving
/// its mode as it is, or creates it as create_file does when there is none. Returns the fd, or
/// -1 with errno set.
int open_or_create_file(const std::string& path, int flags);
/// create_file as a stdio stream ("wb"); nullptr with errno set on failure.
std::FILE* create_file_stream(const std::string& path);
/// Creates the directory `path` and any missing directories above it with the process-wide
/// mode (0700/0750, or the umask's). Directories that already exist are left exactly as they are.
/// Returns false with `ec` set on failure.
/// `made`, when given, receives the directories it created, outermost first.
bool create_directories(const std::string& path, std::error_code& ec,
                        std::vector<std::string>* made = nullptr);

/// The directories that create_directories made for an output that may not be finished (a run's
/// runs/ directory, an export's parent): unless keep() is called, they are removed when the
/// object is destroyed or SIGINT/SIGTERM stops the process, deepest first and each only while
/// it is empty, so that a failed command leaves no directory behind that it created.
class MadeDirs {
 public:
  MadeDirs() = default;
  ~MadeDirs();
  MadeDirs(const MadeDirs&) = delete;
  MadeDirs& operator=(const MadeDirs&) = delete;
  /// create_directories(path, ec), remembering what it made.
  bool create(const std::string& path, std::error_code& ec);
  /// The output is in place: its directories stay.
  void keep();

 private:
  std::vector<std::string> made_;
};
/// Creates one directory with the process-wide mode; returns mkdir's result (errno set on -1).
int make_directory(const std::string& path);
/// Gives `path`, a file or directory that recforge itself has just created but could not create
/// with the mode (Faiss's index file, a file a library opened), the process-wide mode; nothing
/// in umask mode. Throws recforge::Error naming the path on failure.
void apply_file_mode(const std::string& path, bool directory);

/// Flushes a file, or a directory's entries when `directory` is true, to disk (fsync), so that a
/// crash of the machine cannot leave a renamed file or directory with missing contents.
/// Throws recforge::Error naming the path on failure.
void sync_path(const std::string& path, bool directory);

/// Writes `text` to `path` atomically and durably (temporary file in the same directory,
/// flushed to disk, then renamed). Throws recforge::Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& text);

/// write_file_atomic for a file the user named (--out): a symbolic link is followed (the file
/// it names is replaced and the link stays), and an existing file keeps its permission bits
/// (with privacy.file_mode umask; other modes set theirs).
void write_output_file(const std::string& path, const std::string& text);

/// Where write_output_file writes `path`: the file a symbolic link there names (the link stays),
/// else `path`; `*mode` receives the permission bits an existing regular file there has, under
/// privacy.file_mode umask (it keeps them), else -1. For outputs written in pieces (datagen).
std::string output_target(const std::string& path, int* mode);

/// Writes several (path, text) files so that none is replaced unless all were written: each
/// goes to a synced temporary file first (removed again if any fails), then all are renamed
/// into place. For outputs that belong together (compare's paired.csv and curves.csv).
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);

/// Whether `dir` is a recforge run directory: a directory holding a run.json object with the
/// "recforge_version" and "status" fields that `recforge train` writes.
bool is_run_directory(const std::string& dir);

/// Removes what interrupted runs of processes that no longer exist left under `root`:
/// staging directories `.<name>.partial-<pid>` holding only files a run writes, and earlier
/// runs moved aside as `.<name>.old-<pid>` (moved back to `<name>` when that is absent, removed
/// otherwise). Anything else (other folders, `.<name>.checkpoint/`, what live processes are
/// writing) is kept. Returns how many entries were tidied. `any_pid`: every such entry is stale
/// whatever its pid (the caller holds a lock that every writer of `root` takes, as a sweep does
/// on its directory; a restarted container reuses pids).
int remove_stale_run_debris(const std::string& root, bool any_pid = false);

/// A run directory under construction. Files are written into the hidden staging directory
/// `root/.<final name>.partial-<pid>`, created when the object is: it claims the final name
/// (`name`, or `name.1`, ... in suffix mode) at once, so a concurrent run sees it taken and the
/// name recorded in the run is the name it lands in. `commit()` moves it into place. If the
/// object is destroyed uncommitted (an error), the staging directory is removed, so no partial
/// run is left behind; it is also removed when SIGINT or SIGTERM stops the process (see
/// install_interrupt_cleanup).
/// Whether `name` can name a run directory: not empty, no '/', not starting with '.' (the
/// staging and checkpoint directories' prefix).
bool valid_run_name(const std::string& name);

class StagedDir {
 public:
  /// Claims `root/name`. `exists` decides what happens when it already exists or another live
  /// run claims it: "suffix" (use name.1, name.2, ...), "overwrite" (replace it at commit;
  /// refused unless it is a recforge run directory and no other run claims it) or "error".
  /// Stale debris of dead processes under `root` is removed first (remove_stale_run_debris).
  StagedDir(const std::string& root, const std::string& name, const std::string& exists);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  /// Path of `file` inside the staging directory.
  std::string file(const std::string& name) const;
  /// The staging directory.
  const std::string& staging() const { return staging_; }
  /// Where the directory will be after commit; fixed when the object is created.
  const std::string& final_path() const { return final_; }
  /// Flushes the staging directory to disk and moves it into place (swapped atomically with
  /// the earlier run it replaces); returns the final path.
  const std::string& commit();

 private:
  void abandon();  // removes the staging directory
  MadeDirs made_;  // the runs directory, when this run created it: removed unless committed
  std::string root_, exists_, staging_, final_;
  bool replace_ = false;  // final_ held an earlier run when the object was created
  bool committed_ = false;
};

// ---- Cleanup on SIGINT / SIGTERM ---------------------------------------------------------------

/// Registers `path` to be removed if SIGINT or SIGTERM stops the process: recursively when
/// `recursive`, else only if it is a file or an empty directory. Paths are removed last
/// registered first.
void add_interrupt_cleanup(const std::string& path, bool recursive = true);
/// Forgets `path` (it was moved into place or removed normally); false when it was not
/// registered.
bool remove_interrupt_cleanup(const std::string& path);
/// add_interrupt_cleanup(path, false) for the lifetime of the object: a temporary file that is
/// forgotten (left to its owner) however the scope ends.
class InterruptCleanup {
 public:
  explicit InterruptCleanup(std::string path) : path_(std::move(path)) {
    add_interrupt_cleanup(path_, false);
  }
  ~InterruptCleanup() { remove_interrupt_cleanup(path_); }
  InterruptCleanup(const InterruptCleanup&) = delete;
  InterruptCleanup& operator=(const InterruptCleanup&) = delete;

 private:
  std::string path_;
};
/// Runs `f` (e.g. a rename that moves a registered path into place) while no interrupt cleanup
/// can run, so that the cleanup never removes half of something that is being moved.
void without_interrupt_cleanup(const std::function<void()>& f);
/// Removes every registered path now and forgets them (what the signal thread does).
void run_interrupt_cleanup();
/// Names this process in the line printed when SIGINT/SIGTERM stops it ("process 0 of 2"): a
/// process of an mpirun job, which mpirun stops when another process fails. Call before the
/// signal can arrive (after MPI starts).
void set_interrupt_process(int rank, int size);
/// Makes SIGINT and SIGTERM (unless ignored on entry) remove the registered paths and exit with
/// status 128 + the signal number. The handler only writes the signal number to a pipe
/// (async-signal-safe); a dedicated thread reads it and does the removal. Call once, early.
void install_interrupt_cleanup();

}  // namespace recforge
