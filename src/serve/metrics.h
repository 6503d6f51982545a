#pragma once
/// @file metrics.h
/// The counters and histograms of `recforge serve`, rendered in the Prometheus text exposition
/// format 0.0.4 for GET /metrics. Every method is safe to call from many threads at once.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace recforge::serve {

/// `v` escaped for a Prometheus label value: backslash, double quote and newline.
std::string escape_label_value(const std::string& v);

/// A histogram with fixed upper bounds (the +Inf bucket is implicit).
struct Histogram {
  explicit Histogram(std::vector<double> bounds = {});
  void observe(double v);
  std::vector<double> bounds;    ///< upper bounds, increasing
  std::vector<uint64_t> counts;  ///< per bucket (not cumulative), bounds.size() + 1 of them
  double sum = 0;
  uint64_t count = 0;
};

/// Upper bounds of the request-duration histogram, in seconds.
const std::vector<double>& duration_buckets();
/// Upper bounds of the batch-size histogram, in users.
const std::vector<double>& batch_size_buckets();

/// The server's metrics.
class Metrics {
 public:
  /// A request to `endpoint` (a route such as "/v1/recommend", or "other"), by `method`,
  /// answered with `code` after `seconds` (< 0: not timed, only counted).
  void observe_request(const std::string& endpoint, const std::string& method, int code,
                       double seconds);
  /// One library call that answered `n` users (from the batcher, or a POST batch).
  void observe_batch(size_t n);
  /// Requests being handled now.
  void begin_request();
  void end_request();
  int64_t in_flight() const { return in_flight_.load(); }
  /// The export in service: its version ("v-3"), load time in seconds, and when it was loaded
  /// (seconds since the Unix epoch).
  void set_export(const std::string& version, double load_seconds, double loaded_unix);
  /// A reload's outcome: true "ok", false "refused".
  void count_reload(bool ok);
  /// `n` lists answered without personalisation (users who opted out: popularity lists).
  void count_not_personalised(size_t n);

  /// Everything in the text format 0.0.4.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Histogram> durations_;
  Histogram batch_sizes_{batch_size_buckets()};
  std::atomic<int64_t> in_flight_{0};
  std::string version_;
  bool has_export_ = false;
  double load_seconds_ = 0, loaded_unix_ = 0;
  uint64_t reloads_ok_ = 0, reloads_refused_ = 0;
  uint64_t not_personalised_ = 0;
};

}  // namespace recforge::serve
