// Pseudonymised exports and the opt-out list, through the recforge binary: user_ids.txt holds
// HMAC-SHA256(key, raw id) of every user and the manifest says so; the key's bytes appear in no
// file of the run directory, the exports or the log, nor in anything train, export, recommend or
// similar print; raw ids with the key answer like the pseudonyms; an opted-out user gets the
// training popularity with personalised false; wrong, short and missing keys get one sentence
// without the key; exports without opt_out.txt or the manifest's user_ids still load.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "artifact/artifact.h"
#include "core/error.h"
#include "core/hash.h"
#include "pipeline/export.h"
#include "pipeline/run.h"
#include "test_util.h"

namespace recforge::artifact {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The key: a value distinctive enough that finding it anywhere means it leaked.
const std::string kKey = "Kq7-secret-pseudonym-key-9xW2-never-printed";

using Ran = test::Result;

/// Runs `recforge ARGS` in `cwd` with `env` ("NAME=value ..." or "").
Ran run(const std::string& cwd, const std::string& args, const std::string& env = "") {
  return test::run_recforge(cwd, args, env);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

/// The lines of `out` that report an error (the log's info lines aside).
size_t error_lines(const std::string& out) {
  size_t n = 0;
  for (const std::string& l : lines_of(out)) n += l.find("error") != std::string::npos;
  return n;
}

std::string config(const test::TempDir& t, const std::string& key_setting) {
  return "run:\n  name: small\n  dir: " + t.file("runs") +
         "\n  progress: lines\n  seed: 3\n"
         "data:\n  format: synthetic\n  cache: false\n"
         "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
         "split:\n  method: leave_last\n"
         "model:\n  type: ials\n  factors: 8\n  iterations: 3\n"
         "privacy:\n  opt_out: " + t.file("opt-out.txt") +
         "\nexport:\n  enabled: true\n  pseudonymize: true\n  " + key_setting + "\n";
}

/// The items and scores of a JSON list object of `recommend --format json`.
std::vector<std::pair<std::string, double>> items_of(const json& list) {
  std::vector<std::pair<std::string, double>> out;
  for (const json& x : list["items"]) out.push_back({x["item"], x["score"]});
  return out;
}

TEST(ArtifactPrivacy, PseudonymisedExportsHoldNoRawIdAndTheKeyNowhere) {
  test::TempDir t;
  const std::string secret_dir = t.file("secret");
  fs::create_directory(secret_dir);
  const std::string key_file = test::write_file(secret_dir + "/key", kKey + "\n");
  test::write_file(t.file("opt-out.txt"), "5\nghost\n");
  test::write_file(t.file("c.yaml"), config(t, "pseudonym_key_file: " + key_file));
  std::vector<std::string> printed;  // every output, scanned at the end

  const Ran train = run(t.str(), "train c.yaml");
  printed.push_back(train.out);
  ASSERT_EQ(train.rc, 0) << train.out;
  const std::string run_dir = t.file("runs/small");
  const Ran exp = run(t.str(), "export " + run_dir + " --out exp");
  printed.push_back(exp.out);
  ASSERT_EQ(exp.rc, 0) << exp.out;

  // user_ids.txt: the HMAC of each raw id, in row order; 64 lowercase hex characters each.
  const pipeline::OpenedRun opened = pipeline::open_run(run_dir, "test");
  for (const std::string& dir : {run_dir + "/export", t.file("exp")}) {
    const std::vector<std::string> ids = lines_of(test::read_file(dir + "/user_ids.txt"));
    ASSERT_EQ(static_cast<int64_t>(ids.size()), opened.data.users.size()) << dir;
    for (size_t u = 0; u < ids.size(); ++u) {
      ASSERT_EQ(ids[u].size(), 64u) << dir;
      EXPECT_EQ(ids[u].find_first_not_of("0123456789abcdef"), std::string::npos) << ids[u];
      EXPECT_EQ(ids[u], hmac_sha256_hex(kKey, opened.data.users.external(static_cast<data::index_t>(u))));
    }
    const json m = json::parse(test::read_file(dir + "/manifest.json"));
    EXPECT_EQ(m["user_ids"]["pseudonymized"], true);
    EXPECT_EQ(m["user_ids"]["scheme"], "hmac-sha256");
    EXPECT_EQ(m["user_ids"]["key_check"], hmac_sha256_hex(kKey, "recforge key check").substr(0, 16));
    // The opt-out list: the pseudonyms of the file's ids, sorted.
    std::vector<std::string> want = {hmac_sha256_hex(kKey, "5"), hmac_sha256_hex(kKey, "ghost")};
    std::sort(want.begin(), want.end());
    EXPECT_EQ(lines_of(test::read_file(dir + "/opt_out.txt")), want) << dir;
    EXPECT_EQ(m["files"]["opt_out.txt"]["lines"], 2);
    EXPECT_EQ(load(dir).opt_out, want);
  }

  // recommend: the raw id with the key answers as the pseudonym does, named as it was given.
  const std::string p3 = hmac_sha256_hex(kKey, "3");
  const Ran raw = run(t.str(), "recommend exp --user 3 --k 8 --format json --pseudonym-key-file " + key_file);
  const Ran pseudo = run(t.str(), "recommend exp --user " + p3 + " --k 8 --format json");
  printed.push_back(raw.out);
  printed.push_back(pseudo.out);
  ASSERT_EQ(raw.rc, 0) << raw.out;
  ASSERT_EQ(pseudo.rc, 0) << pseudo.out;
  const json jr = json::parse(raw.out), jp = json::parse(pseudo.out);
  EXPECT_EQ(jr["user"], "3");
  EXPECT_EQ(jp["user"], p3);
  EXPECT_EQ(jr["personalised"], true);
  EXPECT_EQ(items_of(jr).size(), 8u);
  EXPECT_EQ(items_of(jr), items_of(jp));
  const Ran env = run(t.str(), "recommend exp --user 3 --k 8 --format json --pseudonym-key-env RF_K",
                      "RF_K='" + kKey + "'");
  printed.push_back(env.out);
  ASSERT_EQ(env.rc, 0) << env.out;
  EXPECT_EQ(items_of(json::parse(env.out)), items_of(jr));
  const Ran sim = run(t.str(), "similar exp --user 3 --k 5 --format json --pseudonym-key-file " + key_file);
  printed.push_back(sim.out);
  EXPECT_EQ(sim.rc, 0) << sim.out;
  // A raw id without the key is not in the export, and every command says why (explain and
  // report-user said only "not in this export": no data about them, a data-access answer would
  // conclude).
  for (const std::string verb : {"recommend exp --user 3", "similar exp --user 3",
                                 "explain exp --user 3 --item 1", "report-user exp --user 3"}) {
    const Ran without = run(t.str(), verb);
    printed.push_back(without.out);
    EXPECT_EQ(without.rc, 1) << verb << "\n" << without.out;
    EXPECT_NE(without.out.find("user \"3\" is not in this export; expected a user id of its "
                               "training data (its user ids are pseudonymised: give the "
                               "pseudonym, or the raw id with the key"),
              std::string::npos)
        << verb << "\n" << without.out;
  }

  // The opted-out user: the training popularity (counted here from the seen lists), flagged.
  const Artifact a = load(t.file("exp"));
  std::map<data::index_t, int> count;
  for (data::index_t i : a.seen.indices) ++count[i];
  std::set<data::index_t> own;
  if (const auto r5 = a.user_ids.find(hmac_sha256_hex(kKey, "5")))
    for (auto e = a.seen.indptr[*r5]; e < a.seen.indptr[*r5 + 1]; ++e) own.insert(a.seen.indices[e]);
  std::vector<data::index_t> order;
  for (data::index_t i = 0; i < a.seen.cols; ++i)
    if (!own.count(i)) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](data::index_t x, data::index_t y) { return count[x] > count[y]; });
  std::vector<std::pair<std::string, double>> popular;
  for (size_t j = 0; j < 6; ++j) popular.push_back({a.item_ids.external(order[j]), count[order[j]]});
  const Ran opted = run(t.str(), "recommend exp --users 5,3 --k 6 --format json --pseudonym-key-file " + key_file);
  printed.push_back(opted.out);
  ASSERT_EQ(opted.rc, 0) << opted.out;
  const json jo = json::parse(opted.out);
  ASSERT_EQ(jo.size(), 2u) << opted.out;
  EXPECT_EQ(jo[0]["user"], "5");
  EXPECT_EQ(jo[0]["personalised"], false);
  EXPECT_EQ(items_of(jo[0]), popular);
  EXPECT_EQ(jo[1]["personalised"], true);
  // CSV: the trailing personalised column (this export lists opted-out users).
  const Ran csv = run(t.str(), "recommend exp --users 5,3 --k 2 --pseudonym-key-file " + key_file);
  printed.push_back(csv.out);
  EXPECT_EQ(csv.out, "user,rank,item,score,personalised\n5,1," + popular[0].first + "," +
                         std::to_string(static_cast<int>(popular[0].second)) + ",false\n5,2," +
                         popular[1].first + "," +
                         std::to_string(static_cast<int>(popular[1].second)) + ",false\n3,1," +
                         items_of(jr)[0].first + "," + jr["items"][0]["score"].dump() +
                         ",true\n3,2," + items_of(jr)[1].first + "," +
                         jr["items"][1]["score"].dump() + ",true\n");

