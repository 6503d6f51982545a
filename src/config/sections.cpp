/// @file sections.cpp
/// THE declarations of every configuration parameter: each section's declare() names each field
/// of its struct (sections.h) once, with its dotted path, doc text, bounds and enum names; the
/// default is the struct's member initializer. params(), sections() and the Settings that
/// Config::settings() returns are generated from these declarations, and so are validation,
/// `--set`, the resolved-config dump, docs/configuration.md and the sweep's search-space checks.
/// To add a parameter: add a member to its section's struct, declare it below, read it through
/// Config::settings(), and regenerate docs/configuration.md (see the ConfigDoc test). A new
/// section also needs a member of Settings and a line in declared().

#include "config/sections.h"

#include <fmt/format.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "config/config.h"
#include "core/error.h"

namespace recforge::config {

namespace detail {

/// How to move one declared field between Settings and a Config::Value.
struct Accessor {
  std::function<void(Settings&, const Config::Value&)> store;
  std::function<Config::Value(const Settings&)> load;
};

/// Everything the declarations produce: the table, the sections, and an accessor per row.
struct Declared {
  std::vector<Param> params;
  std::vector<Section> sections;
  std::vector<Accessor> access;
};

/// Type, YAML text and Config::Value slot of each C++ field type.
template <class T>
struct Kind;

template <>
struct Kind<int64_t> {
  static constexpr Type type = Type::kInt;
  static constexpr bool optional = false;
  static std::string yaml(int64_t x) { return std::to_string(x); }
  static void put(Config::Value& v, int64_t x) { v.i = x, v.set = true; }
  static int64_t get(const Config::Value& v) { return v.i; }
};

template <>
struct Kind<double> {
  static constexpr Type type = Type::kFloat;
  static constexpr bool optional = false;
  static std::string yaml(double x) { return fmt::format("{}", x); }  // shortest round trip
  static void put(Config::Value& v, double x) { v.f = x, v.set = true; }
  static double get(const Config::Value& v) { return v.f; }
};

template <>
struct Kind<bool> {
  static constexpr Type type = Type::kBool;
  static constexpr bool optional = false;
  static std::string yaml(bool x) { return x ? "true" : "false"; }
  static void put(Config::Value& v, bool x) { v.b = x, v.set = true; }
  static bool get(const Config::Value& v) { return v.b; }
};

template <>
struct Kind<std::string> {
  static constexpr Type type = Type::kString;  // kEnum once the declaration lists names
  static constexpr bool optional = false;
  static std::string yaml(const std::string& x) { return nlohmann::json(x).dump(); }  // quoted
  static void put(Config::Value& v, const std::string& x) { v.s = x, v.set = true; }
  static std::string get(const Config::Value& v) { return v.s; }
};

template <>
struct Kind<std::vector<int64_t>> {
  static constexpr Type type = Type::kIntList;
  static constexpr bool optional = false;
  static std::string yaml(const std::vector<int64_t>& x) {
    return fmt::format("[{}]", fmt::join(x, ", "));
  }
  static void put(Config::Value& v, const std::vector<int64_t>& x) { v.list = x, v.set = true; }
  static std::vector<int64_t> get(const Config::Value& v) { return v.list; }
};

/// An optional parameter: unset is std::nullopt (and YAML null).
template <class T>
struct Kind<std::optional<T>> {
  static constexpr Type type = Kind<T>::type;
  static constexpr bool optional = true;
  static std::string yaml(const std::optional<T>& x) { return x ? Kind<T>::yaml(*x) : ""; }
  static void put(Config::Value& v, const std::optional<T>& x) {
    if (x)
      Kind<T>::put(v, *x);
    else
      v.set = false;
  }
  static std::optional<T> get(const Config::Value& v) {
    return v.set ? std::optional<T>(Kind<T>::get(v)) : std::nullopt;
  }
};

}  // namespace detail

/// The declaration visitor: field() appends one row to the table (and its accessor); the
/// returned Decl adds bounds, enum names or a string check to that row.
template <class S>
class Fields {
 public:
  /// Refinements of the row just declared.
  class Decl {
   public:
    explicit Decl(Param& p) : p_(p) {}
    /// Lower bound, included.
    Decl& ge(double v) { return p_.min = v, p_.min_exclusive = false, *this; }
    /// Lower bound, excluded.
    Decl& gt(double v) { return p_.min = v, p_.min_exclusive = true, *this; }
    /// Upper bound, included.
    Decl& le(double v) { return p_.max = v, p_.max_exclusive = false, *this; }
    /// Upper bound, excluded.
    Decl& lt(double v) { return p_.max = v, p_.max_exclusive = true, *this; }
    /// An integer that the code keeps in 64 bits (a seed, a count of interactions): integers
    /// are otherwise limited to 2^31 - 1 (Param::int32), since most are used as `int`.
    Decl& any_int64() {
      RF_ASSERT(p_.type == Type::kInt, "config parameter '" + p_.path + "': any_int64 needs an int");
      p_.int32 = false;
      return *this;
    }
    /// The names a string field may take (it becomes an enum).
    Decl& one_of(std::vector<std::string> names) {
      RF_ASSERT(p_.type == Type::kString,
                "config parameter '" + p_.path + "': one_of needs a string");
      p_.type = Type::kEnum;
      p_.choices = std::move(names);
      return *this;
    }
    /// The default when model.type is `model_type` (the member initializer stays the default
    /// of the other types; see Param::model_defaults).
    template <class V>
    Decl& default_for(std::string model_type, V value) {
      p_.model_defaults.emplace_back(std::move(model_type), fmt::format("{}", value));
      return *this;
    }
    /// An extra check of a string value ("" when valid, else "expected ..."), and the text of
    /// the reference's "allowed" column.
    Decl& check(std::function<std::string(const std::string&)> f, std::string allowed) {
      p_.check = std::move(f);
      p_.allowed = std::move(allowed);
      return *this;
    }

