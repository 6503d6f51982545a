// prepare_dataset's data side of a given split: test rows of unknown users/items are counted in
// stats.json, and a test file that loses every row is an error naming it.
#include "pipeline/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "test_util.h"

namespace recforge::pipeline {
namespace {

using test::TempDir;
using test::write_file;

config::Config given_config(const std::string& train, const std::string& test) {
  config::Config cfg = config::Config::defaults();
  for (const std::string& s :
       std::vector<std::string>{"split.method=given", "data.path=" + train,
                                "data.test_path=" + test, "data.cache=false", "run.progress=off"})
    cfg.set(s);
  return cfg;
}

TEST(Dataset, GivenSplitCountsTestRowsOfUnknownUsersAndItemsInStats) {
  TempDir t;
  const auto train = write_file(t.file("train.csv"), "1,10\n1,11\n2,10\n");
  const auto test = write_file(t.file("test.csv"), "2,11\n3,10\n4,12\n1,12\n");
  const Dataset d = prepare_dataset(given_config(train, test));
  EXPECT_EQ(d.split.test.size(), 1);  // 2,11
  const auto stats = d.stats();
  EXPECT_EQ(stats["load"]["test_unknown_user_interactions"].get<int64_t>(), 2);  // 3,10  4,12
  EXPECT_EQ(stats["load"]["test_unknown_item_interactions"].get<int64_t>(), 1);  // 1,12
}

TEST(Dataset, GivenTestFileWithNoKnownUserOrItemIsAnErrorNamingIt) {
  TempDir t;
  const auto train = write_file(t.file("train.csv"), "1,10\n1,11\n2,10\n");
  const auto test = write_file(t.file("test.csv"), "3,10\n4,12\n1,12\n");
  try {
    prepare_dataset(given_config(train, test));
    ADD_FAILURE() << "a test file with no usable row was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              test +
                  ": no test interactions left for split.method given: 2 have a user and 1 an "
                  "item that is not in the (filtered) training data " +
                  train + "; expected at least one");
  }
}


config::Config weighted_config(const std::string& path, const std::vector<std::string>& more) {
  config::Config cfg = config::Config::defaults();
  std::vector<std::string> sets{"data.path=" + path, "data.header=true", "data.weight_col=w",
                                "data.cache=false", "run.progress=off", "split.method=none"};
  sets.insert(sets.end(), more.begin(), more.end());
  for (const std::string& s : sets) cfg.set(s);
  return cfg;
}

std::string error_of(const config::Config& cfg) {
  try {
    prepare_dataset(cfg);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Every weight fits float32, but the sum of user 2's two (2, 10) lines does not, and neither does
// alpha times 3e38: refused when the data is prepared, naming the pair and the setting, before
// any iteration could run on an infinite confidence.
TEST(Dataset, ConfidencesPastFloat32AreRefusedNamingTheUserTheItemAndTheCause) {
  TempDir t;
  const auto path = write_file(t.file("x.csv"),
                               "u,i,w\n1,10,1\n1,11,1\n2,10,3e38\n2,11,1\n2,10,3e38\n2,12,1\n"
                               "3,11,1\n3,12,1\n");
  EXPECT_EQ(error_of(weighted_config(path, {})),
            path + ": the weights of a user (an id of 1 byte) and item \"10\" sum to inf, past "
                   "float32's largest value 3.4e38 (data.duplicates: sum adds the weights of repeated pairs); lower "
                   "the weights or set data.duplicates: max");
  EXPECT_NO_THROW(prepare_dataset(weighted_config(path, {"data.duplicates=max"})));
  const std::string linear = error_of(weighted_config(
      path, {"data.duplicates=max", "weighting.scheme=linear", "weighting.alpha=1e10"}));
  EXPECT_NE(linear.find("weighting.scheme linear turns the weight 3e+38 of a user (an id of 1 byte) "
                        "and item \"10\" into the confidence inf, past float32's largest value 3.4e38; "
                        "lower weighting.alpha (10000000000) or the weights"),
            std::string::npos)
      << linear;
  EXPECT_NO_THROW(prepare_dataset(weighted_config(
      path, {"data.duplicates=max", "weighting.scheme=linear", "weighting.alpha=1"})));

  // A held-out user's history is weighted too, at evaluation: checked with the training data.
  // A seed whose split holds user 2 out with (2, 10) in its visible history (the split does not
  // depend on the weights, so data.duplicates: max shows where the pair goes).
  const std::vector<std::string> users_split{"split.method=users", "split.heldout_users=0.34",
                                             "split.test_fraction=0.34",
                                             "split.validation_fraction=0"};
  int seed = 0;
  for (int s = 1; s <= 50 && seed == 0; ++s) {
    std::vector<std::string> sets = users_split;
    sets.push_back("run.seed=" + std::to_string(s));
    sets.push_back("data.duplicates=max");
    const Dataset d = prepare_dataset(weighted_config(path, sets));
    const data::index_t u2 = *d.users.find("2"), i10 = *d.items.find("10");
    const data::Interactions& f = d.split.test_foldin;
    bool held = false;
    for (data::offset_t k = 0; k < f.size(); ++k) held = held || (f.users[k] == u2 && f.items[k] == i10);
    const auto& train_users = d.split.train.users;
    if (held && std::find(train_users.begin(), train_users.end(), u2) == train_users.end()) seed = s;
  }
  ASSERT_NE(seed, 0) << "no seed of 1..50 holds user 2 out with (2, 10) visible";
  std::vector<std::string> sets = users_split;
  sets.push_back("run.seed=" + std::to_string(seed));
  EXPECT_EQ(error_of(weighted_config(path, sets)),
            path + ": the weights of a user (an id of 1 byte) and item \"10\" sum to inf, past "
                   "float32's largest value 3.4e38 (data.duplicates: sum adds the weights of repeated pairs); lower "
                   "the weights or set data.duplicates: max");
}

}  // namespace
}  // namespace recforge::pipeline
