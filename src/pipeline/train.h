#pragma once
/// @file train.h
/// `recforge train`: one run from a validated config to a complete run directory.

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "config/config.h"
#include "data/exclusion.h"

namespace recforge::pipeline {

struct Dataset;  // pipeline/dataset.h

/// What a caller (a sweep) can add to a run; the defaults change nothing.
struct TrainOptions {
  /// Called after each validation evaluation during training (model.eval_every > 0) with the
  /// iteration and the validation metrics (eval::Metrics::to_json), unless model.patience
  /// stopped training first. Returning false before the last iteration stops training there:
  /// the run completes with the factors of that iteration (the best ones with model.patience),
  /// and its last history entry has "stopped_early": true.
  std::function<bool(int iteration, const nlohmann::json& validation)> on_validation;
  /// Called once when training continues from a checkpoint (train.checkpoint_every), before
  /// the next iteration, with the iteration reached and the history of the iterations before
  /// it (as run.json keeps it), whose validations on_validation saw in the earlier process.
  std::function<void(int iteration, const nlohmann::json& history)> on_resume;
  /// Users to exclude from the data besides those of privacy.opt_out (whose ids are hashed with
  /// this exclusion's salt): what `recforge forget` passes (pipeline::prepare_dataset).
  std::shared_ptr<const data::UserExclusion> exclusion;
  /// Called once the data is prepared, with the dataset and run.json's object being built, to
  /// which it may add fields.
  std::function<void(const Dataset& data, nlohmann::json& run)> on_dataset;
  /// Asked before the data is prepared, before each iteration and before the results are
  /// written: returning true stops train with Interrupted, and the staged run directory is
  /// removed (a checkpoint already written is kept, as after a kill). The Python package's
  /// Ctrl-C (it checks for a pending signal here).
  std::function<bool()> interrupted;
  /// What set export.out, named in the advice of an error about that directory ("export.out";
  /// `recforge forget` gives "--export").
  std::string export_out_option = "export.out";
};

/// What train throws when TrainOptions::interrupted asked it to stop.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("training was interrupted") {}
};

/// Runs the pipeline and returns the final run directory. The directory holds config.yaml
/// (fully resolved), log.txt, stats.json (dataset statistics) and run.json (timings, versions;
/// "excluded_users" when users were excluded from the data: the salt and the hashes of those
/// that occurred, never a raw id), and appears only once everything succeeded. With a checkpoint of the run (pipeline/
/// checkpoint.h) training continues from it, or stops with an error when it was written with
/// other settings or data; the checkpoint is removed once the run directory is in place.
std::string train(const config::Config& cfg, const TrainOptions& options = {});

/// The run name: run.name, else the config file's name without extension, else "run".
std::string run_name(const config::Config& cfg);

}  // namespace recforge::pipeline
