// Privacy hygiene of what recforge writes: no raw user id in a run directory or in what it logs
// (train, evaluate, recommend), and privacy.file_mode on every file and directory it creates
// (run directory, export, checkpoint, data cache).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>

#include "config/config.h"
#include "core/fs.h"
#include "pipeline/checkpoint.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

struct Output {
  int rc = -1;
  std::string out, err;
};

// Runs `recforge ARGS` in `cwd`, stdout and stderr captured apart.
Output run(const std::string& cwd, const std::string& args) {
  const std::string err_file = cwd + "/.stderr";
  const std::string cmd =
      "cd '" + cwd + "' && '" + RECFORGE_BINARY + "' " + args + " 2>'" + err_file + "'";
  FILE* p = popen(cmd.c_str(), "r");
  Output r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = test::read_file(err_file);
  fs::remove(err_file);
  return r;
}

const int kUsers = 30;

std::string user_id(int u) { return fmt::format("hygiene-user-{:04}", u); }

// Every user id of the data files (those in skipped malformed lines included).
std::vector<std::string> all_user_ids() {
  std::vector<std::string> v;
  for (int u = 1; u <= kUsers + 2; ++u) v.push_back(user_id(u));
  return v;
}

// Training and test files with distinctive user ids; two malformed lines (skipped).
void write_data(const TempDir& t) {
  std::string train, test;
  for (int u = 1; u <= kUsers; ++u) {
    for (int j = 0; j < 6; ++j) train += fmt::format("{},item-{:02}\n", user_id(u), (u * 3 + j * 5) % 20);
    test += fmt::format("{},item-{:02}\n", user_id(u), (u * 3 + 6 * 5 + 1) % 20);
  }
  train += user_id(kUsers + 1) + ",\"item-01\n";  // an unterminated quote
  train += user_id(kUsers + 2) + "\n";           // one field
  write_file(t.file("train.csv"), train);
  write_file(t.file("test.csv"), test);
}

// The ids of `ids` found in `bytes`.
std::vector<std::string> found(const std::string& bytes, const std::vector<std::string>& ids) {
  std::vector<std::string> hits;
  for (const std::string& id : ids)
    if (bytes.find(id) != std::string::npos) hits.push_back(id);
  return hits;
}

TEST(Hygiene, NoRawUserIdInTheRunDirectoryOrTheLogsOfTrainEvaluateAndRecommend) {
  TempDir t;
  write_data(t);
  write_file(t.file("h.yaml"),
             "run:\n  name: h\n  dir: runs\n  progress: lines\n"
             "data:\n  path: train.csv\n  test_path: test.csv\n  id_type: string\n"
             "  on_error: skip\n  cache: false\n"
             "split:\n  method: given\n"
             "model:\n  factors: 4\n  iterations: 3\n"
             "train:\n  checkpoint_every: 1\n"
             "export:\n  enabled: false\n");
  const std::vector<std::string> ids = all_user_ids();
  // Positive control: the scan finds every id in the data files themselves.
  EXPECT_EQ(found(test::read_file(t.file("train.csv")), ids).size(), ids.size());

  const Output train = run(t.str(), "train h.yaml");
  ASSERT_EQ(train.rc, 0) << train.err;
  // The skipped lines were reported (redacted), so their warnings were scanned.
  EXPECT_NE(train.err.find("unterminated quoted field: \"<user id>,\"item-01\""),
            std::string::npos)
      << train.err;
  const Output eval = run(t.str(), "evaluate runs/h");
  ASSERT_EQ(eval.rc, 0) << eval.err;
  EXPECT_NE(eval.out.find("test ("), std::string::npos) << eval.out;
  const Output known = run(t.str(), "recommend runs/h --user " + user_id(7) + " --k 3");
  ASSERT_EQ(known.rc, 0) << known.err;
  // The answer to its own caller names the user it was asked about (stdout, not a log).
  EXPECT_NE(known.out.find(user_id(7) + ",1,"), std::string::npos) << known.out;
  const Output some = run(t.str(), "recommend runs/h --users " + user_id(8) + "," + user_id(31) +
                                       " --k 3");
  ASSERT_EQ(some.rc, 0) << some.err;
  EXPECT_NE(some.err.find("recommend --users: a user id of 17 bytes is not in runs/h; skipped"),
            std::string::npos)
      << some.err;
  const Output unknown = run(t.str(), "recommend runs/h --user hygiene-stranger");
  EXPECT_EQ(unknown.rc, 1);

  for (const Output* o : {&train, &eval, &known, &some, &unknown})
    EXPECT_EQ(found(o->err, ids), std::vector<std::string>{}) << o->err;
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(t.file("runs"))) {
    if (!e.is_regular_file()) continue;
    ++files;
    EXPECT_EQ(found(test::read_file(e.path().string()), ids), std::vector<std::string>{})
        << e.path();
  }
  EXPECT_GE(files, 6);  // config, log, stats, run, metrics, factors
  EXPECT_NE(test::read_file(t.file("runs/h/log.txt")).find("skipping malformed line"),
            std::string::npos);
}

