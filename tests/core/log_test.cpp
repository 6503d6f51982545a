// Progress and QuietProgress (core/log.h): what a stage logs, and that a QuietProgress silences
// only the stages its own thread starts.
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "core/log.h"

namespace recforge {
namespace {

// Collects what the process-wide logger writes at info level and above while it lives.
class CapturedLog {
 public:
  CapturedLog() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    sink_->set_pattern("%v");
    sink_->set_level(spdlog::level::info);
    previous_ = log().level();
    log().set_level(spdlog::level::info);
    log().sinks().push_back(sink_);
  }
  ~CapturedLog() {
    auto& sinks = log().sinks();
    for (auto it = sinks.begin(); it != sinks.end(); ++it)
      if (*it == sink_) {
        sinks.erase(it);
        break;
      }
    log().set_level(previous_);
  }
  std::string text() {
    log().flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::level::level_enum previous_;
};

// A stage of at least a second (past which its summary is logged at info level), finished.
void one_second_stage(const std::string& label) {
  Progress p(label, 10, "items");
  std::this_thread::sleep_for(std::chrono::milliseconds(1050));
  p.finish(10);
}

TEST(Progress, AQuietThreadLogsNoSummaryAndOtherThreadsStillDo) {
  set_progress_mode("lines");
  CapturedLog captured;
  // Three stages at once (one second in all): one on a thread that holds a QuietProgress, one
  // on a thread that held one before starting its stage, one on a thread without.
  std::thread quiet([] {
    QuietProgress q;
    QuietProgress nested;  // nesting keeps it quiet
    one_second_stage("quiet stage");
  });
  std::thread after([] {
    { QuietProgress q; }
    one_second_stage("stage after a quiet scope");
  });
  std::thread loud([] { one_second_stage("loud stage"); });
  quiet.join();
  after.join();
  loud.join();
  set_progress_mode("auto");
  const std::string text = captured.text();
  EXPECT_NE(text.find("loud stage: 10 items in "), std::string::npos) << text;
  EXPECT_NE(text.find("stage after a quiet scope: 10 items in "), std::string::npos) << text;
  EXPECT_EQ(text.find("quiet stage"), std::string::npos) << text;
}

}  // namespace
}  // namespace recforge
