#pragma once
/// @file sections.h
/// The typed configuration: one struct per config section, gathered in Settings. Each field's
/// default is its member initializer; its path, doc text, bounds and enum names are declared
/// once, in the section's declare() (sections.cpp). The parameter table (config::params()), YAML
/// validation, `--set`, the resolved-config dump, docs/configuration.md and the sweep's
/// search-space checks are all generated from those declarations. Enum-valued fields are
/// strings restricted to the names their declaration lists.
///
/// Code outside src/config reads values from Config::settings() (e.g. `s.model.factors`), never
/// by path; pipeline/options.h turns sections into the option structs models and indices take.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace recforge::config {

/// The declaration visitor a section's declare() is given (defined in sections.cpp).
template <class S>
class Fields;

/// `run`: naming of the run, its output directory, randomness and logging.
struct RunSection {
  std::string name;
  std::string dir = "runs";
  std::string exists = "suffix";
  int64_t seed = 42;
  std::string log_level = "info";
  std::string progress = "auto";
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<RunSection>& f);
};

/// `train`: hardware used for training, and checkpoints.
struct TrainSection {
  std::string device = "auto";
  int64_t threads = 0;
  std::string gpu_streaming = "auto";
  int64_t checkpoint_every = 0;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<TrainSection>& f);
};

/// `data`: the interactions file and how it is read, combined and filtered.
struct DataSection {
  std::string format = "delimited";
  std::optional<std::string> path;
  std::optional<std::string> test_path;
  std::string delimiter = "auto";
  bool header = false;
  std::string user_col = "0";
  std::string item_col = "1";
  std::optional<std::string> weight_col;
  std::optional<std::string> time_col;
  std::string id_type = "int";
  std::string duplicates = "sum";
  double min_weight = 0;
  int64_t min_user_interactions = 1;
  int64_t min_item_interactions = 1;
  std::string on_error = "fail";
  bool cache = true;
  std::string cache_dir;
  int64_t max_age_days = 0;
  std::string max_age_from;
  std::string time_unit = "seconds";
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<DataSection>& f);
};

/// `synthetic`: the generator used when `data.format` is `synthetic`.
struct SyntheticSection {
  int64_t users = 20000;
  int64_t items = 10000;
  int64_t interactions = 1000000;
  int64_t communities = 16;
  double community_strength = 0.8;
  double popularity_exponent = 1.0;
  double activity_sigma = 1.0;
  int64_t days = 365;
  std::string weights = "counts";
  int64_t seed = 1;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<SyntheticSection>& f);
};

/// `split`: how interactions are divided into training, validation and test sets.
struct SplitSection {
  std::string method = "random";
  double test_fraction = 0.2;
  int64_t leave_k = 1;
  std::optional<int64_t> cutoff;
  double cutoff_quantile = 0.8;
  double heldout_users = 0.1;
  double validation_fraction = 0;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<SplitSection>& f);
};

/// `weighting`: how raw interaction weights become confidences.
struct WeightingSection {
  std::string scheme = "none";
  double alpha = 1.0;
  double eps = 1.0;
  double bm25_k1 = 100;
  double bm25_b = 0.8;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<WeightingSection>& f);
};

/// `model`: the model trained on the training interactions and its hyperparameters.
struct ModelSection {
  std::string type = "ials";
  int64_t factors = 64;
  int64_t iterations = 15;
  double regularization = 0.01;
  double reg_exp = 1.0;
  double reg_offset = 1.0;
  double unobserved_weight = 0.05;
  double unobserved_exp = 0;
  std::string observed_weight = "added";
  double alpha = 1.0;
  double init_std = 0.1;
  std::optional<int64_t> seed;
  std::string solver = "cg";
  int64_t cg_steps = 3;
  std::string dtype = "float32";
  int64_t batch_size = 1024;
  double learning_rate = 0.01;
  double lr_decay = 1.0;
  std::string optimizer = "adam";
  int64_t negatives = 1;
  double negative_exp = 0;
  bool reject_seen = true;
  int64_t hard_negatives = 1;
  bool item_bias = false;
  double temperature = 1.0;
  bool in_batch = true;
  bool logq = true;
  bool normalize = false;
  double margin = 0.7;
  double negative_weight = 150.0;
  double history_weight = 0.0;
  double dropout = 0.0;
  int64_t eval_every = 0;
  int64_t patience = 0;
  std::string init_from;
  int64_t init_from_max_age_days = 0;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<ModelSection>& f);
};

/// `eval`: how trained models are evaluated.
struct EvalSection {
  std::vector<int64_t> ks = {10, 20, 50};
  std::string metric = "ndcg@20";
  bool test = true;
  double validation_sample = 1.0;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<EvalSection>& f);
};

/// `index`: the Faiss index built over the item factors.
struct IndexSection {
  std::string type = "flat";
  std::string metric = "inner_product";
  std::string device = "auto";
  int64_t nlist = 0;
  int64_t nprobe = 16;
  int64_t pq_m = 0;
  int64_t pq_nbits = 8;
  int64_t hnsw_m = 32;
  int64_t ef_construction = 200;
  int64_t ef_search = 128;
  int64_t train_sample = 100000;
  std::optional<int64_t> seed;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<IndexSection>& f);
};

/// `export`: writing the serving artifact at the end of a training run.
struct ExportSection {
  bool enabled = false;
  std::string out;
  bool pseudonymize = false;
  std::optional<std::string> pseudonym_key_file;
  std::optional<std::string> pseudonym_key_env;
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<ExportSection>& f);
};

/// `privacy`: opting users out of personalisation, and the modes of the files recforge writes.
struct PrivacySection {
  std::optional<std::string> opt_out;
  std::string file_mode = "owner";
  /// Declares every field: path, doc text, bounds, enum names (sections.cpp).
  static void declare(Fields<PrivacySection>& f);
};

/// Every parameter's value, by section. Default-constructed, it holds the defaults.
struct Settings {
  RunSection run;              ///< `run`
  TrainSection train;          ///< `train`
  DataSection data;            ///< `data`
  SyntheticSection synthetic;  ///< `synthetic`
  SplitSection split;          ///< `split`
  WeightingSection weighting;  ///< `weighting`
  ModelSection model;          ///< `model`
  EvalSection eval;            ///< `eval`
  IndexSection index;          ///< `index`
  ExportSection export_;       ///< `export` (a C++ keyword, hence the underscore)
  PrivacySection privacy;      ///< `privacy`
};

/// True when every declared field is equal.
bool operator==(const Settings& a, const Settings& b);
/// Negation of operator==.
inline bool operator!=(const Settings& a, const Settings& b) { return !(a == b); }

}  // namespace recforge::config
