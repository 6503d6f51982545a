#pragma once
/// @file fold_in_model.h
/// The one place where src/recommend builds a model from saved configuration: the "fold_in"
/// section of an export's manifest (the run's `model` and `weighting` config sections, its
/// run.seed and train.threads) becomes a CPU model holding the export's item factors, and the
/// weighting that training used. Kept apart so that changes to the config types touch only
/// fold_in_model.cpp.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/npy.h"
#include "data/weight.h"
#include "models/model.h"

namespace recforge::recommend {

/// A model able to fold in, and how raw weights become its confidences.
struct FoldInSetup {
  std::unique_ptr<models::Model> model;  ///< CPU model with the item factors set
  data::WeightOptions weighting;         ///< training's weighting section
};

/// Builds the fold-in model of an export from its manifest's "fold_in" section and its item
/// factors (moved into the model), on the CPU in float32 whatever device trained it.
/// `where` names the manifest in errors. Throws recforge::Error.
FoldInSetup fold_in_setup(const nlohmann::json& section, Matrix items, const std::string& where);

}  // namespace recforge::recommend
