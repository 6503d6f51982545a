// Warm starts (model.init_from): each user and item of the new data found in an earlier export
// by id starts from its row there, the others from the random factors they would have had; an
// iALS run started from a run's export continues that run to the bit; a BPR run starts where
// its export ended; pseudonymised exports match users only with their key; a warm start from an
// export trained on a user who has opted out since is refused, and `recforge forget` retrains
// from random factors. Through the library and the recforge binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "config/config.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/npy.h"
#include "pipeline/dataset.h"
#include "pipeline/warm_start.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::Result;
using test::TempDir;

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(test::read_file(path));
}

// Interactions of users first_user..last_user with items first_item..last_item ("u12,i7"
// lines, 12 distinct items per user, drawn with `seed`): day 1 and day 2 of the tests share
// most ids.
std::string interactions(int first_user, int last_user, int first_item, int last_item,
                         unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> item(first_item, last_item);
  std::ostringstream out;
  for (int u = first_user; u <= last_user; ++u) {
    std::set<int> items;
    while (items.size() < 12) items.insert(item(rng));
    for (int i : items) out << "u" << u << ",i" << i << "\n";
  }
  return out.str();
}

// A config over `path` (string ids, no split: every interaction trains), iALS with 8 factors
// unless `model` says otherwise; `extra` adds sections.
std::string config(const TempDir& t, const std::string& path, const std::string& model = "",
                   const std::string& extra = "") {
  return "run:\n  dir: " + t.file("runs") +
         "\n  progress: off\n  seed: 5\n"
         "data:\n  format: delimited\n  path: " + path +
         "\n  id_type: string\n  cache: false\n"
         "split:\n  method: none\n"
         "model:\n" + (model.empty() ? "  type: ials\n  factors: 8\n  iterations: 4\n"
                                       "  regularization: 0.05\n  solver: cholesky\n"
                                     : model) +
         "train:\n  threads: 1\n"
         "export:\n  enabled: true\n" + extra;
}

Result recforge(const TempDir& t, const std::string& args, const std::string& env = "") {
  return test::run_recforge(t.str(), args, env);
}

// The JSON document of a command's output (stdout), without the log lines around it (stderr).
nlohmann::json json_of(const std::string& out) {
  const size_t b = out.find("\n{") == std::string::npos ? out.find('{') : out.find("\n{") + 1;
  return nlohmann::json::parse(out.substr(b, out.rfind('}') + 1 - b));
}

// Day 1: users u0-u59 and items i0-i39; day 2: u10-u69 and i5-i44 (users u10-u59 and items
// i5-i39 in both).
struct Days {
  TempDir t;
  std::string day1 = t.file("day1.csv"), day2 = t.file("day2.csv");
  Days() {
    test::write_file(day1, interactions(0, 59, 0, 39, 1));
    test::write_file(day2, interactions(10, 69, 5, 44, 2));
  }
};

