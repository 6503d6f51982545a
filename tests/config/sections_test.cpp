// Tests of the typed configuration: the declarations in src/config/sections.cpp (doc text,
// generated table, Settings kept in step with every value), the cross-field checks of
// config::check (each refused by Config::parse, by `recforge config` and by pipeline::train with
// the same sentence), and pipeline/options.h, which turns sections into model and index options.

#include "config/sections.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "models/ials/ials.h"
#include "pipeline/options.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge::config {
namespace {

/// The message of the recforge::Error thrown by Config::parse(yaml), or "" when it succeeds.
std::string parse_error(const std::string& yaml) {
  try {
    Config::parse(yaml, "x.yaml");
  } catch (const recforge::Error& e) {
    return e.what();
  }
  return "";
}

/// A Value as JSON, by the parameter's type (null when unset).
nlohmann::json as_json(const Param& p, const Config::Value& v) {
  if (!v.set) return nullptr;
  switch (p.type) {
    case Type::kInt:
      return v.i;
    case Type::kFloat:
      return v.f;
    case Type::kBool:
      return v.b;
    case Type::kString:
    case Type::kEnum:
      return v.s;
    case Type::kIntList:
      return v.list;
  }
  return nullptr;
}

/// The value of params()[i] in `c`, read by path (the generic getters).
nlohmann::json by_path(const Config& c, const Param& p) {
  if (!c.is_set(p.path)) return nullptr;
  switch (p.type) {
    case Type::kInt:
      return c.get_int(p.path);
    case Type::kFloat:
      return c.get_float(p.path);
    case Type::kBool:
      return c.get_bool(p.path);
    case Type::kString:
    case Type::kEnum:
      return c.get_string(p.path);
    case Type::kIntList:
      return c.get_int_list(p.path);
  }
  return nullptr;
}

/// Every declared field of `s`, in table order, as JSON.
std::vector<nlohmann::json> fields_of(const Settings& s) {
  std::vector<nlohmann::json> out;
  for (size_t i = 0; i < params().size(); ++i)
    out.push_back(as_json(params()[i], detail::load_field(s, i)));
  return out;
}

/// An assignment "path=value" that Config::set accepts and that differs from the default.
std::string other_value(const Param& p, const Config& defaults) {
  std::vector<std::string> candidates;
  const nlohmann::json d = by_path(defaults, p);
  switch (p.type) {
    case Type::kInt: {
      const int64_t x = d.is_null() ? 0 : d.get<int64_t>();
      candidates = {std::to_string(x + 1), std::to_string(x - 1), "5"};
      break;
    }
    case Type::kFloat: {
      const double x = d.is_null() ? 0.0 : d.get<double>();
      candidates = {nlohmann::json(x / 2).dump(), nlohmann::json(x + 0.25).dump(),
                    nlohmann::json(x - 0.25).dump(), "0.5"};
      break;
    }
    case Type::kBool:
      candidates = {d.get<bool>() ? "false" : "true"};
      break;
    case Type::kEnum:
      for (const std::string& c : p.choices)
        if (c != d) candidates.push_back(c);
      break;
    case Type::kString:
      candidates = {"cpu", "recall@10", "x1"};
      break;
    case Type::kIntList:
      candidates = {"[3]"};
      break;
  }
  for (const std::string& c : candidates) {
    Config probe = defaults;
    try {
      probe.set(p.path + "=" + c);
    } catch (const recforge::Error&) {
      continue;
    }
    if (by_path(probe, p) != d) return p.path + "=" + c;
  }
  ADD_FAILURE() << "no other valid value found for " << p.path;
  return p.path + "=";
}

// ---- Declarations -----------------------------------------------------------------------------

TEST(ConfigSections, EveryDeclaredFieldAndSectionHasDocText) {
  ASSERT_FALSE(params().empty());
  for (const Param& p : params()) {
    EXPECT_GE(p.description.size(), 10u) << p.path;
    EXPECT_TRUE(p.description.back() == '.' || p.description.back() == ')') << p.path;
  }
  for (const Section& s : sections()) EXPECT_GE(s.description.size(), 10u) << s.name;
}

TEST(ConfigSections, TableDefaultsAreTheTypedDefaults) {
  // Each row's default (generated from the member initializer) parses to the same value as the
  // field of a default-constructed Settings holds.
  const Config d = Config::defaults();
  const Settings typed;
  ASSERT_EQ(params().size(), fields_of(typed).size());
  for (size_t i = 0; i < params().size(); ++i)
    EXPECT_EQ(by_path(d, params()[i]), fields_of(typed)[i]) << params()[i].path;
  EXPECT_TRUE(d.settings() == typed);
}

TEST(ConfigSections, DefaultsRoundTripThroughYaml) {
  const Config back = Config::parse(Config::defaults().to_yaml(), "resolved.yaml");
  EXPECT_TRUE(back.settings() == Settings{});
  EXPECT_EQ(back.settings().model.factors, Settings{}.model.factors);
  EXPECT_FALSE(back.settings().data.path.has_value());
}

TEST(ConfigSections, EachDeclarationWritesItsOwnFieldOnly) {
  // Setting one parameter changes exactly one field of settings(), to the value read by path:
  // a declaration bound to the wrong member (or two declarations to one) fails here.
  const Config defaults = Config::defaults();
  const std::vector<nlohmann::json> before = fields_of(defaults.settings());
  for (size_t i = 0; i < params().size(); ++i) {
    const Param& p = params()[i];
    Config c = defaults;
    c.set(other_value(p, defaults));
    const std::vector<nlohmann::json> after = fields_of(c.settings());
    for (size_t j = 0; j < params().size(); ++j) {
      if (j == i) {
        EXPECT_NE(after[j], before[j]) << p.path;
        EXPECT_EQ(after[j], by_path(c, p)) << p.path;
      } else {
        EXPECT_EQ(after[j], before[j]) << "setting " << p.path << " changed " << params()[j].path;
      }
    }
  }
}

TEST(ConfigSections, TypedValuesFollowTheFileAndUnsetOptionals) {
  const Config c = Config::parse(
      "model:\n  factors: 7\n  seed: 3\ndata:\n  path: a.csv\n  weight_col: \"2\"\n"
      "eval:\n  ks: [5, 20]\nexport:\n  enabled: true\n",
      "x.yaml", {"data.weight_col=", "run.seed=9"});
  const Settings& s = c.settings();
  EXPECT_EQ(s.model.factors, 7);
  EXPECT_EQ(s.model.seed, std::optional<int64_t>(3));
  EXPECT_EQ(s.data.path, std::optional<std::string>("a.csv"));
  EXPECT_FALSE(s.data.weight_col.has_value()) << "an empty --set value unsets an optional";
  EXPECT_EQ(s.eval.ks, (std::vector<int64_t>{5, 20}));
  EXPECT_TRUE(s.export_.enabled);
  EXPECT_EQ(s.run.seed, 9);
}

TEST(ConfigModelDefaults, AKeyLeftOutTakesTheDefaultOfItsModelType) {
  const ModelSection table;  // the member initializers: the general defaults
  const ModelSection ccl = Config::parse("model:\n  type: ccl\n", "x.yaml").settings().model;
  EXPECT_EQ(ccl.negatives, 1000);
  EXPECT_FALSE(ccl.in_batch);
  EXPECT_EQ(ccl.batch_size, 512);
  EXPECT_EQ(ccl.learning_rate, 0.004);
  EXPECT_EQ(ccl.lr_decay, 0.92);
  EXPECT_EQ(ccl.regularization, table.regularization);
  const ModelSection softmax =
      Config::parse("model:\n  type: softmax\n", "x.yaml").settings().model;
  EXPECT_EQ(softmax.regularization, 0.0001);
  EXPECT_EQ(softmax.negatives, table.negatives);
  EXPECT_TRUE(softmax.in_batch);
  EXPECT_EQ(softmax.learning_rate, table.learning_rate);
  for (const char* type : {"ials", "bpr"}) {
    const ModelSection m =
        Config::parse(std::string("model:\n  type: ") + type + "\n", "x.yaml").settings().model;
    EXPECT_EQ(m.regularization, table.regularization) << type;
    EXPECT_EQ(m.negatives, table.negatives) << type;
    EXPECT_EQ(m.learning_rate, table.learning_rate) << type;
    EXPECT_EQ(m.lr_decay, table.lr_decay) << type;
  }
  EXPECT_EQ(table.regularization, 0.01);  // the numbers above are not all one value
  EXPECT_EQ(table.negatives, 1);
}

TEST(ConfigModelDefaults, FollowModelTypeWhereverItIsGivenAndNeverReplaceAGivenValue) {
  // model.type from --set after the file: the file's keys stay, the others follow the type.
  Config c = Config::parse("model:\n  type: bpr\n  learning_rate: 0.05\n", "x.yaml",
                           {"model.type=ccl"});
  EXPECT_EQ(c.settings().model.learning_rate, 0.05);
  EXPECT_EQ(c.settings().model.negatives, 1000);
  EXPECT_EQ(c.where("model.negatives"), "default for model.type ccl");
  EXPECT_EQ(c.where("model.learning_rate"), "x.yaml:3:3");
  // A --set value stays through later type changes; the rest go back to the general default.
  c.set("model.lr_decay=0.5");
  c.set("model.type=bpr");
  EXPECT_EQ(c.settings().model.negatives, 1);
  EXPECT_EQ(c.where("model.negatives"), "default");
  EXPECT_TRUE(c.settings().model.in_batch);
  EXPECT_EQ(c.settings().model.lr_decay, 0.5);
  EXPECT_EQ(c.settings().model.learning_rate, 0.05);
  c.set("model.type=softmax");
  EXPECT_EQ(c.settings().model.regularization, 0.0001);
  // A value equal to a default but given explicitly is the user's: it does not follow the type.
  Config d = Config::parse("model:\n  type: ccl\n  negatives: 1\n", "x.yaml");
  d.set("model.type=softmax");
  d.set("model.type=ccl");
  EXPECT_EQ(d.settings().model.negatives, 1);
}

TEST(ConfigModelDefaults, TheResolvedYamlRecordsThemAndReadsBackEqual) {
  // A run's config.yaml holds the values the run used: reading it back (a resume, or `recforge
  // compare`) gives the same settings even though they are then values of the file.
  const Config c = Config::parse("model:\n  type: ccl\n", "x.yaml");
  const std::string yaml = c.to_yaml();
  EXPECT_NE(yaml.find("  negatives: 1000  # default for model.type ccl\n"), std::string::npos)
      << yaml;
  const Config back = Config::parse(yaml, "config.yaml");
  EXPECT_EQ(back, c);
  EXPECT_EQ(back.settings().model.negatives, 1000);
}

/// Test NDCG@10 of one run in `dir` of the model section `model` (YAML flow-mapping body) on a
/// small synthetic set, one thread.
double small_run_ndcg(const test::TempDir& dir, const std::string& name, const std::string& model) {
  const Config c = Config::parse(
      "run: {name: " + name + ", seed: 42, progress: \"off\", dir: " +
          nlohmann::json(dir.str()).dump() +
          "}\n"
          "data: {format: synthetic}\n"
          "synthetic: {users: 3000, items: 1000, interactions: 100000, communities: 8, seed: 1}\n"
          "split: {method: leave_last, leave_k: 1}\n"
          "eval: {ks: [10], metric: ndcg@10}\n"
          "train: {threads: 1}\n"
          "export: {enabled: false}\n"
          "model: {" + model + "}\n",
      name + ".yaml");
  const std::string run = pipeline::train(c);
  return nlohmann::json::parse(test::read_file(run + "/metrics.json"))["test"]["ndcg@10"];
}

TEST(ConfigModelDefaults, SoftmaxAndCclLearnWithEveryTrainingKeyLeftAtItsDefault) {
  // Before the per-model defaults these two learnt nothing on this set (NDCG@10 0.0044 for the
  // softmax, whose λ 0.01 with Adam pulled its factors to zero; 0.032 for CCL with one negative,
  // in-batch negatives and a constant step). Reference: iALS on the same split (about 0.22);
  // a model that finds the 8 communities gets well over half of it.
  test::TempDir dir;
  const double ials = small_run_ndcg(dir, "ials", "type: ials, factors: 16");
  const double softmax = small_run_ndcg(dir, "softmax", "type: softmax, factors: 16, iterations: 5");
  const double ccl = small_run_ndcg(dir, "ccl", "type: ccl");
  EXPECT_GT(ials, 0.15);
  EXPECT_GT(softmax, 0.5 * ials);
  EXPECT_GT(ccl, 0.5 * ials);
}

TEST(ConfigModelDefaults, TheReferenceListsThemAfterTheGeneralDefault) {
  const std::string md = markdown_reference();
  EXPECT_NE(md.find("| `model.negatives` | integer | `1`; ccl: `1000` |"), std::string::npos);
  EXPECT_NE(md.find("| `model.regularization` | number | `0.01`; softmax: `0.0001` |"),
            std::string::npos);
}

TEST(ConfigSections, SettingsOfAForeignTableIsAnInternalError) {
  std::vector<Param> table(1);
  table[0].path = "a.b";
  table[0].type = Type::kInt;
  table[0].default_yaml = "1";
  table[0].description = "B.";
  const Config c = Config::defaults(table);
  EXPECT_THROW(c.settings(), InternalError);
}

// ---- Cross-field checks -----------------------------------------------------------------------

struct CrossCase {
  const char* yaml;     // a config that every single value accepts
  const char* message;  // what config::check says (x.yaml:LINE:COL of the offending key)
};

const std::vector<CrossCase>& cross_cases() {
  static const std::vector<CrossCase> cases = {
      {"eval:\n  ks: [10, 50]\n  metric: recall@20\n",
       "x.yaml:3:3: eval.metric recall@20 uses K = 20, which is not in eval.ks"},
      {"model:\n  patience: 2\n", "x.yaml:2:3: model.patience needs model.eval_every > 0"},
      {"model:\n  eval_every: 1\n",
       "x.yaml:2:3: model.eval_every needs a validation set; set split.validation_fraction above "
       "0"},
      {"model:\n  regularization: 0\n  unobserved_weight: 0\n",
       "x.yaml:2:3: model.regularization and model.unobserved_weight are both 0, so rows with "
       "fewer interactions than factors have no unique solution; set either above 0"},
      {"model:\n  unobserved_exp: 0.5\n  observed_weight: replaced\n",
       "x.yaml:3:3: model.observed_weight replaced subtracts one unobserved weight from every "
       "observed pair, which per-item unobserved weights (model.unobserved_exp 0.5) do not have; "
       "set model.unobserved_exp: 0 or model.observed_weight: added"},
      // The device where the config names it (auto is decided on the machine, by make_model).
      {"train:\n  device: cuda:1\nmodel:\n  observed_weight: replaced\n",
       "x.yaml:4:3: model.observed_weight replaced trains on the CPU only (the CUDA kernels weigh "
       "observed pairs as `added`); set train.device: cpu or model.observed_weight: added"},
      {"train:\n  device: cpu\nmodel:\n  dtype: float16\n",
       "x.yaml:4:3: model.dtype float16 needs a CUDA device, but this run trains on the CPU "
       "(train.device cpu), which stores factors in float32 only; set model.dtype: float32 or "
       "train.device: cuda"},
      {"train:\n  device: cpu\nmodel:\n  dtype: float16\n  observed_weight: replaced\n",
       "x.yaml:4:3: model.dtype float16 needs a CUDA device, but this run trains on the CPU "
       "(model.observed_weight replaced), which stores factors in float32 only; set model.dtype: "
       "float32"},
      {"model:\n  dtype: bfloat16\n  observed_weight: replaced\n",
       "x.yaml:2:3: model.dtype bfloat16 needs a CUDA device, but this run trains on the CPU "
       "(model.observed_weight replaced), which stores factors in float32 only; set model.dtype: "
       "float32"},
      {"model:\n  type: softmax\n  negatives: 0\n  in_batch: false\n",
       "x.yaml:3:3: model.negatives is 0 and model.in_batch is false, so the softmax has no "
       "negatives to compare each positive with; set model.negatives above 0 or model.in_batch: "
       "true"},
      {"model:\n  type: ccl\n  negatives: 0\n  in_batch: false\n",
       "x.yaml:3:3: model.negatives is 0 and model.in_batch is false, so the ccl has no "
       "negatives to compare each positive with; set model.negatives above 0 or model.in_batch: "
       "true"},
      {"model:\n  type: ccl\n  negatives: 100\n  item_bias: true\n",
       "x.yaml:4:3: model.item_bias does not apply to ccl, whose scores are cosines (its margin "
       "is a cosine); set it to false, or use model.type: softmax with model.normalize for a "
       "cosine plus an item bias"},
      {"model:\n  type: softmax\n  history_weight: 0.5\n",
       "x.yaml:3:3: model.history_weight (user-side aggregation) applies to ccl only (model.type "
       "is softmax); remove it or set model.type: ccl"},
      {"model:\n  type: bpr\n  dropout: 0.1\n",
       "x.yaml:3:3: model.dropout applies to ccl only (model.type is bpr); remove it or set "
       "model.type: ccl"},
      {"model:\n  type: ccl\n  history_weight: 1\n",
       "x.yaml:3:3: model.history_weight is 1, but a user's own row must keep some weight; "
       "expected a value in [0, 1)"},
      {"model:\n  type: ccl\n  temperature: 0.1\n",
       "x.yaml:3:3: model.temperature 0.1 applies to softmax only; ccl has no logits to scale "
       "(its margin and negative_weight shape the loss); remove the key"},
      {"model:\n  type: ccl\n  logq: false\n",
       "x.yaml:3:3: model.logq applies to softmax only; ccl has no logits to correct; remove the "
       "key"},
      {"model:\n  type: bpr\n  negatives: 0\n",
       "x.yaml:3:3: model.negatives is 0, but BPR needs at least one negative per positive"},
      {"model:\n  type: bpr\n  normalize: true\n",
       "x.yaml:3:3: model.normalize applies to softmax only (BPR has no temperature to scale "
       "cosines with); set it to false or use model.type: softmax"},
      {"model:\n  type: softmax\n  dtype: bfloat16\n",
       "x.yaml:3:3: model.dtype bfloat16 applies to iALS only; softmax stores float32 factors"},
      {"data:\n  format: adjacency\n  time_col: \"3\"\n",
       "x.yaml:3:3: data.format adjacency has no weight or time columns; remove data.weight_col "
       "and data.time_col"},
      {"data:\n  item_col: movieId\n",
       "x.yaml:2:3: data.item_col: column \"movieId\" is a name, which needs data.header: true (or "
       "give a 0-based column index)"},
      {"data:\n  format: synthetic\nsplit:\n  method: given\n",
       "x.yaml:4:3: split.method given needs data files; data.format synthetic generates one set "
       "(use random, leave_last, time or users)"},
      {"data:\n  path: a.csv\nsplit:\n  method: given\n",
       "x.yaml:4:3: split.method given needs data.test_path (the test file)"},
      {"data:\n  path: a.csv\n  test_path: b.csv\n",
       "x.yaml:3:3: data.test_path is only read by split.method given (split.method is random)"},
      {"data:\n  path: a.csv\nsplit:\n  method: leave_last\n",
       "x.yaml:4:3: split.method leave_last needs timestamps: set data.time_col"},
      {"model:\n  factors: 10\nindex:\n  type: ivf_pq\n  pq_m: 4\nexport:\n  enabled: true\n",
       "x.yaml:5:3: index.pq_m 4: expected a divisor of the factor dimension 10 (or 0 to choose "
       "one)"},
      // A repeated cutoff failed only at the first evaluation, after training.
      {"eval:\n  ks: [20, 10, 20]\n",
       "x.yaml:2:3: eval.ks lists 20 twice; expected distinct cutoffs"},
      // Refused by train's run directory only, without a location.
      {"run:\n  name: a/b\n",
       "x.yaml:2:3: run.name \"a/b\": expected a non-empty name without '/' that does not start "
       "with '.'"},
      {"run:\n  name: .hidden\n",
       "x.yaml:2:3: run.name \".hidden\": expected a non-empty name without '/' that does not "
       "start with '.'"},
      // The shape of a date that is not a day: refused by train's retention only.
      {"data:\n  path: a.csv\n  time_col: \"3\"\n  max_age_days: 10\n  max_age_from: 2023-02-29\n",
       "x.yaml:5:3: data.max_age_from \"2023-02-29\": not a valid date; expected a UTC date "
       "YYYY-MM-DD such as 2024-01-31"},
      {"data:\n  path: a.csv\n  time_col: \"3\"\n  max_age_days: 10\n  max_age_from: 2023-13-01\n",
       "x.yaml:5:3: data.max_age_from \"2023-13-01\": not a valid date; expected a UTC date "
       "YYYY-MM-DD such as 2024-01-31"},
  };
  return cases;
}

TEST(ConfigCheck, EveryCrossFieldCheckRefusesAtParseWithItsSentence) {
  for (const CrossCase& c : cross_cases()) EXPECT_EQ(parse_error(c.yaml), c.message) << c.yaml;
}

TEST(ConfigCheck, EachCaseIsValidOnceTheOtherKeyAgrees) {
  // The same files with the related key fixed parse: the check is about the combination.
  const std::vector<std::string> fixed = {
      "eval:\n  ks: [10, 20]\n  metric: recall@20\n",
      "model:\n  patience: 2\n  eval_every: 1\nsplit:\n  validation_fraction: 0.1\n",
      "model:\n  regularization: 0\n  unobserved_weight: 0.1\n",
      "model:\n  type: softmax\n  negatives: 0\n  in_batch: true\n",
      "model:\n  type: softmax\n  normalize: true\n",
      "model:\n  type: ials\n  dtype: bfloat16\n",
      "data:\n  format: delimited\n  time_col: \"3\"\n",
      "data:\n  item_col: movieId\n  header: true\n",
      "data:\n  format: synthetic\nsplit:\n  method: leave_last\n",
      "data:\n  path: a.csv\n  test_path: b.csv\nsplit:\n  method: given\n",
      "data:\n  path: a.csv\n  time_col: \"2\"\nsplit:\n  method: time\n",
      "model:\n  factors: 12\nindex:\n  type: ivf_pq\n  pq_m: 4\nexport:\n  enabled: true\n",
      "model:\n  type: bpr\n  item_bias: true\n  factors: 11\nindex:\n  type: ivf_pq\n  pq_m: "
      "4\nexport:\n  enabled: true\n",
      "model:\n  type: none\n  patience: 2\n",
      "eval:\n  ks: [20, 10]\n",
      "run:\n  name: a.b\n",
      "data:\n  path: a.csv\n  time_col: \"3\"\n  max_age_days: 10\n  max_age_from: 2024-02-29\n",
  };
  for (const std::string& y : fixed) EXPECT_EQ(parse_error(y), "") << y;
}

TEST(ConfigCheck, MetricWithAHugeKIsAUserError) {
  // K beyond int64: the same sentence as any K missing from eval.ks (it was an internal error,
  // std::stoi's out_of_range, at training time).
  EXPECT_EQ(parse_error("eval:\n  metric: ndcg@99999999999999999999\n"),
            "x.yaml:2:3: eval.metric ndcg@99999999999999999999 uses K = 99999999999999999999, "
            "which is not in eval.ks");
}

TEST(ConfigCheck, OverridesAreCheckedAfterTheLastOne) {
  // Each override alone would break a check; together they agree.
  EXPECT_EQ(Config::parse("", "x.yaml", {"eval.ks=[5]", "eval.metric=ndcg@5"}).settings().eval.ks,
            std::vector<int64_t>{5});
  try {
    Config::parse("", "x.yaml", {"eval.ks=[5]"});
    ADD_FAILURE() << "no error";
  } catch (const recforge::Error& e) {
    // The default metric: the sentence names the setting that made it fail.
    EXPECT_STREQ(e.what(),
                 "--set eval.ks=[5]: eval.metric ndcg@20 uses K = 20, which is not in eval.ks");
  }
}

TEST(ConfigCheck, TrainRefusesAConfigMadeBySetWithTheSameSentence) {
  // A config assembled by Config::set (as a sweep's trials are) has not been checked; train()
  // checks it before touching the disk.
  test::TempDir dir;
  Config c = Config::defaults();
  c.set("run.dir=" + nlohmann::json(dir.str()).dump());
  c.set("data.format=synthetic");
  c.set("model.patience=3");
  try {
    pipeline::train(c);
    ADD_FAILURE() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_STREQ(e.what(), "--set model.patience=3: model.patience needs model.eval_every > 0");
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.str())) << "nothing is written for a refused config";
}

