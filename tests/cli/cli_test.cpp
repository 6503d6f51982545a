// End-to-end tests of the recforge binary: what a user sees for good and bad input.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

struct Result {
  int rc;
  std::string out;  // stdout and stderr together
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
};

// Runs `recforge ARGS` in directory `cwd`.
Result run(const std::string& cwd, const std::string& args) {
  const std::string cmd = "cd '" + cwd + "' && '" + RECFORGE_BINARY + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Small synthetic config that trains in well under a second.
std::string small_config(const std::string& extra = "") {
  return "run:\n  name: small\n  progress: lines\n"
         "data:\n  format: synthetic\n  cache: false\n"
         "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
         "split:\n  method: leave_last\n" + extra;
}

// The YAML text without comments (they record where each value came from, which differs).
std::string without_comments(const std::string& yaml) {
  std::istringstream in(yaml);
  std::string out;
  for (std::string l; std::getline(in, l);) {
    const auto hash = l.find("  #");
    if (l.rfind("#", 0) == 0 || l.find_first_not_of(' ') == l.find('#')) continue;
    out += (hash == std::string::npos ? l : l.substr(0, hash)) + "\n";
  }
  return out;
}

bool runs_dir_has_no_run(const std::string& dir) {
  if (!fs::exists(dir + "/runs")) return true;
  return fs::is_empty(dir + "/runs");
}

// A user mistake: exit status 1, exactly one line, the expected message, and (unless
// `runs_may_exist`) no run left behind.
void expect_one_line_error(const TempDir& t, const std::string& args, const std::string& expected,
                           bool runs_may_exist = false) {
  const bool had_runs = fs::exists(t.file("runs"));
  const Result r = run(t.str(), args);
  EXPECT_EQ(r.rc, 1) << r.out;
  const auto lines = r.lines();
  std::vector<std::string> errors;
  for (const auto& l : lines)
    if (l.rfind("recforge: error: ", 0) == 0) errors.push_back(l);
  ASSERT_EQ(errors.size(), 1u) << r.out;
  EXPECT_NE(errors[0].find(expected), std::string::npos) << errors[0];
  if (!runs_may_exist) {
    EXPECT_TRUE(runs_dir_has_no_run(t.str())) << "a run directory was left behind";
    if (!had_runs) {
      EXPECT_FALSE(fs::exists(t.file("runs"))) << "the runs directory it created was left behind";
    }
  }
}

TEST(Cli, HelpForEveryVerb) {
  TempDir t;
  for (const char* verb :
       {"datagen", "train", "evaluate", "recommend", "similar", "export", "index-bench", "info",
        "config", "serve", "sweep", "compare", "forget", "explain", "report-user"}) {
    const Result r = run(t.str(), std::string(verb) + " --help");
    EXPECT_EQ(r.rc, 0) << verb;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << verb << ": " << r.out;
  }
  EXPECT_NE(run(t.str(), "").rc, 0);  // a verb is required
}

TEST(Cli, TrainWritesACompleteRunDirectory) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config());
  const Result r = run(t.str(), "train small.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string dir = t.file("runs/small");
  for (const char* f : {"config.yaml", "log.txt", "stats.json", "run.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  // The resolved config is complete and loads back to the same values.
  const Result again = run(t.str(), "config runs/small/config.yaml");
  ASSERT_EQ(again.rc, 0) << again.out;
  EXPECT_EQ(without_comments(again.out), without_comments(test::read_file(dir + "/config.yaml")));
  EXPECT_NE(again.out.find("users: 300"), std::string::npos);
  const auto stats = nlohmann::json::parse(test::read_file(dir + "/stats.json"));
  EXPECT_GT(stats["users"].get<int>(), 250);
  EXPECT_EQ(stats["train"]["interactions"].get<int64_t>() + stats["test"]["interactions"].get<int64_t>(),
            stats["load"]["raw_interactions"].get<int64_t>() - stats["load"]["duplicates_combined"].get<int64_t>());
  EXPECT_TRUE(stats["train"]["item_popularity"].contains("p99"));
  const auto runj = nlohmann::json::parse(test::read_file(dir + "/run.json"));
  EXPECT_EQ(runj["status"], "complete");
  EXPECT_NE(test::read_file(dir + "/log.txt").find("run complete"), std::string::npos);
  // A second run with the same name gets a suffix instead of replacing the first.
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  EXPECT_TRUE(fs::exists(t.file("runs/small.1/run.json")));
  // The same config and seed give the same data, statistics, factors and metrics.
  EXPECT_EQ(test::read_file(t.file("runs/small.1/stats.json")), test::read_file(dir + "/stats.json"));
  EXPECT_EQ(test::read_file(t.file("runs/small.1/item_factors.npy")),
            test::read_file(dir + "/item_factors.npy"));
  EXPECT_EQ(test::read_file(t.file("runs/small.1/metrics.json")), test::read_file(dir + "/metrics.json"));
}

TEST(Cli, SetOverridesAndInfo) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config());
  const Result r = run(t.str(), "train small.yaml --name other --set synthetic.users=100");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto stats = nlohmann::json::parse(test::read_file(t.file("runs/other/stats.json")));
  EXPECT_LE(stats["users"].get<int>(), 100);
  const Result info = run(t.str(), "info runs/other");
  EXPECT_EQ(info.rc, 0);
  EXPECT_NE(info.out.find("model      {\"alpha\""), std::string::npos) << info.out;
  EXPECT_EQ(run(t.str(), "info").rc, 0);
  // A stats.json with a value of another type is one sentence, not an internal error.
  write_file(t.file("runs/other/stats.json"), R"({"users": "many", "items": 3})");
  const Result damaged = run(t.str(), "info runs/other");
  EXPECT_EQ(damaged.rc, 1);
  EXPECT_EQ(damaged.out.rfind("recforge: error: runs/other: run.json or stats.json holds a value "
                              "that recforge does not write (",
                              0),
            0u)
      << damaged.out;
}

