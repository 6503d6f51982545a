#pragma once
/// @file compare.h
/// `recforge compare`: runs side by side (the config keys that differ, and the metrics) and
/// their metric-per-iteration curves as CSV for tools/plot/plot_curves.py.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "eval/significance.h"

namespace recforge::sweep {

/// One run directory, read for comparison.
struct RunInfo {
  std::string dir;                                     ///< as given
  std::string label;                                   ///< column title (directory name)
  config::Config config = config::Config::defaults();  ///< its config.yaml
  nlohmann::json run;                                  ///< its run.json
  nlohmann::json metrics;                              ///< its metrics.json (null when absent)
};

/// Reads run directories; labels are the directory names, or the paths as given when two names
/// are equal. Throws recforge::Error naming a directory that is not a finished run.
std::vector<RunInfo> read_runs(const std::vector<std::string>& dirs);

/// Runs that are one experiment under different seeds: their configs are equal but for
/// model.seed and the keys that only name or show a run (run.name, run.dir, run.exists,
/// run.log_level, run.progress). Groups of indices into `runs`, each in the order given, the
/// groups in the order of their first run.
std::vector<std::vector<size_t>> seed_groups(const std::vector<RunInfo>& runs);

/// The comparison table: rows of (name, one cell per column). A column is one run, or a group
/// of seed runs whose numbers are "mean ± sample standard deviation (n - 1)" over its runs.
struct Comparison {
  std::vector<std::string> labels;  ///< one per column
  /// The run directories of each column (one unless it groups seed runs).
  std::vector<std::vector<std::string>> members;
  /// Config keys whose values differ between the columns or within one (run.name excluded: the
  /// column titles name the runs), in the order of the parameter table; a cell lists a group's
  /// distinct values, comma-separated.
  std::vector<std::pair<std::string, std::vector<std::string>>> config;
  /// Training summary rows (iterations, seconds, best validation iteration).
  std::vector<std::pair<std::string, std::vector<std::string>>> training;
  /// "validation NAME@K" / "test NAME@K" rows, for every metric any run has.
  std::vector<std::pair<std::string, std::vector<std::string>>> metrics;
};

/// Builds the comparison; `metric` (NAME@K) picks the best-iteration row. With `group_seeds`,
/// each of seed_groups() is one column; without, each run is.
Comparison compare(const std::vector<RunInfo>& runs, const std::string& metric,
                   bool group_seeds = true);

/// The comparison as an aligned text table.
std::string format_comparison(const Comparison& c);

/// The curves of every run's run.json history: run,iteration,seconds,loss and one column per
/// validation metric (empty where an iteration was not evaluated).
std::string curves_csv(const std::vector<RunInfo>& runs);

/// The paired test of `compare --paired`: every column against the first on the test users.
struct PairedComparison {
  std::vector<std::string> labels;  ///< the comparison's column titles; labels[0] is the baseline
  int64_t users = 0;                ///< the test users (those with a held-out test item)
  double level = 0.95;              ///< of the intervals
  struct Row {
    std::string metric;  ///< NAME@K
    size_t column = 0;   ///< index into labels (>= 1): this column minus the first
    eval::PairedDifference d;
    double p_holm = 1;  ///< d.p adjusted by Holm's method over every row
  };
  std::vector<Row> rows;  ///< column-major: every metric of column 1, then of column 2, ...
};

/// Reopens every run of `c`'s columns (pipeline::open_run, so each one's data is re-prepared
/// and verified), scores its test part per user at cutoffs `ks` (pipeline::evaluate_per_user),
/// and tests each column against the first (eval::paired_difference at `level`; a column of
/// seed runs contributes each user's mean over its runs). Throws recforge::Error naming the
/// run when a run has no test part, or holds out other users or items than the first (a paired
/// test needs the same data and split).
PairedComparison paired_comparison(const Comparison& c, const std::vector<int>& ks,
                                   double level = 0.95);

/// The paired test as text, one block per column.
std::string format_paired(const PairedComparison& p);

/// column,baseline,metric,users,mean_difference,ci_low,ci_high,level,t,p,p_holm; one line per row.
std::string paired_csv(const PairedComparison& p);

}  // namespace recforge::sweep
