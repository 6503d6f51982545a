#pragma once
/// @file evaluate.h
/// Evaluation of a trained model on a held-out part of a Dataset: exact top-k over all items
/// with the user's known items masked, then metrics at several cutoffs.

#include <vector>

#include "eval/metrics.h"
#include "models/model.h"
#include "pipeline/dataset.h"

namespace recforge::pipeline {

/// Which held-out part to score.
enum class Part { kValidation, kTest };

/// "validation" or "test".
const char* part_name(Part p);

/// Metrics of `model` on `part`. Users with at least one held-out item are ranked against all
/// items. Masked: the training items, and for the test part the validation items too. For the
/// held-out-user split, each user's factors are folded in from their fold-in interactions, which
/// are masked instead. Returns metrics with users == 0 when the part is empty.
eval::Metrics evaluate(const models::Model& model, const Dataset& data, Part part,
                       const std::vector<int>& ks);

/// The cutoffs of `eval.ks` as ints.
std::vector<int> eval_ks(const config::Config& cfg);

}  // namespace recforge::pipeline