/// Runs `recforge ARGS`, returning the exit status and stderr+stdout.
std::pair<int, std::string> run_cli(const std::string& args) {
  const std::string cmd = std::string("'") + RECFORGE_BINARY + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ConfigCheck, RecforgeConfigAndTrainRefuseTheSameFilesWithTheSameSentence) {
  test::TempDir dir;
  for (const CrossCase& c : cross_cases()) {
    const std::string file = test::write_file(dir.file("x.yaml"), c.yaml);
    const std::string expected =
        "recforge: error: " + std::string(c.message).replace(0, 6, file) + "\n";
    const auto [rc, out] = run_cli("config '" + file + "'");
    EXPECT_EQ(rc, 1) << c.yaml;
    EXPECT_EQ(out, expected) << c.yaml;
    const auto [train_rc, train_out] = run_cli("train '" + file + "' --set run.dir=" + dir.str());
    EXPECT_EQ(train_rc, 1) << c.yaml;
    EXPECT_EQ(train_out, expected) << c.yaml;
  }
  // `recforge config` without a file checks the --set values too.
  const auto [rc, out] = run_cli("config --set model.patience=1");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(out,
            "recforge: error: --set model.patience=1: model.patience needs "
            "model.eval_every > 0\n");
}

// ---- Layering ---------------------------------------------------------------------------------

