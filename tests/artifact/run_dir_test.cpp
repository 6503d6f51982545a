// Run directories are verified when reopened (run.json records the size and SHA-256 of their
// files), factors with a NaN or an infinity are never served or exported, and `info EXPORT`
// verifies an export. The real binary, as a user runs it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include <fmt/format.h>

#include "core/hash.h"
#include "core/npy.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr
};

/// Runs `recforge ARGS` in `cwd`.
Result run(const std::string& cwd, const std::string& args) {
  const std::string cmd = "cd '" + cwd + "' && '" + RECFORGE_BINARY + "' " + args + " 2>&1";
  Result r;
  std::FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// The lines of the output that are errors.
std::vector<std::string> error_lines(const Result& r) {
  std::vector<std::string> v;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    if (l.rfind("recforge: ", 0) == 0) v.push_back(l);
  return v;
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(test::read_file(path));
}

/// A trained tiny run at runs/small.
struct RunFixture {
  test::TempDir t;
  std::string dir;
  RunFixture() {
    test::write_file(t.file("small.yaml"),
                     "run:\n  name: small\n  progress: off\ndata:\n  format: synthetic\n  cache: "
                     "false\nsynthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                     "split:\n  method: leave_last\nmodel:\n  factors: 8\n  iterations: 2\n");
    const Result r = run(t.str(), "train small.yaml");
    EXPECT_EQ(r.rc, 0) << r.out;
    dir = t.file("runs/small");
  }
  /// Runs each verb that reopens the run; returns their results.
  std::vector<Result> every_verb() const {
    return {run(t.str(), "evaluate runs/small"),
            run(t.str(), "recommend runs/small --all --out recs.csv --k 3"),
            run(t.str(), "export runs/small --out exp"),
            run(t.str(), "index-bench runs/small --k 5 --users 20")};
  }
  /// Rewrites run.json's checksum of `file` to match what is there now (a hand "fix").
  void recompute_checksum(const std::string& file) const {
    nlohmann::json runj = read_json(dir + "/run.json");
    runj["files"][file] = {{"bytes", fs::file_size(dir + "/" + file)},
                           {"sha256", sha256_file(dir + "/" + file)}};
    test::write_file(dir + "/run.json", runj.dump(2));
  }
};

TEST(RunDir, TrainRecordsTheChecksumsOfTheRunFiles) {
  RunFixture f;
  const nlohmann::json files = read_json(f.dir + "/run.json")["files"];
  ASSERT_EQ(files.size(), 5u) << files.dump();
  for (const char* name :
       {"config.yaml", "stats.json", "metrics.json", "user_factors.npy", "item_factors.npy"}) {
    EXPECT_EQ(files[name]["bytes"], fs::file_size(f.dir + "/" + name)) << name;
    EXPECT_EQ(files[name]["sha256"], sha256_file(f.dir + "/" + name)) << name;
  }
  const Result ok = run(f.t.str(), "evaluate runs/small");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("(= saved)"), std::string::npos) << ok.out;
}

TEST(RunDir, ACorruptedFactorFileIsRefusedByEveryVerb) {
  RunFixture f;
  const std::string path = f.dir + "/user_factors.npy";
  const std::string original = test::read_file(path);
  const std::string want = read_json(f.dir + "/run.json")["files"]["user_factors.npy"]["sha256"];
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(300);
    io.put('\x7f');
  }
  const std::string sha = sha256_file(path);
  for (const Result& r : f.every_verb()) {
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_EQ(error_lines(r),
              std::vector<std::string>{"recforge: error: runs/small/user_factors.npy: SHA-256 " +
                                       sha + " does not match run.json's " + want +
                                       " (the file is corrupt or was modified)"})
        << r.out;
  }
  EXPECT_FALSE(fs::exists(f.t.file("exp")));  // nothing re-packaged
  EXPECT_FALSE(fs::exists(f.t.file("recs.csv")));
  // An edited config.yaml is refused the same way.
  test::write_file(path, original);
  const uintmax_t size = fs::file_size(f.dir + "/config.yaml");
  std::ofstream(f.dir + "/config.yaml", std::ios::app) << "# edited\n";
  const Result cfg = run(f.t.str(), "evaluate runs/small");
  EXPECT_EQ(cfg.rc, 1);
  EXPECT_EQ(error_lines(cfg),
            std::vector<std::string>{fmt::format(
                "recforge: error: runs/small/config.yaml: {} bytes, but run.json says {} (the file "
                "is truncated or was replaced)",
                size + 9, size)})
      << cfg.out;
}

