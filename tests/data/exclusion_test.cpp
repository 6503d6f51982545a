// Users excluded from the data (issue 19, part A): data::UserExclusion, the loader's exclusion
// step, the cache's record of its sources and its purge, and training with privacy.opt_out.
#include "data/exclusion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/hash.h"
#include "core/npy.h"
#include "data/cache.h"
#include "data/load.h"
#include "pipeline/dataset.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;
using Set = UserExclusion::Set;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(UserExclusion, JsonRoundTripIsSortedAndHoldsNoRawId) {
  UserExclusion e(UserExclusion::salt_for_sources({std::string(64, 'a')}));
  e.add(Set::kOptOut, "zed");
  e.add(Set::kOptOut, "amy");
  e.add(Set::kForgotten, "erase-me");
  EXPECT_TRUE(e.excludes("zed"));
  EXPECT_TRUE(e.excludes("erase-me"));
  EXPECT_FALSE(e.excludes("bob"));
  EXPECT_EQ(e.hash("amy"), hmac_sha256_hex(e.salt(), "amy"));
  const nlohmann::json j = e.to_json();
  const std::string text = j.dump();
  for (const char* raw : {"zed", "amy", "erase-me"}) EXPECT_EQ(text.find(raw), std::string::npos);
  ASSERT_EQ(j["opt_out"].size(), 2u);
  EXPECT_LT(j["opt_out"][0].get<std::string>(), j["opt_out"][1].get<std::string>());
  const UserExclusion back = UserExclusion::from_json(j, "runs/x/run.json");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.fingerprint(), e.fingerprint());
  EXPECT_TRUE(back.excludes("erase-me"));
  // The fingerprint changes with the salt and with each set.
  UserExclusion other = back;
  other.add(Set::kForgotten, "zed");
  EXPECT_NE(other.fingerprint(), e.fingerprint());
  EXPECT_NE(UserExclusion(UserExclusion::salt_for_sources({std::string(64, 'b')})).fingerprint(),
            UserExclusion(e.salt()).fingerprint());
  // The salt depends on the sources and nothing else.
  EXPECT_EQ(UserExclusion::salt_for_sources({std::string(64, 'a')}), e.salt());
}

TEST(UserExclusion, FromJsonRefusesEveryOtherShapeNamingRunJson) {
  const std::string salt(64, 'c');
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {nlohmann::json::array(), "\"excluded_users\" is a JSON array"},
      {{{"salt", "xyz"}, {"opt_out", nlohmann::json::array()}, {"forgotten", nlohmann::json::array()}},
       "\"excluded_users.salt\" is missing or not 64 lowercase hex characters"},
      {{{"salt", salt}, {"forgotten", nlohmann::json::array()}},
       "\"excluded_users.opt_out\" is missing"},
      {{{"salt", salt}, {"opt_out", "abc"}, {"forgotten", nlohmann::json::array()}},
       "\"excluded_users.opt_out\" is a JSON string"},
      {{{"salt", salt}, {"opt_out", {std::string(64, 'A')}}, {"forgotten", nlohmann::json::array()}},
       "\"excluded_users.opt_out\"[0] is not 64 lowercase hex characters"},
      {{{"salt", salt}, {"opt_out", nlohmann::json::array()}, {"forgotten", {1}}},
       "\"excluded_users.forgotten\"[0] is not 64 lowercase hex characters"},
      {{{"salt", salt}, {"opt_out", nlohmann::json::array()}, {"forgotten", nlohmann::json::array()},
        {"raw", "x"}},
       "unknown field \"raw\""},
  };
  for (const auto& [j, expected] : cases) {
    const nlohmann::json& bad = j;  // a structured binding is not captured before C++20
    const std::string e = error_of([&] { UserExclusion::from_json(bad, "runs/x/run.json"); });
    EXPECT_EQ(e.rfind("runs/x/run.json: ", 0), 0u) << e;
    EXPECT_NE(e.find(expected), std::string::npos) << e;
  }
}

