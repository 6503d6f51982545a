// prepare_dataset's data side of a given split: test rows of unknown users/items are counted in
// stats.json, and a test file that loses every row is an error naming it.
#include "pipeline/dataset.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace recforge::pipeline
