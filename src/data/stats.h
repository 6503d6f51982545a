#pragma once
/// @file stats.h
/// Dataset statistics written into every run directory (stats.json).

#include <nlohmann/json.hpp>

#include "data/interactions.h"

namespace recforge::data {

/// Summary of one interaction set over n_users × n_items: counts, density, per-user activity and
/// per-item popularity quantiles (over users/items with at least one interaction), the share of
/// interactions held by the most popular 1% and 10% of items, the Gini index of item popularity,
/// weight quantiles and the time range.
nlohmann::json interaction_stats(const Interactions& x, int64_t n_users, int64_t n_items);

/// Min, p25, p50, p75, p90, p99, max and mean of `values` (sorted in place).
nlohmann::json quantiles(std::vector<double>& values);

}  // namespace recforge::data
