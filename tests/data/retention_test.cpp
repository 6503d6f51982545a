// Retention (data.max_age_days): interactions older than the cutoff are dropped from every input
// file after numbering and before cleaning; the reference is the newest timestamp, a UTC date or
// a timestamp; the settings are part of the cache key; synthetic data is cut alike.
#include "data/retention.h"

#include <gtest/gtest.h>

#include <limits>

#include "core/error.h"
#include "data/load.h"
#include "data/synthetic.h"
#include "pipeline/dataset.h"
#include "test_util.h"

namespace recforge::data {
namespace {

using test::TempDir;
using test::write_file;

constexpr int64_t kDay = 86400;

LoadOptions timed_options() {
  LoadOptions o;
  o.time_col = "2";
  o.use_cache = false;
  return o;
}

// The interactions of part `k` as (external user, external item, time) triples, in order.
std::vector<std::tuple<std::string, std::string, int64_t>> triples(const Loaded& d, size_t k) {
  std::vector<std::tuple<std::string, std::string, int64_t>> v;
  const Interactions& x = d.parts[k];
  for (offset_t j = 0; j < x.size(); ++j)
    v.emplace_back(d.users.external(x.users[j]), d.items.external(x.items[j]),
                   x.has_times() ? x.times[j] : 0);
  return v;
}

// Newest timestamp 10 days; 3 days of retention: the cutoff is day 7 exactly.
const char* kFile =
    "1,10,0\n"         // dropped: user 1 has nothing else and vanishes
    "2,10,604799\n"    // dropped: one second before the cutoff (item 10 vanishes)
    "2,11,604800\n"    // kept: exactly at the cutoff
    "3,11,700000\n"    // kept
    "3,12,864000\n"    // kept: the newest
    "4,13,100\n";      // dropped: user 4 and item 13 vanish

TEST(Retention, DropsInteractionsBeforeTheCutoffKeepsTheOneExactlyAtItAndForgetsEmptiedIds) {
  TempDir t;
  const std::string p = write_file(t.file("x.csv"), kFile);
  LoadOptions o = timed_options();
  o.max_age_days = 3;
  const Loaded d = load({p}, o);
  EXPECT_EQ(d.report.retention_max_age_days, 3);
  EXPECT_EQ(d.report.retention_reference, 10 * kDay);
  EXPECT_EQ(d.report.retention_cutoff, 7 * kDay);
  EXPECT_EQ(d.report.retention_dropped, 3);
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"11", "12"}));

  // The same data as a file without the three old lines, read without retention.
  const std::string q =
      write_file(t.file("y.csv"), "2,11,604800\n3,11,700000\n3,12,864000\n");
  const Loaded e = load({q}, timed_options());
  EXPECT_EQ(e.report.retention_dropped, 0);
  EXPECT_EQ(e.users.ids(), d.users.ids());
  EXPECT_EQ(e.items.ids(), d.items.ids());
  EXPECT_EQ(triples(e, 0), triples(d, 0));

  // Off (0): nothing is dropped.
  const Loaded all = load({p}, timed_options());
  EXPECT_EQ(all.parts[0].size(), 6);
  EXPECT_EQ(all.report.retention_dropped, 0);
  EXPECT_EQ(all.report.retention_max_age_days, 0);
}