  // Wrong, short and missing keys: one sentence naming the flag or setting, without the key.
  const std::string wrong_key = "Wr0ng-key-value-but-long-enough";
  const std::string wrong_file = test::write_file(t.file("wrong.key"), wrong_key);
  const Ran wrong = run(t.str(), "recommend exp --user 3 --pseudonym-key-file " + wrong_file);
  printed.push_back(wrong.out);
  EXPECT_EQ(wrong.rc, 1);
  EXPECT_EQ(wrong.out.rfind("recforge: error: --pseudonym-key-file " + wrong_file +
                                ": the key is not the one exp was pseudonymised with",
                            0),
            0u)
      << wrong.out;
  EXPECT_EQ(wrong.out.find(wrong_key), std::string::npos);
  const std::string short_key = "Sh0rtK3y";
  const std::string short_file = test::write_file(t.file("short.key"), short_key + "\n");
  const Ran shortr = run(t.str(), "recommend exp --user 3 --pseudonym-key-file " + short_file);
  EXPECT_EQ(shortr.rc, 1);
  EXPECT_EQ(lines_of(shortr.out).size(), 1u) << shortr.out;
  EXPECT_NE(shortr.out.find("--pseudonym-key-file: the key in file " + short_file + " is 8 byte(s) long"),
            std::string::npos)
      << shortr.out;
  EXPECT_EQ(shortr.out.find(short_key), std::string::npos);
  // At export time the setting is named (the run's config.yaml location).
  test::write_file(key_file, short_key + "\n");
  const Ran short_export = run(t.str(), "export " + run_dir + " --out exp-short");
  EXPECT_EQ(short_export.rc, 1);
  EXPECT_EQ(error_lines(short_export.out), 1u) << short_export.out;
  EXPECT_NE(short_export.out.find(": export.pseudonym_key_file: the key in file " + key_file),
            std::string::npos)
      << short_export.out;
  EXPECT_EQ(short_export.out.find(short_key), std::string::npos);
  EXPECT_FALSE(fs::exists(t.file("exp-short")));
  fs::remove(key_file);
  const Ran missing = run(t.str(), "export " + run_dir + " --out exp-short");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("export.pseudonym_key_file: cannot read the key file " + key_file),
            std::string::npos)
      << missing.out;
  test::write_file(key_file, kKey + "\n");

  // The key from an environment variable: the same pseudonyms.
  fs::remove_all(run_dir);
  test::write_file(t.file("c.yaml"), config(t, "pseudonym_key_env: RF_PSEUDONYM_KEY"));
  const Ran train_env = run(t.str(), "train c.yaml", "RF_PSEUDONYM_KEY='" + kKey + "'");
  printed.push_back(train_env.out);
  ASSERT_EQ(train_env.rc, 0) << train_env.out;
  EXPECT_EQ(test::read_file(run_dir + "/export/user_ids.txt"),
            test::read_file(t.file("exp/user_ids.txt")));

  // The key's bytes: in no file under the test directory but the key file itself, and in
  // nothing printed.
  size_t scanned = 0;
  for (auto it = fs::recursive_directory_iterator(t.str()); it != fs::recursive_directory_iterator();
       ++it) {
    if (fs::is_symlink(it->symlink_status()) || !it->is_regular_file()) continue;
    if (it->path() == key_file) continue;
    EXPECT_EQ(test::read_file(it->path().string()).find(kKey), std::string::npos) << it->path();
    ++scanned;
  }
  EXPECT_GT(scanned, 20u);  // the run directory, its log and export, and exp/
  EXPECT_TRUE(fs::exists(run_dir + "/log.txt"));
  for (const std::string& out : printed) EXPECT_EQ(out.find(kKey), std::string::npos) << out;
}

