/// @file search.cpp
/// Grid and random expansion of a search space; median and halving stopping rules.

#include "sweep/search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace recforge::sweep {
namespace {

constexpr uint64_t kMaxGrid = 1000000;

/// Number of points of the space when every dimension is finite (0 when one is continuous or
/// the product exceeds kMaxGrid + 1).
uint64_t finite_size(const SweepSpec& spec) {
  uint64_t n = 1;
  for (const Dimension& d : spec.space) {
    uint64_t k = 0;
    if (d.kind == Dimension::Kind::kValues)
      k = d.values.size();
    else if (d.kind == Dimension::Kind::kIntRange)
      k = static_cast<uint64_t>(d.high - d.low) + 1;
    else
      return 0;
    if (n > (kMaxGrid + 1) / k + 1) return kMaxGrid + 1;
    n = std::min<uint64_t>(n * k, kMaxGrid + 1);
  }
  return n;
}

/// Point number `index` of the grid (mixed radix, first dimension slowest).
Point grid_point(const std::vector<std::vector<nlohmann::json>>& axes, uint64_t index) {
  Point p(axes.size());
  for (size_t i = axes.size(); i-- > 0;) {
    p[i] = axes[i][index % axes[i].size()];
    index /= axes[i].size();
  }
  return p;
}

/// Seeded Fisher-Yates order of 0..n-1.
std::vector<uint64_t> shuffled(uint64_t n, uint64_t seed) {
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (uint64_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

nlohmann::json draw(const Dimension& d, Rng& rng) {
  switch (d.kind) {
    case Dimension::Kind::kValues:
      return d.values[rng.below(d.values.size())];
    case Dimension::Kind::kIntRange: {
      const int64_t v = static_cast<int64_t>(d.low) +
                        static_cast<int64_t>(rng.below(static_cast<uint64_t>(d.high - d.low) + 1));
      return d.type == config::Type::kFloat ? nlohmann::json(static_cast<double>(v))
                                            : nlohmann::json(v);
    }
    case Dimension::Kind::kUniform:
    case Dimension::Kind::kLogUniform: {
      const double u = rng.uniform();
      double v = d.kind == Dimension::Kind::kUniform
                     ? d.low + (d.high - d.low) * u
                     : std::exp(std::log(d.low) + (std::log(d.high) - std::log(d.low)) * u);
      if (d.type == config::Type::kInt) {
        const double lo = std::ceil(d.low), hi = std::floor(d.high);
        return static_cast<int64_t>(std::clamp(std::round(v), lo, hi));
      }
      v = std::stod(fmt::format("{:.4g}", v));  // readable values in tables and configs
      return std::clamp(v, d.low, d.high);
    }
  }
  return nullptr;
}

bool better(double a, double b, bool maximize) { return maximize ? a > b : a < b; }

/// Best value of `c` over points with iteration <= t; false when there is none.
bool best_up_to(const Curve& c, int t, bool maximize, double* out) {
  bool any = false;
  for (const auto& [it, v] : c) {
    if (it > t) break;
    if (!any || better(v, *out, maximize)) *out = v;
    any = true;
  }
  return any;
}

}  // namespace

std::vector<Point> expand(const SweepSpec& spec) {
  const uint64_t size = finite_size(spec);
  const uint64_t budget = spec.trials > 0 ? static_cast<uint64_t>(spec.trials) : 0;
  std::vector<std::vector<nlohmann::json>> axes;
  for (const Dimension& d : spec.space) axes.push_back(d.enumerate());
  std::vector<Point> out;
  if (spec.search == Search::kList) {  // the listed trials in order, cut to the budget
    const size_t n = budget > 0 ? std::min<size_t>(budget, spec.points.size()) : spec.points.size();
    return std::vector<Point>(spec.points.begin(), spec.points.begin() + static_cast<long>(n));
  }
  if (spec.search == Search::kGrid) {
    if (size > kMaxGrid)
      fail("{}: space: the grid has more than {} points; use search: random with a trials: budget",
           spec.file, kMaxGrid);
    if (budget == 0 || budget >= size) {
      for (uint64_t i = 0; i < size; ++i) out.push_back(grid_point(axes, i));
    } else {
      const std::vector<uint64_t> order = shuffled(size, spec.seed);
      for (uint64_t i = 0; i < budget; ++i) out.push_back(grid_point(axes, order[i]));
    }
    return out;
  }
  if (size > 0 && size <= budget) {  // a finite space no larger than the budget: each point once
    for (uint64_t i : shuffled(size, spec.seed)) out.push_back(grid_point(axes, i));
    return out;
  }
  Rng rng(spec.seed);
  for (uint64_t t = 0; t < budget; ++t) {
    Point p;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      p.clear();
      for (const Dimension& d : spec.space) p.push_back(draw(d, rng));
      if (std::none_of(out.begin(), out.end(), [&](const Point& q) {
            return nlohmann::json(q).dump() == nlohmann::json(p).dump();
          }))
        break;
    }
    out.push_back(std::move(p));
  }
  return out;
}

bool median_stop(const Curve& trial, const std::vector<Curve>& finished, const EarlyStop& rule,
                 bool maximize) {
  if (trial.empty()) return false;
  const int t = trial.back().first;
  if (t < rule.grace) return false;
  double mine = 0;
  best_up_to(trial, t, maximize, &mine);
  std::vector<double> others;
  for (const Curve& c : finished) {
    double v = 0;
    if (best_up_to(c, t, maximize, &v)) others.push_back(v);
  }
  if (others.empty() || static_cast<int64_t>(others.size()) < rule.min_trials) return false;
  std::sort(others.begin(), others.end());
  const size_t n = others.size();
  const double median = n % 2 ? others[n / 2] : 0.5 * (others[n / 2 - 1] + others[n / 2]);
  return better(median, mine, maximize);
}

bool halving_stop(const Curve& trial, const std::vector<Curve>& others, const EarlyStop& rule,
                  int64_t eval_every, bool maximize) {
  if (trial.empty()) return false;
  const int64_t r0 = rule.grace > 0 ? rule.grace : std::max<int64_t>(1, eval_every);
  const int t = trial.back().first;
  const int prev = trial.size() > 1 ? trial[trial.size() - 2].first : 0;
  const double mine = trial.back().second;
  for (int64_t rung = r0; rung <= t; rung *= rule.eta) {
    if (rung <= prev) continue;  // reached at an earlier point
    std::vector<double> there;
    for (const Curve& c : others) {
      const auto it = std::find_if(
          c.begin(), c.end(), [&](const std::pair<int, double>& p) { return p.first >= rung; });
      if (it != c.end()) there.push_back(it->second);
    }
    if (static_cast<int64_t>(there.size()) < rule.min_trials || there.empty()) continue;
    const int64_t n = static_cast<int64_t>(there.size()) + 1;
    const int64_t keep = (n + rule.eta - 1) / rule.eta;
    const int64_t ahead = std::count_if(there.begin(), there.end(),
                                        [&](double v) { return better(v, mine, maximize); });
    if (ahead >= keep) return true;
  }
  return false;
}

}  // namespace recforge::sweep
