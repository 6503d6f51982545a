#pragma once
/// @file checkpoint.h
/// Checkpoints of a training run (`train.checkpoint_every`): what a run killed mid-training
/// needs to continue exactly where it stopped. A checkpoint lives beside the run directory, at
/// `<run.dir>/.<name>.checkpoint/` (outside the run's staging directory, which a crashed run
/// leaves behind), is replaced atomically (arrays in a new subdirectory, then checkpoint.json
/// renamed into place, each synced to disk), and is removed when the run completes.

#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "core/npy.h"
#include "models/model.h"

namespace recforge::pipeline {

/// The training loop's own progress (pipeline::train's fit): the per-iteration history and
/// the best-so-far state of validation with model.patience.
struct FitProgress {
  nlohmann::json history = nlohmann::json::array();  ///< run.json's "history" so far
  double best = -1;                                  ///< best validation value so far
  int best_iter = 0;                                 ///< its iteration (0: none yet)
  int64_t since_best = 0;                            ///< evaluations since it
  Matrix best_users, best_items;                     ///< its factors (model.patience only)
};

/// Everything a checkpoint holds.
struct Checkpoint {
  int iteration = 0;              ///< iterations done
  int iterations = 0;             ///< iterations the run trains in all
  std::string model_type;         ///< Model::type()
  std::string config_hash;        ///< config_hash() of the run's config
  nlohmann::json config;          ///< checkpoint_config() of the run's config
  std::string config_yaml;        ///< the run's resolved config (what `train --resume` loads)
  nlohmann::json config_origins;  ///< its Config::origins() (null in older checkpoints)
  std::string data_fingerprint;   ///< pipeline::Dataset::fingerprint() of the run's data
  std::string data_values;        ///< its Dataset::values_digest() (empty in older checkpoints)
  Matrix users, items;            ///< the factors after `iteration` iterations
  models::TrainingState model;    ///< Model::training_state() then
  FitProgress fit;                ///< the training loop's progress then
  /// What the factors started from: "random", or {export, version, created} of model.init_from
  /// (null in checkpoints of earlier builds).
  nlohmann::json start;
};

/// `<run_dir>/.<name>.checkpoint`: where the checkpoint of run `<run_dir>/<name>` lives.
std::string checkpoint_dir(const std::string& run_dir, const std::string& name);

/// The checkpoint directory of the run `cfg` describes (run.dir, pipeline::run_name).
std::string checkpoint_dir(const config::Config& cfg);

/// The config values that decide what training computes, by path ("model.factors": 64, ...):
/// every parameter except the run's name, directory and logging, train.threads,
/// train.checkpoint_every, the data cache, eval.test and the index and export sections.
nlohmann::json checkpoint_config(const config::Config& cfg);

/// SHA-256 of checkpoint_config(cfg).
std::string config_hash(const config::Config& cfg);

/// Whether `dir` holds a checkpoint (its checkpoint.json).
bool has_checkpoint(const std::string& dir);

/// Writes `c` to `dir` (created when missing), replacing the checkpoint there atomically: a
/// kill at any moment leaves the old checkpoint or the new one, whole. Throws recforge::Error
/// naming the path when the disk refuses.
void write_checkpoint(const std::string& dir, const Checkpoint& c);

/// checkpoint.json of the checkpoint in `dir` (no arrays). Throws recforge::Error naming the
/// file when it is missing or unreadable.
nlohmann::json read_checkpoint_json(const std::string& dir);

/// The whole checkpoint in `dir`. Throws recforge::Error naming the file when it is missing or
/// damaged.
Checkpoint read_checkpoint(const std::string& dir);

/// Throws recforge::Error "DIR: the checkpoint is damaged (WHAT); remove DIR to start the run
/// over": the one sentence for every damage found in a checkpoint.
[[noreturn]] void checkpoint_damaged(const std::string& dir, const std::string& what);

/// Throws recforge::Error, one sentence naming the first differing config key (or the data
/// fingerprint, or its weights and timestamps), when checkpoint `c` in `dir` was not written by
/// a run of `cfg` on data with `fingerprint` and values digest `values` (not compared when the
/// checkpoint has none); the checkpoint is left in place.
void check_checkpoint(const Checkpoint& c, const config::Config& cfg, const std::string& fingerprint,
                      const std::string& values, const std::string& dir);

/// Removes the checkpoint directory `dir` (nothing when absent); a failure is logged as a
/// warning, since the run it belonged to is complete.
void remove_checkpoint(const std::string& dir);

}  // namespace recforge::pipeline