TEST(UserExclusion, IdFileTrimsSkipsCommentsAndRefusesControlCharactersByLine) {
  TempDir t;
  const auto p = write_file(t.file("opt.txt"), "# opted out\n  ann \n\n\tbob\r\n#x\ncid");
  EXPECT_EQ(read_user_id_file(p, "privacy.opt_out"),
            (std::vector<std::string>{"ann", "bob", "cid"}));
  const auto bad = write_file(t.file("bad.txt"), "ann\nb\x01ob\n");
  EXPECT_EQ(error_of([&] { read_user_id_file(bad, "privacy.opt_out"); }),
            bad + ":2: privacy.opt_out: the line holds the control character 0x01; expected one "
                  "user id per line");
  const std::string missing = t.file("none.txt");
  EXPECT_EQ(error_of([&] { read_user_id_file(missing, "privacy.opt_out"); })
                .rfind(missing + ": cannot open the user id file of privacy.opt_out", 0),
            0u);
  EXPECT_NE(error_of([&] { read_user_id_file(t.str(), "privacy.opt_out"); })
                .find("is not a regular file"),
            std::string::npos);
}

void expect_same_data(const Loaded& a, const Loaded& b) {
  EXPECT_EQ(a.users.ids(), b.users.ids());
  EXPECT_EQ(a.items.ids(), b.items.ids());
  ASSERT_EQ(a.parts.size(), b.parts.size());
  for (size_t k = 0; k < a.parts.size(); ++k) {
    EXPECT_EQ(a.parts[k].users, b.parts[k].users) << "part " << k;
    EXPECT_EQ(a.parts[k].items, b.parts[k].items) << "part " << k;
    EXPECT_EQ(a.parts[k].weights, b.parts[k].weights) << "part " << k;
    EXPECT_EQ(a.parts[k].times, b.parts[k].times) << "part " << k;
  }
  EXPECT_EQ(a.report.test_unknown_user_interactions, b.report.test_unknown_user_interactions);
  EXPECT_EQ(a.report.test_unknown_item_interactions, b.report.test_unknown_item_interactions);
  EXPECT_EQ(a.report.duplicates_combined, b.report.duplicates_combined);
  EXPECT_EQ(a.report.filtered_users, b.report.filtered_users);
  EXPECT_EQ(a.report.filtered_items, b.report.filtered_items);
}

// Train and test files where `bob` and `dan` are to be excluded: bob alone has item `solo`
// (train) and dan alone has `late` (test only); `eve` is in the test file only.
struct TwoFiles {
  TempDir t;
  std::string train_text = "ann,x,2,10\nbob,x,1,11\nbob,solo,3,12\ncid,y,1,13\nbob,y,1,14\n"
                           "ann,y,1,15\ndan,x,4,16\ncid,x,1,17\n";
  std::string test_text = "ann,solo,1,20\ncid,z,1,21\ndan,late,1,22\neve,x,1,23\nbob,y,1,24\n";
  std::vector<std::string> paths, stripped;
  LoadOptions o;
  TwoFiles() {
    o.string_ids = true;
    o.weight_col = "2";
    o.time_col = "3";
    o.use_cache = false;
    paths = {write_file(t.file("train.csv"), train_text), write_file(t.file("test.csv"), test_text)};
    stripped = {write_file(t.file("train-stripped.csv"), without(train_text)),
                write_file(t.file("test-stripped.csv"), without(test_text))};
  }
  static std::string without(const std::string& text) {
    std::istringstream in(text);
    std::string out;
    for (std::string l; std::getline(in, l);)
      if (l.rfind("bob,", 0) != 0 && l.rfind("dan,", 0) != 0) out += l + "\n";
    return out;
  }
  std::shared_ptr<UserExclusion> exclusion() const {
    auto e = std::make_shared<UserExclusion>(UserExclusion::salt_for_sources(source_hashes(paths)));
    e->add(Set::kOptOut, "bob");
    e->add(Set::kOptOut, "nobody");  // not in the data: matches nothing
    e->add(Set::kForgotten, "dan");
    return e;
  }
};

