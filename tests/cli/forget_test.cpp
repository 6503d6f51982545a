// `recforge forget` end to end (issue 19, part A): the forgotten run equals a training without
// the users' lines, no byte of the user is left in the new run, its export or the data cache,
// forgetting accumulates, and bad input is one sentence.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>

#include "core/npy.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

using Result = test::Result;

// Runs `recforge ARGS` in directory `cwd`.
Result run(const std::string& cwd, const std::string& args) {
  return test::run_recforge(cwd, args);
}

constexpr const char* kErased = "erase-me-7f3a9c";

// A string-id data set: 60 users u00..u59 and 40 items, plus the user kErased with three rows;
// `stripped` is the same without the lines of kErased and u07.
struct Data {
  TempDir t;
  std::vector<std::string> erased_rows;  // kErased's lines as they appear in the source text
  Data() {
    std::mt19937 rng(11);
    std::string all, stripped;
    for (int n = 0; n < 1500; ++n) {
      const std::string user = fmt::format("u{:02}", rng() % 60);
      const std::string line = fmt::format("{},i{:02},{}", user, rng() % 40, 1 + rng() % 3);
      all += line + "\n";
      if (user != "u07") stripped += line + "\n";
    }
    for (const char* item : {"i03", "i11", "i29"}) {
      erased_rows.push_back(fmt::format("{},{},2", kErased, item));
      all += erased_rows.back() + "\n";
    }
    write_file(t.file("data.csv"), all);
    write_file(t.file("stripped.csv"), stripped);
  }
  // A config named `name` over `data` (relative to the temp dir); `extra` is appended YAML.
  std::string config(const std::string& name, const std::string& data,
                     const std::string& extra = "") const {
    const std::string path = t.file(name + ".yaml");
    write_file(path, "run:\n  name: " + name + "\n  progress: off\n"
                     "data:\n  path: " + data + "\n  id_type: string\n  weight_col: \"2\"\n"
                     "  cache_dir: cache\n"
                     "split:\n  method: random\n"
                     "model:\n  type: ials\n  factors: 8\n  iterations: 3\n"
                     "train:\n  threads: 2\n" + extra);
    return path;
  }
};

// Every regular file under `root` (following no links) whose bytes contain `needle`.
std::vector<std::string> files_holding(const std::string& root, const std::string& needle) {
  std::vector<std::string> hits;
  std::error_code ec;
  if (!fs::exists(root, ec)) return hits;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_symlink() || !it->is_regular_file()) continue;
    if (test::read_file(it->path().string()).find(needle) != std::string::npos)
      hits.push_back(it->path().string());
  }
  return hits;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void expect_equal_matrices(const Matrix& a, const Matrix& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  const size_t n = static_cast<size_t>(a.rows * a.cols);
  EXPECT_TRUE(std::equal(a.data.data(), a.data.data() + n, b.data.data()));
}

TEST(Forget, TheNewRunEqualsATrainingWithoutTheUsersLines) {
  Data d;
  d.config("src", "data.csv");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  const Result f = run(d.t.str(), std::string("forget runs/src --users u07,") + kErased);
  ASSERT_EQ(f.rc, 0) << f.out;
  ASSERT_EQ(run(d.t.str(), "train " + d.config("plain", "stripped.csv")).rc, 0);
  // The same data, split and seed: the same operations, so bitwise equal factors.
  expect_equal_matrices(read_npy(d.t.file("runs/src-forget/item_factors.npy")),
                        read_npy(d.t.file("runs/plain/item_factors.npy")));
  expect_equal_matrices(read_npy(d.t.file("runs/src-forget/user_factors.npy")),
                        read_npy(d.t.file("runs/plain/user_factors.npy")));
  const auto forgot = nlohmann::json::parse(test::read_file(d.t.file("runs/src-forget/run.json")));
  const auto plain = nlohmann::json::parse(test::read_file(d.t.file("runs/plain/run.json")));
  EXPECT_EQ(forgot["data_fingerprint"], plain["data_fingerprint"]);
  EXPECT_EQ(forgot["forgotten_from"], fs::weakly_canonical(d.t.file("runs/src")).string());
  EXPECT_EQ(forgot["forget"]["found_users"], 2);
  EXPECT_EQ(forgot["excluded_users"]["forgotten"].size(), 2u);
  // The new run reopens (its stored exclusion re-prepares the same data).
  const Result rec = run(d.t.str(), "recommend runs/src-forget --user u08 --k 3");
  EXPECT_EQ(rec.rc, 0) << rec.out;
  const Result gone = run(d.t.str(), "recommend runs/src-forget --user u07 --k 3");
  EXPECT_NE(gone.out.find("user \"u07\" is not in this run"), std::string::npos) << gone.out;
}