// A time split's test users without a training interaction are scored with factors the model
// never learned: said, with their number (they were counted in silence).
TEST(Cli, ATimeSplitSaysHowManyTestUsersHaveNoTrainingInteraction) {
  TempDir t;
  std::string csv = "user,item,ts\n";
  for (int u = 0; u < 6; ++u)
    for (int i = 0; i < 5; ++i) csv += fmt::format("u{},i{},{}\n", u, (u + i) % 8, 10 * i + u);
  csv += "new1,i1,100\nnew2,i2,101\n";  // only after the cutoff
  write_file(t.file("d.csv"), csv);
  write_file(t.file("c.yaml"),
             "data: {path: d.csv, header: true, user_col: user, item_col: item, time_col: ts, "
             "cache: false, id_type: string}\nsplit: {method: time, cutoff: 40}\n"
             "model: {type: ials, factors: 4, iterations: 1}\n");
  const Result r = run(t.str(), "train c.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("split (time): 2 of the 8 test users have no training interaction: the "
                       "model learns no embedding of theirs"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(nlohmann::json::parse(test::read_file(t.file("runs/c/metrics.json")))["test"]["users"],
            8);
}

// Questions with nothing to answer are refused in one sentence: evaluate of a run that holds
// nothing out (it printed nothing and wrote "{}"), and id lists that name no id.
TEST(Cli, EvaluateWithNothingHeldOutAndEmptyIdListsAreRefused) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config("model:\n  factors: 4\n  iterations: 1\n"));
  ASSERT_EQ(run(t.str(), "train small.yaml --set split.method=none").rc, 0);
  expect_one_line_error(t, "evaluate runs/small --out ev.json",
                        "evaluate runs/small: the run holds no validation or test interactions to "
                        "score (split.method none); train with a split that holds some out",
                        true);
  EXPECT_FALSE(fs::exists(t.file("ev.json")));
  for (const std::string verb : {"similar runs/small --items ,", "recommend runs/small --users ,",
                                 "recommend runs/small --items ,",
                                 "recommend runs/small --user 0 --candidates ,"})
    expect_one_line_error(t, verb, " \",\": lists no id; expected ids separated by commas", true);
}

TEST(Cli, DatagenThenTrainOnTheCsv) {
  TempDir t;
  const Result g = run(t.str(), "datagen --out syn.csv --users 500 --items 300 --interactions 20000 --seed 3");
  ASSERT_EQ(g.rc, 0) << g.out;
  const std::string csv = test::read_file(t.file("syn.csv"));
  EXPECT_EQ(csv.rfind("user,item,weight,timestamp\n", 0), 0u);
  write_file(t.file("csv.yaml"),
             "data:\n  path: syn.csv\n  header: true\n  user_col: user\n  item_col: item\n"
             "  weight_col: weight\n  time_col: timestamp\n  cache_dir: cache\n"
             "split:\n  method: time\n  cutoff_quantile: 0.9\n");
  const Result r = run(t.str(), "train csv.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(fs::exists(t.file("runs/csv/stats.json")));
  // Second run reuses the binary cache.
  ASSERT_EQ(run(t.str(), "train csv.yaml").rc, 0);
  EXPECT_NE(test::read_file(t.file("runs/csv.1/log.txt")).find("from cache"), std::string::npos);
}

TEST(Cli, BadInputGetsOneClearSentence) {
  TempDir t;
  write_file(t.file("bad.csv"), "1,2,1\n1,3,1\n2,3\n2,4,1\n");
  write_file(t.file("neg.csv"), "1,2,1\n1,3,-4\n");
  write_file(t.file("empty.csv"), "");
  const std::string data = "data:\n  weight_col: \"2\"\n  cache: false\n  path: ";
  // datagen would ignore any other setting: refused, nothing written.
  expect_one_line_error(t, "datagen --out gen.csv --set model.factors=3",
                        "--set model.factors=3: datagen takes synthetic.* settings (and "
                        "run.progress, run.log_level); it generates data and trains nothing");
  EXPECT_FALSE(fs::exists(t.file("gen.csv")));
  write_file(t.file("malformed.yaml"), data + "bad.csv\n");
  expect_one_line_error(t, "train malformed.yaml",
                        "bad.csv:3: expected at least 3 fields separated by \",\", got 2: \"<user id>,3\"");
  write_file(t.file("negative.yaml"), data + "neg.csv\n");
  expect_one_line_error(t, "train negative.yaml",
                        "neg.csv:2: weight -4 is negative, expected a weight >= 0: \"<user id>,3,-4\"");
  write_file(t.file("empty.yaml"), data + "empty.csv\n");
  expect_one_line_error(t, "train empty.yaml", "empty.csv: the file is empty, expected interactions");
  write_file(t.file("missing.yaml"), data + "nope.csv\n");
  expect_one_line_error(t, "train missing.yaml", "nope.csv: data file not found");
  write_file(t.file("type.yaml"), "run:\n  seed: 1\nsynthetic:\n  users: abc\n");
  expect_one_line_error(t, "train type.yaml",
                        "type.yaml:4:3: synthetic.users: expected an integer >= 1, got \"abc\"");
  write_file(t.file("unknown.yaml"), "data:\n  delimter: tab\n");
  expect_one_line_error(t, "train unknown.yaml",
                        "unknown.yaml:2:3: data.delimter: unknown key; did you mean \"data.delimiter\"?");
  expect_one_line_error(t, "train nothere.yaml", "nothere.yaml: cannot open config file");
  write_file(t.file("ok.yaml"), small_config());
  expect_one_line_error(t, "train ok.yaml --set split.method=sideways",
                        "split.method: expected one of given, random, leave_last, time, users, none, got \"sideways\"");
  expect_one_line_error(t, "train ok.yaml --set split.method=given",
                        "split.method given needs data files");
  expect_one_line_error(t, "train ok.yaml --device cuda:7", "cuda:7");
  write_file(t.file("nodata.yaml"), "data:\n  format: delimited\n");
  expect_one_line_error(t, "train nodata.yaml", "data.path is not set");
}

// Values beyond float32: refused with their setting or line, or, where only their sum or the
// training overflows, the first non-finite loss stops the run naming the cause (no run left).
TEST(Cli, OverflowingValuesFailTheRunWithTheirCause) {
  TempDir t;
  // Each weight fits float32 (3.4e38); their sum as duplicates does not.
  write_file(t.file("dup.csv"), "u,i,w\n1,1,3e38\n1,1,3e38\n1,2,1\n2,1,1\n2,2,1\n3,3,1\n");
  write_file(t.file("big.csv"), "u,i,w\n1,1,1e39\n1,2,1\n");
  write_file(t.file("dup.yaml"), "run:\n  progress: lines\ndata:\n  path: dup.csv\n  header: true\n"
                                 "  weight_col: w\n  cache: false\nsplit:\n  method: none\n"
                                 "model:\n  factors: 4\n  iterations: 2\n");
  expect_one_line_error(t, "train dup.yaml",
                        "dup.csv: the weights of a user (an id of 1 byte) and item \"1\" sum to inf");
  expect_one_line_error(t,
                        "train dup.yaml --set data.duplicates=max --set weighting.scheme=linear "
                        "--set weighting.alpha=1e10",
                        "--set weighting.scheme=linear: weighting.scheme linear turns the weight "
                        "3e+38 of a user (an id of 1 byte) and item \"1\" into the "
                        "confidence inf");
  expect_one_line_error(t, "train dup.yaml --set data.path=big.csv",
                        "big.csv:2: weight \"1e39\" is not a finite number in float32's range");
  write_file(t.file("ok.yaml"), small_config());
  expect_one_line_error(t, "train ok.yaml --set model.type=softmax --set model.temperature=1e-30",
                        "model.temperature: expected a number >= 1e-18, got 1e-30");
  expect_one_line_error(t, "train ok.yaml --set model.init_std=1e30",
                        "model.init_std: expected a number in [0, 100], got 1e30");
}

// Runs `cmd` through the shell; its wait status and everything it printed.
std::pair<int, std::string> shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
  return {pclose(p), out};
}

