#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recforge::data {
namespace {

SyntheticOptions small_options() {
  SyntheticOptions o;
  o.users = 3000;
  o.items = 2000;
  o.interactions = 150000;
  o.communities = 8;
  return o;
}

bool same_data(const SyntheticData& a, const SyntheticData& b) {
  return a.x.users == b.x.users && a.x.items == b.x.items && a.x.weights == b.x.weights &&
         a.x.times == b.x.times && a.user_community == b.user_community &&
         a.item_community == b.item_community;
}

double total_weight(const Interactions& x) {
  return std::accumulate(x.weights.begin(), x.weights.end(), 0.0);
}

TEST(Synthetic, SameSeedSameDataDifferentSeedDiffers) {
  SyntheticOptions o = small_options();
  const SyntheticData a = generate_synthetic(o);
  const SyntheticData b = generate_synthetic(o);
  EXPECT_TRUE(same_data(a, b));
  o.seed = 2;
  const SyntheticData c = generate_synthetic(o);
  EXPECT_FALSE(same_data(a, c));
}

#ifdef _OPENMP
TEST(Synthetic, ResultDoesNotDependOnThreadCount) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const SyntheticData one = generate_synthetic(small_options());
  omp_set_num_threads(3);
  const SyntheticData three = generate_synthetic(small_options());
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_data(one, three));
}
#endif

TEST(Synthetic, ShapeIdsAndSortedCombinedPairs) {
  const SyntheticOptions o = small_options();
  const SyntheticData d = generate_synthetic(o);
  ASSERT_EQ(d.users.size(), o.users);
  ASSERT_EQ(d.items.size(), o.items);
  EXPECT_EQ(d.users.external(0), "0");
  EXPECT_EQ(d.items.external(1999), "1999");
  EXPECT_EQ(d.user_community.size(), static_cast<size_t>(o.users));
  EXPECT_EQ(d.item_community.size(), static_cast<size_t>(o.items));
  ASSERT_TRUE(d.x.has_times());
  for (offset_t k = 1; k < d.x.size(); ++k) {
    const bool ordered = d.x.users[k - 1] < d.x.users[k] ||
                         (d.x.users[k - 1] == d.x.users[k] && d.x.items[k - 1] < d.x.items[k]);
    ASSERT_TRUE(ordered) << "at " << k;
  }
  // Every user has at least one interaction; communities are all used and roughly balanced.
  std::vector<int> per_user(static_cast<size_t>(o.users), 0);
  for (index_t u : d.x.users) ++per_user[u];
  EXPECT_GE(*std::min_element(per_user.begin(), per_user.end()), 1);
  std::vector<int> items_in(static_cast<size_t>(o.communities), 0);
  for (int c : d.item_community) ++items_in[c];
  for (int n : items_in) EXPECT_EQ(n, o.items / o.communities);
}

TEST(Synthetic, DrawCountIsCloseToTheTarget) {
  for (double sigma : {0.0, 1.0, 2.0}) {
    SyntheticOptions o = small_options();
    o.activity_sigma = sigma;
    const SyntheticData d = generate_synthetic(o);
    // Count weights sum to the number of draws before combining.
    EXPECT_NEAR(total_weight(d.x), o.interactions, 0.1 * o.interactions) << "sigma " << sigma;
    EXPECT_LE(d.x.size(), o.interactions * 11 / 10);
  }
  SyntheticOptions o = small_options();
  o.interactions = o.users;  // exactly one draw each
  const SyntheticData d = generate_synthetic(o);
  EXPECT_EQ(d.x.size(), o.users);
}

TEST(Synthetic, ItemPopularityIsHeavyTailed) {
  SyntheticOptions o = small_options();
  o.popularity_exponent = 1.0;
  const SyntheticData d = generate_synthetic(o);
  std::vector<double> per_item(static_cast<size_t>(o.items), 0.0);
  for (offset_t k = 0; k < d.x.size(); ++k) per_item[d.x.items[k]] += d.x.weights[k];
  std::sort(per_item.begin(), per_item.end(), std::greater<>());
  const double top = std::accumulate(per_item.begin(), per_item.begin() + o.items / 10, 0.0);
  EXPECT_GT(top / total_weight(d.x), 0.4);
  // Exponent 0 is uniform: the top 10% hold far less.
  o.popularity_exponent = 0.0;
  const SyntheticData flat = generate_synthetic(o);
  std::fill(per_item.begin(), per_item.end(), 0.0);
  for (offset_t k = 0; k < flat.x.size(); ++k) per_item[flat.x.items[k]] += flat.x.weights[k];
  std::sort(per_item.begin(), per_item.end(), std::greater<>());
  const double flat_top = std::accumulate(per_item.begin(), per_item.begin() + o.items / 10, 0.0);
  EXPECT_LT(flat_top / total_weight(flat.x), 0.2);
}