TEST(WarmStart, EachRowStartsFromTheExportRowOfItsIdAndTheOthersFromTheirOwn) {
  Days d;
  test::write_file(d.t.file("day1.yaml"), config(d.t, d.day1));
  const Result a = recforge(d.t, "train day1.yaml --set run.name=day1");
  ASSERT_EQ(a.rc, 0) << a.out;

  const config::Config cfg = config::Config::parse(
      config(d.t, d.day2), "day2.yaml", {"model.init_from=" + d.t.file("runs/day1")});
  const pipeline::Dataset data = pipeline::prepare_dataset(cfg);
  const std::optional<pipeline::InitSource> src = pipeline::open_init_from(cfg);
  ASSERT_TRUE(src.has_value());
  EXPECT_EQ(src->dir, d.t.file("runs/day1") + "/export");  // the run's export
  const pipeline::WarmStart w = pipeline::match_init_from(*src, cfg, data.users, data.items, {});
  EXPECT_EQ(w.users_matched, 50);  // u10-u59
  EXPECT_EQ(w.items_matched, 35);  // i5-i39
  EXPECT_EQ(w.record["users_matched"], 50);
  EXPECT_EQ(w.record["items"], data.items.size());
  EXPECT_EQ(w.record["version"], "v-1");
  EXPECT_EQ(w.record["source_run"], d.t.file("runs/day1"));

  // The rows: the export's for ids it has (looked up here independently), the given ones else.
  const Matrix from_users = read_npy(d.t.file("runs/day1/user_factors.npy"));
  const Matrix from_items = read_npy(d.t.file("runs/day1/item_factors.npy"));
  std::vector<std::string> export_users;
  {
    std::istringstream in(test::read_file(src->dir + "/user_ids.txt"));
    for (std::string l; std::getline(in, l);) export_users.push_back(l);
  }
  for (bool users : {true, false}) {
    const data::IdMap& ids = users ? data.users : data.items;
    const std::vector<int64_t>& rows = users ? w.user_rows : w.item_rows;
    const Matrix& from = users ? src->export_.users : src->export_.items;
    Matrix m;
    m.rows = ids.size();
    m.cols = 8;
    m.data.assign(static_cast<size_t>(m.rows * m.cols), -7.f);
    pipeline::warm_rows(from, rows, m);
    int64_t kept = 0;
    for (int64_t r = 0; r < m.rows; ++r) {
      const std::string& id = ids.external(static_cast<data::index_t>(r));
      const int number = std::stoi(id.substr(1));
      const bool shared = users ? number >= 10 && number <= 59 : number >= 5 && number <= 39;
      if (!shared) {
        ++kept;
        for (int c = 0; c < 8; ++c) EXPECT_EQ(m.row(r)[c], -7.f) << id;
        continue;
      }
      // Its row in the day-1 run: the position of the id in the export's id list.
      const auto at = users ? std::find(export_users.begin(), export_users.end(), id) - export_users.begin()
                            : *src->export_.item_ids.find(id);
      const Matrix& run_rows = users ? from_users : from_items;
      for (int c = 0; c < 8; ++c) EXPECT_EQ(m.row(r)[c], run_rows.row(at)[c]) << id;
    }
    EXPECT_EQ(kept, users ? 10 : 5);
    // A slice (a distributed rank's rows) gets the same rows as the whole.
    Matrix part;
    part.rows = 20;
    part.cols = 8;
    part.data.assign(160, -7.f);
    pipeline::warm_rows(from, rows, part, 15);
    for (int64_t r = 0; r < 20; ++r)
      for (int c = 0; c < 8; ++c) EXPECT_EQ(part.row(r)[c], m.row(15 + r)[c]);
  }

  // Through the binary: run.json records where the run started.
  const Result b = recforge(d.t, "train day1.yaml --set run.name=day2 --set data.path=" + d.day2 +
                                     " --set model.init_from=runs/day1");
  ASSERT_EQ(b.rc, 0) << b.out;
  EXPECT_NE(b.out.find("50 of 60 users and 35 of 40 items start from its factors"),
            std::string::npos)
      << b.out;
  const nlohmann::json run = read_json(d.t.file("runs/day2/run.json"));
  EXPECT_EQ(run["init_from"]["export"], d.t.file("runs/day1/export"));
  EXPECT_EQ(run["init_from"]["users_matched"], 50);
  EXPECT_EQ(run["init_from"]["items_matched"], 35);
  // u0-u9 of day 1 are not in day 2: their data stays in the items' factors, which is said.
  EXPECT_EQ(run["init_from"]["users_departed"], 10);
  EXPECT_NE(b.out.find("10 user(s) the export was trained on are not in this run's data"),
            std::string::npos)
      << b.out;
  // The lineage: day 1 began a chain when its run was created; day 2 is its first warm start,
  // and each export records its run's lineage.
  const nlohmann::json day1_run = read_json(d.t.file("runs/day1/run.json"));
  const nlohmann::json day1_lineage =
      read_json(d.t.file("runs/day1/export/v-1/manifest.json"))["source"]["lineage"];
  EXPECT_EQ(day1_lineage, (nlohmann::json{{"started", day1_run["created"]}, {"warm_starts", 0}}));
  EXPECT_EQ(run["init_from"]["lineage"],
            (nlohmann::json{{"started", day1_run["created"]}, {"warm_starts", 1}}));
  EXPECT_EQ(read_json(d.t.file("runs/day2/export/v-1/manifest.json"))["source"]["lineage"],
            run["init_from"]["lineage"]);
  // The data-access report of a warm-started run says whether the export it started from was
  // trained on the user: u20 was in day 1, u65 is new on day 2.
  const Result old_user = recforge(d.t, "report-user runs/day2 --user u20");
  EXPECT_EQ(old_user.rc, 0) << old_user.out;
  EXPECT_NE(old_user.out.find("the model started from the export " + d.t.file("runs/day1/export") +
                              " (v-1), which was trained on this user's data: yes"),
            std::string::npos)
      << old_user.out;
  const Result new_user = recforge(d.t, "report-user runs/day2 --user u65 --format json");
  ASSERT_EQ(new_user.rc, 0) << new_user.out;
  const nlohmann::json report = json_of(new_user.out);
  EXPECT_EQ(report["warm_start"]["trained_on_user"], false) << new_user.out;
  // The run's export names its start and points at the run for the answer.
  const Result from_export = recforge(d.t, "report-user runs/day2/export --user u20");
  EXPECT_EQ(from_export.rc, 0) << from_export.out;
  EXPECT_NE(from_export.out.find("the model started from the export runs/day1, which was trained "
                                 "on this user's data: unknown"),
            std::string::npos)
      << from_export.out;
  EXPECT_NE(from_export.out.find("recforge report-user " + d.t.file("runs/day2") + "` says"),
            std::string::npos)
      << from_export.out;
  fs::rename(d.t.file("runs/day1/export"), d.t.file("runs/day1/export-moved"));
  const Result gone = recforge(d.t, "report-user runs/day2 --user u20 --format json");
  ASSERT_EQ(gone.rc, 0) << gone.out;
  EXPECT_TRUE(json_of(gone.out)["warm_start"]["trained_on_user"].is_null())
      << gone.out;
  fs::rename(d.t.file("runs/day1/export-moved"), d.t.file("runs/day1/export"));
  const Result info = recforge(d.t, "info runs/day2");
  EXPECT_NE(info.out.find("started    from " + d.t.file("runs/day1/export") +
                          " (v-1): 50 of 60 users, 35 of 40 items\n"
                          "           10 user(s) of that export are not in this run's data\n"),
            std::string::npos)
      << info.out;
  EXPECT_NE(info.out.find("lineage    chain of warm starts began " +
                          day1_run["created"].get<std::string>() + ", 1 warm start(s) since"),
            std::string::npos)
      << info.out;
}

