#include "data/split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recforge::data {
namespace {

using Key = std::tuple<index_t, index_t, float, int64_t>;

// The interactions of a part as (user, item, weight, time), in order.
std::vector<Key> keys(const Interactions& x) {
  std::vector<Key> out;
  for (offset_t k = 0; k < x.size(); ++k)
    out.emplace_back(x.users[k], x.items[k], x.weights[k], x.has_times() ? x.times[k] : 0);
  return out;
}

// Items of user u in a part, in order.
std::vector<index_t> items_of(const Interactions& x, index_t u) {
  std::vector<index_t> out;
  for (offset_t k = 0; k < x.size(); ++k)
    if (x.users[k] == u) out.push_back(x.items[k]);
  return out;
}

std::set<index_t> users_of(const Interactions& x) {
  return std::set<index_t>(x.users.begin(), x.users.end());
}

// Every interaction of `all` is in exactly one part, and each part keeps the input order.
void expect_partition(const Interactions& all, const Split& s) {
  const std::vector<Key> in = keys(all);
  std::map<Key, std::vector<size_t>> position;
  for (size_t k = 0; k < in.size(); ++k) position[in[k]].push_back(k);
  offset_t total = 0;
  std::multiset<Key> seen;
  for (const Interactions* part :
       {&s.train, &s.validation, &s.test, &s.validation_foldin, &s.test_foldin}) {
    total += part->size();
    if (part->size() > 0) {
      EXPECT_EQ(part->has_times(), all.has_times());
    }
    size_t last = 0;
    bool first = true;
    std::map<Key, size_t> used;
    for (const Key& key : keys(*part)) {
      seen.insert(key);
      auto it = position.find(key);
      ASSERT_NE(it, position.end());
      const size_t pos = it->second[std::min(used[key]++, it->second.size() - 1)];
      if (!first) {
        EXPECT_GT(pos, last) << "part does not keep input order";
      }
      last = pos;
      first = false;
    }
  }
  EXPECT_EQ(total, all.size());
  EXPECT_EQ(seen, std::multiset<Key>(in.begin(), in.end()));
}

std::string error_of(const Interactions& all, int64_t n_users, const SplitOptions& o) {
  try {
    split_interactions(all, n_users, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// User u gets items base..base+n-1 with times t0, t0+1, ...
void add_user(Interactions& x, index_t u, int n, index_t base = 0, int64_t t0 = 0) {
  for (int k = 0; k < n; ++k) x.push(u, base + k, 1.0f + static_cast<float>(k), t0 + k);
}

// A larger random set: users with 5..50 interactions, times in [0, 10^6).
Interactions random_set(int64_t n_users, uint64_t seed) {
  Interactions x;
  x.enable_times();
  Rng rng(seed);
  for (int64_t u = 0; u < n_users; ++u) {
    const int n = 5 + static_cast<int>(rng.below(46));
    for (int k = 0; k < n; ++k)
      x.push(static_cast<index_t>(u), static_cast<index_t>(k), 1.0f,
             static_cast<int64_t>(rng.below(1000000)));
  }
  return x;
}

TEST(Split, RandomHoldsOutRoundedFractionPerUserKeepingOneInTrain) {
  Interactions x;
  x.enable_times();
  add_user(x, 0, 10);
  add_user(x, 1, 1);
  add_user(x, 2, 3);
  add_user(x, 3, 2);
  SplitOptions o;
  o.method = SplitMethod::kRandom;
  o.test_fraction = 0.2;
  Split s = split_interactions(x, 4, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0).size(), 2u);  // round(10·0.2)
  EXPECT_EQ(items_of(s.test, 1).size(), 0u);  // n = 1 stays in train
  EXPECT_EQ(items_of(s.test, 2).size(), 1u);  // round(0.6)
  EXPECT_EQ(items_of(s.test, 3).size(), 0u);  // round(0.4)
  EXPECT_TRUE(s.validation.size() == 0 && s.test_foldin.size() == 0);
  o.test_fraction = 0.9;
  s = split_interactions(x, 4, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0).size(), 9u);
  EXPECT_EQ(items_of(s.test, 1).size(), 0u);
  EXPECT_EQ(items_of(s.test, 2).size(), 2u);  // round(2.7) = 3, but one stays in train
  EXPECT_EQ(items_of(s.test, 3).size(), 1u);  // round(1.8) = 2, but one stays in train
}

TEST(Split, LeaveLastPicksTheLatestWithTiesByInputOrder) {
  // Users interleaved: u0 times 5, 9, 9, 1 (items 0..3); u1 one interaction; u2 times 3, 2.
  Interactions x;
  x.enable_times();
  x.push(0, 0, 1, 5);
  x.push(1, 10, 1, 100);
  x.push(0, 1, 1, 9);
  x.push(2, 20, 1, 3);
  x.push(0, 2, 1, 9);
  x.push(2, 21, 1, 2);
  x.push(0, 3, 1, 1);
  SplitOptions o;
  o.method = SplitMethod::kLeaveLast;
  Split s = split_interactions(x, 3, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({2}));  // the later of the two 9s
  EXPECT_EQ(items_of(s.test, 1), std::vector<index_t>());     // n <= leave_k
  EXPECT_EQ(items_of(s.test, 2), std::vector<index_t>({20}));
  EXPECT_EQ(items_of(s.train, 0), std::vector<index_t>({0, 1, 3}));
  o.leave_k = 2;
  s = split_interactions(x, 3, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({1, 2}));
  EXPECT_EQ(items_of(s.test, 2), std::vector<index_t>());  // n = 2 <= leave_k
}

TEST(Split, TimeUsesTheCutoffOrTheQuantile) {
  // Times 0..9 in a scrambled order; u1 has only the latest interaction.
  Interactions x;
  x.enable_times();
  const int64_t times[] = {3, 8, 0, 5, 1, 7, 4, 2, 6};
  for (int k = 0; k < 9; ++k) x.push(0, k, 1, times[k]);
  x.push(1, 100, 1, 9);
  SplitOptions o;
  o.method = SplitMethod::kTime;
  o.cutoff_quantile = 0.8;  // position 0.8·9 = 7.2 → cutoff 7.2: times 8 and 9 in test
  Split s = split_interactions(x, 2, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({1}));    // time 8
  EXPECT_EQ(items_of(s.test, 1), std::vector<index_t>({100}));  // kept though u1 has no train
  EXPECT_EQ(s.train.size(), 8);
  o.cutoff = 5;  // times 5..9
  s = split_interactions(x, 2, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({1, 3, 5, 8}));
  o.cutoff = -1;  // everything in test: a mistake
  EXPECT_NE(error_of(x, 2, o).find("split.cutoff"), std::string::npos);
}

TEST(Split, TimeCutoffsAreExactForNanosecondTimestamps) {
  // Nanosecond timestamps 1 ns apart, above 2^53 (where doubles are 256 ns apart): the cutoff,
  // given or a quantile, separates them exactly.
  constexpr int64_t t0 = 1700000000000000000;
  Interactions x;
  x.enable_times();
  for (int k = 0; k < 5; ++k) x.push(0, k, 1, t0 + k);
  SplitOptions o;
  o.method = SplitMethod::kTime;
  o.cutoff = t0 + 3;
  Split s = split_interactions(x, 1, o);
  expect_partition(x, s);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({3, 4}));
  o.cutoff.reset();
  o.cutoff_quantile = 0.5;  // position 2: the cutoff is t0 + 2
  s = split_interactions(x, 1, o);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({2, 3, 4}));
  o.cutoff_quantile = 0.55;  // position 2.2: t0 + 2.2, so t0 + 3 and later
  s = split_interactions(x, 1, o);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({3, 4}));
  // The extremes of int64 (an interpolation across the whole range must not overflow).
  Interactions wide;
  wide.enable_times();
  wide.push(0, 0, 1, std::numeric_limits<int64_t>::min());
  wide.push(0, 1, 1, std::numeric_limits<int64_t>::max());
  o.cutoff_quantile = 0.5;  // halfway: -0.5, so the cutoff is 0
  s = split_interactions(wide, 1, o);
  EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({1}));
}