// The smallest address-space limit (ulimit -v, KiB, in steps of 50 MiB) under which the binary
// starts at all: a CUDA build maps cuBLAS and cuRAND (about 1.1 GiB), a CPU build far less. The
// limits of these tests are set above it, so that they bind on the run, not on the loader.
long startup_address_space_kb() {
  for (long kb = 51200; kb <= 16L * 1024 * 1024; kb += 51200) {
    const std::string cmd = "timeout 20 bash -c \"ulimit -v " + std::to_string(kb) + "; exec '" +
                            RECFORGE_BINARY + "' --version\" >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return kb;
  }
  return -1;
}

// Memory: a model far beyond the machine is refused before it allocates, with its estimated
// size and the setting to lower; under an address-space limit (ulimit -v) the run ends at once
// with exit status 1 and one sentence. It used to print bad_alloc and hang at exit, OpenBLAS
// joining a pool thread that retried its buffer allocation forever (`timeout` turns a hang into
// status 124).
TEST(Cli, MemoryLimitsEndTheRunWithOneSentence) {
  TempDir t;
  write_file(t.file("ok.yaml"), small_config());
  expect_one_line_error(t, "train ok.yaml --set model.factors=10000000",
                        "iALS with model.factors 10000000 needs about");
  expect_one_line_error(t, "train ok.yaml --set model.type=softmax --set model.factors=10000000",
                        "softmax with model.factors 10000000 needs about");
  // The advice names what lowers the threads counted: OpenBLAS's own pool when it is the larger.
  // OpenBLAS caps its pool at the CPUs the process may use: with one, the pool is never larger.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool two_cpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) >= 2;
  for (const char* type : two_cpus ? std::vector<const char*>{"ials", "bpr"}
                                   : std::vector<const char*>{}) {
    const std::string args = std::string("train ok.yaml --set model.factors=10000000 --set "
                                         "train.threads=1 --set model.type=") + type;
    const test::Result pool = test::run_recforge(t.str(), args, "OPENBLAS_NUM_THREADS=2");
    EXPECT_EQ(pool.rc, 1) << pool.out;
    if (std::string(type) == "ials") {  // among the two largest parts there
      EXPECT_NE(pool.out.find("buffers of 2 threads"), std::string::npos) << pool.out;
    }
    EXPECT_NE(pool.out.find(" or OPENBLAS_NUM_THREADS (OpenBLAS's own pool of 2 threads, more "
                            "than train.threads 1)"),
              std::string::npos)
        << pool.out;
    const test::Result one = test::run_recforge(t.str(), args, "OPENBLAS_NUM_THREADS=1");
    EXPECT_EQ(one.rc, 1) << one.out;
    EXPECT_NE(one.out.find(" or train.threads\n"), std::string::npos) << one.out;
  }
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "ulimit -v cannot apply under AddressSanitizer (its shadow memory reserves "
                    "terabytes of address space); the estimates above were checked";
  const long base = startup_address_space_kb();
  ASSERT_GT(base, 0) << "recforge --version did not start under any limit up to 16 GiB";
  // 50 and 200 MiB above what starting takes: too little for 2 threads' OpenBLAS buffers.
  for (const long limit : {base + 51200, base + 204800}) {
    const std::string cmd = "cd '" + t.str() + "' && timeout 120 bash -c \"ulimit -v " +
                            std::to_string(limit) +
                            "; exec '" + RECFORGE_BINARY +
                            "' train ok.yaml --set train.threads=2\" 2>&1";
    const auto [status, out] = shell(cmd);
    ASSERT_TRUE(WIFEXITED(status)) << out;
    EXPECT_EQ(WEXITSTATUS(status), 1) << "ulimit -v " << limit << ": " << out;
    const bool said = out.find("is available (ulimit -v); lower model.factors") != std::string::npos ||
                      out.find("recforge: error: out of memory") !=
                          std::string::npos;
    EXPECT_TRUE(said) << out;
    EXPECT_TRUE(runs_dir_has_no_run(t.str())) << "a run directory was left behind";
  }
}

