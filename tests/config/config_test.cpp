// Tests of the configuration system: the table, YAML validation and its messages, --set
// overrides, the dumps, and the checked-in reference docs/configuration.md.

#include "config/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace recforge::config {
namespace {

/// The message of the recforge::Error thrown by parse(), or "" when it succeeds.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    Config::parse(yaml, "x.yaml", overrides);
  } catch (const recforge::Error& e) {
    return e.what();
  }
  return "";
}

/// The message of the recforge::Error thrown by Config::set on defaults, or "".
std::string set_error(const std::string& assignment) {
  Config c = Config::defaults();
  try {
    c.set(assignment);
  } catch (const recforge::Error& e) {
    return e.what();
  }
  return "";
}

/// A table with an int list and other shapes the built-in table does not have (yet).
const std::vector<Param>& test_table() {
  static const std::vector<Param> table = [] {
    std::vector<Param> t(4);
    t[0].path = "eval.cutoffs";
    t[0].type = Type::kIntList;
    t[0].default_yaml = "[20, 50]";
    t[0].min = 1;
    t[0].description = "Cutoffs.";
    t[1].path = "eval.extra";
    t[1].type = Type::kIntList;
    t[1].optional = true;
    t[1].description = "Optional list.";
    t[2].path = "eval.ratio";
    t[2].type = Type::kFloat;
    t[2].default_yaml = "0.5";
    t[2].max = 1;
    t[2].max_exclusive = true;
    t[2].description = "Ratio.";
    t[3].path = "index.kind";
    t[3].type = Type::kEnum;
    t[3].default_yaml = "flat";
    t[3].choices = {"flat", "hnsw", "off"};
    t[3].description = "Kind.";
    return t;
  }();
  return table;
}

// ---- Table ----------------------------------------------------------------------------------

TEST(ConfigTable, PathsAreSectionKeyAndUnique) {
  std::set<std::string> seen;
  for (const Param& p : params()) {
    EXPECT_EQ(std::count(p.path.begin(), p.path.end(), '.'), 1) << p.path;
    EXPECT_TRUE(seen.insert(p.path).second) << p.path;
    EXPECT_FALSE(p.description.empty()) << p.path;
    EXPECT_EQ(find_param(p.path), &p);
  }
  EXPECT_EQ(find_param("data.nope"), nullptr);
  EXPECT_EQ(find_param("data"), nullptr);
}

TEST(ConfigTable, EverySectionIsDescribedOnceInTableOrder) {
  std::vector<std::string> used;
  for (const Param& p : params()) {
    const std::string s = p.path.substr(0, p.path.find('.'));
    if (used.empty() || used.back() != s) used.push_back(s);
  }
  std::vector<std::string> described;
  for (const Section& s : sections()) {
    described.push_back(s.name);
    EXPECT_FALSE(s.description.empty()) << s.name;
  }
  EXPECT_EQ(used, described) << "sections() must list the table's sections in order, and a "
                                "section's parameters must be contiguous";
}

TEST(ConfigTable, HasTheExpectedSections) {
  for (const char* path : {"run.name",
                           "run.dir",
                           "run.exists",
                           "run.seed",
                           "run.log_level",
                           "run.progress",
                           "train.device",
                           "train.threads",
                           "train.checkpoint_every",
                           "data.format",
                           "data.path",
                           "data.test_path",
                           "data.delimiter",
                           "data.header",
                           "data.user_col",
                           "data.item_col",
                           "data.weight_col",
                           "data.time_col",
                           "data.id_type",
                           "data.duplicates",
                           "data.min_weight",
                           "data.min_user_interactions",
                           "data.min_item_interactions",
                           "data.on_error",
                           "data.cache",
                           "data.cache_dir",
                           "synthetic.users",
                           "synthetic.items",
                           "synthetic.interactions",
                           "synthetic.communities",
                           "synthetic.community_strength",
                           "synthetic.popularity_exponent",
                           "synthetic.activity_sigma",
                           "synthetic.days",
                           "synthetic.weights",
                           "synthetic.seed",
                           "split.method",
                           "split.test_fraction",
                           "split.leave_k",
                           "split.cutoff",
                           "split.cutoff_quantile",
                           "split.heldout_users",
                           "split.validation_fraction",
                           "weighting.scheme",
                           "weighting.alpha",
                           "weighting.eps",
                           "weighting.bm25_k1",
                           "weighting.bm25_b",
                           "index.type",
                           "index.metric",
                           "index.device",
                           "index.nlist",
                           "index.nprobe",
                           "index.pq_m",
                           "index.pq_nbits",
                           "index.hnsw_m",
                           "index.ef_construction",
                           "index.ef_search",
                           "index.train_sample",
                           "index.seed",
                           "export.enabled",
                           "export.out",
                           "export.pseudonymize",
                           "export.pseudonym_key_file",
                           "export.pseudonym_key_env",
                           "data.max_age_days",
                           "data.max_age_from",
                           "data.time_unit",
                           "privacy.opt_out",
                           "privacy.file_mode",
                           "model.margin",
                           "model.negative_weight",
                           "model.history_weight",
                           "model.dropout",
                           "eval.validation_sample",
                           "model.init_from",
                           "model.init_from_max_age_days",
                           "model.observed_weight"})
    EXPECT_NE(find_param(path), nullptr) << path;
  EXPECT_EQ(params().size(), 111u);
}

// ---- Defaults -------------------------------------------------------------------------------

TEST(ConfigDefaults, HaveTheDeclaredValues) {
  const Config c = Config::defaults();
  EXPECT_EQ(c.source(), "");
  EXPECT_EQ(c.get_string("run.name"), "");
  EXPECT_EQ(c.get_string("run.dir"), "runs");
  EXPECT_EQ(c.get_string("run.exists"), "suffix");
  EXPECT_EQ(c.get_int("run.seed"), 42);
  EXPECT_EQ(c.get_string("train.device"), "auto");
  EXPECT_EQ(c.get_int("train.threads"), 0);
  EXPECT_FALSE(c.is_set("data.path"));
  EXPECT_FALSE(c.is_set("data.weight_col"));
  EXPECT_FALSE(c.is_set("split.cutoff"));
  EXPECT_TRUE(c.is_set("data.user_col"));
  EXPECT_EQ(c.get_string("data.user_col"), "0");
  EXPECT_EQ(c.get_string("data.item_col"), "1");
  EXPECT_FALSE(c.get_bool("data.header"));
  EXPECT_TRUE(c.get_bool("data.cache"));
  EXPECT_EQ(c.get_float("data.min_weight"), 0.0);
  EXPECT_EQ(c.get_int("synthetic.interactions"), 1000000);
  EXPECT_DOUBLE_EQ(c.get_float("synthetic.community_strength"), 0.8);
  EXPECT_EQ(c.get_string("split.method"), "random");
  EXPECT_DOUBLE_EQ(c.get_float("split.test_fraction"), 0.2);
  EXPECT_EQ(c.get_float("weighting.bm25_k1"), 100.0);
  EXPECT_EQ(c.where("run.seed"), "default");
}