TEST(Split, UsersHoldsOutWholeUsersWithFoldIn) {
  Interactions x;
  x.enable_times();
  for (index_t u = 0; u < 10; ++u) add_user(x, u, 5, 0, 10 * u);
  SplitOptions o;
  o.method = SplitMethod::kUsers;
  o.heldout_users = 0.2;
  o.test_fraction = 0.4;
  Split s = split_interactions(x, 11, o);  // user 10 has no interactions
  expect_partition(x, s);
  const std::set<index_t> held = users_of(s.test);
  EXPECT_EQ(held.size(), 2u);
  EXPECT_EQ(users_of(s.test_foldin), held);
  for (index_t u : held) {
    EXPECT_EQ(items_of(s.test, u).size(), 2u);  // round(5·0.4)
    EXPECT_EQ(items_of(s.test_foldin, u).size(), 3u);
    EXPECT_EQ(items_of(s.train, u).size(), 0u);
  }
  EXPECT_EQ(users_of(s.train).size(), 8u);
  EXPECT_EQ(s.train.size(), 40);
  // Clamped to [1, users-1].
  o.heldout_users = 0.01;
  EXPECT_EQ(users_of(split_interactions(x, 11, o).test_foldin).size(), 1u);
  o.heldout_users = 0.99;
  EXPECT_EQ(users_of(split_interactions(x, 11, o).test_foldin).size(), 9u);
  // A held-out user with one interaction keeps it in fold-in (2 of these 3 users are held out).
  Interactions three;
  three.push(0, 0, 1);
  add_user(three, 1, 4);
  add_user(three, 2, 4);
  o.heldout_users = 0.99;
  o.test_fraction = 0.5;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    o.seed = seed;
    s = split_interactions(three, 3, o);
    expect_partition(three, s);
    EXPECT_TRUE(items_of(s.test, 0).empty());
    EXPECT_EQ(items_of(s.train, 0).size() + items_of(s.test_foldin, 0).size(), 1u);
    EXPECT_EQ(s.test.size(), 2 * static_cast<offset_t>(users_of(s.test).size()));
  }
  // When that leaves no test interaction at all, the split is an error.
  Interactions two;
  two.push(0, 0, 1);
  two.push(1, 0, 1);
  o.heldout_users = 0.5;
  EXPECT_EQ(error_of(two, 2, o),
            "split.test_fraction 0.5 left the test set of the held-out users empty "
            "(split.heldout_users 0.5): none of them has enough interactions for round(n * 0.5) "
            ">= 1 with one kept as fold-in");
  // Fewer than two users cannot be split by users.
  Interactions one;
  one.push(0, 0, 1);
  EXPECT_NE(error_of(one, 1, o).find("split.method users"), std::string::npos);
}