// A first word that is no command names itself and the commands (it was "A subcommand is
// required").
TEST(Cli, AnUnknownCommandIsNamedWithTheCommands) {
  TempDir t;
  const Result r = run(t.str(), "validate x.yaml");
  EXPECT_EQ(r.rc, 106) << r.out;
  EXPECT_NE(r.out.find("recforge: error: unknown command 'validate'; the commands are train, "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(", forget, "), std::string::npos) << r.out;
}

// --out never lands inside a run directory or an export (it replaced run.json or a factor file,
// and the run or export could not be read again), nor on the config datagen reads; an existing
// file keeps its permission bits and a link to it stays a link; output that could not be
// written to standard output is an error, not exit 0 with a truncated answer.
TEST(Cli, OutputsStayOutOfRunsAndExportsKeepTheUsersFileAndAreWrittenInFull) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config("export:\n  enabled: true\n"));
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  const std::string run_json = test::read_file(t.file("runs/small/run.json"));
  const std::string run_dir = fs::canonical(t.file("runs/small")).string();
  for (const auto& [verb, out, where] : std::vector<std::array<std::string, 3>>{
           {"recommend runs/small --all", "runs/small/run.json", "the run directory " + run_dir},
           {"index-bench runs/small --users 5", "runs/small/config.yaml", "the run directory " + run_dir},
           {"evaluate runs/small", "runs/small/export/metrics.json", "the export " + run_dir + "/export"},
           {"similar runs/small/export --all", "runs/small/export/current/item_ids.txt",
            "the export " + run_dir + "/export/v-1"}}) {
    const Result r = run(t.str(), verb + " --out " + out);
    EXPECT_NE(r.rc, 0) << verb << "\n" << r.out;
    EXPECT_NE(r.out.find("--out: \"" + out + "\" is inside " + where + "; write it elsewhere"),
              std::string::npos)
        << verb << "\n" << r.out;
  }
  EXPECT_EQ(test::read_file(t.file("runs/small/run.json")), run_json);
  EXPECT_EQ(run(t.str(), "info runs/small/export").rc, 0);
  Result r = run(t.str(), "datagen --config small.yaml --out small.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("datagen --out small.yaml: that is the config file it reads"), std::string::npos) << r.out;
  EXPECT_EQ(test::read_file(t.file("small.yaml")), small_config("export:\n  enabled: true\n"));

  write_file(t.file("recs.csv"), "old\n");
  fs::permissions(t.file("recs.csv"), fs::perms::owner_read | fs::perms::owner_write);
  fs::create_symlink("recs.csv", t.file("latest.csv"));
  r = run(t.str(), "recommend runs/small --all --k 2 --out latest.csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(fs::is_symlink(t.file("latest.csv")));
  EXPECT_EQ(fs::status(t.file("recs.csv")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(test::read_file(t.file("recs.csv")).rfind("user,rank,item,score\n", 0), 0u);
  // datagen writes its CSV in pieces, and the same way (it replaced the link by a file, 0644).
  write_file(t.file("gen.csv"), "old\n");
  fs::permissions(t.file("gen.csv"), fs::perms::owner_read | fs::perms::owner_write);
  fs::create_symlink("gen.csv", t.file("latest-gen.csv"));
  r = run(t.str(), "datagen --out latest-gen.csv --users 10 --items 5 --interactions 20");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(fs::is_symlink(t.file("latest-gen.csv")));
  EXPECT_EQ(fs::status(t.file("gen.csv")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(test::read_file(t.file("gen.csv")).rfind("user,item,weight,timestamp\n", 0), 0u);

  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full to write to";
  for (const std::string verb : {"recommend runs/small --users 0,1 --k 3", "info runs/small",
                                 "config small.yaml"}) {
    const test::Result full =
        test::run_shell("cd '" + t.str() + "' && ('" + RECFORGE_BINARY + "' " + verb + " >/dev/full)");
    EXPECT_EQ(full.rc, 1) << verb << "\n" << full.out;
    EXPECT_NE(full.out.find(": cannot write its output to standard output: No space left on device"),
              std::string::npos)
        << verb << "\n" << full.out;
  }
}

// Integer options state their range; --k above the number of items is clamped with a warning;
// recommend --all announces a large CSV (over 100 MiB) and refuses one that the memory holding the
// lists and their text cannot take, before computing anything or creating the file.
TEST(Cli, RecommendBoundsKAndItsOutput) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config());
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  Result r = run(t.str(), "recommend runs/small --all --out a.csv --k 0");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--k: must be an integer from 1 to 2147483647, got \"0\""), std::string::npos)
      << r.out;
  r = run(t.str(), "datagen --out d.csv --users 0");
  EXPECT_NE(r.out.find("--users: must be an integer from 1 to 2147483647, got \"0\""),
            std::string::npos) << r.out;
  // --out naming a directory, or a file in a directory that does not exist: refused before any
  // work (the finished file's rename said "cannot move ...: Success", evaluate and index-bench
  // after printing their tables).
  fs::create_directories(t.file("adir"));
  for (const std::string verb : {"recommend runs/small --all", "similar runs/small --all",
                                 "evaluate runs/small", "index-bench runs/small --users 5",
                                 "datagen --users 5 --items 5 --interactions 10"}) {
    r = run(t.str(), verb + " --out adir");
    EXPECT_NE(r.rc, 0) << verb << "\n" << r.out;
    EXPECT_NE(r.out.find("--out: \"adir\" is a directory; expected the name of a file to write"),
              std::string::npos)
        << verb << "\n" << r.out;
    EXPECT_EQ(r.out.find("recall@"), std::string::npos) << verb << "\n" << r.out;
    r = run(t.str(), verb + " --out nodir/x.csv");
    EXPECT_NE(r.rc, 0) << verb << "\n" << r.out;
    EXPECT_NE(r.out.find("--out: \"nodir/x.csv\": the directory " + t.file("nodir") +
                         " does not exist"),
              std::string::npos)
        << verb << "\n" << r.out;
  }
  EXPECT_TRUE(fs::is_empty(t.file("adir")));
  EXPECT_FALSE(fs::exists(t.file("nodir")));
  // datagen's default 16 communities follow a smaller --items (they were refused, naming a
  // setting datagen has no flag for).
  r = run(t.str(), "datagen --out tiny.csv --users 20 --items 10 --interactions 100");
  EXPECT_EQ(r.rc, 0) << r.out;
  r = run(t.str(), "datagen --out tiny.csv --users 20 --items 10 --interactions 100 --set "
                   "synthetic.communities=12");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("synthetic.communities must be between 1 and synthetic.items (10), got 12"),
            std::string::npos)
      << r.out;
  r = run(t.str(), "recommend runs/small --user 3 --k 500");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("--k 500 is above the number of items, 200"), std::string::npos) << r.out;
  write_file(t.file("wide.yaml"),
             "run:\n  name: wide\n  progress: lines\ndata:\n  format: synthetic\n  cache: false\n"
             "synthetic:\n  users: 60000\n  items: 2000\n  interactions: 200000\n"
             "split:\n  method: none\nmodel:\n  factors: 4\n  iterations: 1\n");
  ASSERT_EQ(run(t.str(), "train wide.yaml").rc, 0);
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "ulimit -v cannot apply under AddressSanitizer (its shadow memory reserves "
                    "terabytes of address space); the bounds on --k above were checked";
  // 60000 users x 2000 items: about 2.7 GiB of CSV, 3.5 GiB with the lists, under that limit.
  const long base = startup_address_space_kb();
  ASSERT_GT(base, 0) << "recforge --version did not start under any limit up to 16 GiB";
  // 1 GiB above what starting takes: room to load the run, far from the 3.5 GiB needed below.
  const std::string cmd = "cd '" + t.str() + "' && bash -c \"ulimit -v " +
                          std::to_string(base + 1048576) + "; exec '" +
                          RECFORGE_BINARY +
                          "' recommend runs/wide --all --out wide.csv --k 5000\" 2>&1";
  const auto [status, out] = shell(cmd);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << out;
  EXPECT_NE(out.find("recommend --all: writing about 2."), std::string::npos) << out;
  EXPECT_NE(out.find("is available (ulimit -v); lower --k"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(t.file("wide.csv")));
}

TEST(Cli, VerbsThatNeedAModelSaySoForRunsWithoutOne) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config("model:\n  type: none\n"));
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  const Result r = run(t.str(), "evaluate runs/small");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("runs/small: this run has no trained model"), std::string::npos) << r.out;
  const Result missing = run(t.str(), "evaluate runs/none");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("runs/none: no such run directory"), std::string::npos);
  // A file where a run directory is expected (a config given to a verb that takes a run).
  const Result file = run(t.str(), "evaluate small.yaml");
  EXPECT_EQ(file.rc, 1);
  EXPECT_NE(file.out.find("small.yaml: is not a directory; expected a run directory"),
            std::string::npos)
      << file.out;
}