TEST(Forget, NoByteOfTheUserIsLeftInTheNewRunItsExportOrTheCache) {
  Data d;
  d.config("src", "data.csv", "export:\n  enabled: true\n  out: ext\n");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  // A second export of the source makes ext hold two versions, both with the user.
  ASSERT_EQ(run(d.t.str(), "export runs/src --out ext").rc, 0);
  ASSERT_TRUE(fs::exists(d.t.file("ext/v-1")) && fs::exists(d.t.file("ext/v-2")));
  // Positive controls: the scan finds the user in the source's export and in the cache.
  EXPECT_FALSE(files_holding(d.t.file("ext"), kErased).empty());
  EXPECT_FALSE(files_holding(d.t.file("cache"), kErased).empty());
  const std::string ids = test::read_file(d.t.file("ext/user_ids.txt"));
  EXPECT_NE(ids.find(kErased), std::string::npos);
  write_file(d.t.file("forget.txt"), std::string("# erasure request\n") + kErased + "\n");
  const Result f = run(d.t.str(), "forget runs/src --users forget.txt --export ext");
  ASSERT_EQ(f.rc, 0) << f.out;
  EXPECT_EQ(f.out.find(kErased), std::string::npos) << "the id was echoed: " << f.out;
  for (const std::string& root : {d.t.file("runs/src-forget"), d.t.file("ext"), d.t.file("cache")}) {
    EXPECT_EQ(files_holding(root, kErased), std::vector<std::string>{}) << root;
    for (const std::string& row : d.erased_rows)
      EXPECT_EQ(files_holding(root, row), std::vector<std::string>{}) << root << ": " << row;
  }
  // Only the new version is left in the export; the cache was rebuilt without the user.
  std::vector<std::string> versions;
  for (const auto& e : fs::directory_iterator(d.t.file("ext")))
    if (e.path().filename().string().rfind("v-", 0) == 0) versions.push_back(e.path().filename());
  EXPECT_EQ(versions, (std::vector<std::string>{"v-3"}));
  EXPECT_FALSE(fs::is_empty(d.t.file("cache")));
  const auto runj = nlohmann::json::parse(test::read_file(d.t.file("runs/src-forget/run.json")));
  EXPECT_EQ(runj["forget"]["requested_users"], 1);
  EXPECT_EQ(runj["forget"]["not_found_users"], 0);
  // The source still holds the user, and forget says so.
  EXPECT_NE(f.out.find("the source run runs/src still holds the forgotten users"), std::string::npos)
      << f.out;
  EXPECT_TRUE(fs::exists(d.t.file("runs/src/item_factors.npy")));
}