TEST(ConfigLayering, ModelsAndIndicesNeverSeeTheConfigAndNobodyReadsByPath) {
  // Models, backends and indices take option structs (pipeline/options.h); code outside
  // src/config and the sweep (which varies parameters by path) reads Config::settings().
  namespace fs = std::filesystem;
  const fs::path src = fs::path(RECFORGE_SOURCE_DIR) / "src";
  const std::vector<std::string> getters = {".get_int(", ".get_float(", ".get_string(",
                                            ".get_bool(", ".get_int_list("};
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(src)) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = fs::relative(entry.path(), src).generic_string();
    const std::string ext = entry.path().extension().string();
    if (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh") continue;
    ++files;
    const std::string text = test::read_file(entry.path().string());
    const std::string top = rel.substr(0, rel.find('/'));
    if (top == "models" || top == "index" || top == "backend") {
      EXPECT_EQ(text.find("config/config.h"), std::string::npos) << rel;
    }
    if (top == "config" || top == "sweep") continue;
    for (const std::string& g : getters)
      EXPECT_EQ(text.find(g), std::string::npos) << rel << " reads a parameter by path: " << g;
  }
  EXPECT_GT(files, 50u) << "the sources were not found under " << src;
}

// ---- pipeline/options.h -----------------------------------------------------------------------