// The rank, item and score of each CSV line "user,rank,item,score" of a recommend (or similar)
// output; the header and log lines are left out.
std::vector<std::array<std::string, 3>> ranked_lines(const Result& r) {
  std::vector<std::array<std::string, 3>> out;
  for (const auto& l : r.lines()) {
    if (l.empty() || l[0] == '[' || l.rfind("recforge", 0) == 0) continue;
    const auto c = l.rfind(',');
    if (c == std::string::npos || c == 0) continue;
    const auto b = l.rfind(',', c - 1);
    if (b == std::string::npos || b == 0) continue;
    const auto a = l.rfind(',', b - 1);
    if (a == std::string::npos) continue;
    const std::string rank = l.substr(a + 1, b - a - 1);
    if (rank.empty() || rank.find_first_not_of("0123456789") != std::string::npos) continue;
    out.push_back({rank, l.substr(b + 1, c - b - 1), l.substr(c + 1)});
  }
  return out;
}

TEST(Cli, EvaluateAndRecommendFromASavedRun) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config("model:\n  factors: 8\n  iterations: 4\n"));
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  const std::string dir = t.file("runs/small");
  for (const char* f : {"user_factors.npy", "item_factors.npy", "metrics.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  // evaluate recomputes the saved test metrics from the factors.
  const Result ev = run(t.str(), "evaluate runs/small --out again.json");
  ASSERT_EQ(ev.rc, 0) << ev.out;
  const auto saved = nlohmann::json::parse(test::read_file(dir + "/metrics.json"));
  const auto again = nlohmann::json::parse(test::read_file(t.file("again.json")));
  EXPECT_NEAR(saved["test"]["recall@20"].get<double>(), again["test"]["recall@20"].get<double>(), 1e-9);
  EXPECT_GT(saved["test"]["recall@20"].get<double>(), 0.0);
  EXPECT_NE(ev.out.find("(= saved)"), std::string::npos);
  EXPECT_FALSE(again.contains("test_by_activity"));
  // --activity-edges (implying --by-activity) adds the test metrics by user activity: groups
  // whose users add up to the test users and whose user-weighted means are the test metrics.
  const Result act = run(t.str(), "evaluate runs/small --activity-edges 15,25 --out act.json");
  ASSERT_EQ(act.rc, 0) << act.out;
  EXPECT_NE(act.out.find("\n  interactions        0-15     16-25       26+\n  users "),
            std::string::npos)
      << act.out;
  const auto by = nlohmann::json::parse(test::read_file(t.file("act.json")));
  EXPECT_EQ(by["test"], again["test"]);
  ASSERT_EQ(by["test_by_activity"].size(), 3u);
  EXPECT_EQ(by["test_by_activity"][2]["min"], 26);
  EXPECT_TRUE(by["test_by_activity"][2]["max"].is_null());
  int64_t users = 0;
  double recall = 0;
  for (const auto& g : by["test_by_activity"]) {
    users += g["users"].get<int64_t>();
    if (g["users"].get<int64_t>() > 0)
      recall += g["users"].get<double>() * g["recall@20"].get<double>();
  }
  EXPECT_EQ(users, saved["test"]["users"].get<int64_t>());
  EXPECT_NEAR(recall / static_cast<double>(users), saved["test"]["recall@20"].get<double>(), 1e-12);
  for (const char* bad : {"5,x", "5,5", "0", "5,"}) {
    const Result refused = run(t.str(), std::string("evaluate runs/small --activity-edges ") + bad);
    EXPECT_NE(refused.rc, 0) << bad;
    EXPECT_NE(refused.out.find(std::string("--activity-edges ") + bad + ": "), std::string::npos)
        << refused.out;
  }
  // recommend prints CSV user,rank,item,score with a header, k lines with decreasing scores.
  const Result rec = run(t.str(), "recommend runs/small --user 5 --k 4");
  ASSERT_EQ(rec.rc, 0) << rec.out;
  EXPECT_NE(rec.out.find("user,rank,item,score\n5,1,"), std::string::npos) << rec.out;
  const auto ranked = ranked_lines(rec);
  ASSERT_EQ(ranked.size(), 4u) << rec.out;
  EXPECT_EQ(ranked[0][0], "1");
  for (size_t j = 1; j < ranked.size(); ++j) EXPECT_LE(std::stod(ranked[j][2]), std::stod(ranked[j - 1][2]));
  // A folded-in new user has an empty user column.
  const Result fold = run(t.str(), "recommend runs/small --items 1,2,3 --k 3");
  EXPECT_EQ(fold.rc, 0) << fold.out;
  EXPECT_NE(fold.out.find("user,rank,item,score\n,1,"), std::string::npos) << fold.out;
  const Result all = run(t.str(), "recommend runs/small --all --out recs.csv --k 2");
  ASSERT_EQ(all.rc, 0) << all.out;
  const std::string csv = test::read_file(t.file("recs.csv"));
  EXPECT_EQ(csv.rfind("user,rank,item,score\n", 0), 0u);
  const Result nobody = run(t.str(), "recommend runs/small --user nobody");
  EXPECT_EQ(nobody.rc, 1);
  EXPECT_NE(nobody.out.find("recforge: error: runs/small: user \"nobody\" is not in this run; "
                            "expected a user id of its training data"),
            std::string::npos) << nobody.out;
}

// Same ranks and items, scores equal to 1e-5 (Faiss and the GEMM round differently).
void expect_same_recommendations(const Result& got, const Result& want) {
  const auto g = ranked_lines(got), w = ranked_lines(want);
  ASSERT_EQ(g.size(), w.size()) << got.out << "\n---\n" << want.out;
  ASSERT_FALSE(w.empty());
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(g[i][0], w[i][0]);
    EXPECT_EQ(g[i][1], w[i][1]) << "rank " << w[i][0];
    EXPECT_NEAR(std::stod(g[i][2]), std::stod(w[i][2]), 1e-5);
  }
}

