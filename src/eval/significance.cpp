#include "eval/significance.h"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace recforge::eval {

PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b,
                                   double level) {
  if (a.size() != b.size())
    fail("paired test: {} values against {}; expected one per user in both", a.size(), b.size());
  if (a.size() < 2)
    fail("paired test: {} user(s); expected at least 2 users with a held-out item", a.size());
  if (!(level > 0 && level < 1))
    fail("paired test: confidence level {}; expected a value in (0, 1)", level);
  PairedDifference d;
  d.n = static_cast<int64_t>(a.size());
  const double n = static_cast<double>(d.n);
  double sum = 0;
  for (size_t u = 0; u < a.size(); ++u) sum += b[u] - a[u];
  d.mean = sum / n;
  double ss = 0;
  for (size_t u = 0; u < a.size(); ++u) {
    const double e = (b[u] - a[u]) - d.mean;
    ss += e * e;
  }
  d.sd = std::sqrt(ss / (n - 1));
  const double se = d.sd / std::sqrt(n);
  if (se == 0) {
    d.low = d.high = d.mean;
    d.t = d.mean == 0 ? 0 : std::copysign(std::numeric_limits<double>::infinity(), d.mean);
    d.p = d.mean == 0 ? 1 : 0;
    return d;
  }
  const boost::math::students_t dist(n - 1);
  const double q = boost::math::quantile(boost::math::complement(dist, (1 - level) / 2));
  d.low = d.mean - q * se;
  d.high = d.mean + q * se;
  d.t = d.mean / se;
  d.p = std::min(1.0, 2 * boost::math::cdf(boost::math::complement(dist, std::fabs(d.t))));
  return d;
}

std::vector<double> holm_adjust(const std::vector<double>& p) {
  const size_t m = p.size();
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] < p[y]; });
  std::vector<double> out(m);
  double running = 0;
  for (size_t j = 0; j < m; ++j) {
    running = std::max(running, std::min(1.0, static_cast<double>(m - j) * p[order[j]]));
    out[order[j]] = running;
  }
  return out;
}

}  // namespace recforge::eval