TEST(Synthetic, CommunityStructureMatchesTheStrength) {
  for (double strength : {0.0, 0.5, 0.8, 1.0}) {
    SyntheticOptions o = small_options();
    o.community_strength = strength;
    const SyntheticData d = generate_synthetic(o);
    double inside = 0;
    for (offset_t k = 0; k < d.x.size(); ++k)
      if (d.item_community[d.x.items[k]] == d.user_community[d.x.users[k]])
        inside += d.x.weights[k];
    const double expected = strength + (1 - strength) / o.communities;
    EXPECT_NEAR(inside / total_weight(d.x), expected, 0.03) << "strength " << strength;
  }
}

TEST(Synthetic, TimestampsLieInTheSpan) {
  SyntheticOptions o = small_options();
  o.days = 30;
  const SyntheticData d = generate_synthetic(o);
  const int64_t start = 1577836800, end = start + 30 * 86400;
  const auto [lo, hi] = std::minmax_element(d.x.times.begin(), d.x.times.end());
  EXPECT_GE(*lo, start);
  EXPECT_LT(*hi, end);
  // Spread over the span, not bunched at one end.
  EXPECT_LT(*lo, start + 3 * 86400);
  EXPECT_GT(*hi, end - 3 * 86400);
}

TEST(Synthetic, BinaryWeightsAreOne) {
  SyntheticOptions o = small_options();
  o.binary_weights = true;
  const SyntheticData d = generate_synthetic(o);
  EXPECT_TRUE(std::all_of(d.x.weights.begin(), d.x.weights.end(), [](float w) { return w == 1; }));
  o.binary_weights = false;
  const SyntheticData counts = generate_synthetic(o);
  EXPECT_EQ(counts.x.users, d.x.users);
  EXPECT_EQ(counts.x.items, d.x.items);
  EXPECT_GT(total_weight(counts.x), total_weight(d.x));
}

TEST(Synthetic, CsvWriteThenReadBack) {
  SyntheticOptions o = small_options();
  o.users = 50;
  o.items = 40;
  o.interactions = 500;
  o.communities = 4;
  const SyntheticData d = generate_synthetic(o);
  test::TempDir dir;
  const std::string path = dir.file("synthetic.csv");
  write_synthetic_csv(d, path);
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "user,item,weight,timestamp");
  offset_t rows = 0;
  while (std::getline(in, line)) {
    if (rows == 0) {
      const std::string want =
          d.users.external(d.x.users[0]) + "," + d.items.external(d.x.items[0]) + "," +
          std::to_string(static_cast<int>(d.x.weights[0])) + "," + std::to_string(d.x.times[0]);
      EXPECT_EQ(line, want);
    }
    ++rows;
  }
  EXPECT_EQ(rows, d.x.size());
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.str())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Synthetic, CsvWriteFailureNamesThePath) {
  const SyntheticData d = generate_synthetic(small_options());
  const std::string path = "/nonexistent-dir-recforge/x.csv";
  try {
    write_synthetic_csv(d, path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Synthetic, InvalidOptionsNameTheOption) {
  auto message = [](SyntheticOptions o) -> std::string {
    try {
      generate_synthetic(o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  SyntheticOptions o = small_options();
  o.communities = 0;
  EXPECT_NE(message(o).find("synthetic.communities"), std::string::npos);
  o = small_options();
  o.community_strength = 1.5;
  EXPECT_NE(message(o).find("synthetic.community_strength"), std::string::npos);
  o = small_options();
  o.interactions = o.users - 1;
  EXPECT_NE(message(o).find("synthetic.interactions"), std::string::npos);
  o = small_options();
  o.users = 0;
  EXPECT_NE(message(o).find("synthetic.users"), std::string::npos);
}

}  // namespace
}  // namespace recforge::data