TEST(ConfigDefaults, EveryDefaultPassesItsOwnValidation) {
  // Each default, given as an override and as a file entry, validates and changes nothing.
  const Config d = Config::defaults();
  std::string file;
  std::string section;
  for (const Param& p : params()) {
    if (p.default_yaml.empty()) continue;
    Config c = Config::defaults();
    EXPECT_NO_THROW(c.set(p.path + "=" + p.default_yaml)) << p.path;
    EXPECT_EQ(c, d) << p.path;
    const std::string s = p.path.substr(0, p.path.find('.'));
    if (s != section) file += (section = s) + ":\n";
    file += "  " + p.path.substr(p.path.find('.') + 1) + ": " + p.default_yaml + "\n";
  }
  EXPECT_EQ(Config::parse(file, "all.yaml"), d);
}

TEST(ConfigDefaults, EmptyAndCommentOnlyFilesGiveDefaults) {
  EXPECT_EQ(Config::parse("", "x.yaml"), Config::defaults());
  EXPECT_EQ(Config::parse("# nothing\n\n", "x.yaml"), Config::defaults());
  EXPECT_EQ(Config::parse("data:\n  # path: x\nsplit:\n", "x.yaml"), Config::defaults());
  EXPECT_EQ(Config::parse("", "x.yaml").source(), "x.yaml");
}

TEST(ConfigDefaults, ShippedQuickstartLoads) {
  const Config c = Config::load(RECFORGE_SOURCE_DIR "/configs/quickstart.yaml");
  EXPECT_EQ(c.get_string("data.format"), "synthetic");
}