// iALS keeps no state beyond its factors, which the export holds exactly: N iterations started
// from the export of a K-iteration run are iterations K+1..K+N of that run, to the bit (one
// thread: the same arithmetic in the same order), with the CG solver (which starts each row
// from its current factors) and with Cholesky.
TEST(WarmStart, AnIalsRunStartedFromARunsExportContinuesThatRunToTheBit) {
  Days d;
  for (const char* solver : {"cg", "cholesky"}) {
    const std::string model = std::string("  type: ials\n  factors: 8\n  iterations: 3\n"
                                          "  regularization: 0.05\n  unobserved_exp: 0.5\n"
                                          "  solver: ") + solver + "\n";
    test::write_file(d.t.file("c.yaml"), config(d.t, d.day1, model));
    const std::string tag(solver);
    ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first-" + tag).rc, 0);
    const Result w = recforge(d.t, "train c.yaml --set run.name=warm-" + tag +
                                       " --set model.iterations=2 --set model.init_from=runs/first-" + tag);
    ASSERT_EQ(w.rc, 0) << w.out;
    ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=whole-" + tag +
                                " --set model.iterations=5").rc, 0);
    for (const char* f : {"user_factors.npy", "item_factors.npy"}) {
      const Matrix warm = read_npy(d.t.file("runs/warm-" + tag + "/" + f));
      const Matrix whole = read_npy(d.t.file("runs/whole-" + tag + "/" + f));
      ASSERT_EQ(warm.rows, whole.rows);
      int64_t differ = 0;
      for (size_t j = 0; j < warm.data.size(); ++j) differ += warm.data[j] != whole.data[j];
      EXPECT_EQ(differ, 0) << solver << " " << f;
    }
    const nlohmann::json warm = read_json(d.t.file("runs/warm-" + tag + "/run.json"));
    const nlohmann::json whole = read_json(d.t.file("runs/whole-" + tag + "/run.json"));
    EXPECT_EQ(warm["history"][1]["loss"], whole["history"][4]["loss"]) << solver;
  }
}

// A batch model's epochs sample anew and its optimiser starts afresh, so there is no bitwise
// continuation; its first epoch starts from the export's factors: the mean sample loss of a
// warm first epoch is that of a model already trained, far below a cold first epoch's (BPR's
// loss at random factors is about ln 2 = 0.69 per sample).
TEST(WarmStart, ABprRunStartsFromTheExportedModel) {
  Days d;
  const std::string model =
      "  type: bpr\n  factors: 8\n  iterations: 30\n  learning_rate: 0.05\n"
      "  batch_size: 64\n  item_bias: true\n";
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1, model));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first").rc, 0);
  const Result w = recforge(d.t, "train c.yaml --set run.name=warm --set model.iterations=1 "
                                 "--set model.init_from=runs/first");
  ASSERT_EQ(w.rc, 0) << w.out;
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=cold --set model.iterations=1").rc, 0);
  const nlohmann::json first = read_json(d.t.file("runs/first/run.json"));
  const double trained = first["history"].back()["loss"];
  const double warm = read_json(d.t.file("runs/warm/run.json"))["history"][0]["loss"];
  const double cold = read_json(d.t.file("runs/cold/run.json"))["history"][0]["loss"];
  EXPECT_GT(cold, 0.6);
  EXPECT_LT(warm, 0.5 * cold) << "trained " << trained;
  EXPECT_LT(warm, 1.5 * trained) << "cold " << cold;
}