   private:
    Param& p_;
  };

  Fields(detail::Declared& d, S Settings::*section, std::string name)
      : d_(d), section_(section), name_(std::move(name)) {}

  /// Declares `member`, at `path` ("section.key"), documented by `doc`.
  template <class T>
  Decl field(T S::*member, std::string path, std::string doc) {
    using K = detail::Kind<T>;
    RF_ASSERT(path.rfind(name_ + ".", 0) == 0,
              "config parameter '" + path + "' is declared in section " + name_);
    Param p;
    p.path = std::move(path);
    p.type = K::type;
    p.optional = K::optional;
    p.default_yaml = K::yaml(S{}.*member);
    p.description = std::move(doc);
    // Integers are read as int64 and most are used as `int` (factors, iterations, cutoffs...):
    // a larger value must be refused, not wrapped (Decl::any_int64 lifts it where 64 bits hold).
    p.int32 = p.type == Type::kInt || p.type == Type::kIntList;
    d_.params.push_back(std::move(p));
    S Settings::*section = section_;
    d_.access.push_back({[section, member](Settings& s, const Config::Value& v) {
                           (s.*section).*member = K::get(v);
                         },
                         [section, member](const Settings& s) {
                           Config::Value v;
                           K::put(v, (s.*section).*member);
                           return v;
                         }});
    return Decl(d_.params.back());
  }

