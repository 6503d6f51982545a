#pragma once
/// @file sweep.h
/// `recforge sweep`: runs (or resumes) the trials of a sweep file as normal run directories in
/// the sweep directory, keeps sweep.json (the state, written atomically after every change),
/// results.csv / results.md, best.yaml and best_test_metrics.json. See docs/sweeps.md.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sweep/search.h"
#include "sweep/spec.h"

namespace recforge::sweep {

/// One trial's record in sweep.json and the results tables.
struct TrialRecord {
  int id = 0;        ///< 1-based
  std::string name;  ///< its run directory's name, "trial-001"
  Point values;      ///< parallel to SweepSpec::space
  /// pending, running, finished, stopped_early or failed.
  std::string status = "pending";
  nlohmann::json validation;    ///< final validation metrics (null until done)
  std::optional<double> score;  ///< validation value of the sweep metric
  int best_iteration = 0;       ///< iteration of the best per-iteration value (else the last)
  int iterations = 0;           ///< iterations trained
  double seconds = 0;           ///< wall time of the trial
  std::string error;            ///< why it failed
  Curve curve;                  ///< the sweep metric per evaluated iteration
  /// As stored in sweep.json.
  nlohmann::json to_json() const;
  /// From sweep.json.
  static TrialRecord from_json(const nlohmann::json& j);
};

/// How to run a sweep.
struct SweepOptions {
  /// Trials run at once, on the CPU, each with max(1, threads / parallel) threads.
  int parallel = 1;
};

/// What a finished sweep produced.
struct SweepResult {
  std::string dir;                  ///< the sweep directory
  std::vector<TrialRecord> trials;  ///< every trial
  int best = 0;                     ///< id of the best finished trial
  nlohmann::json best_test;         ///< best_test_metrics.json
};

/// Runs the sweep, or continues the one in `spec.out` (finished trials are kept; trials that
/// were running or failed run again). Refuses, before any trial runs, a sweep directory made by
/// a different definition, a base without validation data, and --parallel with a CUDA device.
/// Throws recforge::Error when no trial finished.
SweepResult run_sweep(const SweepSpec& spec, const SweepOptions& options = {});

/// results.csv: one row per trial in id order: trial, status, the parameters, every validation
/// metric, best_iteration, iterations, seconds, error.
std::string results_csv(const SweepSpec& spec, const std::vector<TrialRecord>& trials);

/// results.md: the sweep, the trials best first, the best config and its test metrics
/// (`best_test` may be null while the sweep runs).
std::string results_md(const SweepSpec& spec, const std::vector<TrialRecord>& trials,
                       const nlohmann::json& best_test);

}  // namespace recforge::sweep