TEST(Retention, ADateReferenceCountsBackFromTheStartOfThatUtcDayInMilliseconds) {
  // 2024-03-01T00:00:00Z = 1709251200 s (the day after 2024-02-29: a leap year).
  const int64_t ref_ms = 1709251200LL * 1000;
  const int64_t cutoff_ms = ref_ms - 2 * kDay * 1000;
  EXPECT_EQ(retention_reference("2024-03-01", TimeUnit::kMilliseconds), ref_ms);
  EXPECT_EQ(retention_reference("2024-03-01", TimeUnit::kDays), 1709251200LL / kDay);
  EXPECT_EQ(retention_reference("1960-01-01", TimeUnit::kSeconds), -315619200);
  EXPECT_EQ(retention_reference("1709251200123", TimeUnit::kMilliseconds), 1709251200123);
  TempDir t;
  const std::string p = write_file(
      t.file("ms.csv"),
      fmt::format("a,x,{}\nb,x,{}\nb,y,{}\nc,y,{}\n", cutoff_ms - 1, cutoff_ms, ref_ms + 5000,
                  ref_ms - 1));
  LoadOptions o = timed_options();
  o.string_ids = true;
  o.max_age_days = 2;
  o.max_age_from = "2024-03-01";
  o.time_unit = TimeUnit::kMilliseconds;
  const Loaded d = load({p}, o);
  EXPECT_EQ(d.report.retention_reference, ref_ms);
  EXPECT_EQ(d.report.retention_cutoff, cutoff_ms);
  EXPECT_EQ(d.report.retention_dropped, 1);  // a,x: one millisecond before the cutoff
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"b", "c"}));
  // In seconds the same numbers are 1000 times further apart: nothing is that old.
  o.time_unit = TimeUnit::kSeconds;
  const Loaded s = load({p}, o);
  EXPECT_EQ(s.report.retention_cutoff, 1709251200LL - 2 * kDay);
  EXPECT_EQ(s.report.retention_dropped, 0);
}

TEST(Retention, AnImpossibleDateOrAFullDropIsAnErrorNamingTheSetting) {
  for (const char* bad : {"2023-02-29", "2024-13-01", "2024-04-31", "2024-00-10", "yesterday"}) {
    try {
      retention_reference(bad, TimeUnit::kSeconds);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("data.max_age_from \"" + std::string(bad) + "\""),
                std::string::npos)
          << e.what();
    }
  }
  TempDir t;
  const std::string p = write_file(t.file("x.csv"), kFile);
  LoadOptions o = timed_options();
  o.max_age_days = 1;
  o.max_age_from = "3000000";  // far after every interaction
  try {
    load({p}, o);
    ADD_FAILURE() << "a retention that drops everything was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p + ": data.max_age_days 1 drops every interaction"),
              std::string::npos)
        << e.what();
  }
  // A span beyond int64 drops nothing rather than wrapping round.
  EXPECT_EQ(retention_cutoff(0, std::numeric_limits<int64_t>::max() / 2, TimeUnit::kSeconds),
            std::numeric_limits<int64_t>::min());
}

TEST(Retention, AGivenTestFileIsCutToo) {
  // Times in days; the newest (10) is in the test file, so the cutoff is 10 - 3 = 7.
  TempDir t;
  const std::string train =
      write_file(t.file("train.csv"), "1,10,1\n1,11,5\n2,10,7\n2,11,8\n3,10,9\n");
  const std::string test = write_file(t.file("test.csv"), "3,11,10\n2,10,6\n1,11,10\n");
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "split.method=given", "data.path=" + train, "data.test_path=" + test,
           "data.cache=false", "run.progress=off", "data.time_col=2", "data.max_age_days=3",
           "data.time_unit=days"})
    cfg.set(s);
  const pipeline::Dataset d = pipeline::prepare_dataset(cfg);
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"2", "3"}));  // user 1 was only old
  EXPECT_EQ(d.split.train.size(), 3);
  EXPECT_EQ(d.split.test.size(), 1);  // 3,11; 2,10 is too old; user 1 is unknown now
  const auto stats = d.stats();
  EXPECT_EQ(stats["retention"]["max_age_days"].get<int64_t>(), 3);
  EXPECT_EQ(stats["retention"]["reference"].get<int64_t>(), 10);
  EXPECT_EQ(stats["retention"]["cutoff"].get<int64_t>(), 7);
  EXPECT_EQ(stats["retention"]["dropped_interactions"].get<int64_t>(), 3);  // 2 train, 1 test
  EXPECT_EQ(stats["load"]["test_unknown_user_interactions"].get<int64_t>(), 1);
}