TEST(Forget, CacheEntriesOfOtherVersionsOfTheDataThatHoldTheUserAreRemovedToo) {
  // The docs' procedure: remove the user from the source, then forget. The run's own cache
  // entry is then made from a file version that no longer exists (its digest no longer
  // matches), and an earlier version's entry may sit beside it: both kept the raw id.
  Data d;
  d.config("src", "data.csv");
  const std::string all = test::read_file(d.t.file("data.csv"));
  // An earlier version of the file (without its last line) trained once: its own entry.
  write_file(d.t.file("data.csv"), all.substr(0, all.rfind('\n', all.size() - 2) + 1));
  ASSERT_EQ(run(d.t.str(), "train src.yaml --set run.name=day1").rc, 0);
  write_file(d.t.file("data.csv"), all);
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  // A third entry from another config (weights ignored) of the same file holds the user too,
  // and one of a file without the user stays.
  ASSERT_EQ(run(d.t.str(), "train src.yaml --set run.name=unweighted --set data.weight_col=").rc, 0);
  d.config("other", "stripped.csv");
  ASSERT_EQ(run(d.t.str(), "train other.yaml").rc, 0);
  std::vector<std::string> before;
  for (const auto& e : fs::directory_iterator(d.t.file("cache"))) before.push_back(e.path().string());
  ASSERT_EQ(before.size(), 4u);
  ASSERT_EQ(files_holding(d.t.file("cache"), kErased).size(), 3u);
  // The user removed from the source first, as privacy.md says, then forgotten.
  std::string without;
  for (const std::string& l : lines_of(all))
    if (l.rfind(std::string(kErased) + ",", 0) != 0) without += l + "\n";
  write_file(d.t.file("data.csv"), without);
  const Result f = run(d.t.str(), "forget runs/src --users " + std::string(kErased));
  ASSERT_EQ(f.rc, 0) << f.out;
  EXPECT_NE(f.out.find("forget: removed 3 other data cache file(s) in cache that held the users' "
                       "ids (made from other versions of the data files, or from other data with "
                       "those ids; they are made again when needed)"),
            std::string::npos)
      << f.out;
  EXPECT_EQ(files_holding(d.t.file("cache"), kErased), std::vector<std::string>{});
  size_t left = 0;  // the entry of stripped.csv, which never held the user, stays
  for (const std::string& p : before) left += fs::exists(p);
  EXPECT_EQ(left, 1u);
}

