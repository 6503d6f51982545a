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

/// One seed's run of a trial (sweeps with `seeds:`), in OUT/trial-NNN/seed-S.
struct SeedRun {
  int64_t seed = 0;             ///< its model.seed
  std::string status;           ///< finished, stopped_early or failed
  nlohmann::json validation;    ///< its final validation metrics (null when failed)
  std::optional<double> score;  ///< its score: its final metric, or its value at the trial's
                                ///< best iteration under `score: best_iteration`
  Curve curve;                  ///< its validation metric per evaluated iteration
  int iterations = 0;           ///< iterations trained
  double seconds = 0;           ///< wall time
  std::string error;            ///< why it failed
  /// As stored in sweep.json.
  nlohmann::json to_json() const;
  /// From sweep.json.
  static SeedRun from_json(const nlohmann::json& j);
};

/// One trial's record in sweep.json and the results tables. With `seeds:`, `validation`,
/// `score` and `curve` are the means over the seed runs (`seed_runs`), and `score_std` their
/// sample standard deviation.
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
  /// `seeds:`: the seed runs so far, in the order of the sweep's seeds (a stopped or failed
  /// seed ends the trial, so later seeds have no entry).
  std::vector<SeedRun> seed_runs;
  /// `seeds:`: sample standard deviation (n - 1) of the seed runs' scores (two or more).
  std::optional<double> score_std;
  /// As stored in sweep.json (`seeds`, `seed_scores` and `score_std` only with seed runs).
  nlohmann::json to_json() const;
  /// From sweep.json.
  static TrialRecord from_json(const nlohmann::json& j);
};

/// The mean over seed runs, point by point at the iterations of the last curve in `curves`
/// (earlier curves, finished seeds, cover it); a curve without a point there is left out of
/// that point's mean. Values are summed in the order of `curves`.
Curve mean_curve(const std::vector<const Curve*>& curves);

/// Sample standard deviation (n - 1) of `values`; nullopt below two values.
std::optional<double> sample_std(const std::vector<double>& values);

/// "0.1234 ± 0.0056" with `decimals` places (the std left out when there is none).
std::string mean_std_text(double mean, const std::optional<double>& std, int decimals = 4);

/// The mean of each numeric metric over `metrics` (objects as in metrics.json; non-numeric
/// entries are taken from the first); null when `metrics` is empty. With `std`, the sample
/// standard deviation of each numeric metric instead (null values below two).
nlohmann::json mean_metrics(const std::vector<nlohmann::json>& metrics, bool std = false);

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