TEST(WarmStart, PseudonymisedExportsMatchUsersOnlyWithTheirKey) {
  Days d;
  test::write_file(d.t.file("key"), "warm-start-test-key-0123456789");
  test::write_file(d.t.file("other-key"), "another-key-of-someone-else-987");
  const std::string pseudo = "  pseudonymize: true\n  pseudonym_key_file: key\n";
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1, "", pseudo));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first").rc, 0);
  const std::string day2 = " --set data.path=" + d.day2 + " --set model.init_from=runs/first";
  const Result same = recforge(d.t, "train c.yaml --set run.name=same" + day2);
  ASSERT_EQ(same.rc, 0) << same.out;
  EXPECT_EQ(read_json(d.t.file("runs/same/run.json"))["init_from"]["users_matched"], 50);
  // The data-access report checks the starting export's pseudonyms with the run's key.
  for (const auto& [user, held] : {std::pair<std::string, bool>{"u20", true}, {"u65", false}}) {
    const Result rep = recforge(d.t, "report-user runs/same --format json --user " + user);
    ASSERT_EQ(rep.rc, 0) << rep.out;
    EXPECT_EQ(json_of(rep.out)["warm_start"]["trained_on_user"], held) << user;
  }
  // Another key, or none: the items start from the export, every user at random (said).
  for (const std::string& set : {std::string(" --set export.pseudonym_key_file=other-key"),
                                 std::string(" --set export.pseudonymize=false --set export.pseudonym_key_file=")}) {
    const Result r = recforge(d.t, "train c.yaml --set run.name=other" + day2 + set);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("every user starts from random factors"), std::string::npos) << r.out;
    const nlohmann::json run = read_json(d.t.file("runs/other/run.json"));
    EXPECT_EQ(run["init_from"]["users_matched"], 0);
    EXPECT_EQ(run["init_from"]["items_matched"], 35);
    fs::remove_all(d.t.file("runs/other"));
  }
  // An opt-out list cannot be checked against pseudonyms without their key: refused.
  test::write_file(d.t.file("opt-out.txt"), "u3\n");
  const Result r = recforge(d.t, "train c.yaml --set run.name=refused" + day2 +
                                     " --set export.pseudonymize=false --set export.pseudonym_key_file= "
                                     "--set privacy.opt_out=opt-out.txt");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("the 1 user(s) of privacy.opt_out cannot be checked"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(d.t.file("runs/refused")));
}