TEST(Cli, ExportThenRecommendFromTheArtifactAlone) {
  TempDir t;
  write_file(t.file("small.yaml"), small_config("model:\n  factors: 8\n  iterations: 4\n"));
  ASSERT_EQ(run(t.str(), "train small.yaml").rc, 0);
  const Result ex = run(t.str(), "export runs/small --out exp");
  ASSERT_EQ(ex.rc, 0) << ex.out;
  EXPECT_EQ(ex.lines().back(), "exp");
  const auto m = nlohmann::json::parse(test::read_file(t.file("exp/manifest.json")));
  EXPECT_EQ(m["index"]["type"], "flat");
  EXPECT_EQ(m["metrics"], nlohmann::json::parse(test::read_file(t.file("runs/small/metrics.json"))));
  // The artifact needs nothing else: move it away from the run and its config.
  fs::rename(t.file("exp"), t.file("elsewhere"));
  fs::remove_all(t.file("runs"));
  write_file(t.file("small.yaml"), "garbage: [");
  TempDir t2;
  ASSERT_EQ(run(t2.str(), "train " + t.file("small.yaml")).rc, 1);  // the config is really gone
  write_file(t2.file("small.yaml"), small_config("model:\n  factors: 8\n  iterations: 4\n"));
  ASSERT_EQ(run(t2.str(), "train small.yaml").rc, 0);  // the same run again, for reference
  for (const char* user : {"5", "17", "250"}) {
    const std::string args = std::string(" --user ") + user + " --k 7";
    const Result want = run(t2.str(), "recommend runs/small" + args);
    ASSERT_EQ(want.rc, 0) << want.out;
    const Result ann = run(t.str(), "recommend elsewhere" + args);
    ASSERT_EQ(ann.rc, 0) << ann.out;
    expect_same_recommendations(ann, want);
    const Result exact = run(t.str(), "recommend elsewhere" + args + " --exact");
    ASSERT_EQ(exact.rc, 0) << exact.out;
    expect_same_recommendations(exact, want);
    // A global exclusion list removes those items and the list closes up.
    const auto w = ranked_lines(want);
    const Result excl = run(t.str(), "recommend elsewhere" + args + " --exclude " + w[0][1] + "," + w[2][1]);
    const auto e = ranked_lines(excl);
    ASSERT_EQ(e.size(), 7u) << excl.out;
    EXPECT_EQ(e[0][1], w[1][1]);
    EXPECT_EQ(e[1][1], w[3][1]);
  }
  const Result info = run(t.str(), "info elsewhere");
  EXPECT_EQ(info.rc, 0) << info.out;
  EXPECT_NE(info.out.find("export     elsewhere (recforge-export version 1)"), std::string::npos)
      << info.out;
  // --all writes the same CSV shape from the artifact (every user, k lines each).
  const Result all = run(t.str(), "recommend elsewhere --all --out recs.csv --k 3");
  ASSERT_EQ(all.rc, 0) << all.out;
  const Result all_run = run(t2.str(), "recommend runs/small --all --out recs.csv --k 3");
  ASSERT_EQ(all_run.rc, 0) << all_run.out;
  auto items_of = [](const std::string& csv) {  // user,rank,item without the score column
    std::string out;
    std::istringstream in(csv);
    for (std::string l; std::getline(in, l);) out += l.substr(0, l.rfind(',')) + "\n";
    return out;
  };
  EXPECT_EQ(items_of(test::read_file(t.file("recs.csv"))), items_of(test::read_file(t2.file("recs.csv"))));
  // Fold-in from the export alone gives the run's list (same solve, same weighting).
  const Result fold = run(t.str(), "recommend elsewhere --items 1,2,7 --weights 1,3,2 --k 5 --exact");
  ASSERT_EQ(fold.rc, 0) << fold.out;
  const Result fold_run = run(t2.str(), "recommend runs/small --items 1,2,7 --weights 1,3,2 --k 5");
  ASSERT_EQ(fold_run.rc, 0) << fold_run.out;
  expect_same_recommendations(fold, fold_run);
  // Unknown ids: a warning line each on stderr, the rest answered; only nothing answerable fails.
  const Result nobody = run(t.str(), "recommend elsewhere --user nobody");
  EXPECT_EQ(nobody.rc, 1);
  EXPECT_NE(nobody.out.find("recforge: error: elsewhere: user \"nobody\" is not in this export"),
            std::string::npos) << nobody.out;
  const Result bad_item = run(t.str(), "recommend elsewhere --user 5 --k 7 --exclude 5,nothing");
  EXPECT_EQ(bad_item.rc, 0) << bad_item.out;
  EXPECT_NE(bad_item.out.find("recommend --exclude: item \"nothing\" is not in elsewhere; skipped"),
            std::string::npos) << bad_item.out;
  EXPECT_EQ(ranked_lines(bad_item).size(), 7u) << bad_item.out;
  for (const auto& l : ranked_lines(bad_item)) EXPECT_NE(l[1], "5");
  {
    // stdout alone stays parseable: JSON of the known users, warnings elsewhere.
    const std::string cmd = "cd '" + t.str() + "' && '" + RECFORGE_BINARY +
                            "' recommend elsewhere --users '5, ghost,17' --k 3 --format json "
                            "2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    std::array<char, 4096> buf;
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
    EXPECT_EQ(pclose(p), 0);
    const auto j = nlohmann::json::parse(out);
    ASSERT_TRUE(j.is_array()) << out;
    ASSERT_EQ(j.size(), 2u) << out;
    EXPECT_EQ(j[0]["user"], "5");
    EXPECT_EQ(j[1]["user"], "17");
    ASSERT_EQ(j[1]["items"].size(), 3u);
    const auto w17 = ranked_lines(run(t2.str(), "recommend runs/small --user 17 --k 3"));
    ASSERT_EQ(w17.size(), 3u);
    EXPECT_EQ(j[1]["items"][0]["item"], w17[0][1]);
    EXPECT_NEAR(j[1]["items"][0]["score"].get<double>(), std::stod(w17[0][2]), 1e-5);
  }
  // similar: the items nearest item 7, without item 7.
  const Result sim = run(t.str(), "similar elsewhere --item 7 --k 4");
  ASSERT_EQ(sim.rc, 0) << sim.out;
  EXPECT_NE(sim.out.find("item,rank,similar_item,score\n7,1,"), std::string::npos) << sim.out;
  const Result sim_exact = run(t.str(), "similar elsewhere --item 7 --k 4 --exact");
  EXPECT_EQ(ranked_lines(sim).size(), 4u);
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_NE(ranked_lines(sim)[j][1], "7");
    EXPECT_EQ(ranked_lines(sim)[j][1], ranked_lines(sim_exact)[j][1]);  // flat index: exact
  }
  const Result sim_user = run(t.str(), "similar elsewhere --user 5 --k 2 --metric cosine --format json");
  ASSERT_EQ(sim_user.rc, 0) << sim_user.out;
  EXPECT_NE(sim_user.out.find("{\"user\":\"5\",\"users\":[{\"user\":"), std::string::npos)
      << sim_user.out;
  // similar --items and --all: the lines of each item are those of `similar --item` alone.
  const Result sim2 = run(t.str(), "similar elsewhere --item 2 --k 4");
  ASSERT_EQ(sim2.rc, 0) << sim2.out;
  auto body = [](const std::string& csv) { return csv.substr(csv.find('\n') + 1); };
  const Result sim_list = run(t.str(), "similar elsewhere --items 7,2 --k 4");
  ASSERT_EQ(sim_list.rc, 0) << sim_list.out;
  EXPECT_EQ(body(sim_list.out), body(sim.out) + body(sim2.out));
  // An unknown id among them is skipped with a warning naming it; the others are answered (as
  // recommend --users and the server's similar-items do).
  const Result sim_unknown = run(t.str(), "similar elsewhere --items 7,zz,2 --k 4");
  ASSERT_EQ(sim_unknown.rc, 0) << sim_unknown.out;
  EXPECT_NE(sim_unknown.out.find("similar --items: item \"zz\" is not in elsewhere; skipped"),
            std::string::npos)
      << sim_unknown.out;
  EXPECT_NE(sim_unknown.out.find(body(sim.out) + body(sim2.out)), std::string::npos)
      << sim_unknown.out;
  // None of them known: nothing to answer, an error (as recommend --users and the server's 404).
  expect_one_line_error(t, "similar elsewhere --items zz,yy --k 4",
                        "elsewhere: none of the 2 items asked for is in this export; expected "
                        "item ids of its training data", true);
  expect_one_line_error(t, "similar elsewhere --items zz --k 4",
                        "elsewhere: item \"zz\" is not in this export", true);
  const Result sim_all = run(t.str(), "similar elsewhere --all --k 4 --out all.csv");
  ASSERT_EQ(sim_all.rc, 0) << sim_all.out;
  {
    const std::string table = test::read_file(t.file("all.csv"));
    EXPECT_EQ(table.rfind("item,rank,similar_item,score\n", 0), 0u);
    std::set<std::string> queries;
    size_t lines = 0;
    std::istringstream in(body(table));
    for (std::string l; std::getline(in, l); ++lines) queries.insert(l.substr(0, l.find(',')));
    const std::string ids = test::read_file(t.file("elsewhere/item_ids.txt"));
    const size_t n_items = static_cast<size_t>(std::count(ids.begin(), ids.end(), '\n'));
    EXPECT_EQ(queries.size(), n_items);  // every item once, with 4 lines
    EXPECT_EQ(lines, 4 * n_items);
    for (const Result* one : {&sim, &sim2}) {
      const std::string b = body(one->out);
      EXPECT_NE(table.find("\n" + b), std::string::npos) << b;
    }
  }
  expect_one_line_error(t, "similar elsewhere --all --k 4",
                        "similar --all needs --out FILE", true);
  expect_one_line_error(t, "similar elsewhere --item 7 --all --out x.csv",
                        "similar: give exactly one of --item ID, --items ID,ID,..., --all --out "
                        "FILE or --user ID", true);
  EXPECT_FALSE(fs::exists(t.file("x.csv")));
  // A damaged artifact is refused with one line naming the file.
  {
    std::fstream io(t.file("elsewhere/user_factors.npy"), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-1, std::ios::end);
    io.put('\x01');
  }
  const Result broken = run(t.str(), "recommend elsewhere --user 5");
  EXPECT_EQ(broken.rc, 1);
  EXPECT_EQ(broken.lines().size(), 1u) << broken.out;
  EXPECT_EQ(broken.out.rfind("recforge: error: elsewhere/v-1/user_factors.npy: SHA-256 ", 0), 0u) << broken.out;
}