TEST(Forget, ASecondForgetAccumulatesAndRemoveSourceRemovesOnlyTheSource) {
  Data d;
  d.config("src", "data.csv", "export:\n  enabled: true\n");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  const Result first = run(d.t.str(), "forget runs/src --users u07 --name one");
  ASSERT_EQ(first.rc, 0) << first.out;
  const Result second =
      run(d.t.str(), std::string("forget runs/one --users ' ") + kErased + " ,ghost-user' --name two --remove-source");
  ASSERT_EQ(second.rc, 0) << second.out;
  EXPECT_EQ(second.out.find("ghost-user"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("1 do not occur in it"), std::string::npos) << second.out;
  EXPECT_FALSE(fs::exists(d.t.file("runs/one")));
  EXPECT_TRUE(fs::exists(d.t.file("runs/src")));
  const auto src = nlohmann::json::parse(test::read_file(d.t.file("runs/src/run.json")));
  const auto two = nlohmann::json::parse(test::read_file(d.t.file("runs/two/run.json")));
  EXPECT_FALSE(src.contains("excluded_users"));
  ASSERT_TRUE(two.contains("excluded_users"));
  EXPECT_EQ(two["excluded_users"]["forgotten"].size(), 2u);
  EXPECT_EQ(two["forget"]["not_found_users"], 1);
  const std::vector<std::string> users = lines_of(test::read_file(d.t.file("runs/two/export/user_ids.txt")));
  EXPECT_EQ(std::count(users.begin(), users.end(), "u07"), 0);
  EXPECT_EQ(std::count(users.begin(), users.end(), kErased), 0);
  EXPECT_EQ(std::count(users.begin(), users.end(), "u08"), 1);
  const auto stats = nlohmann::json::parse(test::read_file(d.t.file("runs/two/stats.json")));
  EXPECT_EQ(stats["privacy"]["forgotten_users"], 2);
}

// An export written after training with `recforge export RUN --out DIR` is recorded in the run's
// exports.txt: report-user says whether it holds the user, and forget names it as still holding
// the forgotten users (it named only training's export, and report-user said "no").
TEST(Forget, ExportsWrittenLaterWithRecforgeExportAreKnownToForgetAndReportUser) {
  Data d;
  d.config("src", "data.csv", "export:\n  enabled: true\n");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  for (const char* out : {"later", "runs/src/export"}) {  // a second writing of training's export
    const Result e = run(d.t.str(), std::string("export runs/src --out ") + out);
    ASSERT_EQ(e.rc, 0) << e.out;
  }
  const std::string later = fs::weakly_canonical(d.t.file("later")).string();
  // recforge info lists them, training's first.
  const Result info = run(d.t.str(), "info runs/src");
  ASSERT_EQ(info.rc, 0) << info.out;
  const std::string inside_export = fs::weakly_canonical(d.t.file("runs/src/export")).string();
  EXPECT_NE(info.out.find("export     " + inside_export + "\nexport     " + later + "\n"),
            std::string::npos)
      << info.out;
  // From another directory: the same two (run.json's relative "runs/src/export" is the run's
  // own export, not a third one resolved against the current directory).
  fs::create_directories(d.t.file("sub"));
  const Result elsewhere = run(d.t.file("sub"), "info ../runs/src");
  ASSERT_EQ(elsewhere.rc, 0) << elsewhere.out;
  size_t listed = 0;
  for (size_t at = elsewhere.out.find("\nexport     "); at != std::string::npos;
       at = elsewhere.out.find("\nexport     ", at + 1))
    ++listed;
  EXPECT_EQ(listed, 2u) << elsewhere.out;
  EXPECT_EQ(elsewhere.out.find("no longer there"), std::string::npos) << elsewhere.out;
  // The run reached through a symlink, from inside it, or copied: the same run, the same
  // exports (an export's run is told by run.json's creation time, not by a path).
  fs::create_directory_symlink("runs/src", d.t.file("latest"));
  fs::copy(d.t.file("runs/src"), d.t.file("copied"), fs::copy_options::recursive);
  for (const auto& [cwd, arg] : {std::pair<std::string, std::string>{d.t.str(), "latest"},
                                 {d.t.file("runs/src"), "."},
                                 {d.t.str(), "copied"}}) {
    const Result r = run(cwd, "info " + arg);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("export     " + later + "\n"), std::string::npos) << arg << "\n" << r.out;
  }
  fs::remove_all(d.t.file("copied"));
  const Result report = run(d.t.str(), std::string("report-user runs/src --user ") + kErased + " --format json");
  ASSERT_EQ(report.rc, 0) << report.out;
  const auto j = nlohmann::json::parse(report.out.substr(report.out.find('{')));
  const auto& exports = j["embedding"]["exports"];
  ASSERT_EQ(exports.size(), 2u) << report.out;  // training's, then later (the second writing once)
  EXPECT_EQ(exports[1]["export"], later);
  EXPECT_EQ(exports[1]["holds_user"], true);
  EXPECT_EQ(j["embedding"]["in_export"], true);
  const Result text = run(d.t.str(), "report-user runs/src --user u07");
  ASSERT_EQ(text.rc, 0) << text.out;
  EXPECT_NE(text.out.find("  export " + later + ": yes\n"), std::string::npos) << text.out;
  // A k past what is eligible: the heading counts the items listed (it said "top K" over fewer).
  const Result wide = run(d.t.str(), "report-user runs/src --user u07 --k 100000");
  ASSERT_EQ(wide.rc, 0) << wide.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(wide.out, m, std::regex("top ([0-9]+) recommendations \\(of k = "
                                                        "([0-9]+): no more items are eligible")))
      << wide.out;
  EXPECT_LT(std::stoi(m[1]), std::stoi(m[2]));
  const std::string after = wide.out.substr(static_cast<size_t>(m.position(0)));
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n') - 1, std::stoi(m[1])) << wide.out;
  // forget names it; with --export it is replaced and not named.
  const Result f = run(d.t.str(), std::string("forget runs/src --users ") + kErased + " --name one");
  ASSERT_EQ(f.rc, 0) << f.out;
  EXPECT_NE(f.out.find("the source run's export " + later + " still holds the forgotten users; "
                       "replace it with forget --export " + later +
                       ", remove it, or use --remove-exports"),
            std::string::npos)
      << f.out;
  const Result g = run(d.t.str(), std::string("forget runs/src --users ") + kErased + " --name two --export later");
  ASSERT_EQ(g.rc, 0) << g.out;
  EXPECT_EQ(g.out.find("the source run's export " + later), std::string::npos) << g.out;
  const std::vector<std::string> users = lines_of(test::read_file(d.t.file("later/user_ids.txt")));
  EXPECT_EQ(std::count(users.begin(), users.end(), kErased), 0);
  // forget's export is the new run's; the source's exports.txt lists training's export and the
  // one that `recforge export` wrote elsewhere, absolute, each once (the second writing of
  // training's export is a new version of it).
  const std::string inside = fs::weakly_canonical(d.t.file("runs/src/export")).string();
  EXPECT_EQ(test::read_file(d.t.file("runs/src/exports.txt")), inside + "\n" + later + "\n");
  // `later` now holds run two's export (its manifest's source names runs/two and two's creation
  // time): info, report-user and forget of src no longer list it as src's; info of two does.
  const Result src_info = run(d.t.str(), "info runs/src");
  ASSERT_EQ(src_info.rc, 0) << src_info.out;
  EXPECT_NE(src_info.out.find("export     " + inside_export + "\n"), std::string::npos) << src_info.out;
  EXPECT_EQ(src_info.out.find(later), std::string::npos) << src_info.out;
  const Result two_info = run(d.t.str(), "info runs/two");
  ASSERT_EQ(two_info.rc, 0) << two_info.out;
  EXPECT_NE(two_info.out.find("export     " + later + "\n"), std::string::npos) << two_info.out;
  const Result src_report = run(d.t.str(), "report-user runs/src --user u08");
  ASSERT_EQ(src_report.rc, 0) << src_report.out;
  EXPECT_EQ(src_report.out.find(later), std::string::npos) << src_report.out;
  // --remove-exports removes the source's exports outside it that still hold its export (one
  // written since with recforge export), not `later` (run two's now) nor the one inside it.
  ASSERT_EQ(run(d.t.str(), "export runs/src --out other").rc, 0);
  const std::string other = fs::weakly_canonical(d.t.file("other")).string();
  const Result h = run(d.t.str(), std::string("forget runs/src --users ") + kErased +
                                      " --name three --remove-exports");
  ASSERT_EQ(h.rc, 0) << h.out;
  EXPECT_NE(h.out.find("removed the source run's export " + other + "\n"), std::string::npos)
      << h.out;
  EXPECT_EQ(h.out.find("still holds the forgotten users; replace"), std::string::npos) << h.out;
  EXPECT_FALSE(fs::exists(d.t.file("other")));
  for (const auto& e : fs::directory_iterator(d.t.str()))
    EXPECT_EQ(e.path().filename().string().find(".removing-"), std::string::npos) << e.path();
  EXPECT_TRUE(fs::exists(d.t.file("later/manifest.json")));
  EXPECT_TRUE(fs::exists(d.t.file("runs/src/export/manifest.json")));
}