TEST(Split, EmptyTestOrValidationPartIsAnErrorNamingTheSetting) {
  Interactions singles;  // three users with one interaction each
  singles.enable_times();
  for (index_t u = 0; u < 3; ++u) add_user(singles, u, 1, 0, 10 * u);
  SplitOptions o;
  o.method = SplitMethod::kRandom;
  EXPECT_EQ(error_of(singles, 3, o),
            "split.test_fraction 0.2 left the test set empty: no user has enough interactions for "
            "round(n * 0.2) >= 1 with one kept in train; expected a larger split.test_fraction or "
            "users with more interactions");
  o.method = SplitMethod::kLeaveLast;
  EXPECT_EQ(error_of(singles, 3, o),
            "split.leave_k 1 left the test set empty: no user has more than 1 interaction(s), and "
            "split.method leave_last keeps such users in train");
  o.method = SplitMethod::kTime;
  o.cutoff = 21;  // times 0, 10, 20
  EXPECT_EQ(error_of(singles, 3, o),
            "split.cutoff 21 left the test set empty: no interaction has a timestamp at or after "
            "it; expected a cutoff at or before the latest timestamp");
  o.cutoff = 20;
  EXPECT_EQ(split_interactions(singles, 3, o).test.size(), 1);
  o.cutoff.reset();
  Interactions train, none;
  add_user(train, 0, 3);
  o.method = SplitMethod::kGiven;
  try {
    split_interactions(train, 1, o, &none);
    ADD_FAILURE() << "an empty given test set was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "split.method given: the test file (data.test_path) has no interactions left after "
              "dropping those whose user or item is not in the training data; expected at least "
              "one test interaction");
  }
  // No test set is asked for: none is fine.
  o.method = SplitMethod::kNone;
  EXPECT_EQ(split_interactions(singles, 3, o).test.size(), 0);

  // Validation: a fraction > 0 asks for a validation set; 0 means none.
  Interactions x;
  x.enable_times();
  for (index_t u = 0; u < 4; ++u) add_user(x, u, 4, 0, 10 * u);
  o.method = SplitMethod::kRandom;
  o.test_fraction = 0.25;      // 1 of 4 per user to test, 3 left in train
  o.validation_fraction = 0.1;  // round(3 * 0.1) = 0
  EXPECT_EQ(error_of(x, 4, o),
            "split.validation_fraction 0.1 left the validation set empty: the training part has "
            "too few interactions per user (or distinct timestamps) to hold any out; expected a "
            "larger fraction, or split.validation_fraction: 0 for no validation set");
  o.method = SplitMethod::kNone;
  EXPECT_NE(error_of(x, 4, o).find("split.validation_fraction 0.1 left the validation set empty"),
            std::string::npos);
  o.validation_fraction = 0.2;  // round(4 * 0.2) = 1
  EXPECT_EQ(split_interactions(x, 4, o).validation.size(), 4);
  o.method = SplitMethod::kLeaveLast;
  o.leave_k = 2;  // 2 of 4 to test, the 2 left are not more than leave_k
  EXPECT_EQ(error_of(x, 4, o),
            "split.validation_fraction 0.2 left the validation set empty: with split.method "
            "leave_last no user has more than split.leave_k 2 train interaction(s) left; set "
            "split.validation_fraction: 0 for no validation set");
  o.validation_fraction = 0;
  const Split s = split_interactions(x, 4, o);
  EXPECT_EQ(s.validation.size(), 0);
  EXPECT_EQ(s.test.size(), 8);
}