TEST(RunDir, NonFiniteFactorsAreRefusedEvenWithMatchingChecksums) {
  RunFixture f;
  Matrix items = read_npy(f.dir + "/item_factors.npy");
  items.row(3)[1] = std::numeric_limits<float>::quiet_NaN();
  write_npy(f.dir + "/item_factors.npy", items);
  f.recompute_checksum("item_factors.npy");
  for (const Result& r : f.every_verb()) {
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_EQ(error_lines(r), std::vector<std::string>{
                                  "recforge: error: runs/small/item_factors.npy: row 3, column 1 "
                                  "is nan; expected finite float32 values (the file is corrupt, "
                                  "or the model diverged)"})
        << r.out;
  }
  EXPECT_FALSE(fs::exists(f.t.file("exp")));
}

TEST(RunDir, RunsWrittenBeforeChecksumsOpenWithAWarning) {
  RunFixture f;
  nlohmann::json runj = read_json(f.dir + "/run.json");
  runj.erase("files");
  test::write_file(f.dir + "/run.json", runj.dump(2));
  const Result ok = run(f.t.str(), "evaluate runs/small");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("runs/small: run.json has no checksums of the run's files (written by an "
                        "earlier recforge); its factors and config are used unverified"),
            std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("(= saved)"), std::string::npos) << ok.out;
  // Without checksums, non-finite factors are still refused.
  Matrix users = read_npy(f.dir + "/user_factors.npy");
  users.row(7)[0] = std::numeric_limits<float>::infinity();
  write_npy(f.dir + "/user_factors.npy", users);
  const Result bad = run(f.t.str(), "export runs/small --out exp");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("recforge: error: runs/small/user_factors.npy: row 7, column 0 is inf; "
                         "expected finite float32 values"),
            std::string::npos)
      << bad.out;
  // A "files" that is not an object is a sentence, not an internal error.
  runj["files"] = nlohmann::json::array();
  test::write_file(f.dir + "/run.json", runj.dump(2));
  const Result arr = run(f.t.str(), "evaluate runs/small");
  EXPECT_EQ(arr.rc, 1);
  EXPECT_EQ(error_lines(arr),
            std::vector<std::string>{"recforge: error: runs/small/run.json: field \"files\" is a "
                                     "JSON array; expected an object with the size and SHA-256 of "
                                     "the run's files"})
      << arr.out;
}

TEST(RunDir, AFingerprintOfAnotherTypeIsADamagedRunNotAnInternalError) {
  // run.json is the one file its checksums do not cover. A data_fingerprint (or its kind) that
  // is not a string exited 3 with nlohmann's type_error; each command that reopens the run
  // names the field.
  RunFixture f;
  const nlohmann::json original = read_json(f.dir + "/run.json");
  ASSERT_TRUE(original["data_fingerprint"].is_string());
  for (const char* key : {"data_fingerprint", "data_fingerprint_kind"}) {
    for (const nlohmann::json& v : {nlohmann::json(5), nlohmann::json(nullptr),
                                    nlohmann::json::array()}) {
      nlohmann::json runj = original;
      runj[key] = v;
      test::write_file(f.dir + "/run.json", runj.dump(2));
      for (const char* cmd : {"evaluate runs/small", "recommend runs/small --user 0"}) {
        const Result r = run(f.t.str(), cmd);
        EXPECT_EQ(r.rc, 1) << cmd << "\n" << r.out;
        EXPECT_EQ(error_lines(r),
                  std::vector<std::string>{fmt::format(
                      "recforge: error: runs/small/run.json: field \"{}\" is a JSON {}; expected "
                      "the string that training wrote (the run directory is damaged)",
                      key, v.type_name())})
            << cmd << "\n" << r.out;
      }
    }
  }
  test::write_file(f.dir + "/run.json", original.dump(2));
  EXPECT_EQ(run(f.t.str(), "evaluate runs/small").rc, 0);
}