TEST(WarmStart, AnExportTrainedOnAUserWhoOptedOutSinceIsRefused) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first").rc, 0);
  // u3 and u12 trained the day-1 model (u3 is not in day 2's data at all); u99 never occurred.
  test::write_file(d.t.file("opt-out.txt"), "u3\nu12\nu99\n");
  const std::string day2 = " --set data.path=" + d.day2 + " --set model.init_from=runs/first";
  const Result r = recforge(d.t, "train c.yaml --set run.name=refused --set "
                                 "privacy.opt_out=opt-out.txt" + day2);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("model.init_from runs/first/export was trained on 2 user(s) now on the "
                       "privacy.opt_out list"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("u12"), std::string::npos) << r.out;  // ids are not echoed
  EXPECT_FALSE(fs::exists(d.t.file("runs/refused")));
  // Only a user it never trained on: the warm start goes ahead.
  test::write_file(d.t.file("opt-out.txt"), "u99\nu65\n");
  const Result ok = recforge(d.t, "train c.yaml --set run.name=ok --set "
                                  "privacy.opt_out=opt-out.txt" + day2);
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_EQ(read_json(d.t.file("runs/ok/run.json"))["init_from"]["users_matched"], 50);
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(test::read_file(path));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// An opt-out is checked against every user a chain of warm starts was trained on, not only the
// users of the export it starts from: each warm-started run carries the users of its export
// that its data lacks (salted hashes, chain_users.txt in the run and its exports), and a later
// warm start refuses an export whose chain holds an opted-out user. Day 1 trains on u0-u59,
// day 2 (u10-u69) starts from it; u3 is in no export after day 1's.
TEST(WarmStart, AnOptOutReachesBackThroughTheChainOfWarmStarts) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=day1").rc, 0);
  const std::string day2 = " --set data.path=" + d.day2;
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=day2 --set model.init_from=runs/day1" +
                              day2).rc, 0);
  // A cold run carries no chain users.
  EXPECT_FALSE(fs::exists(d.t.file("runs/day1/chain_users.txt")));
  EXPECT_FALSE(read_json(d.t.file("runs/day1/export/v-1/manifest.json")).contains("chain_users"));
  // Day 2 carries u0-u9, hashed as ChainUsers says (computed here independently).
  const nlohmann::json chain = read_json(d.t.file("runs/day2/run.json"))["init_from"]["chain_users"];
  const std::string salt = chain["salt"];
  EXPECT_EQ(chain["count"], 10);
  EXPECT_EQ(chain["key_checks"], nlohmann::json::array());
  std::vector<std::string> expected;
  for (int u = 0; u < 10; ++u) expected.push_back(hmac_sha256_hex(salt, "raw:u" + std::to_string(u)));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(lines_of(d.t.file("runs/day2/chain_users.txt")), expected);
  // Its export carries them on, as does an export of the run made later.
  EXPECT_EQ(lines_of(d.t.file("runs/day2/export/v-1/chain_users.txt")), expected);
  EXPECT_EQ(read_json(d.t.file("runs/day2/export/v-1/manifest.json"))["chain_users"]["salt"], salt);
  const Result info = recforge(d.t, "info runs/day2");
  EXPECT_NE(info.out.find("carries 10 user(s) that earlier models of the chain were trained on"),
            std::string::npos)
      << info.out;
  ASSERT_EQ(recforge(d.t, "export runs/day2 --out again").rc, 0);
  EXPECT_EQ(lines_of(d.t.file("again/v-1/chain_users.txt")), expected);

  // Day 3 from day 2's export: u3 opted out since, so day 2's export is refused (day 1's
  // model trained on u3); a user no model saw is not in the way, and the chain goes on with
  // the same users.
  test::write_file(d.t.file("opt-out.txt"), "u3\nu200\n");
  const std::string day3 =
      "train c.yaml --set run.name=day3 --set model.init_from=runs/day2" + day2;
  const Result refused = recforge(d.t, day3 + " --set privacy.opt_out=opt-out.txt");
  EXPECT_EQ(refused.rc, 1) << refused.out;
  EXPECT_NE(refused.out.find("was trained on 1 user(s) now on the privacy.opt_out list (1 of them "
                             "through an earlier model of its chain of warm starts)"),
            std::string::npos)
      << refused.out;
  EXPECT_EQ(refused.out.find("u3"), std::string::npos) << refused.out;
  EXPECT_FALSE(fs::exists(d.t.file("runs/day3")));
  test::write_file(d.t.file("opt-out.txt"), "u200\n");
  const Result day3_run = recforge(d.t, day3 + " --set privacy.opt_out=opt-out.txt");
  ASSERT_EQ(day3_run.rc, 0) << day3_run.out;
  EXPECT_EQ(lines_of(d.t.file("runs/day3/chain_users.txt")), expected);
  // Users day 3's data lacks but its model depends on are reported, with no data of theirs: u5
  // (day 2's export, which day 3 started from, holds no u5; day 1's model was trained on them)
  // from the run and from its export; u60 is in day 2's data. A user no model saw is unknown.
  for (const std::string& path : {std::string("runs/day3"), std::string("runs/day3/export")}) {
    const Result rep = recforge(d.t, "report-user " + path + " --format json --user u5");
    ASSERT_EQ(rep.rc, 0) << path << "\n" << rep.out;
    const nlohmann::json j = json_of(rep.out);
    EXPECT_EQ(j["training"]["count"], 0) << path;
    EXPECT_TRUE(j["embedding"].is_null()) << path;
    EXPECT_TRUE(j["recommendations"].is_null()) << path;
    EXPECT_EQ(j["warm_start"]["earlier_in_chain"], true) << path;
    const Result text = recforge(d.t, "report-user " + path + " --user u5");
    ASSERT_EQ(text.rc, 0) << text.out;
    EXPECT_NE(text.out.find("data does not hold the user, and it has no embedding of theirs"),
              std::string::npos)
        << text.out;
  }
  {
    const Result rep = recforge(d.t, "report-user runs/day2 --format json --user u5");
    ASSERT_EQ(rep.rc, 0) << rep.out;
    EXPECT_EQ(json_of(rep.out)["warm_start"]["trained_on_user"], true);  // day 1's export holds u5
    const Result unknown = recforge(d.t, "report-user runs/day3 --user u999");
    EXPECT_EQ(unknown.rc, 1) << unknown.out;
    EXPECT_NE(unknown.out.find("user \"u999\" is not in this run"), std::string::npos) << unknown.out;
  }

  // u3 comes back: day 4 trains on day 1's data from day 3's export, which does not hold u3,
  // but day 1's model was trained on u3, which the data-access report says.
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=day4 --set model.init_from=runs/day3").rc, 0);
  // u60 is in day 3's export but not in day 4's data: day 4's chain users hold them for that
  // export, not for an earlier model (it said "yes" to both).
  for (const auto& [user, earlier] :
       {std::pair<std::string, bool>{"u3", true}, {"u20", false}, {"u60", false}}) {
    const Result rep = recforge(d.t, "report-user runs/day4 --format json --user " + user);
    ASSERT_EQ(rep.rc, 0) << rep.out;
    const nlohmann::json w = json_of(rep.out)["warm_start"];
    EXPECT_EQ(w["trained_on_user"], !earlier) << user;  // u20 and u60 are in day 3's export
    EXPECT_EQ(w["earlier_in_chain"], earlier) << user;
  }
  // The run's export answers the same from its own chain_users.txt.
  for (const auto& [user, earlier] : {std::pair<std::string, bool>{"u3", true}, {"u20", false}}) {
    const Result rep = recforge(d.t, "report-user runs/day4/export --format json --user " + user);
    ASSERT_EQ(rep.rc, 0) << rep.out;
    EXPECT_EQ(json_of(rep.out)["warm_start"]["earlier_in_chain"], earlier) << user;
  }
  const Result rep = recforge(d.t, "report-user runs/day4 --user u3");
  EXPECT_NE(rep.out.find("an earlier model of its chain of warm starts was trained on this user's "
                         "data without that export holding them: yes"),
            std::string::npos)
      << rep.out;

  // The run's copy is covered by its checksums: a changed file is not exported.
  test::write_file(d.t.file("runs/day2/chain_users.txt"), expected[1] + "\n");
  const Result damaged = recforge(d.t, "export runs/day2 --out again2");
  EXPECT_EQ(damaged.rc, 1) << damaged.out;
  EXPECT_NE(damaged.out.find("chain_users.txt"), std::string::npos) << damaged.out;
  EXPECT_FALSE(fs::exists(d.t.file("again2")));
}