TEST(Split, GivenAndNone) {
  Interactions train, given;
  add_user(train, 0, 3);
  add_user(given, 0, 1, 7);
  SplitOptions o;
  o.method = SplitMethod::kGiven;
  Split s = split_interactions(train, 1, o, &given);
  EXPECT_EQ(keys(s.train), keys(train));
  EXPECT_EQ(keys(s.test), keys(given));
  EXPECT_EQ(s.validation.size(), 0);
  o.method = SplitMethod::kNone;
  s = split_interactions(train, 1, o);
  EXPECT_EQ(keys(s.train), keys(train));
  EXPECT_EQ(s.test.size() + s.validation.size() + s.test_foldin.size(), 0);
}

TEST(Split, ValidationIsCarvedFromTrainByTheSameMethod) {
  SplitOptions o;
  o.validation_fraction = 0.25;
  {  // random: 2 of 10 to test, then round(8·0.25) = 2 of the rest to validation
    Interactions x;
    add_user(x, 0, 10);
    o.method = SplitMethod::kRandom;
    const Split s = split_interactions(x, 1, o);
    expect_partition(x, s);
    EXPECT_EQ(s.test.size(), 2);
    EXPECT_EQ(s.validation.size(), 2);
    EXPECT_EQ(s.train.size(), 6);
  }
  {  // given: random validation from the train file
    Interactions x, given;
    add_user(x, 0, 8);
    add_user(given, 0, 1, 50);
    o.method = SplitMethod::kGiven;
    const Split s = split_interactions(x, 1, o, &given);
    expect_partition(x, Split{s.train, s.validation, {}, {}, {}});
    EXPECT_EQ(s.validation.size(), 2);
    EXPECT_EQ(s.test.size(), 1);
  }
  {  // leave_last: the last to test, the second last to validation
    Interactions x;
    x.enable_times();
    add_user(x, 0, 4, 0, 1);  // times 1..4
    o.method = SplitMethod::kLeaveLast;
    const Split s = split_interactions(x, 1, o);
    expect_partition(x, s);
    EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({3}));
    EXPECT_EQ(items_of(s.validation, 0), std::vector<index_t>({2}));
  }
  {  // time: test = times >= 8; train times 0..7, 0.75 quantile = 5.25 → validation 6, 7
    Interactions x;
    x.enable_times();
    add_user(x, 0, 10);  // times 0..9
    o.method = SplitMethod::kTime;
    o.cutoff = 8;
    const Split s = split_interactions(x, 1, o);
    expect_partition(x, s);
    EXPECT_EQ(items_of(s.test, 0), std::vector<index_t>({8, 9}));
    EXPECT_EQ(items_of(s.validation, 0), std::vector<index_t>({6, 7}));
    o.cutoff.reset();
  }
  {  // users: 2 of 10 users to test, then 2 of the 8 train users to validation
    Interactions x;
    for (index_t u = 0; u < 10; ++u) add_user(x, u, 5);
    o.method = SplitMethod::kUsers;
    o.heldout_users = 0.2;
    o.test_fraction = 0.4;
    const Split s = split_interactions(x, 10, o);
    expect_partition(x, s);
    EXPECT_EQ(users_of(s.test).size(), 2u);
    EXPECT_EQ(users_of(s.validation).size(), 2u);
    EXPECT_EQ(users_of(s.validation_foldin), users_of(s.validation));
    EXPECT_EQ(s.validation.size(), 4);
    EXPECT_EQ(s.validation_foldin.size(), 6);
    EXPECT_EQ(users_of(s.train).size(), 6u);
    for (index_t u : users_of(s.validation)) EXPECT_EQ(users_of(s.test).count(u), 0u);
  }
}

