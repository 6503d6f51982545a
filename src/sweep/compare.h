#pragma once
/// @file compare.h
/// `recforge compare`: runs side by side (the config keys that differ, and the metrics) and
/// their metric-per-iteration curves as CSV for tools/plot/plot_curves.py.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"

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

}  // namespace recforge::sweep
