#include "core/log.h"

#include <spdlog/details/os.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/fs.h"

namespace recforge {
namespace {

ProgressMode g_progress_mode = ProgressMode::kAuto;

// The log files of runs, each owned by the thread that opened it. A message from an owning
// thread goes to that thread's file only; a message from any other thread (an OpenMP worker) goes
// to every open file. With one run at a time this is a plain file sink; runs trained side by side
// on threads (`recforge sweep --parallel`) keep separate logs. The sink list of the logger itself
// never changes after construction, so opening and closing files is safe while others log.
class FileRouter final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void open(size_t thread, std::shared_ptr<spdlog::sinks::sink> file) {
    std::lock_guard<std::mutex> lock(mutex_);
    files_[thread] = std::move(file);
  }
  void close(size_t thread) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = files_.find(thread);
    if (it == files_.end()) return;
    it->second->flush();
    files_.erase(it);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto it = files_.find(msg.thread_id);
    if (it != files_.end()) {
      it->second->log(msg);
      return;
    }
    for (auto& file : files_) file.second->log(msg);
  }
  void flush_() override {
    for (auto& file : files_) file.second->flush();
  }

 private:
  std::map<size_t, std::shared_ptr<spdlog::sinks::sink>> files_;
};

const std::shared_ptr<FileRouter>& file_router() {
  static const auto router = std::make_shared<FileRouter>();
  return router;
}

std::shared_ptr<spdlog::logger>& logger_ptr() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto l = std::make_shared<spdlog::logger>("recforge",
                                              spdlog::sinks_init_list{sink, file_router()});
    l->set_pattern("%^[%H:%M:%S %L]%$ %v");
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::info);
    return l;
  }();
  return logger;
}

thread_local int g_quiet_depth = 0;  // QuietProgress objects alive on this thread

ProgressMode effective_mode() {
  if (g_progress_mode != ProgressMode::kAuto) return g_progress_mode;
  return isatty(STDERR_FILENO) ? ProgressMode::kBar : ProgressMode::kLines;
}

}  // namespace

spdlog::logger& log() { return *logger_ptr(); }

void set_log_level(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") fail("unknown log level \"{}\"", level);
  log().set_level(lvl);
}

void log_to_file(const std::string& path) {
  log();  // the logger (and its router) exist before the first file
  // A new log file is created with privacy.file_mode's mode (spdlog would use the umask's); an
  // existing one is appended to as it is.
  const int fd = create_file(path, O_EXCL);
  if (fd >= 0) ::close(fd);
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e %l] %v");
  file_router()->open(spdlog::details::os::thread_id(), std::move(sink));
}

void close_log_file() { file_router()->close(spdlog::details::os::thread_id()); }

void set_progress_mode(const std::string& mode) {
  if (mode == "auto") g_progress_mode = ProgressMode::kAuto;
  else if (mode == "bar") g_progress_mode = ProgressMode::kBar;
  else if (mode == "lines") g_progress_mode = ProgressMode::kLines;
  else if (mode == "off") g_progress_mode = ProgressMode::kOff;
  else fail("unknown progress mode \"{}\" (expected auto, bar, lines or off)", mode);
}

std::string human_count(double v) {
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (v >= 1000.0 && i < 4) {
    v /= 1000.0;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}{}", v, suffix[i]);
}

QuietProgress::QuietProgress() { ++g_quiet_depth; }

QuietProgress::~QuietProgress() { --g_quiet_depth; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      mode_(g_quiet_depth > 0 ? ProgressMode::kOff : effective_mode()),
      start_(std::chrono::steady_clock::now()),
      last_(start_),
      quiet_(g_quiet_depth > 0) {}

Progress::~Progress() {
  if (drew_bar_ && !finished_) std::fputs("\n", stderr);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done) {
  if (mode_ == ProgressMode::kOff) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  // A bar redraws 10 times a second; plain lines appear every 5 seconds.
  if (since < (mode_ == ProgressMode::kBar ? 0.1 : 5.0)) return;
  last_ = now;
  draw(done);
}

void Progress::finish(int64_t done) {
  if (finished_) return;
  finished_ = true;
  if (drew_bar_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
  const double secs = elapsed();
  const double rate = secs > 0 ? done / secs : 0.0;
  // Short stages (and quiet ones) log their summary at debug level only, to keep the log
  // readable.
  log().log(secs >= 1.0 && !quiet_ ? spdlog::level::info : spdlog::level::debug,
            "{}: {} {} in {:.2f} s ({} {}/s)",
            label_, human_count(done), unit_, secs, human_count(rate), unit_);
}

void Progress::draw(int64_t done) {
  const double secs = elapsed();
  const double rate = secs > 0 ? done / secs : 0.0;
  std::string eta;
  if (total_ > 0 && rate > 0 && done < total_) eta = fmt::format(" ETA {:.0f}s", (total_ - done) / rate);
  if (mode_ == ProgressMode::kBar) {
    std::string bar;
    if (total_ > 0) {
      const int width = 30;
      const double frac = std::min(1.0, static_cast<double>(done) / total_);
      const int fill = static_cast<int>(frac * width);
      bar = fmt::format("[{}{}] {:3.0f}% ", std::string(fill, '#'), std::string(width - fill, '.'),
                        100 * frac);
    }
    std::fprintf(stderr, "\r\033[K%s %s%s %s (%s/s)%s", label_.c_str(), bar.c_str(),
                 human_count(done).c_str(), unit_.c_str(), human_count(rate).c_str(), eta.c_str());
    std::fflush(stderr);
    drew_bar_ = true;
  } else {
    if (total_ > 0)
      log().info("{}: {}/{} {} ({:.0f}%, {} {}/s){}", label_, human_count(done),
                 human_count(total_), unit_, 100.0 * done / total_, human_count(rate), unit_, eta);
    else
      log().info("{}: {} {} ({} {}/s)", label_, human_count(done), unit_, human_count(rate), unit_);
  }
}

}  // namespace recforge
