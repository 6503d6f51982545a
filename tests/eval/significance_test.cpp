// The paired difference and t-test of compare --paired, against closed forms of Student's t.
#include "eval/significance.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace recforge::eval {
namespace {

const double kPi = std::acos(-1.0);

// Two-sided p-values of t from the closed-form CDFs of Student's t with 1, 2 and 3 degrees of
// freedom (F(t) = 1/2 + atan(t)/π; 1/2 + t / (2√(2 + t²)); 1/2 + (x/(1 + x²) + atan x)/π with
// x = t/√3).
double p_df1(double t) { return 2 * (0.5 - std::atan(std::fabs(t)) / kPi); }
double p_df2(double t) { return 2 * (0.5 - std::fabs(t) / (2 * std::sqrt(2 + t * t))); }
double p_df3(double t) {
  const double x = std::fabs(t) / std::sqrt(3.0);
  return 2 * (0.5 - (x / (1 + x * x) + std::atan(x)) / kPi);
}

TEST(PairedDifference, MatchesStudentsTInClosedForm) {
  // Differences 1, 2, 3, 4 (b − a): mean 2.5, sd √(5/3), t = 2.5 / (sd / 2), 3 degrees of freedom.
  const std::vector<double> a = {0.5, 0.25, 0.0, 0.125};
  const std::vector<double> b = {1.5, 2.25, 3.0, 4.125};
  const PairedDifference d = paired_difference(a, b);
  EXPECT_EQ(d.n, 4);
  EXPECT_NEAR(d.mean, 2.5, 1e-15);
  EXPECT_NEAR(d.sd, std::sqrt(5.0 / 3), 1e-15);
  const double t = 2.5 / (std::sqrt(5.0 / 3) / 2);
  EXPECT_NEAR(d.t, t, 1e-13);
  EXPECT_NEAR(d.p, p_df3(t), 1e-13);
  EXPECT_NEAR(d.p, 0.0305, 5e-5);  // the tabulated value
  // The opposite difference: same p, mirrored interval.
  const PairedDifference r = paired_difference(b, a);
  EXPECT_NEAR(r.t, -t, 1e-13);
  EXPECT_NEAR(r.p, d.p, 1e-15);
  EXPECT_NEAR(r.low, -d.high, 1e-13);

  // 2 degrees of freedom: differences 1, 2, 6 (mean 3, sd √7). The 97.5% quantile q solves
  // q / √(2 + q²) = 0.95, so q² = 0.9025 · 2 / 0.0975.
  const PairedDifference d2 = paired_difference({0, 0, 0}, {1, 2, 6});
  const double q2 = std::sqrt(0.9025 * 2 / 0.0975);  // 4.3027, the tabulated t(0.975, 2)
  const double se2 = std::sqrt(7.0) / std::sqrt(3.0);
  EXPECT_NEAR(d2.low, 3 - q2 * se2, 1e-10);
  EXPECT_NEAR(d2.high, 3 + q2 * se2, 1e-10);
  EXPECT_NEAR(d2.p, p_df2(3 / se2), 1e-13);

  // 1 degree of freedom (two users): the quantile is tan(0.475π) = 12.706 at 95%, and at 90%
  // tan(0.45π).
  const PairedDifference d1 = paired_difference({0.2, 0.4}, {0.5, 0.6});  // differences 0.3, 0.2
  const double se1 = std::sqrt(0.005) / std::sqrt(2.0);
  EXPECT_NEAR(d1.mean, 0.25, 1e-15);
  EXPECT_NEAR(d1.p, p_df1(0.25 / se1), 1e-12);
  EXPECT_NEAR(d1.high, 0.25 + std::tan(0.475 * kPi) * se1, 1e-10);
  const PairedDifference d90 = paired_difference({0.2, 0.4}, {0.5, 0.6}, 0.90);
  EXPECT_NEAR(d90.high, 0.25 + std::tan(0.45 * kPi) * se1, 1e-10);
}

TEST(PairedDifference, ManyUsersApproachTheNormalQuantile) {
  // 100,001 users whose differences are -1 and +1 alternately, plus 0.01: mean 0.01 (up to the
  // one extra +1), sd ≈ 1; the quantile at 95% tends to 1.959964 as the degrees of freedom grow.
  std::vector<double> a, b;
  for (int u = 0; u < 100000; ++u) {
    a.push_back(0);
    b.push_back((u % 2 ? 1.0 : -1.0) + 0.01);
  }
  const PairedDifference d = paired_difference(a, b);
  const double se = d.sd / std::sqrt(100000.0);
  EXPECT_NEAR(d.mean, 0.01, 1e-12);
  // Cornish-Fisher: t(0.975, ν) = z + (z³ + z) / (4ν) + O(1/ν²), z = 1.959964 (1.9599877).
  const double z = 1.959963984540054, nu = 99999;
  EXPECT_NEAR((d.high - d.mean) / se, z + (z * z * z + z) / (4 * nu), 1e-8);
  // t ≈ 3.16: the two-sided normal tail erfc(t/√2) ≈ 0.0016, which the t tail exceeds by a
  // relative O((t⁴ + ...)/(4ν)) ≈ 3e-4.
  const double normal = std::erfc(d.t / std::sqrt(2.0));
  EXPECT_GT(d.p, normal);
  EXPECT_NEAR(d.p, normal, 1e-3 * normal);
}

TEST(PairedDifference, EqualDifferencesAndRefusals) {
  const PairedDifference same = paired_difference({0.1, 0.5, 0.9}, {0.1, 0.5, 0.9});
  EXPECT_EQ(same.mean, 0);
  EXPECT_EQ(same.sd, 0);
  EXPECT_EQ(same.p, 1);
  EXPECT_EQ(same.t, 0);
  EXPECT_EQ(same.low, 0);
  EXPECT_EQ(same.high, 0);
  const PairedDifference shifted = paired_difference({0, 0.25, 0.5}, {0.5, 0.75, 1.0});
  EXPECT_EQ(shifted.mean, 0.5);
  EXPECT_EQ(shifted.p, 0);
  EXPECT_EQ(shifted.t, std::numeric_limits<double>::infinity());
  EXPECT_EQ(shifted.low, 0.5);
  EXPECT_EQ(shifted.high, 0.5);
  EXPECT_THROW(paired_difference({1, 2}, {1, 2, 3}), Error);
  EXPECT_THROW(paired_difference({1}, {2}), Error);
  EXPECT_THROW(paired_difference({}, {}), Error);
  EXPECT_THROW(paired_difference({1, 2}, {2, 4}, 1.0), Error);
  EXPECT_THROW(paired_difference({1, 2}, {2, 4}, 0.0), Error);
  EXPECT_THROW(paired_difference({1, 2}, {2, 4}, std::nan("")), Error);
}

TEST(HolmAdjust, StepsDownInTheOrderGiven) {
  // Sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1, raised to 0.06).
  EXPECT_EQ(holm_adjust({0.01, 0.04, 0.03, 0.005}),
            (std::vector<double>{3 * 0.01, 2 * 0.03, 2 * 0.03, 4 * 0.005}));
  EXPECT_EQ(holm_adjust({0.5, 0.2}), (std::vector<double>{0.5, 2 * 0.2}));
  EXPECT_EQ(holm_adjust({0.9, 0.6}), (std::vector<double>{1.0, 1.0}));  // capped at 1
  EXPECT_EQ(holm_adjust({0.02}), (std::vector<double>{0.02}));
  EXPECT_TRUE(holm_adjust({}).empty());
}

}  // namespace
}  // namespace recforge::eval