TEST(Retention, AGivenTestFileItEmptiesIsAnErrorThatSaysSo) {
  TempDir t;
  const std::string train = write_file(t.file("train.csv"), "1,10,9\n2,10,10\n");
  const std::string test = write_file(t.file("test.csv"), "1,10,2\n2,10,3\n");
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "split.method=given", "data.path=" + train, "data.test_path=" + test,
           "data.cache=false", "run.progress=off", "data.time_col=2", "data.max_age_days=3",
           "data.time_unit=days"})
    cfg.set(s);
  try {
    pipeline::prepare_dataset(cfg);
    ADD_FAILURE() << "an empty test set was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              test + ": no test interactions left for split.method given: 0 have a user and 0 an "
                     "item that is not in the (filtered) training data " + train +
                  ", and data.max_age_days dropped 2 interaction(s) of the files before the "
                  "cutoff 7; expected at least one");
  }
}

TEST(Retention, TheSettingsArePartOfTheCacheKeyAndTheCountSurvivesTheCache) {
  TempDir t;
  const std::string p = write_file(t.file("x.csv"), kFile);
  LoadOptions o = timed_options();
  o.use_cache = true;
  o.cache_dir = t.file("cache");
  LoadOptions a = o, b = o, c = o, u = o;
  b.max_age_days = 3;
  c.max_age_days = 3;
  c.max_age_from = "1970-01-11";
  u.max_age_days = 3;
  u.time_unit = TimeUnit::kMilliseconds;
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  EXPECT_NE(b.fingerprint(), c.fingerprint());
  EXPECT_NE(b.fingerprint(), u.fingerprint());

  const Loaded first = load({p}, a);
  EXPECT_FALSE(first.report.from_cache);
  const Loaded cut = load({p}, b);  // another key: parsed again, not the uncut cache
  EXPECT_FALSE(cut.report.from_cache);
  EXPECT_EQ(cut.report.retention_dropped, 3);
  const Loaded again = load({p}, b);
  EXPECT_TRUE(again.report.from_cache);
  EXPECT_EQ(again.report.retention_dropped, 3);
  EXPECT_EQ(again.report.retention_max_age_days, 3);
  EXPECT_EQ(again.report.retention_reference, 10 * kDay);
  EXPECT_EQ(again.report.retention_cutoff, 7 * kDay);
  EXPECT_EQ(triples(again, 0), triples(cut, 0));
}

TEST(Retention, SyntheticDataIsCutAndATimeSplitStillWorks) {
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "data.format=synthetic", "synthetic.users=300", "synthetic.items=200",
           "synthetic.interactions=6000", "synthetic.days=100", "data.max_age_days=30",
           "split.method=time", "run.progress=off"})
    cfg.set(s);
  const pipeline::Dataset d = pipeline::prepare_dataset(cfg);
  // Count independently on the generator's output: the newest time, less 30 days.
  const SyntheticData syn = generate_synthetic(pipeline::synthetic_options(cfg));
  int64_t newest = std::numeric_limits<int64_t>::min();
  for (int64_t tm : syn.x.times) newest = std::max(newest, tm);
  const int64_t cutoff = newest - 30 * kDay;
  int64_t old = 0;
  for (int64_t tm : syn.x.times) old += tm < cutoff;
  ASSERT_GT(old, 0);
  const auto stats = d.stats();
  EXPECT_EQ(stats["retention"]["reference"].get<int64_t>(), newest);
  EXPECT_EQ(stats["retention"]["cutoff"].get<int64_t>(), cutoff);
  EXPECT_EQ(stats["retention"]["dropped_interactions"].get<int64_t>(), old);
  EXPECT_GT(d.split.train.size(), 0);
  EXPECT_GT(d.split.test.size(), 0);
  for (const Interactions* x : {&d.split.train, &d.split.test})
    for (int64_t tm : x->times) EXPECT_GE(tm, cutoff);
}

}  // namespace
}  // namespace recforge::data