TEST(PipelineOptions, ModelSectionReachesTheSolverOptions) {
  const Config c = Config::parse(
      "run:\n  seed: 11\nmodel:\n  factors: 7\n  iterations: 4\n  regularization: 0.5\n"
      "  solver: cholesky\n  cg_steps: 2\n  unobserved_weight: 0.25\n",
      "x.yaml");
  const models::ModelOptions m = pipeline::model_options(c.settings());
  ASSERT_EQ(m.family, models::ModelOptions::Family::kIals);
  EXPECT_EQ(m.ials.factors, 7);
  EXPECT_EQ(m.ials.iterations, 4);
  EXPECT_EQ(m.ials.seed, 11u) << "model.seed unset: run.seed";
  EXPECT_EQ(m.ials.solve.regularization, 0.5);
  EXPECT_EQ(m.ials.solve.unobserved_weight, 0.25);
  EXPECT_TRUE(m.ials.solve.cholesky);
  EXPECT_EQ(m.ials.solve.cg_steps, 2);

  const Config b = Config::parse(
      "model:\n  type: bpr\n  factors: 9\n  seed: 5\n  optimizer: adagrad\n  negatives: 3\n"
      "  item_bias: true\n",
      "x.yaml");
  const models::ModelOptions e = pipeline::model_options(b.settings());
  ASSERT_EQ(e.family, models::ModelOptions::Family::kBatch);
  EXPECT_EQ(e.batch.params.loss, backend::BatchLoss::kBpr);
  EXPECT_EQ(e.batch.params.factors, 9);
  EXPECT_EQ(e.batch.params.optimizer, backend::Optimizer::kAdagrad);
  EXPECT_EQ(e.batch.params.negatives, 3);
  EXPECT_EQ(e.batch.seed, 5u);
  EXPECT_EQ(pipeline::embedding_dimension(b.settings()), 10) << "the item bias column";
  Config ials = b;
  ials.set("model.type=ials");
  EXPECT_EQ(pipeline::embedding_dimension(ials.settings()), 9) << "iALS has no item bias";
  Config none = b;
  none.set("model.type=none");
  EXPECT_EQ(pipeline::model_options(none.settings()).family, models::ModelOptions::Family::kNone);
}