TEST(Split, FractionsAreAccurateOnALargerSet) {
  const Interactions x = random_set(2000, 5);
  SplitOptions o;
  o.method = SplitMethod::kRandom;
  o.test_fraction = 0.2;
  o.validation_fraction = 0.1;
  Split s = split_interactions(x, 2000, o);
  expect_partition(x, s);
  const double n = static_cast<double>(x.size());
  EXPECT_NEAR(s.test.size() / n, 0.2, 0.01);
  EXPECT_NEAR(s.validation.size() / (n - s.test.size()), 0.1, 0.015);
  o.method = SplitMethod::kTime;
  o.validation_fraction = 0.0;
  s = split_interactions(x, 2000, o);
  expect_partition(x, s);
  EXPECT_NEAR(s.test.size() / n, 0.2, 0.001);
  o.method = SplitMethod::kUsers;
  o.heldout_users = 0.1;
  s = split_interactions(x, 2000, o);
  expect_partition(x, s);
  EXPECT_EQ(users_of(s.test_foldin).size(), 200u);
  const double held = static_cast<double>(s.test.size() + s.test_foldin.size());
  EXPECT_NEAR(s.test.size() / held, 0.2, 0.02);
}

TEST(Split, SameSeedSameSplitDifferentSeedDiffers) {
  const Interactions x = random_set(300, 9);
  for (SplitMethod m : {SplitMethod::kRandom, SplitMethod::kUsers}) {
    SplitOptions o;
    o.method = m;
    o.validation_fraction = 0.1;
    const Split a = split_interactions(x, 300, o);
    const Split b = split_interactions(x, 300, o);
    EXPECT_EQ(keys(a.test), keys(b.test));
    EXPECT_EQ(keys(a.validation), keys(b.validation));
    EXPECT_EQ(keys(a.train), keys(b.train));
    o.seed = 43;
    const Split c = split_interactions(x, 300, o);
    EXPECT_NE(keys(a.test), keys(c.test));
  }
}

#ifdef _OPENMP
TEST(Split, ResultDoesNotDependOnThreadCount) {
  const Interactions x = random_set(500, 3);
  const int saved = omp_get_max_threads();
  for (SplitMethod m : {SplitMethod::kRandom, SplitMethod::kUsers, SplitMethod::kLeaveLast}) {
    SplitOptions o;
    o.method = m;
    o.validation_fraction = 0.1;
    omp_set_num_threads(1);
    const Split a = split_interactions(x, 500, o);
    omp_set_num_threads(3);
    const Split b = split_interactions(x, 500, o);
    EXPECT_EQ(keys(a.test), keys(b.test));
    EXPECT_EQ(keys(a.validation), keys(b.validation));
    EXPECT_EQ(keys(a.test_foldin), keys(b.test_foldin));
  }
  omp_set_num_threads(saved);
}
#endif

TEST(Split, MissingTimestampsAreReported) {
  Interactions x;
  add_user(x, 0, 3);
  ASSERT_FALSE(x.has_times());
  SplitOptions o;
  o.method = SplitMethod::kLeaveLast;
  EXPECT_EQ(error_of(x, 1, o), "split.method leave_last needs timestamps: set data.time_col");
  o.method = SplitMethod::kTime;
  EXPECT_EQ(error_of(x, 1, o), "split.method time needs timestamps: set data.time_col");
}

TEST(Split, InvalidOptionsNameTheOption) {
  Interactions x;
  add_user(x, 0, 3);
  SplitOptions o;
  o.test_fraction = 0.0;
  EXPECT_NE(error_of(x, 1, o).find("split.test_fraction"), std::string::npos);
  o = SplitOptions();
  o.validation_fraction = 1.0;
  EXPECT_NE(error_of(x, 1, o).find("split.validation_fraction"), std::string::npos);
  o = SplitOptions();
  o.method = SplitMethod::kUsers;
  o.heldout_users = 1.5;
  EXPECT_NE(error_of(x, 1, o).find("split.heldout_users"), std::string::npos);
  o = SplitOptions();
  o.method = SplitMethod::kLeaveLast;
  o.leave_k = 0;
  EXPECT_NE(error_of(x, 1, o).find("split.leave_k"), std::string::npos);
}

}  // namespace
}  // namespace recforge::data