TEST(ConfigDefaults, EveryShippedConfigValidates) {
  // Each configs/*.yaml must load against the parameter table (unknown keys, types, bounds).
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(RECFORGE_SOURCE_DIR "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    const std::string text = [&] {
      std::ifstream in(e.path());
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    // Sweep files (a `base:` config plus a search space) are checked by the sweep tests.
    if (text.find("\nbase:") != std::string::npos || text.rfind("base:", 0) == 0) continue;
    EXPECT_NO_THROW(Config::load(e.path().string())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 5);
}

// ---- Reading values -------------------------------------------------------------------------

TEST(ConfigParse, ReadsEveryTypeAndRecordsWhere) {
  const Config c = Config::parse(
      "run:\n"
      "  seed: 7\n"
      "  name: \"007\"\n"
      "data:\n"
      "  path: data/x.tsv\n"
      "  header: yes\n"
      "  user_col: 0\n"
      "  delimiter: tab\n"
      "  min_weight: -2\n"
      "  time_col: ts\n"
      "train:\n"
      "  device: cuda:1\n"
      "split:\n"
      "  cutoff: 1.5e9\n",
      "configs/x.yaml");
  EXPECT_EQ(c.get_int("run.seed"), 7);
  EXPECT_EQ(c.where("run.seed"), "configs/x.yaml:2:3");
  EXPECT_EQ(c.get_string("run.name"), "007");
  EXPECT_EQ(c.get_string("data.path"), "data/x.tsv");
  EXPECT_EQ(c.where("data.path"), "configs/x.yaml:5:3");
  EXPECT_TRUE(c.get_bool("data.header"));
  EXPECT_EQ(c.get_string("data.user_col"), "0");
  EXPECT_EQ(c.get_string("data.delimiter"), "tab");
  EXPECT_EQ(c.get_float("data.min_weight"), -2.0);
  EXPECT_EQ(c.get_string("data.time_col"), "ts");
  EXPECT_EQ(c.get_string("train.device"), "cuda:1");
  EXPECT_EQ(c.get_int("split.cutoff"), 1500000000);  // a whole number in decimal notation
  EXPECT_EQ(c.where("data.item_col"), "default");
  EXPECT_EQ(c.source(), "configs/x.yaml");
}

TEST(ConfigParse, BooleansAcceptYamlWords) {
  for (const char* t : {"true", "True", "yes", "on", "ON"})
    EXPECT_TRUE(Config::parse(std::string("data:\n  header: ") + t, "x").get_bool("data.header"))
        << t;
  for (const char* f : {"false", "no", "off", "Off"})
    EXPECT_FALSE(Config::parse(std::string("data:\n  cache: ") + f, "x").get_bool("data.cache"))
        << f;
}

TEST(ConfigParse, FloatsAcceptIntegers) {
  EXPECT_EQ(Config::parse("weighting:\n  alpha: 40", "x").get_float("weighting.alpha"), 40.0);
  EXPECT_EQ(Config::parse("weighting:\n  alpha: .5", "x").get_float("weighting.alpha"), 0.5);
  EXPECT_EQ(Config::parse("weighting:\n  alpha: 1e-3", "x").get_float("weighting.alpha"), 1e-3);
}

TEST(ConfigParse, NullUnsetsOptionalsOnly) {
  const Config c = Config::parse("data:\n  path: ~\n  weight_col: null\n  time_col:\n", "x.yaml");
  EXPECT_FALSE(c.is_set("data.path"));
  EXPECT_FALSE(c.is_set("data.weight_col"));
  EXPECT_FALSE(c.is_set("data.time_col"));
  EXPECT_EQ(c.where("data.path"), "x.yaml:2:3");
  EXPECT_EQ(error_of("run:\n  seed: ~\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got null");
  EXPECT_EQ(error_of("run:\n  name:\n"), "x.yaml:2:3: run.name: expected a string, got null");
  // A quoted "null" is a string.
  EXPECT_EQ(Config::parse("data:\n  path: \"null\"\n", "x").get_string("data.path"), "null");
}

TEST(ConfigParse, DeviceCheck) {
  for (const char* ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"})
    EXPECT_EQ(error_of(std::string("train:\n  device: ") + ok), "") << ok;
  EXPECT_EQ(error_of("train:\n  device: gpu\n"),
            "x.yaml:2:3: train.device: expected auto, cpu, cuda or cuda:N, got \"gpu\"");
  EXPECT_EQ(error_of("train:\n  device: \"cuda:\"\n"),
            "x.yaml:2:3: train.device: expected auto, cpu, cuda or cuda:N, got \"cuda:\"");
  EXPECT_EQ(error_of("train:\n  device: cuda:-1\n"),
            "x.yaml:2:3: train.device: expected auto, cpu, cuda or cuda:N, got \"cuda:-1\"");
}

// ---- Error messages -------------------------------------------------------------------------

TEST(ConfigErrors, UnknownKeySuggestsNearest) {
  EXPECT_EQ(error_of("data:\n  path: x\n  delimter: tab\n"),
            "x.yaml:3:3: data.delimter: unknown key; did you mean \"data.delimiter\"?");
  // A key under the wrong section suggests where it belongs.
  EXPECT_EQ(error_of("split:\n  test_path: t.tsv\n"),
            "x.yaml:2:3: split.test_path: unknown key; did you mean \"data.test_path\"?");
}

TEST(ConfigErrors, UnknownKeyListsKnownKeysWhenNothingIsNear) {
  EXPECT_EQ(error_of("weighting:\n  confidence: 3\n"),
            "x.yaml:2:3: weighting.confidence: unknown key; known keys in weighting: scheme, "
            "alpha, eps, bm25_k1, bm25_b");
}

TEST(ConfigErrors, UnknownSection) {
  EXPECT_EQ(error_of("dta:\n  path: x\n"),
            "x.yaml:1:1: dta: unknown section; did you mean \"data\"?");
  EXPECT_EQ(error_of("run: {}\ncolour:\n  factors: 3\n"),
            "x.yaml:2:1: colour: unknown section; known sections: run, train, data, synthetic, "
            "split, weighting, model, eval, index, export, privacy");
  EXPECT_EQ(error_of("seed: 3\n"), "x.yaml:1:1: seed: unknown section; did you mean \"run.seed\"?");
}

TEST(ConfigErrors, PrivacySettingsThatCannotWorkTogether) {
  EXPECT_EQ(error_of("export:\n  pseudonymize: true\n"),
            "x.yaml:2:3: export.pseudonymize needs a key: set export.pseudonym_key_file or "
            "export.pseudonym_key_env");
  EXPECT_EQ(error_of("export:\n  pseudonymize: true\n  pseudonym_key_file: k\n  "
                     "pseudonym_key_env: K\n"),
            "x.yaml:4:3: set one of export.pseudonym_key_file and export.pseudonym_key_env, not "
            "both");
  EXPECT_EQ(error_of("export:\n  pseudonym_key_env: K\n"),
            "x.yaml:2:3: a pseudonymisation key is given but export.pseudonymize is false; set "
            "it to true or remove the key setting");
  EXPECT_EQ(error_of("data:\n  path: x.csv\n  max_age_days: 30\n"),
            "x.yaml:3:3: data.max_age_days needs timestamps: set data.time_col");
  EXPECT_EQ(error_of("data:\n  path: x.csv\n  time_col: \"2\"\n  max_age_days: 30\n  "
                     "max_age_from: 2024-13\n"),
            "x.yaml:5:3: data.max_age_from \"2024-13\": expected a UTC date YYYY-MM-DD or an "
            "integer timestamp");
  EXPECT_EQ(error_of("data:\n  path: x.csv\n  time_col: \"2\"\n  max_age_days: 30\n  "
                     "max_age_from: 2024-03-01\n"),
            "");
  EXPECT_EQ(error_of("privacy:\n  file_mode: everyone\n"),
            "x.yaml:2:3: privacy.file_mode: expected one of owner, group, umask, got "
            "\"everyone\"");
}

TEST(ConfigValues, WholeNumbersAreReadExactlyInAnyDecimalNotation) {
  // Integers are read from their digits, never through a double: a nanosecond timestamp above
  // 2^53 keeps its last digit (a double would round 1700000000000000001 to ...000).
  const std::pair<const char*, int64_t> cases[] = {
      {"1700000000000000001", 1700000000000000001},
      {"1.700000000000000001e18", 1700000000000000001},
      {"1.5e9", 1500000000},
      {"15E+8", 1500000000},
      {"2000.000", 2000},
      {"+0.0e99", 0},
      {"-0", 0},
      {"-120e-1", -12},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min()},
      {"9.223372036854775807e18", std::numeric_limits<int64_t>::max()},
  };
  for (const auto& [text, value] : cases) {
    const Config c = Config::parse(std::string("split:\n  cutoff: ") + text + "\n", "x.yaml");
    EXPECT_EQ(c.get_int("split.cutoff"), value) << text;
  }
  EXPECT_EQ(Config::parse("model:\n  factors: 6.4e1\n", "x.yaml").get_int("model.factors"), 64);
  EXPECT_NE(error_of("split:\n  cutoff: 9223372036854775808\n").find("64-bit"), std::string::npos);
  EXPECT_NE(error_of("split:\n  cutoff: -9.223372036854775809e18\n").find("64-bit"),
            std::string::npos);
  EXPECT_EQ(error_of("split:\n  cutoff: 1500000000.5\n"),
            "x.yaml:2:3: split.cutoff: expected an integer, got 1500000000.5");
}

TEST(ConfigErrors, Integers) {
  EXPECT_EQ(error_of("run:\n  seed: abc\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got \"abc\"");
  EXPECT_EQ(error_of("run:\n  seed: 1.5\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got 1.5");
  EXPECT_EQ(error_of("run:\n  seed: true\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got true");
  EXPECT_EQ(error_of("run:\n  seed: -1\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got -1");
  EXPECT_EQ(error_of("run:\n  seed: \"42\"\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got \"42\"");
  EXPECT_EQ(error_of("run:\n  seed: 99999999999999999999\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0 and between -9223372036854775808 and "
            "9223372036854775807 (recforge keeps it in a 64-bit integer), got "
            "99999999999999999999");
  EXPECT_EQ(error_of("run:\n  seed: 1e19\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0 and between -9223372036854775808 and "
            "9223372036854775807 (recforge keeps it in a 64-bit integer), got 1e19");
  EXPECT_EQ(error_of("eval:\n  ks: [10, 1e30]\n"),
            "x.yaml:2:3: eval.ks: expected a list of integers >= 1 and at most 2147483647 "
            "(recforge keeps it in a 32-bit integer), got [10, 1e30]");
  // A fraction is not an integer, however it is written; a tiny exponent is still a fraction.
  EXPECT_EQ(error_of("run:\n  seed: 15e-1\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got 15e-1");
  EXPECT_EQ(error_of("run:\n  seed: 1e-99999999999999999999\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got 1e-99999999999999999999");
  EXPECT_EQ(error_of("data:\n  min_user_interactions: 0\n"),
            "x.yaml:2:3: data.min_user_interactions: expected an integer >= 1, got 0");
  EXPECT_EQ(error_of("synthetic:\n  items: 1\n"),
            "x.yaml:2:3: synthetic.items: expected an integer >= 2, got 1");
  EXPECT_EQ(error_of("run:\n  seed: +5\n"), "");
  EXPECT_EQ(error_of("run:\n  seed: 9223372036854775807\n"), "");
  // YAML's own tags for the type are accepted; another tag, or quotes, make text.
  const Config tagged = Config::parse(
      "run:\n  seed: !!int 8\nsplit:\n  test_fraction: !!float 0.25\ndata:\n  header: !!bool "
      "yes\nmodel:\n  regularization: !!int 2\n",
      "x.yaml");
  EXPECT_EQ(tagged.get_int("run.seed"), 8);
  EXPECT_EQ(tagged.get_float("split.test_fraction"), 0.25);
  EXPECT_TRUE(tagged.get_bool("data.header"));
  EXPECT_EQ(tagged.get_float("model.regularization"), 2.0);
  EXPECT_EQ(error_of("run:\n  seed: !!str 8\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got \"8\"");
  EXPECT_EQ(error_of("run:\n  seed: !!float 8.5\n"),
            "x.yaml:2:3: run.seed: expected an integer >= 0, got \"8.5\"");
  EXPECT_EQ(Config::parse("run:\n  seed: !!float 8\n", "x.yaml").get_int("run.seed"), 8);
  // Integers the code keeps in 32 bits are refused past 2^31 - 1 instead of wrapping
  // (4294967360 factors would have become 64); the seeds and the synthetic interaction count
  // keep 64 bits.
  EXPECT_EQ(error_of("model:\n  factors: 4294967360\n"),
            "x.yaml:2:3: model.factors: expected an integer >= 1 and at most 2147483647 (recforge "
            "keeps it in a 32-bit integer), got 4294967360");
  EXPECT_EQ(error_of("model:\n  factors: 2147483648\n"),
            "x.yaml:2:3: model.factors: expected an integer >= 1 and at most 2147483647 (recforge "
            "keeps it in a 32-bit integer), got 2147483648");
  EXPECT_EQ(error_of("eval:\n  ks: [20, 4294967316]\n"),
            "x.yaml:2:3: eval.ks: expected a list of integers >= 1 and at most 2147483647 "
            "(recforge keeps it in a 32-bit integer), got [20, 4294967316]");
  EXPECT_EQ(error_of("index:\n  ef_search: 2147483647\n"), "");
  EXPECT_EQ(error_of("run:\n  seed: 1099511627776\n"), "");
  EXPECT_EQ(error_of("model:\n  seed: 1099511627776\n"), "");
  EXPECT_EQ(error_of("index:\n  seed: 1099511627776\n"), "");
  EXPECT_EQ(error_of("synthetic:\n  seed: 1099511627776\n"), "");
  EXPECT_EQ(error_of("synthetic:\n  interactions: 5000000000\n"), "");
}

TEST(ConfigErrors, Floats) {
  EXPECT_EQ(error_of("weighting:\n  alpha: abc\n"),
            "x.yaml:2:3: weighting.alpha: expected a number >= 0, got \"abc\"");
  EXPECT_EQ(error_of("weighting:\n  alpha: .nan\n"),
            "x.yaml:2:3: weighting.alpha: expected a number >= 0, got .nan");
  EXPECT_EQ(error_of("weighting:\n  alpha: nan\n"),
            "x.yaml:2:3: weighting.alpha: expected a number >= 0, got nan");
  EXPECT_EQ(error_of("weighting:\n  alpha: .inf\n"),
            "x.yaml:2:3: weighting.alpha: expected a number >= 0, got .inf");
  EXPECT_EQ(error_of("weighting:\n  alpha: 1e999\n"),
            "x.yaml:2:3: weighting.alpha: expected a number >= 0, got 1e999");
  EXPECT_EQ(error_of("weighting:\n  eps: 0\n"),
            "x.yaml:2:3: weighting.eps: expected a number > 0, got 0");
  EXPECT_EQ(error_of("split:\n  test_fraction: 1\n"),
            "x.yaml:2:3: split.test_fraction: expected a number in (0, 1), got 1");
  EXPECT_EQ(error_of("split:\n  test_fraction: 0.0\n"),
            "x.yaml:2:3: split.test_fraction: expected a number in (0, 1), got 0.0");
  EXPECT_EQ(error_of("split:\n  validation_fraction: 1\n"),
            "x.yaml:2:3: split.validation_fraction: expected a number in [0, 1), got 1");
  EXPECT_EQ(error_of("synthetic:\n  community_strength: 1.01\n"),
            "x.yaml:2:3: synthetic.community_strength: expected a number in [0, 1], got 1.01");
  EXPECT_EQ(error_of("split:\n  validation_fraction: 0\nsynthetic:\n  community_strength: 1\n"),
            "");
}

TEST(ConfigErrors, BooleansAndEnums) {
  EXPECT_EQ(error_of("data:\n  header: maybe\n"),
            "x.yaml:2:3: data.header: expected true or false, got \"maybe\"");
  EXPECT_EQ(error_of("data:\n  header: 1\n"),
            "x.yaml:2:3: data.header: expected true or false, got 1");
  EXPECT_EQ(error_of("data:\n  duplicates: avg\n"),
            "x.yaml:2:3: data.duplicates: expected one of sum, max, last, got \"avg\"");
  EXPECT_EQ(error_of("data:\n  duplicates: Sum\n"),
            "x.yaml:2:3: data.duplicates: expected one of sum, max, last, got \"Sum\"");
}

TEST(ConfigErrors, WrongShapes) {
  EXPECT_EQ(error_of("data: foo\n"),
            "x.yaml:1:1: data: expected a mapping of data settings, got \"foo\"");
  EXPECT_EQ(error_of("data:\n  - path\n"),
            "x.yaml:1:1: data: expected a mapping of data settings, got a list");
  EXPECT_EQ(error_of("data:\n  delimiter: [tab]\n"),
            "x.yaml:2:3: data.delimiter: expected one of auto, comma, tab, space, whitespace, "
            "semicolon, pipe, got a list");
  EXPECT_EQ(error_of("data:\n  path: {a: 1}\n"),
            "x.yaml:2:3: data.path: expected a string, got a mapping");
  EXPECT_EQ(error_of("- run\n- data\n"), "x.yaml:1:1: expected a mapping of sections, got a list");
  EXPECT_EQ(error_of("just text\n"),
            "x.yaml:1:1: expected a mapping of sections, got \"just text\"");
}

TEST(ConfigErrors, IndexAndExportSections) {
  EXPECT_EQ(error_of("index:\n  type: ivf\n"),
            "x.yaml:2:3: index.type: expected one of flat, ivf_flat, ivf_pq, hnsw, got \"ivf\"");
  EXPECT_EQ(error_of("index:\n  metric: l2\n"),
            "x.yaml:2:3: index.metric: expected one of inner_product, cosine, got \"l2\"");
  // Faiss's IVF-PQ takes at most 8 bits (9 to 16 failed at export, after training).
  EXPECT_EQ(error_of("index:\n  pq_nbits: 9\n"),
            "x.yaml:2:3: index.pq_nbits: expected an integer in [1, 8], got 9");
  EXPECT_EQ(error_of("index:\n  nprobe: 0\n"),
            "x.yaml:2:3: index.nprobe: expected an integer >= 1, got 0");
  EXPECT_EQ(error_of("index:\n  nprob: 4\n"),
            "x.yaml:2:3: index.nprob: unknown key; did you mean \"index.nprobe\"?");
  EXPECT_EQ(error_of("export:\n  enabled: yes please\n"),
            "x.yaml:2:3: export.enabled: expected true or false, got \"yes please\"");
  const Config c = Config::parse("index:\n  type: hnsw\n  ef_search: 64\nexport:\n  enabled: true\n",
                                 "x.yaml");
  EXPECT_EQ(c.get_string("index.type"), "hnsw");
  EXPECT_EQ(c.get_int("index.ef_search"), 64);
  EXPECT_EQ(c.get_string("index.metric"), "inner_product");
  EXPECT_EQ(c.get_int("index.nlist"), 0);
  EXPECT_FALSE(c.is_set("index.seed"));
  EXPECT_TRUE(c.get_bool("export.enabled"));
  EXPECT_EQ(c.get_string("export.out"), "");
}

TEST(ConfigErrors, DuplicateKeys) {
  EXPECT_EQ(error_of("data:\n  header: true\n  path: x\n  header: false\n"),
            "x.yaml:4:3: data.header: duplicate key, first given at line 2");
  EXPECT_EQ(error_of("data:\n  path: x\nrun:\n  seed: 1\ndata:\n  header: true\n"),
            "x.yaml:5:1: data: duplicate section, first given at line 1");
}

TEST(ConfigErrors, InvalidYaml) {
  EXPECT_EQ(error_of("data:\n  path: [a, b\n"),
            "x.yaml:3:1: invalid YAML: end of sequence flow not found");
  EXPECT_EQ(error_of("data:\n  path: x\n bad: y\n"),
            "x.yaml:3:2: invalid YAML: end of map not found");
  EXPECT_EQ(error_of("run:\n  name: a: b\n"), "x.yaml:2:10: invalid YAML: illegal map value");
}

TEST(ConfigErrors, MissingOrUnreadableFile) {
  test::TempDir dir;
  const std::string path = dir.file("nope.yaml");
  try {
    Config::load(path);
    FAIL() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot open config file: No such file or directory");
  }
  try {
    Config::load(dir.str());
    FAIL() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.str() + ": cannot read config file: Is a directory");
  }
}

// ---- Overrides ------------------------------------------------------------------------------

TEST(ConfigSet, ErrorsNameTheArgument) {
  EXPECT_EQ(set_error("data.delimiter=foo"),
            "--set data.delimiter=foo: data.delimiter: expected one of auto, comma, tab, space, "
            "whitespace, semicolon, pipe, got \"foo\"");
  EXPECT_EQ(set_error("foo"), "--set foo: expected section.key=value");
  EXPECT_EQ(set_error("=3"), "--set =3: expected section.key=value");
  EXPECT_EQ(set_error("seed=3"), "--set seed=3: expected section.key=value");
  EXPECT_EQ(set_error("run.=3"), "--set run.=3: expected section.key=value");
  EXPECT_EQ(
      set_error("data.delimter=tab"),
      "--set data.delimter=tab: data.delimter: unknown key; did you mean \"data.delimiter\"?");
  EXPECT_EQ(set_error("dta.path=x"),
            "--set dta.path=x: dta.path: unknown key; did you mean \"data.path\"?");
  EXPECT_EQ(set_error("colour.factors=64"),
            "--set colour.factors=64: colour.factors: unknown key; did you mean "
            "\"model.factors\"?");
  EXPECT_EQ(set_error("colour.hue=64"),
            "--set colour.hue=64: colour.hue: unknown key; known sections: run, train, data, "
            "synthetic, split, weighting, model, eval, index, export, privacy");
  EXPECT_EQ(set_error("run.seed=[1, 2]"),
            "--set run.seed=[1, 2]: run.seed: expected an integer >= 0, got a list");
  EXPECT_EQ(set_error("run.seed="),
            "--set run.seed=: run.seed: expected an integer >= 0, got null");
  // Text that YAML reads as nothing is quoted as typed ("got null" for a comma).
  EXPECT_EQ(set_error("data.delimiter=,"),
            "--set data.delimiter=,: data.delimiter: expected one of auto, comma, tab, space, "
            "whitespace, semicolon, pipe, got \",\"");
  EXPECT_EQ(set_error("run.seed=~"),
            "--set run.seed=~: run.seed: expected an integer >= 0, got null");
  EXPECT_EQ(set_error("data.path=[a"),
            "--set data.path=[a: data.path: invalid YAML value: end of sequence flow not found");
}

TEST(ConfigSet, OverridesApplyAfterTheFileInOrder) {
  test::TempDir dir;
  const std::string file =
      test::write_file(dir.file("x.yaml"), "run:\n  seed: 7\ndata:\n  path: a.tsv\n");
  const Config c = Config::load(file, {"run.seed=8", "data.delimiter=comma", "run.seed=9",
                                       "data.path=", "split.cutoff = 100"});
  EXPECT_EQ(c.get_int("run.seed"), 9);
  EXPECT_EQ(c.where("run.seed"), "--set run.seed=9");
  EXPECT_EQ(c.get_string("data.delimiter"), "comma");
  EXPECT_EQ(c.where("data.delimiter"), "--set data.delimiter=comma");
  EXPECT_FALSE(c.is_set("data.path"));  // an empty value is YAML null
  EXPECT_EQ(c.where("data.path"), "--set data.path=");
  EXPECT_EQ(c.get_int("split.cutoff"), 100);
  EXPECT_EQ(c.where("data.header"), "default");
  EXPECT_EQ(c.source(), file);

  const Config d = Config::load(file);
  EXPECT_EQ(d.get_int("run.seed"), 7);
  EXPECT_EQ(d.where("run.seed"), file + ":2:3");

  // Override values are validated like file values, and errors stop at the first bad one.
  try {
    Config::load(file, {"run.seed=1", "synthetic.items=1"});
    FAIL() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--set synthetic.items=1: synthetic.items: expected an integer >= 2, got 1");
  }
}

TEST(ConfigSet, StringsKeepTheirText) {
  Config c = Config::defaults();
  c.set("data.user_col=007");
  EXPECT_EQ(c.get_string("data.user_col"), "007");
  c.set("data.path=my data/x #1.tsv");  // " #" starts a YAML comment
  EXPECT_EQ(c.get_string("data.path"), "my data/x");
  c.set("data.path=\"a: b #c\"");
  EXPECT_EQ(c.get_string("data.path"), "a: b #c");
  c.set("run.name=true");
  EXPECT_EQ(c.get_string("run.name"), "true");
}

// ---- Getters --------------------------------------------------------------------------------

TEST(ConfigGetters, MisuseIsAnInternalError) {
  const Config c = Config::defaults();
  EXPECT_THROW(c.get_int("run.nope"), recforge::InternalError);
  EXPECT_THROW(c.get_float("run.seed"), recforge::InternalError);
  EXPECT_THROW(c.get_int("weighting.alpha"), recforge::InternalError);
  EXPECT_THROW(c.get_bool("run.name"), recforge::InternalError);
  EXPECT_THROW(c.get_string("run.seed"), recforge::InternalError);
  EXPECT_THROW(c.get_int_list("run.seed"), recforge::InternalError);
  EXPECT_THROW(c.get_string("data.path"), recforge::InternalError);  // unset optional
  EXPECT_THROW(c.is_set("nope"), recforge::InternalError);
  EXPECT_THROW(c.where("nope"), recforge::InternalError);
  EXPECT_EQ(c.get_string("data.format"), "delimited");  // enums read as strings
}

TEST(ConfigGetters, BadTableIsAnInternalError) {
  std::vector<Param> t(1);
  t[0].path = "nodot";
  t[0].type = Type::kInt;
  t[0].default_yaml = "1";
  t[0].description = "x";
  EXPECT_THROW(Config::defaults(t), recforge::InternalError);
  t[0].path = "a.b";
  t[0].default_yaml = "x";
  EXPECT_THROW(Config::defaults(t), recforge::InternalError);  // default fails validation
  t[0].default_yaml = "1";
  t[0].min = 2;
  EXPECT_THROW(Config::defaults(t), recforge::InternalError);
  t[0].min.reset();
  EXPECT_NO_THROW(Config::defaults(t));
  t.push_back(t[0]);
  EXPECT_THROW(Config::defaults(t), recforge::InternalError);  // duplicate path
}

// ---- Int lists (custom table) ---------------------------------------------------------------

TEST(ConfigIntList, AcceptsListsAndSingleIntegers) {
  const auto& t = test_table();
  const Config d = Config::defaults(t);
  EXPECT_EQ(d.get_int_list("eval.cutoffs"), (std::vector<int64_t>{20, 50}));
  EXPECT_FALSE(d.is_set("eval.extra"));
  EXPECT_EQ(Config::parse(t, "eval:\n  cutoffs: 7\n", "x").get_int_list("eval.cutoffs"),
            (std::vector<int64_t>{7}));
  EXPECT_EQ(
      Config::parse(t, "eval:\n  cutoffs:\n    - 1\n    - 2\n", "x").get_int_list("eval.cutoffs"),
      (std::vector<int64_t>{1, 2}));
  Config c = Config::parse(t, "", "x", {"eval.cutoffs=[5,10, 100]", "eval.extra=[]"});
  EXPECT_EQ(c.get_int_list("eval.cutoffs"), (std::vector<int64_t>{5, 10, 100}));
  EXPECT_TRUE(c.is_set("eval.extra"));
  EXPECT_TRUE(c.get_int_list("eval.extra").empty());
}

TEST(ConfigIntList, Errors) {
  const auto& t = test_table();
  auto err = [&](const std::string& yaml) {
    try {
      Config::parse(t, yaml, "x.yaml");
    } catch (const recforge::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(err("eval:\n  cutoffs: [20, 0]\n"),
            "x.yaml:2:3: eval.cutoffs: expected a list of integers >= 1, got [20, 0]");
  EXPECT_EQ(err("eval:\n  cutoffs: [20, abc, 1.5]\n"),
            "x.yaml:2:3: eval.cutoffs: expected a list of integers >= 1, got [20, \"abc\", 1.5]");
  EXPECT_EQ(err("eval:\n  cutoffs: abc\n"),
            "x.yaml:2:3: eval.cutoffs: expected a list of integers >= 1, got \"abc\"");
  EXPECT_EQ(err("eval:\n  cutoffs: {a: 1}\n"),
            "x.yaml:2:3: eval.cutoffs: expected a list of integers >= 1, got a mapping");
  EXPECT_EQ(err("eval:\n  ratio: 1\n"), "x.yaml:2:3: eval.ratio: expected a number < 1, got 1");
  EXPECT_EQ(err("eval:\n  cutofs: 3\n"),
            "x.yaml:2:3: eval.cutofs: unknown key; did you mean \"eval.cutoffs\"?");
}

// ---- Dumps ----------------------------------------------------------------------------------

TEST(ConfigDump, YamlRoundTripsDefaults) {
  const Config d = Config::defaults();
  const std::string yaml = d.to_yaml();
  EXPECT_NE(yaml.find("  user_col: \"0\"\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  name: \"\"\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  # path: (unset)\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  progress: auto\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  alpha: 1.0\n"), std::string::npos) << yaml;
  EXPECT_EQ(Config::parse(yaml, "dump.yaml"), d);
  // Every parameter appears, set or not.
  for (const Param& p : params()) {
    const std::string key = p.path.substr(p.path.find('.') + 1);
    EXPECT_NE(yaml.find((d.is_set(p.path) ? "\n  " + key + ": " : "\n  # " + key + ": (unset)")),
              std::string::npos)
        << p.path;
  }
}

TEST(ConfigDump, YamlRoundTripsTrickyValues) {
  const Config c = Config::parse(
      "run:\n  name: \"true\"\n  dir: \"/tmp/my runs/#1\"\n  progress: \"off\"\n"
      "train:\n  device: cuda:3\n"
      "data:\n  path: \"a: b\"\n  test_path: \"#\"\n  user_col: 0\n  item_col: \"1.5\"\n"
      "  weight_col: \"null\"\n  time_col: \"-x\"\n  cache_dir: \"~\"\n  min_weight: 0.1\n"
      "  header: true\n"  // column names need a header line (config::check)
      "split:\n  method: given\n  cutoff: 1700000000000000001\n  test_fraction: 0.30000000000000004\n"
      "weighting:\n  bm25_k1: 123456789012345678\nexport:\n  out: \"\"\n",
      "x.yaml", {"run.seed=9223372036854775807", "data.delimiter=pipe"});
  const std::string yaml = c.to_yaml();
  const Config back = Config::parse(yaml, "back.yaml");
  EXPECT_EQ(back, c) << yaml;
  EXPECT_EQ(back.get_string("run.name"), "true");
  EXPECT_EQ(back.get_string("data.test_path"), "#");
  EXPECT_EQ(back.get_string("export.out"), "");
  EXPECT_EQ(back.get_string("data.weight_col"), "null");
  EXPECT_EQ(back.get_string("data.cache_dir"), "~");
  EXPECT_EQ(back.get_float("split.test_fraction"), 0.30000000000000004);
  EXPECT_NE(yaml.find("  seed: 9223372036854775807  # --set run.seed=9223372036854775807\n"),
            std::string::npos)
      << yaml;
}

TEST(ConfigDump, YamlRoundTripsIntListsAndUnsetOptionals) {
  const auto& t = test_table();
  for (const std::vector<std::string>& o : {std::vector<std::string>{},
                                            {"eval.extra=[3]", "eval.cutoffs=[1, 2, 3]"},
                                            {"eval.extra=[]", "index.kind=off"}}) {
    const Config c = Config::parse(t, "", "x", o);
    const std::string yaml = c.to_yaml();
    EXPECT_EQ(Config::parse(t, yaml, "back"), c) << yaml;
  }
  EXPECT_NE(Config::defaults(t).to_yaml().find("  cutoffs: [20, 50]\n"), std::string::npos);
  EXPECT_NE(Config::defaults(t).to_yaml().find("  # extra: (unset)\n"), std::string::npos);
}

TEST(ConfigDump, EqualityComparesValuesOnly) {
  const Config a = Config::parse("run:\n  seed: 42\n", "a.yaml");
  EXPECT_EQ(a, Config::defaults());  // same values, different origin
  Config b = Config::defaults();
  b.set("data.path=x");
  EXPECT_NE(b, Config::defaults());
  EXPECT_NE(Config::defaults(test_table()), Config::defaults());
}

TEST(ConfigDump, JsonIsNestedBySection) {
  Config c = Config::defaults();
  c.set("data.path=x.tsv");
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j["run"]["seed"], 42);
  EXPECT_EQ(j["run"]["name"], "");
  EXPECT_EQ(j["data"]["path"], "x.tsv");
  EXPECT_TRUE(j["data"]["test_path"].is_null());
  EXPECT_EQ(j["data"]["header"], false);
  EXPECT_EQ(j["data"]["user_col"], "0");
  EXPECT_DOUBLE_EQ(j["split"]["test_fraction"].get<double>(), 0.2);
  EXPECT_EQ(j.size(), sections().size());
  EXPECT_EQ(Config::defaults(test_table()).to_json()["eval"]["cutoffs"],
            nlohmann::json::array({20, 50}));
}

// ---- Reference documentation ----------------------------------------------------------------

TEST(ConfigDoc, MarkdownListsEveryParameter) {
  const std::string md = markdown_reference();
  for (const Param& p : params())
    EXPECT_NE(md.find("| `" + p.path + "` |"), std::string::npos) << p.path;
  for (const Section& s : sections())
    EXPECT_NE(md.find("\n## " + s.name + "\n"), std::string::npos);
  EXPECT_NE(md.find("| `split.test_fraction` | number | `0.2` | (0, 1) |"), std::string::npos);
  EXPECT_NE(md.find("| `data.user_col` | string | `\"0\"` | any |"), std::string::npos);
  EXPECT_NE(md.find("| `data.path` | string | *unset* | any |"), std::string::npos);
  EXPECT_NE(md.find("| `run.seed` | integer | `42` | >= 0 |"), std::string::npos);
  EXPECT_NE(md.find("| `data.duplicates` | enum | `sum` | `sum`, `max`, `last` |"),
            std::string::npos);
  EXPECT_NE(md.find("--set section.key=value"), std::string::npos);
}

TEST(ConfigDoc, CheckedInReferenceIsCurrent) {
  const std::string path = RECFORGE_SOURCE_DIR "/docs/configuration.md";
  const std::string expected = markdown_reference();
  const char* write = std::getenv("RECFORGE_WRITE_DOCS");
  if (write && std::string(write) == "1") {
    test::write_file(path, expected);
    GTEST_SKIP() << "wrote " << path;
  }
  if (test::read_file(path) != expected)
    ADD_FAILURE() << "docs/configuration.md is stale: regenerate it with "
                     "`build/release/recforge config --markdown > docs/configuration.md`";
}

}  // namespace
}  // namespace recforge::config

namespace recforge::config {
namespace {

// yaml-cpp decodes "\_" (U+00A0) and "\N" (U+0085) into the single bytes 0xA0 and 0x85, not
// UTF-8: such a value used to be accepted, written back by to_yaml() as U+FFFD and so parsed
// back into a different config (found by fuzz/config_fuzz.cpp; sweep_fuzz found the same in a
// sweep file, where the JSON rendering threw). It is refused with the scalar's line and column.
TEST(ConfigStrings, EscapesThatDecodeToNonUtf8BytesAreRefused) {
  for (const char* escape : {"\\_", "\\N"}) {
    const std::string e = error_of(std::string("data:\n  path: \"a") + escape + "b\"\n");
    EXPECT_NE(e.find("x.yaml:2:9"), std::string::npos) << e;  // the value
    EXPECT_NE(e.find("is not UTF-8"), std::string::npos) << e;
    EXPECT_NE(set_error(std::string("data.path=\"a") + escape + "\"").find("is not UTF-8"),
              std::string::npos);
  }
  // ... and so is a key (it would be echoed in the unknown-key message).
  {
    const std::string e = error_of("data:\n  \"pa\\Nth\": x\n");
    EXPECT_NE(e.find("x.yaml:2:3"), std::string::npos) << e;
    EXPECT_NE(e.find("0x85"), std::string::npos) << e;
  }
  // Escapes that yaml-cpp decodes into UTF-8 keep working and round-trip.
  const Config c = Config::parse("data:\n  path: \"a\\xA0b\\u00e9\"\n", "x.yaml");
  EXPECT_EQ(*c.settings().data.path, "a\xC2\xA0" "b\xC3\xA9");
  EXPECT_EQ(Config::parse(c.to_yaml(), "back.yaml"), c);
}

// yaml-cpp lets a quoted value without its closing quote run on to the end of the file, folding
// the lines below it (whole sections) into the value.
TEST(ConfigStrings, AQuotedValueWithoutItsClosingQuoteIsRefusedNotTheRestOfTheFile) {
  EXPECT_EQ(error_of("run:\n  name: \"exp1\nmodel:\n  type: bogus\n  factors: -3\n"),
            "x.yaml:2:9: the value quoted with \" here has no closing \" on its line; a config "
            "value is one line (close the quote)");
  EXPECT_EQ(error_of("run:\n  name: 'exp1\n"),
            "x.yaml:2:9: the value quoted with ' here has no closing ' on its line; a config "
            "value is one line (close the quote)");
  // A key too, and after a byte order mark.
  EXPECT_NE(error_of("run:\n  \"name: x\n").find("x.yaml:2:3: the value quoted with \""),
            std::string::npos);
  EXPECT_NE(error_of("\xEF\xBB\xBFrun:\n  name: \"ab\nmodel:\n  factors: 3\n")
                .find("x.yaml:2:9: the value quoted with \""),
            std::string::npos);
  EXPECT_EQ(Config::parse("\xEF\xBB\xBFrun:\n  name: \"ab\"\n", "x.yaml").settings().run.name, "ab");
  // Quotes inside a quoted value ('' and \") and quotes in plain values stay as they were.
  const Config c = Config::parse(
      "run:\n  name: 'it''s'\n  dir: \"a\\\"b\"  # \"comment\n  seed: 3\ndata:\n  path: x'y\"z\n",
      "x.yaml");
  EXPECT_EQ(c.settings().run.name, "it's");
  EXPECT_EQ(c.settings().run.dir, "a\"b");
  EXPECT_EQ(c.settings().run.seed, 3);
  EXPECT_EQ(*c.settings().data.path, "x'y\"z");
  EXPECT_NE(set_error("run.name=\"abc").find("--set run.name=\"abc"), std::string::npos);
}

TEST(ConfigStrings, ASecondYamlDocumentIsRefusedNotIgnored) {
  EXPECT_EQ(error_of("run:\n  name: x\n---\nmodel:\n  factors: -5\n"),
            "x.yaml:3:1: a second YAML document starts here (\"---\"); a config is one "
            "document: merge the two or remove the \"---\" line");
  EXPECT_EQ(error_of("run:\n  name: x\n...\n# done\nmodel:\n  factors: -5\n"),
            "x.yaml:5:1: this follows the end of the YAML document (\"...\"); a config is one "
            "document: remove the \"...\" line");
  // One document that starts with "---" (after comments and a directive) is one document.
  EXPECT_EQ(Config::parse("# c\n%YAML 1.2\n---\nrun:\n  seed: 4\n...\n", "x.yaml").settings().run.seed, 4);
}

// yaml-cpp reads a file whose first line of content starts with ',' as an empty document: the
// whole config was all defaults (and YAML::LoadAll never returned on it: the fuzz target's
// timeout).
TEST(ConfigStrings, AFileThatYamlCppReadsAsEmptyIsRefusedUnlessItSaysNull) {
  EXPECT_EQ(error_of("# settings\n,1#]x\nrun:\n  seed: 3\n"),
            "x.yaml:2:1: invalid YAML: the document cannot start with this line (yaml-cpp reads "
            "the whole file as empty); expected `section:` lines such as `model:`");
  EXPECT_EQ(error_of("~\n"), "");
  EXPECT_EQ(error_of("# only comments\n\n"), "");
}

TEST(ConfigStrings, ANulByteIsRefused) {
  EXPECT_EQ(error_of("run:\n  name: \"a\\0b\"\n"),
            "x.yaml:2:9: this value holds a NUL byte (the escape \\0); settings are text "
            "without NUL");
  EXPECT_NE(set_error("data.path=\"x.csv\\0y\"").find("holds a NUL byte"), std::string::npos);
}

TEST(ConfigStrings, AliasesThatExpandBeyondAnyConfigAreRefusedQuickly) {
  // Each line doubles the values: 2^31 of them unbounded.
  std::string yaml = "a0: &a0 [x, x]\n";
  for (int i = 1; i <= 30; ++i)
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + "]\n";
  const std::string e = error_of(yaml);
  EXPECT_NE(e.find("x.yaml: the document expands to over 100000 values (YAML aliases?)"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, AConfigFileOverOneMiBIsNotReadToTheEnd) {
  try {
    Config::load("/dev/zero");
    FAIL() << "no error";
  } catch (const recforge::Error& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/zero: the config file is over 1 MiB; expected a YAML "
                                     "config of a few hundred lines");
  }
}

TEST(ConfigErrors, EmptyDirectoryAndFileSettingsNameTheirKey) {
  EXPECT_EQ(error_of("run:\n  dir: \"\"\n"),
            "x.yaml:2:3: run.dir is empty; expected the directory in which run directories are "
            "created (`.` for the current one)");
  for (const std::string key : {"data.path", "privacy.opt_out"})
    EXPECT_EQ(error_of("", {key + "=\"\""}),
              "--set " + key + "=\"\": " + key + " is empty; expected a file name, or leave the "
              "key out");
}

TEST(ConfigErrors, OneColumnForUsersAndItemsIsRefused) {
  EXPECT_EQ(error_of("data:\n  path: x\n  user_col: \"1\"\n  item_col: \"1\"\n"),
            "x.yaml:4:3: data.item_col is \"1\", the same column as data.user_col; expected two "
            "columns");
}

TEST(ConfigErrors, AdjacencyDataWithATimeSplitOrRetentionSaysItHasNoTimestamps) {
  EXPECT_EQ(error_of("data:\n  format: adjacency\n  path: x\nsplit:\n  method: leave_last\n"),
            "x.yaml:5:3: split.method leave_last needs timestamps, which data.format adjacency "
            "does not have (one user per line, items only); use random or users, or data.format "
            "delimited with data.time_col");
  EXPECT_NE(error_of("data:\n  format: adjacency\n  path: x\n  max_age_days: 3\n")
                .find("x.yaml:4:3: data.max_age_days needs timestamps, which data.format "
                      "adjacency does not have"),
            std::string::npos);
}

TEST(ConfigErrors, SyntheticSettingsThatGenerationRefusesAreRefusedByConfig) {
  const std::string syn = "data:\n  format: synthetic\nsynthetic:\n  items: 50\n";
  EXPECT_EQ(error_of(syn + "  communities: 60\n"),
            "x.yaml:5:3: synthetic.communities must be between 1 and synthetic.items (50), got "
            "60");
  EXPECT_EQ(error_of(syn + "  users: 100\n  interactions: 99\n"),
            "x.yaml:6:3: synthetic.interactions must be at least synthetic.users (100) since "
            "every user makes at least one draw, got 99");
  EXPECT_NE(error_of(syn + "  days: 365001\n").find("expected an integer in [1, 365000]"),
            std::string::npos);
  // Settings of a section the data does not use are not checked against each other.
  EXPECT_EQ(error_of("data:\n  path: x\nsynthetic:\n  items: 50\n  communities: 60\n"), "");
}

}  // namespace
}  // namespace recforge::config