TEST(ArtifactPrivacy, AMissingKeyStopsTrainingBeforeItStarts) {
  test::TempDir t;
  test::write_file(t.file("opt-out.txt"), "7\n");
  test::write_file(t.file("c.yaml"), config(t, "pseudonym_key_file: " + t.file("no-key")));
  const Ran train = run(t.str(), "train c.yaml");
  EXPECT_EQ(train.rc, 1) << train.out;
  EXPECT_NE(train.out.find("c.yaml:24:3: export.pseudonym_key_file: cannot read the key file " +
                           t.file("no-key")),
            std::string::npos)
      << train.out;
  // Refused before any data was read or any iteration ran, and no run directory remains.
  EXPECT_EQ(train.out.find("iteration"), std::string::npos) << train.out;
  EXPECT_EQ(train.out.find("split"), std::string::npos) << train.out;
  EXPECT_FALSE(fs::exists(t.file("runs/small")));
}

TEST(ArtifactPrivacy, ExportsWithoutTheOptOutListOrUserIdsSectionStillLoad) {
  test::TempDir t;
  test::write_file(t.file("opt-out.txt"), "7\n12\n");
  test::write_file(t.file("c.yaml"),
                   "run:\n  name: small\n  dir: " + t.file("runs") +
                       "\n  progress: off\ndata:\n  format: synthetic\n  cache: false\n"
                       "synthetic:\n  users: 100\n  items: 50\n  interactions: 1500\n"
                       "split:\n  method: leave_last\nprivacy:\n  opt_out: " +
                       t.file("opt-out.txt") + "\nexport:\n  enabled: true\n");
  const Ran train = run(t.str(), "train c.yaml");
  ASSERT_EQ(train.rc, 0) << train.out;
  const std::string dir = t.file("runs/small/export");
  const Artifact a = load(dir);
  EXPECT_EQ(a.opt_out, (std::vector<std::string>{"12", "7"}));  // raw ids, sorted as strings
  EXPECT_EQ(a.key_check, "");
  EXPECT_EQ(test::read_file(dir + "/opt_out.txt"), "12\n7\n");
  // Damage to the list is refused, naming the file.
  const std::string v = dir + "/current/";
  test::write_file(v + "opt_out.txt", "12\n8\n");
  std::string err;
  try {
    load(dir);
  } catch (const Error& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("opt_out.txt: SHA-256"), std::string::npos) << err;
  // An export of an earlier recforge: no opt_out.txt, no "user_ids" in its manifest.
  fs::remove(v + "opt_out.txt");
  json m = json::parse(test::read_file(v + "manifest.json"));
  m["files"].erase("opt_out.txt");
  m.erase("user_ids");
  test::write_file(v + "manifest.json", m.dump(2));
  const Artifact old = load(dir);
  EXPECT_TRUE(old.opt_out.empty());
  EXPECT_EQ(old.key_check, "");
  EXPECT_EQ(old.user_ids.ids(), a.user_ids.ids());
  // The opted-out users were dropped at training (no row); every user of the old export is
  // answered personally, without the CSV's personalised column.
  EXPECT_FALSE(old.user_ids.find("7").has_value());
  const std::string user = old.user_ids.ids().front();
  const Ran rec = run(t.str(), "recommend " + dir + " --user " + user + " --k 3 --format json");
  ASSERT_EQ(rec.rc, 0) << rec.out;
  EXPECT_EQ(json::parse(rec.out)["personalised"], true);
  const Ran csv = run(t.str(), "recommend " + dir + " --user " + user + " --k 3");
  EXPECT_EQ(csv.out.rfind("user,rank,item,score\n" + user + ",1,", 0), 0u) << csv.out;
}

}  // namespace
}  // namespace recforge::artifact