TEST(Hygiene, WithPseudonymisedExportsNoRunExportOrLogHoldsARawUserIdAfterOptOutAndForget) {
  TempDir t;
  write_data(t);
  write_file(t.file("key"), "hygiene-pseudonym-key-0123456789\n");
  write_file(t.file("opt-out.txt"), user_id(5) + "\n" + user_id(9) + "\n");
  write_file(t.file("h.yaml"),
             "run:\n  name: h\n  dir: runs\n  progress: lines\n"
             "data:\n  path: train.csv\n  test_path: test.csv\n  id_type: string\n"
             "  on_error: skip\n  cache: true\n  cache_dir: cache\n"
             "split:\n  method: given\n"
             "model:\n  factors: 4\n  iterations: 3\n"
             "privacy:\n  opt_out: opt-out.txt\n"
             "export:\n  enabled: true\n  pseudonymize: true\n  pseudonym_key_file: key\n");
  const std::vector<std::string> ids = all_user_ids();
  const Output train = run(t.str(), "train h.yaml");
  ASSERT_EQ(train.rc, 0) << train.err;
  const Output exported = run(t.str(), "export runs/h --out exp");
  ASSERT_EQ(exported.rc, 0) << exported.err;
  const Output forget = run(t.str(), "forget runs/h --users " + user_id(6));
  ASSERT_EQ(forget.rc, 0) << forget.err;
  const Output opted = run(t.str(), "recommend exp --user " + user_id(5) +
                                        " --pseudonym-key-file key --format json");
  ASSERT_EQ(opted.rc, 0) << opted.err;
  EXPECT_NE(opted.out.find("\"personalised\":false"), std::string::npos) << opted.out;
  for (const Output* o : {&train, &exported, &forget, &opted})
    EXPECT_EQ(found(o->err, ids), std::vector<std::string>{}) << o->err;
  // Every byte of both runs, their exports (user ids and opt-out list as pseudonyms) and the
  // separate export; the cache holds the data's ids by design (docs/privacy.md), so it is not
  // scanned here (forget's own test scans it for the forgotten user).
  int files = 0;
  for (const char* root : {"runs", "exp"})
    for (const auto& e : fs::recursive_directory_iterator(t.file(root))) {
      if (!e.is_regular_file()) continue;
      ++files;
      EXPECT_EQ(found(test::read_file(e.path().string()), ids), std::vector<std::string>{})
          << e.path();
    }
  EXPECT_GE(files, 30);  // two runs with their exports, and exp
  EXPECT_TRUE(fs::exists(t.file("runs/h-forget/export/user_ids.txt")));
  // Positive control: the scan would see a raw id in the cache, which does hold them.
  int cached = 0;
  for (const auto& e : fs::recursive_directory_iterator(t.file("cache")))
    if (e.is_regular_file()) cached += !found(test::read_file(e.path().string()), ids).empty();
  EXPECT_GE(cached, 1);
}

struct Entry {
  mode_t mode;
  bool dir;
};

Entry entry_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return {st.st_mode & 07777, S_ISDIR(st.st_mode)};
}

// The modes of `root` and everything under it (links excluded: their mode means nothing).
void collect_modes(const fs::path& root, std::map<std::string, Entry>& out) {
  out[root.string()] = entry_of(root);
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (!e.is_symlink()) out[e.path().string()] = entry_of(e.path());
}

TEST(Hygiene, EveryFileAndDirectoryOfARunItsExportCheckpointAndCacheHasTheConfiguredMode) {
  struct Case {
    const char* mode;
    mode_t file, dir;
  };
  const mode_t old_umask = ::umask(022);
  for (const Case c : {Case{"owner", 0600, 0700}, Case{"group", 0640, 0750},
                       Case{"umask", 0644, 0755}}) {
    SCOPED_TRACE(c.mode);
    TempDir t;
    ::chmod(t.str().c_str(), 0755);
    write_data(t);
    config::Config cfg = config::Config::defaults();
    for (const std::string& s : std::vector<std::string>{
             "data.path=" + t.file("train.csv"), "data.id_type=string", "data.on_error=skip",
             "data.cache_dir=" + t.file("cache/deeper"), "run.dir=" + t.file("runs/sub"),
             "run.name=m", "run.progress=off", "split.method=random",
             "split.validation_fraction=0.2", "model.factors=4", "model.iterations=3",
             "model.eval_every=1", "train.checkpoint_every=1", "export.enabled=true",
             std::string("privacy.file_mode=") + c.mode})
      cfg.set(s);
    std::map<std::string, Entry> modes;
    pipeline::TrainOptions options;
    options.on_validation = [&](int iteration, const nlohmann::json&) {
      if (iteration == 2) collect_modes(pipeline::checkpoint_dir(cfg), modes);
      return true;
    };
    const std::string dir = pipeline::train(cfg, options);
    EXPECT_GE(modes.size(), 4u);  // the checkpoint: its directory, json, arrays directory, .npy
    collect_modes(t.file("runs"), modes);
    collect_modes(t.file("cache"), modes);
    EXPECT_TRUE(modes.count(dir + "/export/v-1/index.faiss"));
    EXPECT_TRUE(modes.count(dir + "/log.txt"));
    int files = 0, dirs = 0;
    for (const auto& [path, e] : modes) {
      (e.dir ? dirs : files) += 1;
      EXPECT_EQ(e.mode, e.dir ? c.dir : c.file) << path;
    }
    EXPECT_GE(files, 16);  // run: 7, export: 8 and more, checkpoint, cache
    EXPECT_GE(dirs, 8);
    // The user's directory above them is as it was.
    EXPECT_EQ(entry_of(t.str()).mode, 0755u);
  }
  ::umask(old_umask);
}

}  // namespace
}  // namespace recforge
