#pragma once
/// @file significance.h
/// Paired comparison of two models on the same users: the mean difference of a per-user metric,
/// its confidence interval and a two-sided paired t-test (docs/sweeps.md, "Paired test").

#include <cstdint>
#include <vector>

namespace recforge::eval {

/// The difference b − a of two per-user values over n users.
struct PairedDifference {
  int64_t n = 0;      ///< users
  double mean = 0;    ///< mean of b[u] − a[u]
  double sd = 0;      ///< sample standard deviation (n − 1) of the differences
  double low = 0;     ///< confidence interval of the mean difference: mean ± t · sd / √n,
  double high = 0;    ///< t the two-sided quantile of Student's t with n − 1 degrees of freedom
  double t = 0;       ///< mean / (sd / √n); ±infinity when sd is 0 and mean is not
  double p = 1;       ///< two-sided p-value of t under n − 1 degrees of freedom
};

/// The paired difference of `b` and `a` (one value per user, the same users in the same order)
/// at confidence `level` (in (0, 1)). Sums in double, the deviations from the mean in a second
/// pass. When every difference is equal, sd is 0: p is 1 when they are all 0 (the interval is
/// [0, 0]), else 0 (the interval is the mean). Throws recforge::Error when the lengths differ, n
/// is below 2 or the level is outside (0, 1).
PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b,
                                   double level = 0.95);

/// Holm's step-down adjustment of p-values for a family of tests (each adjusted value is the
/// largest of (m − j) · p_(j) over the j-th smallest p-values up to its own, capped at 1), in the
/// order given.
std::vector<double> holm_adjust(const std::vector<double>& p);

}  // namespace recforge::eval