TEST(Cli, TrainCanExportAndIndexBenchMeasuresRecall) {
  TempDir t;
  write_file(t.file("small.yaml"),
             small_config("model:\n  factors: 8\n  iterations: 4\nindex:\n  type: ivf_flat\n"
                          "  nlist: 8\n  nprobe: 2\nexport:\n  enabled: true\n"));
  const Result r = run(t.str(), "train small.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto m = nlohmann::json::parse(test::read_file(t.file("runs/small/export/manifest.json")));
  EXPECT_EQ(m["index"]["type"], "ivf_flat");
  EXPECT_EQ(m["index"]["nlist"], 8);
  EXPECT_EQ(m["index"]["nprobe"], 2);
  EXPECT_EQ(m["source"]["run_dir"], "runs/small");
  const auto runj = nlohmann::json::parse(test::read_file(t.file("runs/small/run.json")));
  EXPECT_EQ(runj["export"], "runs/small/export");
  EXPECT_EQ(run(t.str(), "recommend runs/small/export --user 5 --k 3").rc, 0);
  {
    // Lists the IVF index cannot fill (2 of 8 cells probed, k = every item) are said, with the
    // fix, once (they were written short in silence, "wrote top-k lists").
    const std::string ids = test::read_file(t.file("runs/small/export/item_ids.txt"));
    const auto n = std::count(ids.begin(), ids.end(), '\n');
    const Result all = run(t.str(), "recommend runs/small/export --all --k " + std::to_string(n) +
                                        " --out all.csv");
    ASSERT_EQ(all.rc, 0) << all.out;
    const std::regex said(" of [0-9]+ lists hold fewer than k = " + std::to_string(n) +
                          " items: the ivf_flat index returned fewer candidates than asked \\(an "
                          "IVF search finds only the items of the 2 of its 8 cells it probes\\); "
                          "raise index.nprobe");
    EXPECT_TRUE(std::regex_search(all.out, said)) << all.out;
    const Result exact = run(t.str(), "recommend runs/small/export --all --exact --k " +
                                          std::to_string(n) + " --out exact.csv");
    ASSERT_EQ(exact.rc, 0) << exact.out;
    EXPECT_EQ(exact.out.find("lists hold fewer"), std::string::npos) << exact.out;
  }

  const Result b = run(t.str(), "index-bench runs/small --k 10 --nprobe 1,2,8 --out bench.csv");
  ASSERT_EQ(b.rc, 0) << b.out;
  EXPECT_NE(b.out.find("recall@10"), std::string::npos) << b.out;
  std::istringstream csv(test::read_file(t.file("bench.csv")));
  std::vector<std::string> rows;
  for (std::string l; std::getline(csv, l);) rows.push_back(l);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], "index,param,value,k,users,recall,qps,seconds");
  EXPECT_EQ(rows[1].rfind("exact,-,0,10,", 0), 0u);
  EXPECT_EQ(rows[2].rfind("ivf_flat,nprobe,1,10,", 0), 0u);
  EXPECT_EQ(rows[4].rfind("ivf_flat,nprobe,8,10,", 0), 0u);
  auto recall = [](const std::string& row) {  // 6th column
    size_t p = 0;
    for (int c = 0; c < 5; ++c) p = row.find(',', p) + 1;
    return std::stod(row.substr(p, row.find(',', p) - p));
  };
  EXPECT_LT(recall(rows[2]), 1.0);     // one cell of 8
  EXPECT_DOUBLE_EQ(recall(rows[4]), 1.0);  // all cells: exhaustive
  // From the export (its index as written), HNSW from --set, and mistakes.
  EXPECT_EQ(run(t.str(), "index-bench runs/small/export --k 5 --users 50").rc, 0);
  // A k past the items is recall at all of them, said so (it printed recall@100000).
  const Result wide = run(t.str(), "index-bench runs/small/export --k 100000 --users 20");
  EXPECT_EQ(wide.rc, 0) << wide.out;
  const std::string ids = test::read_file(t.file("runs/small/export/item_ids.txt"));
  const std::string n_items = std::to_string(std::count(ids.begin(), ids.end(), '\n'));
  EXPECT_NE(wide.out.find("--k 100000 is above the number of items, " + n_items +
                          "; recall is measured at k " + n_items),
            std::string::npos)
      << wide.out;
  EXPECT_NE(wide.out.find("recall@" + n_items), std::string::npos) << wide.out;
  const Result h = run(t.str(), "index-bench runs/small --k 5 --set index.type=hnsw --ef-search 16,64");
  EXPECT_EQ(h.rc, 0) << h.out;
  EXPECT_NE(h.out.find("hnsw       ef_search        64"), std::string::npos) << h.out;
  expect_one_line_error(t, "index-bench runs/small --set index.type=flat --nprobe 4",
                        "index-bench --nprobe: the index is flat, expected ivf_flat or ivf_pq", true);
  expect_one_line_error(t, "index-bench runs/small --nprobe 1,x",
                        "--nprobe 1,x: \"x\" is not a positive integer; expected a list like 1,2,4,8",
                        true);
  expect_one_line_error(t, "export runs/small --out e2 --set index.type=ivf",
                        "--set index.type=ivf: index.type: expected one of flat, ivf_flat, ivf_pq, "
                        "hnsw, got \"ivf\"",
                        true);
  EXPECT_FALSE(fs::exists(t.file("e2")));
  // An index setting that cannot fit the factors is refused before training starts.
  write_file(t.file("pq.yaml"), small_config("model:\n  factors: 8\nindex:\n  type: ivf_pq\n  "
                                             "pq_m: 3\nexport:\n  enabled: true\n"));
  fs::remove_all(t.file("runs"));
  expect_one_line_error(t, "train pq.yaml",
                        "index.pq_m 3: expected a divisor of the factor dimension 8 (or 0 to choose one)");
  // So is one that cannot fit the number of items, once the data is read (it failed at the
  // export, after training).
  write_file(t.file("nlist.yaml"), small_config("model:\n  factors: 8\nindex:\n  type: ivf_flat\n  "
                                                "nlist: 100000\nexport:\n  enabled: true\n"));
  const Result nlist = run(t.str(), "train nlist.yaml");
  EXPECT_EQ(nlist.rc, 1) << nlist.out;
  EXPECT_NE(nlist.out.find("index.nlist 100000: expected at most the number of training vectors"),
            std::string::npos)
      << nlist.out;
  EXPECT_EQ(nlist.out.find("iteration 1/"), std::string::npos) << nlist.out;
  EXPECT_FALSE(fs::exists(t.file("runs/nlist")));
}