// A user mistake: exit status 1, exactly one error line containing `expected`, no new run.
void expect_one_line_error(const Data& d, const std::string& args, const std::string& expected) {
  const Result r = run(d.t.str(), args);
  EXPECT_EQ(r.rc, 1) << r.out;
  std::vector<std::string> errors;
  for (const auto& l : lines_of(r.out))
    if (l.rfind("recforge: error: ", 0) == 0) errors.push_back(l);
  ASSERT_EQ(errors.size(), 1u) << r.out;
  EXPECT_NE(errors[0].find(expected), std::string::npos) << errors[0];
}

TEST(Forget, BadInputIsOneSentenceAndExitStatusOne) {
  Data d;
  const Result help = run(d.t.str(), "forget --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--remove-source"), std::string::npos) << help.out;
  expect_one_line_error(d, "forget runs/nowhere --users u01",
                        "forget runs/nowhere: no such run directory");
  fs::create_directories(d.t.file("plain-dir"));
  expect_one_line_error(d, "forget plain-dir --users u01",
                        "forget plain-dir: not a recforge run directory");
  d.config("src", "data.csv");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  expect_one_line_error(d, "forget runs/src --users ''", "forget --users: no user ids given");
  expect_one_line_error(d, "forget runs/src --users ' , '", "forget --users: no user ids given");
  expect_one_line_error(d, "forget runs/src", "forget --users: no user ids given");
  write_file(d.t.file("empty.txt"), "# nobody\n\n");
  expect_one_line_error(d, "forget runs/src --users empty.txt", "forget --users: no user ids given");
  expect_one_line_error(d, "forget runs/src --users u01 --name src", "that is the source run's own name");
  fs::create_directories(d.t.file("notexp"));
  write_file(d.t.file("notexp/mine.txt"), "keep");
  expect_one_line_error(d, "forget runs/src --users u01 --export notexp",
                        "notexp: exists and is not a recforge export (no recforge manifest.json); "
                        "choose another forget --export or remove it");
  EXPECT_EQ(test::read_file(d.t.file("notexp/mine.txt")), "keep");
  // A file path that does not exist was one user id, and the erasure "completed".
  expect_one_line_error(d, "forget runs/src --users requests/erase.txt",
                        "forget --users requests/erase.txt: no such file (a value with '/' is "
                        "read as a file of user ids, one per line); give the file's path, or the "
                        "ids comma-separated");
  std::vector<std::string> runs;
  for (const auto& e : fs::directory_iterator(d.t.file("runs"))) runs.push_back(e.path().filename());
  EXPECT_EQ(runs, (std::vector<std::string>{"src"})) << "a run was left behind";
}