TEST(RunDir, ARunReopenedFromAnotherDirectorySaysWhereItsRelativeDataPathIsRead) {
  // data.path and data.test_path are relative to the directory recforge runs in. Reopening a
  // run from elsewhere said only "train.csv: data file not found"; it now names the run, the
  // key and the directory the path was looked for in.
  test::TempDir t;
  std::string train = "user,item\n", test = "user,item\n";
  for (int u = 0; u < 40; ++u)
    for (int j = 0; j < 6; ++j) (j < 5 ? train : test) += fmt::format("{},{}\n", u, (u * 7 + j * 3) % 30);
  test::write_file(t.file("train.csv"), train);
  test::write_file(t.file("test.csv"), test);
  test::write_file(t.file("g.yaml"),
                   "run:\n  progress: off\ndata:\n  format: delimited\n  header: true\n  path: "
                   "train.csv\n  test_path: test.csv\nsplit:\n  method: given\nmodel:\n  "
                   "factors: 4\n  iterations: 1\n");
  ASSERT_EQ(run(t.str(), "train g.yaml").rc, 0);
  std::filesystem::create_directories(t.file("elsewhere"));
  const std::string cwd = std::filesystem::canonical(t.file("elsewhere")).string();
  for (const char* cmd : {"evaluate ../runs/g", "recommend ../runs/g --user 3"}) {
    const Result r = run(t.file("elsewhere"), cmd);
    EXPECT_EQ(r.rc, 1) << cmd << "\n" << r.out;
    EXPECT_EQ(error_lines(r),
              std::vector<std::string>{fmt::format(
                  "recforge: error: ../runs/g: config.yaml's data.path is train.csv, which is not "
                  "found from the current directory ({}); a run's relative data paths are read "
                  "from the directory recforge runs in, as at training time: run this command "
                  "from there",
                  cwd)})
        << cmd << "\n" << r.out;
  }
  // Only the test file missing: named too.
  test::write_file(t.file("elsewhere/train.csv"), train);
  const Result r = run(t.file("elsewhere"), "evaluate ../runs/g");
  EXPECT_NE(r.out.find("config.yaml's data.test_path is test.csv, which is not found"),
            std::string::npos)
      << r.out;
  // From the training directory it opens.
  EXPECT_EQ(run(t.str(), "evaluate runs/g").rc, 0);
}