TEST(Cli, AValidationSampleIsTheSameUsersAtEveryEvaluationAndWhenReevaluated) {
  TempDir t;
  write_file(t.file("vs.yaml"),
             small_config("  validation_fraction: 0.5\n"
                          "model:\n  factors: 8\n  iterations: 4\n  eval_every: 2\n"
                          "eval:\n  validation_sample: 0.3\n"));
  const Result r = run(t.str(), "train vs.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto runj = nlohmann::json::parse(test::read_file(t.file("runs/small/run.json")));
  const auto metrics = nlohmann::json::parse(test::read_file(t.file("runs/small/metrics.json")));
  const nlohmann::json& v = metrics["validation"];
  const int64_t users = v["users"], of = v["sampled_from"];
  EXPECT_GT(users, 0);
  EXPECT_LT(users, of);
  EXPECT_NE(r.out.find(fmt::format("validation evaluations score {} of the {} users with a "
                                   "validation item (eval.validation_sample 0.3)",
                                   users, of)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(fmt::format("validation ({} of {} users, a sample, ", users, of)),
            std::string::npos)
      << r.out;
  ASSERT_EQ(runj["history"].size(), 4u);
  for (const size_t it : {1u, 3u}) {
    EXPECT_EQ(runj["history"][it]["validation"]["users"], users) << it;
    EXPECT_EQ(runj["history"][it]["validation"]["sampled_from"], of) << it;
  }
  EXPECT_EQ(runj["history"][3]["validation"]["ndcg@20"], v["ndcg@20"]);
  // Test scores every user with a test item.
  EXPECT_FALSE(metrics["test"].contains("sampled_from"));
  EXPECT_GT(metrics["test"]["users"].get<int64_t>(), of / 2);
  // evaluate draws the same sample from the saved config.
  const Result ev = run(t.str(), "evaluate runs/small");
  ASSERT_EQ(ev.rc, 0) << ev.out;
  EXPECT_NE(ev.out.find(fmt::format("validation ({} of {} users, a sample)\n", users, of)),
            std::string::npos)
      << ev.out;
  EXPECT_EQ(ev.out.find("(saved:"), std::string::npos) << ev.out;
  EXPECT_NE(ev.out.find("(= saved)"), std::string::npos) << ev.out;
  // A share that selects nobody is refused before training, naming where it was set.
  expect_one_line_error(t, "train vs.yaml --set eval.validation_sample=1e-9 --set run.name=tiny",
                        fmt::format("recforge: error: --set eval.validation_sample=1e-9: "
                                    "eval.validation_sample 1e-09 selects none of the {} users "
                                    "with a validation item",
                                    of),
                        /*runs_may_exist=*/true);
  EXPECT_FALSE(fs::exists(t.file("runs/tiny")));
}

TEST(Cli, EarlyStoppingKeepsTheBestValidationFactors) {
  TempDir t;
  // Many factors and almost no regularization overfit this small set, so validation NDCG peaks
  // early; whatever happens, the saved factors must be those of the best evaluated iteration.
  write_file(t.file("es.yaml"),
             small_config("  validation_fraction: 0.2\n"
                          "model:\n  factors: 64\n  iterations: 12\n  regularization: 0.0001\n"
                          "  eval_every: 1\n  patience: 2\neval:\n  ks: [10]\n  metric: ndcg@10\n"));
  const Result r = run(t.str(), "train es.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto runj = nlohmann::json::parse(test::read_file(t.file("runs/small/run.json")));
  const auto metrics = nlohmann::json::parse(test::read_file(t.file("runs/small/metrics.json")));
  double best = -1;
  for (const auto& h : runj["history"]) {
    ASSERT_TRUE(h.contains("validation"));
    best = std::max(best, h["validation"]["ndcg@10"].get<double>());
  }
  EXPECT_NEAR(metrics["validation"]["ndcg@10"].get<double>(), best, 1e-9);
  const size_t n = runj["history"].size();
  if (n < 12) {
    EXPECT_NE(r.out.find("no improvement in 2 evaluations, stopping"), std::string::npos);
  }
  // Patience without periodic evaluation is refused before training.
  write_file(t.file("bad.yaml"), small_config("model:\n  patience: 2\n"));
  const Result bad = run(t.str(), "train bad.yaml");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("model.patience needs model.eval_every > 0"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace recforge
