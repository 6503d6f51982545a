#pragma once
/// @file search.h
/// From a search space to the list of trials (grid or seeded random search), and the
/// early-stopping rules that judge a running trial on its per-iteration validation metric.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "sweep/spec.h"

namespace recforge::sweep {

/// One trial's parameter values, parallel to SweepSpec::space.
using Point = std::vector<nlohmann::json>;

/// The trials of a sweep, in the order they run. Grid: every combination, the first dimension
/// varying slowest; with `trials` below the grid's size, a seeded shuffle of the grid cut to
/// `trials`. Random: `trials` points drawn from Rng(seed), one after another, so that the first
/// n points do not depend on the budget; a point equal to an earlier one is drawn again; when the
/// space is finite and not larger than the budget, each point is tried once (seeded order).
/// Continuous values are rounded to 4 significant digits (integers to the nearest integer).
/// List: the points as listed, the first `trials` of them when a budget is given.
/// Throws recforge::Error when a grid has more than a million points.
std::vector<Point> expand(const SweepSpec& spec);

/// A trial's validation metric at each evaluated iteration, in increasing iteration order.
using Curve = std::vector<std::pair<int, double>>;

/// Median stopping rule: true when the trial's best value so far (at its last point, iteration
/// t >= grace) is worse than the median, over the `finished` trials that have a value at or
/// before t (at least min_trials of them), of their best value up to t.
bool median_stop(const Curve& trial, const std::vector<Curve>& finished, const EarlyStop& rule,
                 bool maximize);

/// Asynchronous successive halving: rungs at iterations r0 * eta^k (r0 = grace, or `eval_every`
/// when grace is 0); a trial's value at a rung is its first value at or after the rung's
/// iteration. When the trial's last point is the one that reaches a rung and at least
/// min_trials `others` reached it too, the trial goes on only if its value is among the best
/// ceil(n / eta) of the n values there (itself included). True means stop.
bool halving_stop(const Curve& trial, const std::vector<Curve>& others, const EarlyStop& rule,
                  int64_t eval_every, bool maximize);

}  // namespace recforge::sweep
