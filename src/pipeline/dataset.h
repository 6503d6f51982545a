#pragma once
/// @file dataset.h
/// From a validated config to model-ready data: load (file or synthetic), clean, split,
/// weight, and build the user×item CSR and its transpose.

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/csr.h"
#include "data/load.h"
#include "data/split.h"
#include "data/synthetic.h"
#include "data/weight.h"

namespace recforge::pipeline {

/// Everything a model needs from the data side of a run.
struct Dataset {
  data::IdMap users, items;            ///< external ↔ dense ids (shared by all parts)
  data::Split split;                   ///< train / validation / test (and fold-in parts)
  data::LoadReport load_report;        ///< what loading did (lines, skips, filters, cache)
  data::WeightOptions weighting;       ///< how confidences were computed (for fold-in rows)
  std::vector<float> confidence;       ///< confidence of each training interaction
  data::Csr user_items;                ///< train users × items, values = confidence
  data::Csr item_users;                ///< its transpose
  /// Dataset statistics (stats.json): counts, density, quantiles, load report.
  nlohmann::json stats() const;
  /// SHA-256 of the id maps and the split, to check that a saved run still matches its data.
  std::string fingerprint() const;
};

/// Loader options from the `data` section.
data::LoadOptions load_options(const config::Config& cfg);
/// Synthetic generator options from the `synthetic` section.
data::SyntheticOptions synthetic_options(const config::Config& cfg);
/// Split options from the `split` section (seeded by run.seed).
data::SplitOptions split_options(const config::Config& cfg);
/// Weighting options from the `weighting` section.
data::WeightOptions weight_options(const config::Config& cfg);

/// Checks `cfg` (config::check), then loads (or generates), cleans, splits, weights and builds
/// the matrices.
Dataset prepare_dataset(const config::Config& cfg);

}  // namespace recforge::pipeline