 private:
  detail::Declared& d_;
  S Settings::*section_;
  std::string name_;
};

namespace {

/// train.device: auto, cpu, cuda or cuda:N.
std::string check_device(const std::string& v) {
  if (v == "auto" || v == "cpu" || v == "cuda") return "";
  if (v.size() > 5 && v.compare(0, 5, "cuda:") == 0 && v.size() <= 9 &&
      v.find_first_not_of("0123456789", 5) == std::string::npos)
    return "";
  return "expected auto, cpu, cuda or cuda:N";
}

/// eval.metric: NAME@K with a known metric name.
std::string check_metric(const std::string& v) {
  const auto at = v.find('@');
  if (at != std::string::npos && at + 1 < v.size() &&
      v.find_first_not_of("0123456789", at + 1) == std::string::npos) {
    const std::string name = v.substr(0, at);
    for (const char* m : {"recall", "precision", "ndcg", "map", "hit_rate", "coverage"})
      if (name == m) return "";
  }
  return "expected NAME@K with NAME one of recall, precision, ndcg, map, hit_rate, coverage";
}

}  // namespace

// ---- The declarations -------------------------------------------------------------------------

void RunSection::declare(Fields<RunSection>& f) {
  f.field(&RunSection::name, "run.name",
          "Name of the run and of its directory under `run.dir`; empty means the config "
          "file's name without extension.");
  f.field(&RunSection::dir, "run.dir", "Directory in which run directories are created.");
  f.field(&RunSection::exists, "run.exists",
          "What to do when `<run.dir>/<run.name>` already exists (or another run is writing "
          "it): `suffix` appends `.1`, `.2`, ... to the name, `overwrite` replaces it if it is "
          "an earlier recforge run (anything else is refused before training), `error` stops.")
      .one_of({"suffix", "overwrite", "error"});
  f.field(&RunSection::seed, "run.seed", "Master seed of the run's random number generators.")
      .ge(0)
      .any_int64();
  f.field(&RunSection::log_level, "run.log_level",
          "Least severe level of log messages that are shown and written to the run's log.")
      .one_of({"trace", "debug", "info", "warn", "error"});
  f.field(&RunSection::progress, "run.progress",
          "How progress of long stages is shown: `auto` draws a live bar on a terminal and "
          "periodic log lines otherwise, `bar` and `lines` force one of them, `off` hides it.")
      .one_of({"auto", "bar", "lines", "off"});
}

void TrainSection::declare(Fields<TrainSection>& f) {
  f.field(&TrainSection::device, "train.device",
          "Where to train: `auto` uses a CUDA GPU when one is available and the CPU "
          "otherwise; `cuda:N` selects GPU number N.")
      .check(check_device, "`auto`, `cpu`, `cuda`, `cuda:N`");
  f.field(&TrainSection::threads, "train.threads", "Number of CPU threads; 0 uses all cores.")
      .ge(0);
  f.field(&TrainSection::gpu_streaming, "train.gpu_streaming",
          "GPU training: `auto` keeps the interactions in GPU memory when they fit and streams "
          "them from pinned host memory in row batches otherwise; `on` always streams; `off` "
          "never does (and refuses data that does not fit).")
      .one_of({"auto", "on", "off"});
  f.field(&TrainSection::checkpoint_every, "train.checkpoint_every",
          "Write a checkpoint every N iterations (epochs for `bpr` and `softmax`) to "
          "`<run.dir>/.<name>.checkpoint/` (`<name>` the run directory's: `run.name`, or "
          "`run.name.1`, ... that `run.exists: suffix` gave it), atomically; running the same "
          "command again after a crash or kill, or `recforge train --resume <run.dir>/<name>`, "
          "continues from it, and it is removed when the run completes. 0 writes none.")
      .ge(0);
}

void DataSection::declare(Fields<DataSection>& f) {
  f.field(&DataSection::format, "data.format",
          "Input format: `delimited` has one interaction per line in columns, `adjacency` one "
          "user per line followed by the user's items, `synthetic` generates data as set in "
          "the `synthetic` section.")
      .one_of({"delimited", "adjacency", "synthetic"});
  f.field(&DataSection::path, "data.path",
          "Interactions file; with `split.method: given`, the training file.");
  f.field(&DataSection::test_path, "data.test_path",
          "Test interactions file, used with `split.method: given`.");
  f.field(&DataSection::delimiter, "data.delimiter",
          "Column separator: `auto` picks tab, comma, semicolon, pipe or whitespace from the first "
          "line; `space` and `whitespace` both split on runs of spaces and tabs.")
      .one_of({"auto", "comma", "tab", "space", "whitespace", "semicolon", "pipe"});
  f.field(&DataSection::header, "data.header", "Whether the first line holds column names.");
  f.field(&DataSection::user_col, "data.user_col",
          "User id column: a column name (when `data.header` is true) or a 0-based index.");
  f.field(&DataSection::item_col, "data.item_col", "Item id column, given like `data.user_col`.");
  f.field(&DataSection::weight_col, "data.weight_col",
          "Weight column, given like `data.user_col`; unset gives every interaction weight 1.");
  f.field(&DataSection::time_col, "data.time_col",
          "Timestamp column (integer), given like `data.user_col`; unset means no timestamps.");
  f.field(&DataSection::id_type, "data.id_type",
          "User and item ids: `int` requires integers, `string` accepts any text.")
      .one_of({"int", "string"});
  f.field(&DataSection::duplicates, "data.duplicates",
          "How repeated (user, item) pairs are combined: sum or maximum of their weights, or "
          "the last one (latest timestamp, else latest in the file).")
      .one_of({"sum", "max", "last"});
  f.field(&DataSection::min_weight, "data.min_weight",
          "Interactions whose weight (after combining duplicates) is below this are dropped.");
  f.field(&DataSection::min_user_interactions, "data.min_user_interactions",
          "Users with fewer interactions (in the training file) are dropped; the user and item "
          "filters are applied repeatedly until both hold.")
      .ge(1);
  f.field(&DataSection::min_item_interactions, "data.min_item_interactions",
          "Items with fewer interactions are dropped (see `data.min_user_interactions`).")
      .ge(1);
  f.field(&DataSection::on_error, "data.on_error",
          "A malformed line: `fail` stops with its file, line and text; `skip` drops it, counts it "
          "and reports the count.")
      .one_of({"fail", "skip"});
  f.field(&DataSection::cache, "data.cache",
          "Keep the parsed data in a binary cache so that later runs with the same input and "
          "`data` settings skip parsing.");
  f.field(&DataSection::cache_dir, "data.cache_dir",
          "Cache directory; empty means `$XDG_CACHE_HOME/recforge`, or `~/.cache/recforge` "
          "when XDG_CACHE_HOME is unset.");
  f.field(&DataSection::max_age_days, "data.max_age_days",
          "Retention: interactions older than this many days, counted back from "
          "`data.max_age_from`, are dropped before anything else; the number dropped is in "
          "stats.json. 0 keeps every interaction. Needs timestamps (`data.time_col`).")
      .ge(0);
  f.field(&DataSection::max_age_from, "data.max_age_from",
          "The moment `data.max_age_days` counts back from: a UTC date `YYYY-MM-DD` or a "
          "timestamp in `data.time_unit`; empty means the newest timestamp in the data.");
  f.field(&DataSection::time_unit, "data.time_unit",
          "Unit of the timestamps in `data.time_col`, used by `data.max_age_days`.")
      .one_of({"seconds", "milliseconds", "microseconds", "days"});
}

void SyntheticSection::declare(Fields<SyntheticSection>& f) {
  f.field(&SyntheticSection::users, "synthetic.users", "Number of users.").ge(1);
  f.field(&SyntheticSection::items, "synthetic.items", "Number of items.").ge(2);
  f.field(&SyntheticSection::interactions, "synthetic.interactions",
          "Target number of interactions before duplicates are combined.")
      .ge(1)
      .any_int64();
  f.field(&SyntheticSection::communities, "synthetic.communities",
          "Number of communities that users and items are divided into.")
      .ge(1);
  f.field(&SyntheticSection::community_strength, "synthetic.community_strength",
          "Probability that an interaction stays in the user's community.")
      .ge(0)
      .le(1);
  f.field(&SyntheticSection::popularity_exponent, "synthetic.popularity_exponent",
          "Zipf exponent of item popularity; 0 makes all items equally popular.")
      .ge(0);
  f.field(&SyntheticSection::activity_sigma, "synthetic.activity_sigma",
          "Sigma of the log-normal distribution of per-user activity; 0 gives all users the "
          "same expected activity.")
      .ge(0);
  f.field(&SyntheticSection::days, "synthetic.days",
          "Time span of the generated timestamps, in days.")
      .ge(1)
      .le(365000);
  f.field(&SyntheticSection::weights, "synthetic.weights",
          "Interaction weights: `binary` is 1 per (user, item) pair, `counts` the number of "
          "times the pair was drawn.")
      .one_of({"binary", "counts"});
  f.field(&SyntheticSection::seed, "synthetic.seed",
          "Seed of the generator, independent of `run.seed`.")
      .ge(0)
      .any_int64();
}

void SplitSection::declare(Fields<SplitSection>& f) {
  f.field(&SplitSection::method, "split.method",
          "How the test set is chosen: `given` reads `data.test_path`, `random` holds out a "
          "fraction of each user's interactions, `leave_last` each user's last `leave_k`, "
          "`time` those after a cutoff, `users` part of the interactions of held-out users, "
          "`none` has no test set.")
      .one_of({"given", "random", "leave_last", "time", "users", "none"});
  f.field(&SplitSection::test_fraction, "split.test_fraction",
          "Fraction held out of each user's interactions by `random`, and of each held-out "
          "user's interactions by `users`.")
      .gt(0)
      .lt(1);
  f.field(&SplitSection::leave_k, "split.leave_k",
          "Number of interactions per user held out by `leave_last`.")
      .ge(1);
  f.field(&SplitSection::cutoff, "split.cutoff",
          "Timestamp that separates training from test for `time`, in the data's time unit: "
          "interactions at or after it are test (nanosecond timestamps are exact); unset uses "
          "`split.cutoff_quantile`.")
      .any_int64();
  f.field(&SplitSection::cutoff_quantile, "split.cutoff_quantile",
          "Quantile of all timestamps used as the cutoff when `split.cutoff` is unset.")
      .gt(0)
      .lt(1);
  f.field(&SplitSection::heldout_users, "split.heldout_users",
          "Fraction of users held out by `users`.")
      .gt(0)
      .lt(1);
  f.field(&SplitSection::validation_fraction, "split.validation_fraction",
          "When above 0, a validation set is carved from the training part by the same method "
          "(a per-user fraction for random/given/none, the last `leave_k` for leave_last, a "
          "time quantile for time, held-out users for users; see docs/data.md).")
      .ge(0)
      .lt(1);
}

void WeightingSection::declare(Fields<WeightingSection>& f) {
  f.field(&WeightingSection::scheme, "weighting.scheme",
          "Confidence from a raw weight w: `none` keeps w, `linear` is 1 + alpha * w, `log` is "
          "1 + alpha * log(1 + w / eps), `bm25` is BM25 weighting with `bm25_k1` and `bm25_b`.")
      .one_of({"none", "linear", "log", "bm25"});
  f.field(&WeightingSection::alpha, "weighting.alpha",
          "Scale `alpha` of the `linear` and `log` schemes.")
      .ge(0);
  f.field(&WeightingSection::eps, "weighting.eps", "Divisor `eps` of the `log` scheme.").gt(0);
  f.field(&WeightingSection::bm25_k1, "weighting.bm25_k1",
          "BM25 k1: saturation of repeated interactions.")
      .ge(0);
  f.field(&WeightingSection::bm25_b, "weighting.bm25_b",
          "BM25 b: strength of the length normalization.")
      .ge(0)
      .le(1);
}

void ModelSection::declare(Fields<ModelSection>& f) {
  f.field(&ModelSection::type, "model.type",
          "`ials`: implicit-feedback ALS (Hu et al. 2008, in the formulation of Rendle et al. "
          "2022); `bpr`: Bayesian personalised ranking (Rendle et al. 2009) on sampled "
          "(user, positive, negative) triples; `softmax`: sampled softmax over in-batch and "
          "sampled negatives with the log-Q correction (Yi et al. 2019); `ccl`: the cosine "
          "contrastive loss of SimpleX (Mao et al. 2021), unit-norm rows scored by cosine, each "
          "positive pulled towards cosine 1 and many shared negatives pushed below "
          "`model.margin`; `none` only prepares the data.")
      .one_of({"ials", "bpr", "softmax", "ccl", "none"});
  f.field(&ModelSection::factors, "model.factors",
          "Embedding dimension (any size; above 1024 works too).")
      .ge(1);
  f.field(&ModelSection::iterations, "model.iterations",
          "Training iterations; for `ials` one iteration solves all users, then all items; for "
          "`bpr`, `softmax` and `ccl` one iteration is one epoch (as many sampled positives as there "
          "are training interactions).")
      .ge(1);
  f.field(&ModelSection::regularization, "model.regularization",
          "L2 strength lambda; for ials each row's penalty is lambda * (n + "
          "reg_offset)^reg_exp * ||row||^2, n being the row's number of observed "
          "interactions; for bpr and softmax lambda * row is added to the gradient of every "
          "row a step touches; ccl keeps rows at unit norm, where this L2 term is constant, so "
          "it has no effect there. softmax defaults to 1e-4: with Adam, 0.01 pulls the "
          "dot-product factors to zero, where its gradients vanish and nothing is learnt.")
      .ge(0)
      .default_for("softmax", 0.0001);
  f.field(&ModelSection::reg_exp, "model.reg_exp",
          "Frequency-scaling exponent of the regularization (0: the same lambda for every row).")
      .ge(0);
  f.field(&ModelSection::reg_offset, "model.reg_offset",
          "Offset added to n in the frequency scaling.")
      .ge(0);
  f.field(&ModelSection::unobserved_weight, "model.unobserved_weight",
          "Weight alpha0 of the squared score of every (user, item) pair, observed or not "
          "(the implicit-feedback term, computed through the Gram matrix).")
      .ge(0);
  f.field(&ModelSection::unobserved_exp, "model.unobserved_exp",
          "Exponent beta of per-item unobserved weights (eALS, He et al. 2016): item i's "
          "unobserved weight is unobserved_weight * c_i with c_i proportional to "
          "popularity^beta and mean 1; 0 weights all items alike.")
      .ge(0)
      .le(2);
  f.field(&ModelSection::observed_weight, "model.observed_weight",
          "iALS: how an observed pair's loss weight combines with unobserved_weight. `added`: "
          "unobserved_weight + alpha * confidence (iALS, Rendle et al. 2022); `replaced`: alpha "
          "* confidence alone (Hu, Koren and Volinsky 2008; implicit's ALS, whose "
          "unobserved_weight is 1), so a confidence below unobserved_weight / alpha weighs an "
          "observed pair below an unobserved one (BM25 weights). `replaced` needs "
          "unobserved_exp 0 and trains on the CPU (train.device auto stays there; cuda is "
          "refused).")
      .one_of({"added", "replaced"});
  f.field(&ModelSection::alpha, "model.alpha",
          "Confidence scale: an observed pair's loss weight is alpha times its confidence "
          "from the `weighting` section.")
      .gt(0);
  f.field(&ModelSection::init_std, "model.init_std",
          "Factors start from N(0, (init_std / sqrt(factors))^2); at most 100, since scores "
          "start near init_std^2 (the models aim at about 1) and the solvers' squared terms, "
          "about init_std^4 times the interactions, must stay within float32.")
      .ge(0)
      .le(100);
  f.field(&ModelSection::seed, "model.seed", "Seed of the initial factors; unset uses `run.seed`.")
      .ge(0)
      .any_int64();
  f.field(&ModelSection::solver, "model.solver",
          "Per-row solve: `cg` runs `cg_steps` conjugate-gradient steps warm-started from the "
          "previous factors; `cholesky` solves each row's normal equations exactly.")
      .one_of({"cg", "cholesky"});
  f.field(&ModelSection::cg_steps, "model.cg_steps",
          "Conjugate-gradient steps per row and half-iteration.")
      .ge(1);
  f.field(&ModelSection::dtype, "model.dtype",
          "Storage type of the factors on the GPU (arithmetic is float32 either way); the CPU "
          "stores float32 only. Saved factors are float32.")
      .one_of({"float32", "float16", "bfloat16"});
  f.field(&ModelSection::batch_size, "model.batch_size",
          "bpr, softmax, ccl: samples per optimiser step (softmax, ccl: positives per batch, "
          "each batch one set of GEMMs).")
      .ge(1)
      .default_for("ccl", 512);
  f.field(&ModelSection::learning_rate, "model.learning_rate",
          "bpr, softmax, ccl: step size of the first epoch.")
      .gt(0)
      .default_for("ccl", 0.004);
  f.field(&ModelSection::lr_decay, "model.lr_decay",
          "bpr, softmax, ccl: epoch e trains at learning_rate * lr_decay^(e-1); ccl's rows live on "
          "the unit sphere, where a constant step never shrinks, so it decays by default.")
      .gt(0)
      .le(1)
      .default_for("ccl", 0.92);
  f.field(&ModelSection::optimizer, "model.optimizer",
          "bpr, softmax, ccl: `sgd`, `adagrad` or `adam` (beta1 0.9, beta2 0.999, eps 1e-8); adagrad "
          "and adam keep per-weight state and update only the rows a batch touches.")
      .one_of({"sgd", "adagrad", "adam"});
  f.field(&ModelSection::negatives, "model.negatives",
          "bpr: negatives drawn per positive (each makes one triple); softmax, ccl: negatives "
          "drawn per batch and shared by its rows (added to the in-batch ones); ccl wants "
          "hundreds.")
      .ge(0)
      .default_for("ccl", 1000);
  f.field(&ModelSection::negative_exp, "model.negative_exp",
          "bpr, softmax, ccl: negatives are drawn with probability proportional to "
          "(interactions + 1)^negative_exp; 0 draws uniformly.")
      .ge(0)
      .le(2);
  f.field(&ModelSection::reject_seen, "model.reject_seen",
          "bpr: redraw a negative the user has interacted with (checked against the training "
          "CSR, up to 16 draws).");
  f.field(&ModelSection::hard_negatives, "model.hard_negatives",
          "bpr: draw this many candidates for each negative and train on the one the user "
          "currently scores highest (dynamic negative sampling, Zhang et al. 2013); 1 is plain "
          "BPR.")
      .ge(1)
      .le(1024);
  f.field(&ModelSection::item_bias, "model.item_bias",
          "bpr, softmax: learn an item bias, stored as one more column of the factors (users "
          "hold 1 there), so exports and indexes score it with a plain inner product.");
  f.field(&ModelSection::temperature, "model.temperature",
          "softmax: logits are scores divided by this temperature; at least 1e-18, since the "
          "gradients grow as 1/temperature and Adam and Adagrad square them, which overflows "
          "float32 (3.4e38) below about 1e-19.")
      .ge(1e-18);
  f.field(&ModelSection::in_batch, "model.in_batch",
          "softmax, ccl: the batch's other positives count as negatives of each row.")
      .default_for("ccl", false);
  f.field(&ModelSection::logq, "model.logq",
          "softmax: subtract from each candidate's logit the log of its expected count among "
          "the batch's candidates (the sampling-bias correction).");
  f.field(&ModelSection::normalize, "model.normalize",
          "softmax: keep every user and item row at unit norm (gradients projected onto the "
          "sphere, rows rescaled after each step), so scores are cosine similarities; pair "
          "with a temperature around 0.05 to 0.2. With model.item_bias the bias column stays "
          "outside the sphere: score = cosine + item bias.");
  f.field(&ModelSection::margin, "model.margin",
          "ccl: a negative adds to the loss only while its cosine with the user is above this "
          "margin (the loss is max(0, cos - margin)).")
      .ge(-1)
      .le(1);
  f.field(&ModelSection::negative_weight, "model.negative_weight",
          "ccl: weight of the negative term, the mean of max(0, cos - margin) over the row's "
          "negatives; a row's loss is (1 - cos of its positive) + negative_weight * that mean.")
      .ge(0);
  f.field(&ModelSection::history_weight, "model.history_weight",
          "ccl: SimpleX's user-side aggregation. A user's vector is the unit-norm "
          "(1 - h) * own row + h * W * mean of the item rows of the user's training history, h "
          "this weight and W a learned factors x factors matrix (starting as the identity); the "
          "exported and evaluated user factors are these vectors. 0 (the default): the user's "
          "own row.")
      .ge(0)
      .le(1);
  f.field(&ModelSection::dropout, "model.dropout",
          "ccl: dropout on the user vector in training (SimpleX's): each coordinate of a "
          "batch row's user vector is zeroed with this probability and the rest scaled by "
          "1 / (1 - p), a new mask per row and step; evaluation and export use the whole "
          "vector. 0 (the default): none.")
      .ge(0)
      .le(0.9);
  f.field(&ModelSection::eval_every, "model.eval_every",
          "Evaluate on the validation set every N iterations (0: only after training).")
      .ge(0);
  f.field(&ModelSection::patience, "model.patience",
          "Stop after this many validation evaluations without improvement of `eval.metric`, "
          "keeping the best factors (0: never stop early; needs eval_every > 0).")
      .ge(0);
  f.field(&ModelSection::init_from, "model.init_from",
          "Warm start: an export directory (or a run directory holding export/) of a model of "
          "the same type and width; each user and item found there by id starts from its row, "
          "the others from random factors (empty: all random). Refused when a user it was "
          "trained on has opted out since; `recforge forget` ignores it.");
  f.field(&ModelSection::init_from_max_age_days, "model.init_from_max_age_days",
          "Bounds a chain of warm starts: when the cold-started run that `model.init_from`'s "
          "chain began with was created more than this many days ago (or the export does not "
          "record when), this run starts from random factors instead and begins a new chain, so "
          "that data which left (deleted users, `data.max_age_days`) leaves the models within "
          "this many days. 0: no bound.")
      .ge(0);
}

void EvalSection::declare(Fields<EvalSection>& f) {
  f.field(&EvalSection::ks, "eval.ks", "Cutoffs K at which every metric is computed.").ge(1);
  f.field(&EvalSection::metric, "eval.metric",
          "Metric used for early stopping and model selection, as NAME@K; K must be in "
          "`eval.ks`.")
      .check(check_metric, "`NAME@K`");
  f.field(&EvalSection::test, "eval.test",
          "Evaluate on the test part after training. Tuning runs set it to false so that "
          "hyperparameters are chosen on validation without ever looking at test.");
  f.field(&EvalSection::validation_sample, "eval.validation_sample",
          "Share of the validation users that every validation evaluation scores (model."
          "eval_every, early stopping, sweep trials, the validation figures in metrics.json): a "
          "user is scored when a fixed hash of their id falls in this share of its range, so the "
          "same users at every evaluation and in every run on the same ids, distributed runs "
          "included. The cost of a validation evaluation falls in proportion; test always scores "
          "every user. 1: every user.")
      .gt(0)
      .le(1);
}

void IndexSection::declare(Fields<IndexSection>& f) {
  f.field(&IndexSection::type, "index.type",
          "Faiss index over the item factors: `flat` scores every item (exact), `ivf_flat` "
          "probes `nprobe` of `nlist` k-means cells, `ivf_pq` does the same over "
          "product-quantized vectors, `hnsw` walks a navigable small-world graph.")
      .one_of({"flat", "ivf_flat", "ivf_pq", "hnsw"});
  f.field(&IndexSection::metric, "index.metric",
          "Similarity: `inner_product` is the model's score; `cosine` normalizes item and query "
          "vectors to unit length first (the index then holds normalized vectors).")
      .one_of({"inner_product", "cosine"});
  f.field(&IndexSection::device, "index.device",
          "Where `flat`, `ivf_flat` and `ivf_pq` indices are searched: `cuda` on GPU 0 through "
          "GPU Faiss (a build with `RECFORGE_FAISS_GPU=ON`, see docs/export.md), `cpu` on the "
          "CPU, `auto` on the GPU when the build has GPU Faiss and a GPU answers. `hnsw` stays on "
          "the CPU; the exported index file is a CPU index either way.")
      .one_of({"auto", "cpu", "cuda"});
  f.field(&IndexSection::nlist, "index.nlist",
          "Number of IVF cells (`ivf_flat`, `ivf_pq`); 0 picks 4 * sqrt(items), at most one cell "
          "per 39 training vectors (Faiss's minimum for k-means).")
      .ge(0);
  f.field(&IndexSection::nprobe, "index.nprobe",
          "IVF cells visited per query (stored in the index file; at most `nlist` are used).")
      .ge(1);
  f.field(&IndexSection::pq_m, "index.pq_m",
          "Sub-quantizers of `ivf_pq` (bytes per vector at 8 bits); must divide the factor "
          "dimension; 0 picks the largest divisor that leaves at least 4 dimensions each.")
      .ge(0);
  f.field(&IndexSection::pq_nbits, "index.pq_nbits",
          "Bits per sub-quantizer code of `ivf_pq` (Faiss's IVF-PQ takes at most 8); training "
          "needs at least 2^pq_nbits vectors.")
      .ge(1)
      .le(8);
  f.field(&IndexSection::hnsw_m, "index.hnsw_m", "Graph neighbours per node of `hnsw`.")
      .ge(2)
      .le(1024);
  f.field(&IndexSection::ef_construction, "index.ef_construction",
          "Candidate list size while building `hnsw`.")
      .ge(1);
  f.field(&IndexSection::ef_search, "index.ef_search",
          "Candidate list size while searching `hnsw` (stored in the index file; recforge "
          "searches a query for more than ef_search results with its k instead, where stock "
          "Faiss keeps ef_search).")
      .ge(1);
  f.field(&IndexSection::train_sample, "index.train_sample",
          "Item vectors sampled (seeded) to train the IVF cells and the product quantizer; all "
          "items when there are fewer.")
      .ge(1);
  f.field(&IndexSection::seed, "index.seed",
          "Seed of the index training (k-means, sampling, HNSW levels); unset "
          "uses `run.seed`. IVF indexes are the same file from build to build; an HNSW graph "
          "built on several threads is not (Faiss links nodes in parallel).")
      .ge(0)
      .any_int64();
}

void ExportSection::declare(Fields<ExportSection>& f) {
  f.field(&ExportSection::enabled, "export.enabled",
          "Write the serving artifact (docs/export.md) at the end of `recforge train`.");
  f.field(&ExportSection::out, "export.out",
          "Directory of the artifact written by `export.enabled`; empty means `export/` "
          "inside the run directory. An existing export there is replaced atomically.");
  f.field(&ExportSection::pseudonymize, "export.pseudonymize",
          "Write HMAC-SHA256(key, raw user id) instead of raw user ids into the export (user "
          "ids and opt-out list); the key comes from `export.pseudonym_key_file` or "
          "`export.pseudonym_key_env` and is never written anywhere (docs/privacy.md).");
  f.field(&ExportSection::pseudonym_key_file, "export.pseudonym_key_file",
          "File holding the pseudonymisation key (at least 16 bytes; one trailing newline is "
          "ignored).");
  f.field(&ExportSection::pseudonym_key_env, "export.pseudonym_key_env",
          "Name of the environment variable holding the pseudonymisation key.");
}

void PrivacySection::declare(Fields<PrivacySection>& f) {
  f.field(&PrivacySection::opt_out, "privacy.opt_out",
          "File of user ids that opted out of personalisation, one per line (blank lines and "
          "lines starting with `#` are ignored): their interactions are dropped before "
          "training, and they are answered with the most popular items, marked "
          "`personalised: false` (docs/privacy.md).");
  f.field(&PrivacySection::file_mode, "privacy.file_mode",
          "Who may read the files recforge writes (data cache, run directories, exports): "
          "`owner` only (0600/0700), `group` too (0640/0750), or `umask` (the process's umask "
          "decides).")
      .one_of({"owner", "group", "umask"});
}

// ---- The generated table ----------------------------------------------------------------------

namespace {

template <class S>
void section(detail::Declared& d, S Settings::*member, const std::string& name,
             const std::string& description) {
  d.sections.push_back({name, description});
  Fields<S> f(d, member, name);
  S::declare(f);
}

const detail::Declared& declared() {
  static const detail::Declared table = [] {
    detail::Declared d;
    section(d, &Settings::run, "run",
            "Naming of the run, its output directory, randomness and logging.");
    section(d, &Settings::train, "train", "Hardware used for training, and checkpoints.");
    section(d, &Settings::data, "data",
            "The interactions file and how it is read, combined and filtered.");
    section(d, &Settings::synthetic, "synthetic",
            "The generator used when `data.format` is `synthetic`.");
    section(d, &Settings::split, "split",
            "How interactions are divided into training, validation and test sets.");
    section(d, &Settings::weighting, "weighting",
            "How raw interaction weights are turned into confidences before training.");
    section(d, &Settings::model, "model",
            "The model trained on the training interactions and its hyperparameters.");
    section(d, &Settings::eval, "eval",
            "How trained models are evaluated: exact top-k over all items with training items "
            "masked (see docs/metrics.md).");
    section(d, &Settings::index, "index",
            "The Faiss index built over the item factors for retrieval and export (see "
            "docs/export.md).");
    section(d, &Settings::export_, "export",
            "Writing the serving artifact (manifest, Faiss index, embeddings, id maps, seen "
            "items) at the end of a training run.");
    section(d, &Settings::privacy, "privacy",
            "User controls: opt-out of personalisation, and the modes of written files "
            "(docs/privacy.md).");
    return d;
  }();
  return table;
}

}  // namespace

const std::vector<Param>& params() { return declared().params; }

const std::vector<Section>& sections() { return declared().sections; }

namespace detail {

void store_field(Settings& s, size_t index, const Config::Value& v) {
  declared().access.at(index).store(s, v);
}

Config::Value load_field(const Settings& s, size_t index) {
  return declared().access.at(index).load(s);
}

}  // namespace detail

}  // namespace recforge::config