TEST(Exclusion, LoadingWithExcludedUsersEqualsLoadingFilesWithoutTheirLines) {
  TwoFiles f;
  const Loaded plain = load(f.stripped, f.o);
  LoadOptions o = f.o;
  o.exclusion = f.exclusion();
  const Loaded excluded = load(f.paths, o);
  expect_same_data(excluded, plain);
  // bob's `solo` stays (ann has it in the test file, dropped there as an unknown training item);
  // dan's `late` is gone from the item map as if never read.
  EXPECT_EQ(excluded.users.ids(), (std::vector<std::string>{"ann", "cid"}));
  EXPECT_EQ(excluded.items.ids(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(plain.report.test_unknown_user_interactions, 1);  // eve, not bob or dan
  const LoadReport& r = excluded.report;
  EXPECT_TRUE(r.exclusion_applied);
  EXPECT_EQ(r.opt_out_users, 1);
  EXPECT_EQ(r.opt_out_interactions, 4);  // 3 train lines, 1 test line
  EXPECT_EQ(r.forgotten_users, 1);
  EXPECT_EQ(r.forgotten_interactions, 2);
  EXPECT_EQ(r.opt_out_matched, (std::vector<std::string>{o.exclusion->hash("bob")}));
  EXPECT_EQ(r.forgotten_matched, (std::vector<std::string>{o.exclusion->hash("dan")}));
  // Without the exclusion the same files keep bob and dan (the step is what removed them).
  const Loaded all = load(f.paths, f.o);
  EXPECT_TRUE(all.users.find("bob").has_value());
  EXPECT_TRUE(all.items.find("solo").has_value());
}

TEST(Exclusion, IntegerIdsAndMinimumFiltersBehaveAsWithoutTheLines) {
  TempDir t;
  // User 7's lines removed make item 300 fall below min_item_interactions 2 with user 5's one
  // line left, and user 5 then falls below min_user_interactions 2: both cascade as in a file
  // without user 7.
  const std::string text = "5,300\n5,100\n7,300\n7,100\n9,100\n9,200\n11,100\n11,200\n";
  const auto full = write_file(t.file("full.csv"), text);
  std::string kept;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind("7,", 0) != 0) kept += l + "\n";
  const auto strip = write_file(t.file("strip.csv"), kept);
  LoadOptions o;
  o.use_cache = false;
  o.min_user_interactions = 2;
  o.min_item_interactions = 2;
  const Loaded plain = load({strip}, o);
  auto e = std::make_shared<UserExclusion>(UserExclusion::salt_for_sources(source_hashes({full})));
  e->add(Set::kOptOut, "7");
  o.exclusion = e;
  const Loaded excluded = load({full}, o);
  expect_same_data(excluded, plain);
  EXPECT_EQ(excluded.users.ids(), (std::vector<std::string>{"9", "11"}));
  EXPECT_EQ(excluded.report.opt_out_interactions, 2);
}

TEST(Exclusion, ExcludingEveryUserIsAnErrorSayingSo) {
  TempDir t;
  const auto p = write_file(t.file("two.csv"), "1,10\n2,10\n");
  LoadOptions o;
  o.use_cache = false;
  auto e = std::make_shared<UserExclusion>(UserExclusion::salt_for_sources(source_hashes({p})));
  e->add(Set::kOptOut, "1");
  e->add(Set::kForgotten, "2");
  o.exclusion = e;
  EXPECT_EQ(error_of([&] { load({p}, o); }),
            p + ": no interactions left after excluding 1 opted-out and 1 forgotten user(s) and "
                "filtering (min_weight 0, min_user_interactions 1, min_item_interactions 1)");
}

std::vector<fs::path> files_in(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Exclusion, TheCacheEntryHoldsNoExcludedUserAndKeepsTheCounts) {
  TwoFiles f;
  LoadOptions o = f.o;
  o.use_cache = true;
  o.cache_dir = f.t.file("cache");
  o.exclusion = f.exclusion();
  const Loaded first = load(f.paths, o);
  ASSERT_FALSE(first.report.from_cache);
  // One entry under two names: the exclusion's key, and (a hard link) the key of the ids it
  // matched (bob and dan, not "nobody"), which a reopened run's exclusion from run.json has.
  const auto files = files_in(o.cache_dir);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_TRUE(fs::equivalent(files[0], files[1]));
  const std::string bytes = test::read_file(files[0].string());
  EXPECT_EQ(bytes.find("bob"), std::string::npos);
  EXPECT_EQ(bytes.find("dan"), std::string::npos);
  EXPECT_NE(bytes.find("cid"), std::string::npos);  // positive control: ids are stored as text
  const Loaded again = load(f.paths, o);
  ASSERT_TRUE(again.report.from_cache);
  expect_same_data(again, first);
  EXPECT_EQ(again.report.opt_out_interactions, 4);
  EXPECT_EQ(again.report.forgotten_matched, first.report.forgotten_matched);
  EXPECT_TRUE(again.report.exclusion_applied);
  {
    auto matched = std::make_shared<UserExclusion>(o.exclusion->salt());
    for (const auto& h : first.report.opt_out_matched) matched->add_hash(Set::kOptOut, h);
    for (const auto& h : first.report.forgotten_matched) matched->add_hash(Set::kForgotten, h);
    ASSERT_EQ(matched->opt_out().size(), 1u);  // bob
    LoadOptions reopened = o;
    reopened.exclusion = matched;
    const Loaded r = load(f.paths, reopened);
    EXPECT_TRUE(r.report.from_cache);
    expect_same_data(r, first);
    EXPECT_EQ(files_in(o.cache_dir).size(), 2u);
  }
  // Another exclusion is another cache entry, never the first one's data.
  LoadOptions none = o;
  none.exclusion = nullptr;
  const Loaded all = load(f.paths, none);
  EXPECT_FALSE(all.report.from_cache);
  EXPECT_TRUE(all.users.find("bob").has_value());
  EXPECT_EQ(files_in(o.cache_dir).size(), 3u);
  // An exclusion that matches nobody loads what no exclusion loads: that entry, linked again.
  fs::remove_all(o.cache_dir);
  LoadOptions nobody = o;
  auto e = std::make_shared<UserExclusion>(o.exclusion->salt());
  e->add(Set::kOptOut, "nobody");
  nobody.exclusion = e;
  const Loaded n = load(f.paths, nobody);
  EXPECT_FALSE(n.report.from_cache);
  const Loaded plain = load(f.paths, none);
  EXPECT_TRUE(plain.report.from_cache);
  expect_same_data(plain, all);
  // One entry under two names: a purge removes both and counts one.
  ASSERT_EQ(files_in(o.cache_dir).size(), 2u);
  EXPECT_EQ(purge_cache_for_sources(o.cache_dir, {sha256_file(f.paths[0])}), 1);
  EXPECT_TRUE(files_in(o.cache_dir).empty());
}

TEST(Exclusion, PurgeRemovesTheEntriesOfTheSourcesAndNothingElse) {
  TwoFiles f;
  LoadOptions o = f.o;
  o.use_cache = true;
  o.cache_dir = f.t.file("cache");
  load(f.paths, o);                      // entry from train+test
  load({f.paths[0]}, o);                 // entry from train alone
  load({f.stripped[0]}, o);              // entry from another file: kept
  const auto entries = files_in(o.cache_dir);
  ASSERT_EQ(entries.size(), 3u);
  const std::string other_entry = [&] {
    for (const auto& p : entries)
      if (test::read_file(p.string()).find("bob") == std::string::npos) return p.string();
    return std::string();
  }();
  ASSERT_FALSE(other_entry.empty());
  // A temporary being written for a matching entry, one of another entry, a file of an earlier
  // layout and unrelated files: only the first goes.
  const std::string key = entries[0].filename().string();
  std::string matching_entry;
  for (const auto& p : entries)
    if (p.string() != other_entry) matching_entry = p.filename().string();
  const std::string live_tmp = o.cache_dir + "/" + matching_entry + ".tmp.otherhost.1";
  write_file(live_tmp, "partial");
  const std::string other_tmp = other_entry + ".tmp.otherhost.1";
  write_file(other_tmp, "partial");
  const std::string old_layout = o.cache_dir + "/" + std::string(64, 'e') + ".rfcache";
  {
    std::string b = "RFCACHE";
    b.push_back('\0');
    const int32_t v = 2;
    b.append(reinterpret_cast<const char*>(&v), 4);
    b += std::string(40, 'x');
    write_file(old_layout, b);
  }
  const std::string unrelated = write_file(o.cache_dir + "/notes.txt", "bob");
  int unattributed = -1;
  const int removed =
      purge_cache_for_sources(o.cache_dir, {sha256_file(f.paths[0])}, &unattributed);
  EXPECT_EQ(removed, 3);  // two entries, one temporary
  EXPECT_EQ(unattributed, 1);
  std::set<std::string> left;
  for (const auto& p : files_in(o.cache_dir)) left.insert(p.string());
  EXPECT_EQ(left, (std::set<std::string>{other_entry, other_tmp, old_layout, unrelated}));
  // The test file alone names the two-file entry too.
  load(f.paths, o);
  EXPECT_EQ(purge_cache_for_sources(o.cache_dir, {sha256_file(f.paths[1])}), 1);
  EXPECT_EQ(purge_cache_for_sources(f.t.file("absent"), {sha256_file(f.paths[1])}), 0);
}

}  // namespace
}  // namespace recforge::data

