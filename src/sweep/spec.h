#pragma once
/// @file spec.h
/// The sweep file (docs/sweeps.md): a base config, a search space over declared parameters, the
/// search, the budget, the validation metric and the early-stopping rule. Everything is checked
/// when the file is read, before any trial runs; errors name file:line:column.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"

namespace recforge::sweep {

/// One parameter of the search space and how its values are chosen.
struct Dimension {
  /// How values are chosen.
  enum class Kind {
    kValues,      ///< a list (`[64, 128]`) or `{choice: [...]}`: each value as given
    kUniform,     ///< `{uniform: [a, b]}`
    kLogUniform,  ///< `{log_uniform: [a, b]}`, 0 < a
    kIntRange,    ///< `{int_range: [a, b]}`: every integer of [a, b]
  };
  std::string path;                    ///< declared parameter, e.g. "model.factors"
  config::Type type;                   ///< the parameter's type
  Kind kind = Kind::kValues;           ///< how values are chosen
  std::vector<nlohmann::json> values;  ///< kValues: validated, typed values (null = unset)
  double low = 0;                      ///< kUniform, kLogUniform, kIntRange: lower bound
  double high = 0;                     ///< upper bound (>= low)
  std::string where;                   ///< "file:line:col" of the key, for messages
  /// Values of a kValues or kIntRange dimension, in order (kIntRange: low..high).
  std::vector<nlohmann::json> enumerate() const;
  /// Canonical description for the sweep's hash ({"path", "values"} or {"path", "kind", "low",
  /// "high"}).
  nlohmann::json to_json() const;
};

/// Early stopping of trials on the per-iteration validation metric.
struct EarlyStop {
  /// The rule.
  enum class Rule {
    kNone,     ///< every trial runs all its iterations
    kMedian,   ///< median stopping rule
    kHalving,  ///< asynchronous successive halving
  };
  Rule rule = Rule::kNone;  ///< the rule
  int64_t min_trials = 3;   ///< trials needed at an iteration/rung before any stop there
  int64_t eta = 3;          ///< halving: a trial reaching a rung goes on if in the best 1/eta
  int64_t grace = 0;  ///< no stop before this iteration; halving: its first rung (0: eval_every)
  /// "none", "median" or "halving".
  std::string name() const;
  /// Canonical description for the sweep's hash.
  nlohmann::json to_json() const;
};

/// Search strategy.
enum class Search {
  kGrid,    ///< every combination of the space
  kRandom,  ///< seeded random draws from the space
  kList,    ///< the trials listed under `points:`, in order
};

/// "grid", "random" or "list".
const char* search_name(Search s);

/// What a trial's score is, and so what iteration count best.yaml trains.
enum class Score {
  kFinal,          ///< the validation metric of the trial's final model
  kBestIteration,  ///< its best per-iteration value; best.yaml trains that many iterations
};

/// The most values `seeds:` may list.
constexpr size_t kMaxSeeds = 20;

/// A validated sweep file.
struct SweepSpec {
  std::string file;                                  ///< the sweep file, as given
  config::Config base = config::Config::defaults();  ///< resolved base config (+ --set)
  std::string base_where;                            ///< location of `base:`
  /// Grid and random: the space in file order. List: one kValues dimension per parameter
  /// named by any point (in order of first appearance), holding the distinct values listed.
  std::vector<Dimension> space;
  /// List search: each trial's values, parallel to `space` (a parameter a point does not name
  /// has the base config's value).
  std::vector<std::vector<nlohmann::json>> points;
  Search search = Search::kGrid;  ///< grid, random or list
  Score score = Score::kFinal;    ///< final or best_iteration
  int64_t trials = 0;             ///< budget; 0: none (grid only)
  uint64_t seed = 0;              ///< seed of random search and capped grids
  std::string metric;             ///< validation metric NAME@K
  bool maximize = true;           ///< direction
  EarlyStop early_stop;           ///< early stopping of trials
  std::string out;                ///< sweep directory
  /// `seeds:`: each trial trains once per model.seed listed (distinct, >= 0, at most
  /// kMaxSeeds) and is scored by the mean over them; empty: one run with the config's seed.
  std::vector<int64_t> seeds;
  std::string seeds_where;  ///< location of `seeds:`, for messages
  /// What determines the trials and their scores (base, space, search, trials, seed, metric,
  /// direction, early_stop; points, score and seeds when not the defaults), as stored in sweep.json
  /// and compared on resume; the base's run.log_level and run.progress are left out (they change no
  /// result).
  nlohmann::json definition() const;
};

/// Reads and validates a sweep file; `sets` are `--set` overrides of the base config.
/// Throws recforge::Error naming file:line:col and what was expected.
SweepSpec load_sweep(const std::string& path, const std::vector<std::string>& sets = {});

/// Same from text; `name` is the file name used in messages and to resolve a relative `base:`.
SweepSpec parse_sweep(const std::string& text, const std::string& name,
                      const std::vector<std::string>& sets = {});

/// Text of a typed value for `--set`-style assignment (YAML flow: numbers, true/false, quoted
/// strings, [lists], empty for null).
std::string value_text(const nlohmann::json& v);

/// A value as shown in tables: strings unquoted, numbers shortest, lists "[a, b]", "unset".
std::string value_label(const nlohmann::json& v);

/// The config of one trial: base, the point's values, and what a sweep trial needs
/// (eval.test false, eval.metric = the sweep metric, no export, run directory `name` in `dir`,
/// `threads` CPU threads when > 0).
config::Config trial_config(const SweepSpec& spec, const std::vector<nlohmann::json>& point,
                            const std::string& dir, const std::string& name, int threads);

/// The config written to best.yaml: the trial's config with eval.test true and the run
/// settings, threads and export settings of the base (run.name: `<base name or sweep>-best`);
/// `iterations` > 0 sets model.iterations (the best iteration under `score: best_iteration`);
/// with `seeds:`, model.seed is the first seed.
config::Config best_config(const SweepSpec& spec, const std::vector<nlohmann::json>& point,
                           int64_t iterations = 0);

}  // namespace recforge::sweep
