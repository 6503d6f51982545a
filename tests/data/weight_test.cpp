#include "data/weight.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"

namespace recforge::data {
namespace {

// The 3 users × 4 items example:
//   u0: i0 w=1, i1 w=3    (row sum 4)
//   u1: i2 w=2            (row sum 2)
//   u2: i3 w=4            (row sum 4)
// Every item has one interaction.
Interactions example() {
  Interactions x;
  x.push(0, 0, 1.0f);
  x.push(0, 1, 3.0f);
  x.push(1, 2, 2.0f);
  x.push(2, 3, 4.0f);
  return x;
}

void expect_values(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-5) << "entry " << k;
}

TEST(Weight, NoneReturnsRawWeights) {
  WeightOptions o;
  o.scheme = WeightScheme::kNone;
  expect_values(confidence(example(), 3, 4, o), {1, 3, 2, 4});
}

TEST(Weight, LinearIsOnePlusAlphaTimesWeight) {
  WeightOptions o;
  o.scheme = WeightScheme::kLinear;
  o.alpha = 2.0;
  // 1 + 2·1 = 3, 1 + 2·3 = 7, 1 + 2·2 = 5, 1 + 2·4 = 9
  expect_values(confidence(example(), 3, 4, o), {3, 7, 5, 9});
}

TEST(Weight, LogIsOnePlusAlphaLogOnePlusWeightOverEps) {
  WeightOptions o;
  o.scheme = WeightScheme::kLog;
  o.alpha = 2.0;
  o.eps = 0.5;
  // 1 + 2·ln(1 + 1/0.5) = 1 + 2·ln 3 = 3.1972246
  // 1 + 2·ln(1 + 3/0.5) = 1 + 2·ln 7 = 4.8918203
  // 1 + 2·ln(1 + 2/0.5) = 1 + 2·ln 5 = 4.2188758
  // 1 + 2·ln(1 + 4/0.5) = 1 + 2·ln 9 = 5.3944492
  expect_values(confidence(example(), 3, 4, o), {3.1972246, 4.8918203, 4.2188758, 5.3944492});
}

TEST(Weight, Bm25MatchesImplicit) {
  WeightOptions o;
  o.scheme = WeightScheme::kBm25;
  o.bm25_k1 = 100;
  o.bm25_b = 0.8;
  o.alpha = 123;  // unused by bm25
  // implicit's bm25_weight on the 3×4 matrix (K1=100, B=0.8):
  //   idf = ln 3 - ln(1 + 1) = 0.40546511 for every item (one interaction each)
  //   mean row sum = (4 + 2 + 4) / 3 = 10/3
  //   length_norm: u0 = 0.2 + 0.8·4/(10/3) = 1.16, u1 = 0.2 + 0.8·2/(10/3) = 0.68, u2 = 1.16
  //   c = w·101/(100·length_norm + w)·idf:
  //   (u0,i0) 1·101/(116 + 1)·0.40546511 = 0.35001689
  //   (u0,i1) 3·101/(116 + 3)·0.40546511 = 1.03240275
  //   (u1,i2) 2·101/(68 + 2)·0.40546511  = 1.17005645
  //   (u2,i3) 4·101/(116 + 4)·0.40546511 = 1.36506586
  expect_values(confidence(example(), 3, 4, o), {0.35001689, 1.03240275, 1.17005645, 1.36506586});
}

TEST(Weight, Bm25CountsEmptyUsersInTheMeanRowSumLikeImplicit) {
  WeightOptions o;
  o.scheme = WeightScheme::kBm25;
  // The same interactions in a 4×4 matrix whose last row is empty:
  //   idf = ln 4 - ln 2 = 0.69314718; mean row sum = 10/4 = 2.5
  //   length_norm: u0 = 0.2 + 0.8·4/2.5 = 1.48, u1 = 0.2 + 0.8·2/2.5 = 0.84, u2 = 1.48
  //   (u0,i0) 1·101/(148 + 1)·0.69314718 = 0.46985144
  //   (u0,i1) 3·101/(148 + 3)·0.69314718 = 1.39088474
  //   (u1,i2) 2·101/(84 + 2)·0.69314718  = 1.62808989
  //   (u2,i3) 4·101/(148 + 4)·0.69314718 = 1.84231224
  expect_values(confidence(example(), 4, 4, o), {0.46985144, 1.39088474, 1.62808989, 1.84231224});
}

TEST(Weight, Bm25IdfUsesInteractionCountsPerItem) {
  // Two users on one item: idf = ln 2 - ln(1 + 2) < 0, as implicit gives.
  Interactions x;
  x.push(0, 0, 1.0f);
  x.push(1, 0, 1.0f);
  WeightOptions o;
  o.scheme = WeightScheme::kBm25;
  // mean row sum 1, length_norm 1 for both: c = 1·101/(100 + 1)·(ln 2 - ln 3) = -0.40546511
  expect_values(confidence(x, 2, 1, o), {-0.40546511, -0.40546511});
}

TEST(Weight, InvalidOptionsNameTheOption) {
  WeightOptions o;
  o.scheme = WeightScheme::kLog;
  o.eps = 0;
  EXPECT_THROW(
      {
        try {
          confidence(example(), 3, 4, o);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("weighting.eps"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  o = WeightOptions();
  o.scheme = WeightScheme::kBm25;
  o.bm25_b = 1.5;
  EXPECT_THROW(confidence(example(), 3, 4, o), Error);
}

TEST(Weight, EmptyInputGivesEmptyOutput) {
  WeightOptions o;
  o.scheme = WeightScheme::kBm25;
  EXPECT_TRUE(confidence(Interactions(), 3, 4, o).empty());
}

}  // namespace
}  // namespace recforge::data