namespace recforge::pipeline {
namespace {

using test::TempDir;
using test::write_file;

// A string-id data set of 80 users and 50 items with weights, and the same without the lines of
// `gone` (written as the loader would see it).
struct OptOutData {
  TempDir t;
  std::string path, stripped, opt_out;
  std::vector<std::string> gone = {"u03", "u17", "u42"};
  OptOutData() {
    std::mt19937 rng(7);
    std::string all, kept;
    for (int n = 0; n < 1600; ++n) {
      const int u = static_cast<int>(rng() % 80), i = static_cast<int>(rng() % 50);
      const std::string user = fmt::format("u{:02}", u);
      const std::string line = fmt::format("{},i{:02},{}\n", user, i, 1 + rng() % 4);
      all += line;
      if (std::find(gone.begin(), gone.end(), user) == gone.end()) kept += line;
    }
    all += "u17,only-u17,1\n";  // an item only an opted-out user has
    path = write_file(t.file("data.csv"), all);
    stripped = write_file(t.file("stripped.csv"), kept);
    opt_out = write_file(t.file("opt_out.txt"),
                         "# opted out\nu03\n  u17\nu42\nnot-a-user\n");
  }
  config::Config config(const std::string& data, const std::string& model, const std::string& name,
                        bool with_opt_out) const {
    config::Config c = config::Config::defaults();
    for (const std::string& s : std::vector<std::string>{
             "data.path=" + data, "data.id_type=string", "data.weight_col=2", "data.cache=false",
             "split.method=random", "split.test_fraction=0.2", "run.progress=off",
             "run.dir=" + t.file("runs"), "run.name=" + name, "model.type=" + model,
             "model.factors=8", "model.iterations=4"})
      c.set(s);
    if (model == "bpr") c.set("train.threads=1");  // Hogwild with more threads is not repeatable
    else c.set("train.threads=2");
    if (with_opt_out) c.set("privacy.opt_out=" + opt_out);
    return c;
  }
};

void expect_equal_matrices(const Matrix& a, const Matrix& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  const size_t n = static_cast<size_t>(a.rows * a.cols);
  EXPECT_TRUE(std::equal(a.data.data(), a.data.data() + n, b.data.data()));
}

// Both models train on identical data (same ids, same split, same seed), so every operation is
// the same and the factors are bitwise equal: no tolerance is needed.
void check_model(const std::string& model) {
  OptOutData d;
  const std::string with = train(d.config(d.path, model, "with", true));
  const std::string without = train(d.config(d.stripped, model, "without", false));
  expect_equal_matrices(read_npy(with + "/item_factors.npy"), read_npy(without + "/item_factors.npy"));
  expect_equal_matrices(read_npy(with + "/user_factors.npy"), read_npy(without + "/user_factors.npy"));
  const auto run = nlohmann::json::parse(test::read_file(with + "/run.json"));
  const auto plain = nlohmann::json::parse(test::read_file(without + "/run.json"));
  EXPECT_EQ(run["data_fingerprint"], plain["data_fingerprint"]);
  EXPECT_FALSE(plain.contains("excluded_users"));  // a run without exclusions is as before
  ASSERT_TRUE(run.contains("excluded_users"));
  EXPECT_EQ(run["excluded_users"]["opt_out"].size(), 3u);  // not-a-user is not stored
  EXPECT_TRUE(run["excluded_users"]["forgotten"].empty());
  const OpenedRun opened = open_run(with, "test");
  for (const std::string& u : d.gone) EXPECT_FALSE(opened.data.users.find(u).has_value()) << u;
  EXPECT_FALSE(opened.data.items.find("only-u17").has_value());
  EXPECT_TRUE(opened.data.users.find("u04").has_value());
  // No raw id of an opted-out user anywhere in the run directory.
  for (const auto& e : std::filesystem::recursive_directory_iterator(with)) {
    if (!e.is_regular_file()) continue;
    const std::string bytes = test::read_file(e.path().string());
    for (const std::string& u : d.gone)
      EXPECT_EQ(bytes.find(u), std::string::npos) << u << " in " << e.path();
  }
}

TEST(OptOut, IalsFactorsEqualTrainingOnTheFileWithoutTheUsersLines) { check_model("ials"); }

TEST(OptOut, BprFactorsEqualTrainingOnTheFileWithoutTheUsersLines) { check_model("bpr"); }

TEST(OptOut, StatsCountTheDroppedAndReopeningUsesTheStoredListAfterTheFileChanged) {
  OptOutData d;
  const std::string dir = train(d.config(d.path, "ials", "run", true));
  const auto stats = nlohmann::json::parse(test::read_file(dir + "/stats.json"));
  ASSERT_TRUE(stats.contains("privacy"));
  // Count the opted-out users' lines in the data file itself.
  int64_t lines = 0;
  std::istringstream in(test::read_file(d.path));
  for (std::string l; std::getline(in, l);)
    for (const std::string& u : d.gone)
      if (l.rfind(u + ",", 0) == 0) ++lines;
  EXPECT_EQ(stats["privacy"]["opt_out_users"].get<int64_t>(), 3);
  EXPECT_EQ(stats["privacy"]["opt_out_interactions"].get<int64_t>(), lines);
  EXPECT_EQ(stats["privacy"]["forgotten_users"].get<int64_t>(), 0);
  const std::string log = test::read_file(dir + "/log.txt");
  EXPECT_NE(log.find(fmt::format("privacy: dropped 3 opted-out user(s) ({} interactions)", lines)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("1 id(s) listed in privacy.opt_out are not in the data"), std::string::npos);
  // The opt-out file changes: u04 opts out, u03 takes it back. The run reopens with the users
  // excluded when it was trained (its fingerprint still matches).
  write_file(d.opt_out, "u04\nu17\nu42\n");
  const OpenedRun r = open_run(dir, "test");
  EXPECT_TRUE(r.data.users.find("u04").has_value());
  EXPECT_FALSE(r.data.users.find("u03").has_value());
  // A fresh training reads the file as it is now.
  const Dataset now = prepare_dataset(d.config(d.path, "ials", "x", true));
  EXPECT_FALSE(now.users.find("u04").has_value());
  EXPECT_TRUE(now.users.find("u03").has_value());
  EXPECT_NE(now.fingerprint(), r.data.fingerprint());
}

TEST(OptOut, AppliesToSyntheticUserIds) {
  TempDir t;
  const std::string opt = write_file(t.file("opt.txt"), "3\n+5\n");
  config::Config c = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "data.format=synthetic", "synthetic.users=50", "synthetic.items=40",
           "synthetic.interactions=800", "run.progress=off"})
    c.set(s);
  const Dataset all = prepare_dataset(c);
  ASSERT_TRUE(all.users.find("3").has_value());
  ASSERT_TRUE(all.users.find("5").has_value());
  c.set("privacy.opt_out=" + opt);
  const Dataset some = prepare_dataset(c);
  EXPECT_FALSE(some.users.find("3").has_value());
  EXPECT_FALSE(some.users.find("5").has_value());  // "+5" is the integer id 5
  EXPECT_EQ(some.users.size(), all.users.size() - 2);
  EXPECT_EQ(some.stats()["privacy"]["opt_out_users"].get<int64_t>(), 2);
}

TEST(OptOut, IdsThatAreNoIntegersAreWarnedAboutForIntegerIds) {
  // "1.67e2" or "167 # asked in May" can match no integer id: the user stayed in training with
  // only an info line counting unmatched ids. A warning now says why.
  TempDir t;
  const std::string opt = write_file(t.file("opt.txt"), "3\n1.67e2\n167 # asked in May\nghost\n");
  const std::string cfg = write_file(
      t.file("o.yaml"), "run:\n  progress: off\ndata:\n  format: synthetic\n  cache: false\n"
                        "synthetic:\n  users: 50\n  items: 40\n  interactions: 800\n"
                        "model:\n  factors: 4\n  iterations: 1\nprivacy:\n  opt_out: " + opt + "\n");
  const test::Result r = test::run_recforge(t.str(), "train o.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find(opt + ": 3 id(s) are not integers (the first is id 2 of the file), so "
                             "they can match no user (data.id_type is int)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("asked in May"), std::string::npos) << "the file's content is quoted";
}

TEST(OptOut, AnUnreadableOrBadOptOutFileIsOneSentenceNamingTheSetting) {
  OptOutData d;
  config::Config c = d.config(d.path, "ials", "x", false);
  c.set("privacy.opt_out=" + d.t.file("missing.txt"));
  std::string e;
  try {
    prepare_dataset(c);
  } catch (const Error& x) {
    e = x.what();
  }
  EXPECT_NE(e.find("missing.txt: cannot open the user id file of privacy.opt_out"),
            std::string::npos)
      << e;
  write_file(d.opt_out, "u01\nu0\x1b" "2\n");
  c.set("privacy.opt_out=" + d.opt_out);
  e.clear();
  try {
    prepare_dataset(c);
  } catch (const Error& x) {
    e = x.what();
  }
  EXPECT_NE(e.find(d.opt_out + ":2: privacy.opt_out"), std::string::npos) << e;
  EXPECT_EQ(e.find("u01"), std::string::npos) << "the file's content is not quoted: " << e;
}

}  // namespace
}  // namespace recforge::pipeline