// With pseudonymised exports the chain holds pseudonyms (their raw ids are unknown), checked
// with the run's key: the same key finds an opted-out user of day 1; after a key rotation the
// chain's pseudonyms cannot be checked, and a warm start with an opt-out list is refused.
TEST(WarmStart, AChainOfPseudonymisedExportsIsCheckedWithItsKeys) {
  Days d;
  test::write_file(d.t.file("key"), "warm-start-test-key-0123456789");
  test::write_file(d.t.file("new-key"), "the-rotated-key-of-next-month-42");
  test::write_file(d.t.file("opt-out.txt"), "u3\n");
  const std::string pseudo = "  pseudonymize: true\n  pseudonym_key_file: key\n";
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1, "", pseudo));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=day1").rc, 0);
  const std::string key_check =
      read_json(d.t.file("runs/day1/export/v-1/manifest.json"))["user_ids"]["key_check"];
  const std::string day2 = " --set data.path=" + d.day2;
  for (const char* key : {"key", "new-key"}) {
    const std::string name = std::string("day2-") + key;
    ASSERT_EQ(recforge(d.t, "train c.yaml --set model.init_from=runs/day1 --set run.name=" + name +
                                " --set export.pseudonym_key_file=" + key + day2).rc, 0);
    const nlohmann::json chain =
        read_json(d.t.file("runs/" + name + "/run.json"))["init_from"]["chain_users"];
    // The same key: u0-u9 left; another key: no user matched, so all 60 are carried.
    EXPECT_EQ(chain["count"], std::string(key) == "key" ? 10 : 60) << key;
    EXPECT_EQ(chain["key_checks"], nlohmann::json::array({key_check})) << key;
    const Result r = recforge(d.t, "train c.yaml --set run.name=day3 --set model.init_from=runs/" +
                                       name + " --set export.pseudonym_key_file=" + key + day2 +
                                       " --set privacy.opt_out=opt-out.txt");
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_NE(r.out.find(std::string(key) == "key"
                             ? "(1 of them through an earlier model of its chain of warm starts)"
                             : "carries the users of earlier models of its chain of warm starts "
                               "as pseudonyms of a key this run does not have"),
              std::string::npos)
        << key << "\n" << r.out;
    EXPECT_FALSE(fs::exists(d.t.file("runs/day3")));
  }
}