// model.observed_weight replaced trains on the CPU only: train.device auto stays there (it would
// take a GPU that then refuses it); an explicit device, other models and `added` are as set.
// Its offset is unobserved_weight, and the model description names the setting.
TEST(PipelineOptions, ReplacedObservedWeightKeepsAutoOnTheCpu) {
  Config c = Config::defaults();
  EXPECT_EQ(pipeline::training_device(c.settings()), "auto");
  c.set("model.observed_weight=replaced");
  c.set("model.unobserved_weight=0.5");
  EXPECT_EQ(pipeline::training_device(c.settings()), "cpu");
  EXPECT_EQ(pipeline::ials_options(c.settings()).solve.observed_offset, 0.5);
  c.set("train.device=cuda:1");
  EXPECT_EQ(pipeline::training_device(c.settings()), "cuda:1");  // refused later, with a sentence
  c.set("train.device=auto");
  c.set("model.type=bpr");
  EXPECT_EQ(pipeline::training_device(c.settings()), "auto");
  c.set("model.type=ials");
  c.set("model.unobserved_weight=0");
  EXPECT_EQ(pipeline::ials_options(c.settings()).solve.observed_offset, 0.0);
  EXPECT_EQ(models::describe_ials(pipeline::ials_options(c.settings()))["observed_weight"], "replaced");
}