// What forget would remove is checked before anything is trained: a typo in a file name (read as
// one id that the data lacks), a source given as a link (removing the link would leave the run),
// an export inside the source that --remove-source would take with it.
TEST(Forget, NothingToForgetOrARemovalThatWouldMissOrTakeTheResultIsRefusedFirst) {
  Data d;
  d.config("src", "data.csv");
  ASSERT_EQ(run(d.t.str(), "train src.yaml").rc, 0);
  write_file(d.t.file("forget-ids.txt"), "u07\n");
  expect_one_line_error(d, "forget runs/src --users forget-id.txt --remove-source",
                        "forget --users: none of the 1 user id(s) given occurs in the run's data, "
                        "which is unchanged since it trained, so there is nothing to forget; no "
                        "new run was made and nothing was removed (the value was read as one "
                        "user id, since no file of that name exists)");
  expect_one_line_error(d, "forget runs/src --users nobody-1,nobody-2",
                        "none of the 2 user id(s) given occurs in the run's data");
  fs::create_symlink("src", d.t.file("runs/link"));
  expect_one_line_error(d, "forget runs/link --users u07 --remove-source",
                        "forget --remove-source: runs/link is a symbolic link (to " +
                            fs::canonical(d.t.file("runs/src")).string() +
                            "); give the run directory itself, which is what would be removed");
  expect_one_line_error(d, "forget runs/src --users u07 --export runs/src/clean --remove-source",
                        "forget --export runs/src/clean: that is inside the source run runs/src, "
                        "which --remove-source removes; write the export elsewhere");
  std::vector<std::string> runs;
  for (const auto& e : fs::directory_iterator(d.t.file("runs"))) runs.push_back(e.path().filename());
  std::sort(runs.begin(), runs.end());
  EXPECT_EQ(runs, (std::vector<std::string>{"link", "src"})) << "a run was left behind";
  EXPECT_TRUE(fs::exists(d.t.file("runs/src/run.json")));
  // A list of ids with a '/' is a list, not a file name, and is never echoed.
  const Result listed = run(d.t.str(), "forget runs/src --users 'org/zq-user,u07' --name listed");
  EXPECT_EQ(listed.rc, 0) << listed.out;
  EXPECT_EQ(listed.out.find("zq-user"), std::string::npos) << listed.out;
  // A source named with a final "." forgets into a run beside it, and --remove-source removes
  // the source itself.
  const Result dot = run(d.t.str(), "forget runs/src/. --users u07 --name dot --remove-source");
  ASSERT_EQ(dot.rc, 0) << dot.out;
  EXPECT_TRUE(fs::exists(d.t.file("runs/dot/run.json")));
  EXPECT_FALSE(fs::exists(d.t.file("runs/src")));
}

}  // namespace
}  // namespace recforge