TEST(WarmStart, ForgetRetrainsFromRandomFactors) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first").rc, 0);
  const std::string day2 = " --set data.path=" + d.day2;
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=warm --set model.init_from=runs/first" +
                              day2).rc, 0);
  const Result f = recforge(d.t, "forget runs/warm --users u20");
  ASSERT_EQ(f.rc, 0) << f.out;
  EXPECT_NE(f.out.find("the retraining starts from random factors"), std::string::npos) << f.out;
  EXPECT_EQ(read_json(d.t.file("runs/warm-forget/run.json")).count("init_from"), 0u);
  const config::Config saved = config::Config::load(d.t.file("runs/warm-forget/config.yaml"));
  EXPECT_EQ(saved.settings().model.init_from, "");
  // The cold retraining is the one training gives with the user opted out (the same data,
  // numbering and seed), to the bit.
  test::write_file(d.t.file("opt-out.txt"), "u20\n");
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=cold --set privacy.opt_out=opt-out.txt" +
                              day2).rc, 0);
  for (const char* file : {"user_factors.npy", "item_factors.npy"})
    EXPECT_EQ(test::read_file(d.t.file(std::string("runs/warm-forget/") + file)),
              test::read_file(d.t.file(std::string("runs/cold/") + file)))
        << file;
}

// The nightly loop: each night trains on that day's data, starts from the serving export and
// replaces it (export.out and model.init_from the same directory): the export being replaced
// stays readable while the run trains (its files are mapped), and each run records the
// version it started from.
TEST(WarmStart, TheNightlyLoopStartsFromTheExportItReplaces) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  const std::string serving = " --set export.out=" + d.t.file("serving");
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=night1" + serving).rc, 0);
  for (int night = 2; night <= 3; ++night) {
    const std::string name = "night" + std::to_string(night);
    const Result r = recforge(d.t, "train c.yaml --set run.name=" + name + serving +
                                       " --set data.path=" + (night == 2 ? d.day2 : d.day1) +
                                       " --set model.init_from=" + d.t.file("serving"));
    ASSERT_EQ(r.rc, 0) << r.out;
    const nlohmann::json run = read_json(d.t.file("runs/" + name + "/run.json"));
    EXPECT_EQ(run["init_from"]["version"], "v-" + std::to_string(night - 1));
    EXPECT_EQ(run["init_from"]["source_run"], d.t.file("runs/night" + std::to_string(night - 1)));
    // One chain, begun by night 1's cold run.
    EXPECT_EQ(run["init_from"]["lineage"]["started"],
              read_json(d.t.file("runs/night1/run.json"))["created"]);
    EXPECT_EQ(run["init_from"]["lineage"]["warm_starts"], night - 1);
    EXPECT_EQ(fs::read_symlink(d.t.file("serving/current")).string(),
              "v-" + std::to_string(night));
  }
  const Result rec = recforge(d.t, "recommend serving --user u3 --k 5");
  EXPECT_EQ(rec.rc, 0) << rec.out;
}