TEST(RunDir, OtherWeightsOrTimestampsInTheDataAreRefusedWhenTheRunIsReopened) {
  // The fingerprint covers the id maps and the split: a file whose weights (or timestamps)
  // changed but whose pairs did not was reopened, and report-user and explain showed values the
  // model never trained on. run.json's "data_values" (a digest of both) is now checked too.
  test::TempDir t;
  std::string text = "user,item,rating,ts\n";
  for (int u = 0; u < 40; ++u)
    for (int j = 0; j < 6; ++j)
      text += fmt::format("{},{},{},{}\n", u, (u * 7 + j * 3) % 30, 1 + (u + j) % 5, 1000 + 10 * j);
  test::write_file(t.file("r.csv"), text);
  test::write_file(t.file("w.yaml"),
                   "run:\n  name: w\n  progress: off\ndata:\n  format: delimited\n  header: "
                   "true\n  path: r.csv\n  weight_col: rating\n  time_col: ts\nsplit:\n  method: "
                   "leave_last\nmodel:\n  factors: 4\n  iterations: 1\n");
  const Result trained = run(t.str(), "train w.yaml");
  ASSERT_EQ(trained.rc, 0) << trained.out;
  const nlohmann::json original = read_json(t.file("runs/w/run.json"));
  ASSERT_TRUE(original["data_values"].is_string());
  EXPECT_EQ(original["data_values"].get<std::string>().size(), 32u);
  const std::string refused =
      "recforge: error: runs/w: the data named in config.yaml has other weights or timestamps "
      "than this run was trained on (the same users, items and split); retrain, or restore the "
      "original files";
  // user 3's first line: "3,21,4,1000". Another weight; then another (still earliest) timestamp.
  const std::string line = "\n3,21,4,1000\n";
  ASSERT_NE(text.find(line), std::string::npos);
  for (const char* edited : {"\n3,21,5,1000\n", "\n3,21,4,999\n"}) {
    std::string changed = text;
    changed.replace(changed.find(line), line.size(), edited);
    test::write_file(t.file("r.csv"), changed);
    for (const char* cmd : {"evaluate runs/w", "recommend runs/w --user 3",
                            "explain runs/w --user 3 --item 21"}) {
      const Result r = run(t.str(), cmd);
      EXPECT_EQ(r.rc, 1) << cmd << "\n" << r.out;
      EXPECT_EQ(error_lines(r), std::vector<std::string>{refused}) << cmd << "\n" << r.out;
    }
  }
  // The original file opens again; a run.json without "data_values" (an earlier recforge's)
  // opens on changed weights, as it did.
  test::write_file(t.file("r.csv"), text);
  EXPECT_EQ(run(t.str(), "evaluate runs/w").rc, 0);
  nlohmann::json older = original;
  older.erase("data_values");
  test::write_file(t.file("runs/w/run.json"), older.dump(2));
  std::string changed = text;
  changed.replace(changed.find(line), line.size(), "\n3,21,5,1000\n");
  test::write_file(t.file("r.csv"), changed);
  const Result old_run = run(t.str(), "evaluate runs/w");
  EXPECT_EQ(old_run.rc, 0) << old_run.out;
}

TEST(Info, VerifiesAnExportAndRefusesMalformedManifestsAsUserErrors) {
  RunFixture f;
  ASSERT_EQ(run(f.t.str(), "export runs/small --out exp").rc, 0);
  const Result ok = run(f.t.str(), "info exp");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("export     exp (recforge-export version 1)\nversion    v-1\n"),
            std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("verified   9 files: sizes and SHA-256 as manifest.json lists them, "
                        "shapes as its counts, finite factors"),
            std::string::npos)
      << ok.out;
  // A damaged file: info says so (it only described the manifest before).
  const std::string index = f.t.file("exp/v-1/index.faiss");
  const std::string original = test::read_file(index);
  {
    std::fstream io(index, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-5, std::ios::end);
    io.put('\x55');
  }
  const Result bad = run(f.t.str(), "info exp");
  EXPECT_EQ(bad.rc, 1);
  ASSERT_EQ(error_lines(bad).size(), 1u) << bad.out;
  EXPECT_EQ(error_lines(bad)[0].rfind("recforge: error: exp/v-1/index.faiss: SHA-256 ", 0), 0u)
      << bad.out;
  test::write_file(index, original);
  // A manifest that is a JSON array exited 3 (internal error); it is a user error naming the file.
  const std::string manifest = test::read_file(f.t.file("exp/v-1/manifest.json"));
  test::write_file(f.t.file("exp/v-1/manifest.json"), "[\"recforge-export\", 1]");
  const Result arr = run(f.t.str(), "info exp");
  EXPECT_EQ(arr.rc, 1) << arr.out;
  EXPECT_EQ(error_lines(arr),
            std::vector<std::string>{"recforge: error: exp/v-1/manifest.json: the manifest is a "
                                     "JSON array; expected an object with \"format\": "
                                     "\"recforge-export\""})
      << arr.out;
  nlohmann::json m = nlohmann::json::parse(manifest);
  m["created"] = 5;
  m["counts"]["users"] = "300";
  test::write_file(f.t.file("exp/v-1/manifest.json"), m.dump());
  const Result typed = run(f.t.str(), "info exp");
  EXPECT_EQ(typed.rc, 1) << typed.out;
  EXPECT_EQ(error_lines(typed), std::vector<std::string>{
                                    "recforge: error: exp/v-1/manifest.json: field "
                                    "\"counts.users\" is missing or not a count; expected a "
                                    "non-negative integer"})
      << typed.out;
}

}  // namespace
}  // namespace recforge
