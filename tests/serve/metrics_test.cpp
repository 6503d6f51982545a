// The Prometheus text of serve::Metrics: every sample line parses (name, labels, value), label
// values are escaped, histogram buckets are cumulative and end in +Inf = _count, _sum adds up.
#include "serve/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>

namespace recforge::serve {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  double value = 0;
};

// Parses the text format 0.0.4 strictly enough to catch malformed lines; fails the test on any.
std::vector<Sample> parse(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  const std::regex label(R"(^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)\"(,|$))");
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) << line;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, sample)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    Sample s;
    s.name = m[1];
    std::string rest = m[3];
    while (!rest.empty()) {
      std::smatch l;
      if (!std::regex_search(rest, l, label)) {
        ADD_FAILURE() << "bad labels in: " << line;
        break;
      }
      std::string v, raw = l[2];
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '\\') {
          ++i;
          v += raw[i] == 'n' ? '\n' : raw[i];
        } else {
          v += raw[i];
        }
      }
      s.labels[l[1]] = v;
      rest = l.suffix();
    }
    s.value = std::stod(m[4]);
    out.push_back(s);
  }
  return out;
}

const Sample* find(const std::vector<Sample>& all, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const Sample& s : all)
    if (s.name == name && s.labels == labels) return &s;
  return nullptr;
}

TEST(ServeMetrics, TextParsesWithEscapedLabelsAndCumulativeHistograms) {
  Metrics m;
  const std::string odd = "/we\"ird\\path\nx";
  m.observe_request("/v1/recommend", "GET", 200, 0.0007);  // bucket 0.001
  m.observe_request("/v1/recommend", "GET", 200, 0.003);   // bucket 0.005
  m.observe_request("/v1/recommend", "GET", 404, 0.001);   // le is inclusive: bucket 0.001
  m.observe_request(odd, "POST", 400, 20.0);               // beyond the last bound: +Inf only
  m.observe_request("other", "GET", 400, -1);              // counted, not timed
  m.observe_batch(1);
  m.observe_batch(3);
  m.observe_batch(3000);
  m.begin_request();
  m.begin_request();
  m.end_request();
  m.set_export("v-3", 0.25, 1700000000.5);
  m.count_reload(true);
  m.count_reload(false);
  m.count_reload(false);
  const std::vector<Sample> all = parse(m.render());

  const Sample* s = find(all, "recforge_http_requests_total", {{"endpoint", "/v1/recommend"}, {"method", "GET"}, {"code", "200"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->value, 2);
  s = find(all, "recforge_http_requests_total", {{"endpoint", odd}, {"method", "POST"}, {"code", "400"}});
  ASSERT_NE(s, nullptr) << "the escaped label did not read back";
  EXPECT_EQ(s->value, 1);
  s = find(all, "recforge_http_requests_total", {{"endpoint", "other"}, {"method", "GET"}, {"code", "400"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(find(all, "recforge_http_request_duration_seconds_count", {{"endpoint", "other"}, {"method", "GET"}}), nullptr);

  // Duration histogram of GET /v1/recommend: 3 observations.
  const std::map<std::string, std::string> rec{{"endpoint", "/v1/recommend"}, {"method", "GET"}};
  auto bucket = [&](const std::map<std::string, std::string>& base, const std::string& name, const std::string& le) {
    auto l = base;
    l["le"] = le;
    const Sample* b = find(all, name + "_bucket", l);
    EXPECT_NE(b, nullptr) << name << " le=" << le;
    return b ? b->value : -1.0;
  };
  const std::string dur = "recforge_http_request_duration_seconds";
  EXPECT_EQ(bucket(rec, dur, "0.0005"), 0);
  EXPECT_EQ(bucket(rec, dur, "0.001"), 2);
  EXPECT_EQ(bucket(rec, dur, "0.0025"), 2);
  EXPECT_EQ(bucket(rec, dur, "0.005"), 3);
  EXPECT_EQ(bucket(rec, dur, "10"), 3);
  EXPECT_EQ(bucket(rec, dur, "+Inf"), 3);
  EXPECT_EQ(find(all, dur + "_count", rec)->value, 3);
  // _sum in double: the three observations (0.0047 rendered exactly as the double sum).
  EXPECT_DOUBLE_EQ(find(all, dur + "_sum", rec)->value, 0.0007 + 0.003 + 0.001);
  const std::map<std::string, std::string> odd_l{{"endpoint", odd}, {"method", "POST"}};
  EXPECT_EQ(bucket(odd_l, dur, "10"), 0);
  EXPECT_EQ(bucket(odd_l, dur, "+Inf"), 1);

  // Every histogram's buckets never decrease, and +Inf equals _count.
  std::map<std::string, std::vector<double>> series;
  for (const Sample& x : all) {
    if (x.name.size() < 7 || x.name.compare(x.name.size() - 7, 7, "_bucket") != 0) continue;
    auto key = x.labels;
    key.erase("le");
    std::string id = x.name;
    for (const auto& [k, v] : key) id += "|" + k + "=" + v;
    series[id].push_back(x.value);
  }
  EXPECT_EQ(series.size(), 3u);  // two duration series and the batch sizes
  for (const auto& [id, v] : series)
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LE(v[i - 1], v[i]) << id << " bucket " << i;

  EXPECT_EQ(bucket({}, "recforge_batch_size", "1"), 1);
  EXPECT_EQ(bucket({}, "recforge_batch_size", "2"), 1);
  EXPECT_EQ(bucket({}, "recforge_batch_size", "4"), 2);
  EXPECT_EQ(bucket({}, "recforge_batch_size", "1024"), 2);
  EXPECT_EQ(bucket({}, "recforge_batch_size", "+Inf"), 3);
  EXPECT_EQ(find(all, "recforge_batch_size_sum", {})->value, 3004);
  EXPECT_EQ(find(all, "recforge_batch_size_count", {})->value, 3);

  EXPECT_EQ(find(all, "recforge_requests_in_flight", {})->value, 1);
  EXPECT_EQ(find(all, "recforge_export_info", {{"version", "v-3"}})->value, 1);
  EXPECT_EQ(find(all, "recforge_export_load_seconds", {})->value, 0.25);
  EXPECT_EQ(find(all, "recforge_export_loaded_timestamp_seconds", {})->value, 1700000000.5);
  EXPECT_EQ(find(all, "recforge_reloads_total", {{"result", "ok"}})->value, 1);
  EXPECT_EQ(find(all, "recforge_reloads_total", {{"result", "refused"}})->value, 2);
}

TEST(ServeMetrics, NoExportInfoBeforeAnExportIsLoaded) {
  Metrics m;
  const std::vector<Sample> all = parse(m.render());
  for (const Sample& s : all) EXPECT_NE(s.name, "recforge_export_info");
  EXPECT_EQ(find(all, "recforge_requests_in_flight", {})->value, 0);
}

}  // namespace
}  // namespace recforge::serve