// model.init_from_max_age_days bounds a chain of warm starts: an export whose chain began with
// a run created more days ago than that (or that does not record when) is not continued; the
// run trains from random factors, as if model.init_from were empty, to the bit, says why in
// its log and run.json, and its export begins a new chain. Within the bound the warm start
// goes on. The old run here is made old by dating its run.json back 40 days before exporting
// it (run.json is not among the files its checksums cover).
TEST(WarmStart, AChainOlderThanTheBoundStartsAgainFromRandomFactors) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=old --set export.enabled=false").rc, 0);
  nlohmann::json old = read_json(d.t.file("runs/old/run.json"));
  const std::string forty_days_ago = utc_string(std::time(nullptr) - 40 * 86400);
  old["created"] = forty_days_ago;
  test::write_file(d.t.file("runs/old/run.json"), old.dump(2));
  const Result e = recforge(d.t, "export runs/old --out old-export");
  ASSERT_EQ(e.rc, 0) << e.out;
  const std::string manifest = d.t.file("old-export/v-1/manifest.json");
  EXPECT_EQ(read_json(manifest)["source"]["lineage"],
            (nlohmann::json{{"started", forty_days_ago}, {"warm_starts", 0}}));

  const std::string day2 = " --set data.path=" + d.day2;
  const std::string from = " --set model.init_from=old-export";
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=cold" + day2).rc, 0);
  const Result bounded = recforge(
      d.t, "train c.yaml --set run.name=bounded --set model.init_from_max_age_days=30" + day2 + from);
  ASSERT_EQ(bounded.rc, 0) << bounded.out;
  EXPECT_NE(bounded.out.find("this run starts from random factors, not from model.init_from "
                             "old-export: its chain of warm starts began with a "
                             "run created " + forty_days_ago + " (40.0 days ago), more than "
                             "model.init_from_max_age_days 30 ago"),
            std::string::npos)
      << bounded.out;
  const nlohmann::json run = read_json(d.t.file("runs/bounded/run.json"));
  EXPECT_EQ(run.count("init_from"), 0u);
  EXPECT_EQ(run["init_from_skipped"]["max_age_days"], 30);
  EXPECT_EQ(run["init_from_skipped"]["lineage"]["started"], forty_days_ago);
  for (const char* file : {"user_factors.npy", "item_factors.npy"})
    EXPECT_EQ(test::read_file(d.t.file(std::string("runs/bounded/") + file)),
              test::read_file(d.t.file(std::string("runs/cold/") + file)))
        << file;
  EXPECT_EQ(read_json(d.t.file("runs/bounded/export/v-1/manifest.json"))["source"]["lineage"],
            (nlohmann::json{{"started", run["created"]}, {"warm_starts", 0}}));
  const Result info = recforge(d.t, "info runs/bounded");
  EXPECT_NE(info.out.find("started    from random factors, not from old-export: its chain of "
                          "warm starts began with a run created " + forty_days_ago),
            std::string::npos)
      << info.out;

  // Within the bound (and with none) the chain goes on.
  for (const char* bound : {"41", "0"}) {
    const std::string name = std::string("within-") + bound;
    const Result w = recforge(d.t, "train c.yaml --set run.name=" + name +
                                       " --set model.init_from_max_age_days=" + bound + day2 + from);
    ASSERT_EQ(w.rc, 0) << w.out;
    const nlohmann::json r = read_json(d.t.file("runs/" + name + "/run.json"));
    EXPECT_EQ(r.count("init_from_skipped"), 0u) << bound;
    EXPECT_EQ(r["init_from"]["users_matched"], 50) << bound;
    EXPECT_EQ(r["init_from"]["lineage"],
              (nlohmann::json{{"started", forty_days_ago}, {"warm_starts", 1}}))
        << bound;
  }

  // An export that does not record its lineage (written before recforge did) is not continued
  // under a bound, since its age is unknown; without a bound it is.
  nlohmann::json m = read_json(manifest);
  m["source"].erase("lineage");
  test::write_file(manifest, m.dump(2));
  const Result unknown = recforge(
      d.t, "train c.yaml --set run.name=unknown --set model.init_from_max_age_days=365" + day2 + from);
  ASSERT_EQ(unknown.rc, 0) << unknown.out;
  EXPECT_EQ(read_json(d.t.file("runs/unknown/run.json"))["init_from_skipped"]["reason"],
            "it does not record when its chain of warm starts began");
  const Result unbounded = recforge(d.t, "train c.yaml --set run.name=unbounded" + day2 + from);
  ASSERT_EQ(unbounded.rc, 0) << unbounded.out;
  const nlohmann::json u = read_json(d.t.file("runs/unbounded/run.json"));
  EXPECT_EQ(u["init_from"]["lineage"],
            (nlohmann::json{{"started", nullptr}, {"warm_starts", nullptr}}));
  const Result info_u = recforge(d.t, "info runs/unbounded");
  EXPECT_NE(info_u.out.find("lineage    not recorded"), std::string::npos) << info_u.out;
}

TEST(WarmStart, AnExportOfAnotherModelOrWidthOrNoExportIsRefused) {
  Days d;
  test::write_file(d.t.file("c.yaml"), config(d.t, d.day1));
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=first").rc, 0);
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=bare --set export.enabled=false").rc, 0);
  ASSERT_EQ(recforge(d.t, "train c.yaml --set run.name=bpr --set model.type=bpr "
                          "--set model.iterations=1").rc, 0);
  const struct {
    std::string sets, says;
  } cases[] = {
      {"--set model.init_from=runs/first --set model.factors=16",
       "runs/first/export has 8 columns per item, but this run's model has 16 (model.factors 16)"},
      {"--set model.init_from=runs/first --set model.type=bpr",
       "runs/first/export holds a model of type ials, but this run trains bpr (model.type)"},
      {"--set model.init_from=runs/bpr --set model.type=bpr --set model.factors=7 "
       "--set model.item_bias=true",
       "runs/bpr/export was trained without an item bias column, and this run's model has one "
       "(model.item_bias true): its columns would mean something else"},
      {"--set model.init_from=runs/bare", "model.init_from is runs/bare, which holds no export"},
      {"--set model.init_from=runs/none", "model.init_from is runs/none, which does not exist"},
  };
  for (const auto& c : cases) {
    const Result r = recforge(d.t, "train c.yaml --set run.name=refused " + c.sets);
    EXPECT_EQ(r.rc, 1) << c.sets << "\n" << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.sets << "\n" << r.out;
    EXPECT_FALSE(fs::exists(d.t.file("runs/refused"))) << c.sets;
  }
}

}  // namespace
}  // namespace recforge
