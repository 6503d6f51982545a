#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace recforge::serve {

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
  ++counts[i];  // the first bucket whose bound is >= v (le is inclusive); else +Inf
  sum += v;
  ++count;
}

const std::vector<double>& duration_buckets() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return b;
}

const std::vector<double>& batch_size_buckets() {
  static const std::vector<double> b{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return b;
}

namespace {

// The method label of a request: one of HTTP's methods, else "other". The HTTP library hands on
// whatever the request line said (any bytes, thousands of them), and each distinct label is a
// series kept for the server's life: a client could grow memory and the /metrics text without
// bound, and put bytes into it that are not UTF-8.
const std::string& method_label(const std::string& method) {
  static const std::string known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                      "OPTIONS", "PATCH",   "TRACE", "CONNECT"};
  static const std::string other = "other";
  for (const std::string& k : known)
    if (method == k) return k;
  return other;
}

}  // namespace

void Metrics::observe_request(const std::string& endpoint, const std::string& raw_method, int code,
                              double seconds) {
  const std::string& method = method_label(raw_method);
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, method, code}];
  if (seconds < 0) return;  // no duration (answered by the HTTP library before routing)
  auto it = durations_.find({endpoint, method});
  if (it == durations_.end())
    it = durations_.emplace(std::make_pair(endpoint, method), Histogram(duration_buckets())).first;
  it->second.observe(seconds);
}

void Metrics::observe_batch(size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  batch_sizes_.observe(static_cast<double>(n));
}

void Metrics::begin_request() { ++in_flight_; }

void Metrics::end_request() { --in_flight_; }

void Metrics::set_export(const std::string& version, double load_seconds, double loaded_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  version_ = version;
  has_export_ = true;
  load_seconds_ = load_seconds;
  loaded_unix_ = loaded_unix;
}

void Metrics::count_reload(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  ++(ok ? reloads_ok_ : reloads_refused_);
}

namespace {

// A sample value: integers without a fraction, others in the shortest form that reads back.
std::string number(double v) { return fmt::format("{}", v); }

void render_histogram(std::string& out, const std::string& name, const std::string& labels,
                      const Histogram& h) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    const std::string le = i < h.bounds.size() ? number(h.bounds[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le, cumulative);
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n", name, braces, number(h.sum));
  out += fmt::format("{}_count{} {}\n", name, braces, h.count);
}

}  // namespace

void Metrics::count_not_personalised(size_t n) {
  if (n == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  not_personalised_ += n;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out += "# HELP recforge_http_requests_total HTTP requests answered, by route, method and status code.\n";
  out += "# TYPE recforge_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [endpoint, method, code] = key;
    out += fmt::format("recforge_http_requests_total{{endpoint=\"{}\",method=\"{}\",code=\"{}\"}} {}\n",
                       escape_label_value(endpoint), escape_label_value(method), code, n);
  }
  out += "# HELP recforge_http_request_duration_seconds Time from routing a request to its answer.\n";
  out += "# TYPE recforge_http_request_duration_seconds histogram\n";
  for (const auto& [key, h] : durations_)
    render_histogram(out, "recforge_http_request_duration_seconds",
                     fmt::format("endpoint=\"{}\",method=\"{}\"", escape_label_value(key.first),
                                 escape_label_value(key.second)),
                     h);
  out += "# HELP recforge_batch_size Users (or similar-items items) answered by one library call.\n";
  out += "# TYPE recforge_batch_size histogram\n";
  render_histogram(out, "recforge_batch_size", "", batch_sizes_);
  out += "# HELP recforge_requests_in_flight Requests being handled now.\n";
  out += "# TYPE recforge_requests_in_flight gauge\n";
  out += fmt::format("recforge_requests_in_flight {}\n", in_flight_.load());
  if (has_export_) {
    out += "# HELP recforge_export_info The export version in service.\n";
    out += "# TYPE recforge_export_info gauge\n";
    out += fmt::format("recforge_export_info{{version=\"{}\"}} 1\n", escape_label_value(version_));
    out += "# HELP recforge_export_load_seconds Seconds the export in service took to load and verify.\n";
    out += "# TYPE recforge_export_load_seconds gauge\n";
    out += fmt::format("recforge_export_load_seconds {}\n", number(load_seconds_));
    out += "# HELP recforge_export_loaded_timestamp_seconds When the export in service was loaded (Unix time).\n";
    out += "# TYPE recforge_export_loaded_timestamp_seconds gauge\n";
    out += fmt::format("recforge_export_loaded_timestamp_seconds {}\n", number(loaded_unix_));
  }
  out += "# HELP recforge_reloads_total Reloads of the export, by result.\n";
  out += "# TYPE recforge_reloads_total counter\n";
  out += fmt::format("recforge_reloads_total{{result=\"ok\"}} {}\n", reloads_ok_);
  out += fmt::format("recforge_reloads_total{{result=\"refused\"}} {}\n", reloads_refused_);
  out += "# HELP recforge_not_personalised_lists_total Lists answered with the popularity of the "
         "training data to users who opted out of personalisation.\n";
  out += "# TYPE recforge_not_personalised_lists_total counter\n";
  out += fmt::format("recforge_not_personalised_lists_total {}\n", not_personalised_);
  return out;
}

}  // namespace recforge::serve