TEST(PipelineOptions, IndexSectionAndItsSeedFallback) {
  const Config c = Config::parse(
      "run:\n  seed: 8\nindex:\n  type: hnsw\n  metric: cosine\n  device: cpu\n  hnsw_m: 12\n",
      "x.yaml");
  index::Options o = pipeline::index_options(c.settings());
  EXPECT_EQ(o.type, index::Type::kHnsw);
  EXPECT_EQ(o.metric, index::Metric::kCosine);
  EXPECT_EQ(o.device, index::IndexDevice::kCpu);
  EXPECT_EQ(o.hnsw_m, 12);
  EXPECT_EQ(o.seed, 8u) << "index.seed unset: run.seed";
  Config s = c;
  s.set("index.seed=4");
  EXPECT_EQ(pipeline::index_options(s.settings()).seed, 4u);
}

TEST(PipelineOptions, DtypeOtherThanFloat32IsRefusedOnTheCpu) {
  const Config c = Config::parse("model:\n  dtype: float16\n", "x.yaml");
  try {
    pipeline::make_model(c, Context::create("cpu", 1));
    ADD_FAILURE() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_STREQ(e.what(),
                 "x.yaml:2:3: model.dtype float16 needs a CUDA device, but this run trains on the "
                 "CPU, which stores factors in float32 only; set model.dtype: float32 or "
                 "train.device: cuda");
  }
}

}  // namespace
}  // namespace recforge::config
