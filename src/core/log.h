#pragma once
/// @file log.h
/// Logging (spdlog) and progress display for long stages.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace recforge {

/// The process-wide logger: stderr always, plus a run directory's log file once one is opened.
spdlog::logger& log();

/// Sets the log level by name (trace, debug, info, warn, error, off).
void set_log_level(const std::string& level);

/// Opens the calling thread's log file (a run's `log.txt`), replacing one it had open: later
/// messages of this thread go to stderr and the file; those of threads without a file of their
/// own (OpenMP workers) go to every open file. Runs on different threads keep separate files.
void log_to_file(const std::string& path);

/// Closes the calling thread's log file, if any.
void close_log_file();

/// How progress is shown: a live bar on a terminal, plain periodic log lines otherwise.
enum class ProgressMode { kAuto, kBar, kLines, kOff };

/// Sets the process-wide progress mode ("auto", "bar", "lines", "off").
void set_progress_mode(const std::string& mode);

/// While one lives on a thread, the Progress objects that thread creates show nothing and log
/// their summary at debug level: for a library call whose caller shows its own progress or
/// none (the Python package's models, like implicit's, are quiet). Nests; other threads are
/// unaffected.
class QuietProgress {
 public:
  QuietProgress();
  ~QuietProgress();
  QuietProgress(const QuietProgress&) = delete;
  QuietProgress& operator=(const QuietProgress&) = delete;
};

/// Progress of one long stage. `update()` is cheap enough to call every few thousand items.
class Progress {
 public:
  /// `total` may be 0 when unknown; `unit` names what is counted ("lines", "bytes", ...).
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  /// Reports `done` units completed so far.
  void update(int64_t done);
  /// Ends the stage and logs a one-line summary with the rate.
  void finish(int64_t done);
  /// Seconds since construction.
  double elapsed() const;

 private:
  void draw(int64_t done);
  std::string label_, unit_;
  int64_t total_;
  ProgressMode mode_;
  std::chrono::steady_clock::time_point start_, last_;
  bool finished_ = false;
  bool drew_bar_ = false;
  bool quiet_ = false;  // made under a QuietProgress
};

/// Formats a count with a k/M/G suffix ("1.25M").
std::string human_count(double value);

}  // namespace recforge
