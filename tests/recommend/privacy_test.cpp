// Users who opted out of personalisation (privacy.opt_out) and pseudonymised exports in the
// recommend library: opted-out users get the training data's popularity (compared with counts
// computed here from the training items), in exports and in run directories (also when the
// opt-out file gains a user after training, and for a user without a row); similar_users never
// returns them; raw ids with the key resolve like the pseudonyms, and a wrong key is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/error.h"
#include "core/hash.h"
#include "pipeline/export.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "recommend/recommend.h"
#include "test_util.h"

namespace recforge::recommend {
namespace {

namespace fs = std::filesystem;
using data::index_t;
using test::TempDir;

/// A distinctive key: no file, output or message may ever hold these bytes.
const char* const kKey = "privacy-test-key-Zx81Qv";

/// Trains a small synthetic run `name` in `dir` with `extra` YAML appended.
std::string train_run(const TempDir& dir, const std::string& name, const std::string& extra) {
  const std::string yaml = "run:\n  name: " + name + "\n  dir: " + dir.str() +
                           "\n  progress: off\n  seed: 7\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                           "split:\n  method: leave_last\n"
                           "model:\n  type: ials\n  factors: 8\n  iterations: 3\n" +
                           extra;
  return pipeline::train(config::Config::parse(yaml, name + ".yaml"));
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// The popularity list that an opted-out user should get, computed from the training items
/// `seen` (users × items): items by their number of training users, most first (lower row on
/// ties), without `exclude`, only `candidates` when given, without the user's own training items
/// (row `own`, when they have one), the first k. Scores are the counts.
std::vector<std::pair<std::string, float>> expected_popularity(
    const data::Csr& seen, const data::IdMap& items, std::optional<index_t> own, int k,
    const std::set<std::string>& exclude = {},
    const std::optional<std::set<std::string>>& candidates = std::nullopt) {
  std::map<index_t, int64_t> count;
  for (int64_t u = 0; u < seen.rows; ++u)
    for (auto e = seen.indptr[u]; e < seen.indptr[u + 1]; ++e) ++count[seen.indices[e]];
  std::set<index_t> mine;
  if (own)
    for (auto e = seen.indptr[*own]; e < seen.indptr[*own + 1]; ++e) mine.insert(seen.indices[e]);
  std::vector<index_t> order;
  for (index_t i = 0; i < seen.cols; ++i)
    if (!mine.count(i) && !exclude.count(items.external(i)) &&
        (!candidates || candidates->count(items.external(i))))
      order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](index_t a, index_t b) { return count[a] > count[b]; });
  std::vector<std::pair<std::string, float>> out;
  for (size_t j = 0; j < order.size() && static_cast<int>(j) < k; ++j)
    out.push_back({items.external(order[j]), static_cast<float>(count[order[j]])});
  return out;
}

std::vector<std::pair<std::string, float>> entries(const List& l) {
  std::vector<std::pair<std::string, float>> out;
  for (const Scored& s : l.items) out.push_back({s.id, s.score});
  return out;
}

TEST(RecommendPrivacy, OptedOutUsersOfAnExportGetTheTrainingPopularity) {
  TempDir t;
  // "5" is in the data; "ghost" is not (as a user whose lines were dropped at training).
  const std::string opt = test::write_file(t.file("opt-out.txt"), "# opted out\n5\n  ghost \n\n");
  const std::string run = train_run(t, "r", "privacy:\n  opt_out: " + opt + "\n");
  pipeline::export_run(run, t.file("exp"), {});
  const artifact::Artifact a = artifact::load(t.file("exp"));
  EXPECT_EQ(a.opt_out, (std::vector<std::string>{"5", "ghost"}));
  const Recommender rec = Recommender::open(t.file("exp"));
  ASSERT_TRUE(rec.opted_out("5"));
  ASSERT_TRUE(rec.knows_user("ghost"));
  ASSERT_FALSE(rec.knows_user("nobody"));
  const std::optional<index_t> row5 = a.user_ids.find("5");

  Options o;
  o.k = 12;
  const Result r = rec.recommend({"3", "5", "ghost", "nobody"}, o);
  ASSERT_EQ(r.lists.size(), 3u);
  EXPECT_EQ(r.lists[0].query, "3");
  EXPECT_TRUE(r.lists[0].personalised);
  EXPECT_EQ(r.lists[1].query, "5");
  EXPECT_FALSE(r.lists[1].personalised);
  EXPECT_EQ(entries(r.lists[1]), expected_popularity(a.seen, a.item_ids, row5, 12));
  EXPECT_FALSE(r.lists[2].personalised);
  EXPECT_EQ(entries(r.lists[2]), expected_popularity(a.seen, a.item_ids, std::nullopt, 12));
  ASSERT_EQ(r.unknown.size(), 1u);
  EXPECT_EQ(r.unknown[0].id, "nobody");
  // The personal list of "3" is the one it gets alone.
  EXPECT_EQ(entries(r.lists[0]), entries(rec.recommend({"3"}, o).lists[0]));

  // The request's filters apply as usual: exclude, candidates, include_seen.
  const std::vector<std::pair<std::string, float>> top = entries(r.lists[2]);
  Options f;
  f.k = 5;
  f.exclude = {top[0].first, top[2].first};
  f.candidates = std::vector<std::string>{top[0].first, top[1].first, top[2].first, top[5].first,
                                          top[7].first, top[9].first};
  EXPECT_EQ(entries(rec.recommend({"ghost"}, f).lists[0]),
            expected_popularity(a.seen, a.item_ids, std::nullopt, 5,
                                {top[0].first, top[2].first},
                                std::set<std::string>{top[0].first, top[1].first, top[2].first,
                                                      top[5].first, top[7].first, top[9].first}));
  if (row5) {
    Options seen;
    seen.k = 12;
    seen.include_seen = true;
    EXPECT_EQ(entries(rec.recommend({"5"}, seen).lists[0]),
              expected_popularity(a.seen, a.item_ids, std::nullopt, 12));
    // recommend --all: the row of "5" holds the popularity list.
    std::vector<Unknown> unknown;
    const eval::TopK all = rec.recommend_rows({}, o, &unknown);
    EXPECT_TRUE(rec.row_opted_out(*row5));
    std::vector<std::pair<std::string, float>> got;
    for (int j = 0; j < all.k && all.item(*row5, j) >= 0; ++j)
      got.push_back({a.item_ids.external(all.item(*row5, j)), all.score(*row5, j)});
    EXPECT_EQ(got, expected_popularity(a.seen, a.item_ids, row5, 12));
  }

  // similar_users never names an opted-out user, and answers none for one.
  for (const char* u : {"3", "8", "40"}) {
    const Result s = rec.similar_users(u, 299);
    ASSERT_EQ(s.lists.size(), 1u);
    EXPECT_TRUE(s.lists[0].personalised);
    EXPECT_FALSE(s.lists[0].items.empty());
    for (const Scored& x : s.lists[0].items) EXPECT_NE(x.id, "5") << u;
    if (row5) {
      EXPECT_EQ(s.lists[0].items.size(), static_cast<size_t>(a.users.rows - 2)) << u;
    }
  }
  const Result s5 = rec.similar_users("5", 10);
  ASSERT_EQ(s5.lists.size(), 1u);
  EXPECT_FALSE(s5.lists[0].personalised);
  EXPECT_TRUE(s5.lists[0].items.empty());
}

TEST(RecommendPrivacy, ARunDirectoryReadsTheOptOutFileAsItIsNow) {
  TempDir t;
  const std::string opt = test::write_file(t.file("opt-out.txt"), "5\n");
  const std::string run = train_run(t, "r", "privacy:\n  opt_out: " + opt + "\n");
  const pipeline::OpenedRun opened = pipeline::open_run(run, "test");
  const data::Csr& train = opened.data.user_items;
  {
    const Recommender rec = Recommender::open(run);
    Options o;
    o.k = 10;
    const Result r = rec.recommend({"9"}, o);
    EXPECT_TRUE(r.lists[0].personalised);
  }
  // "9" opts out after training: answered with popularity from the training matrix; so is
  // "ghost", who has no row (as a user whose lines were dropped at training).
  test::write_file(opt, "5\n9\nghost\n");
  const Recommender rec = Recommender::open(run);
  Options o;
  o.k = 10;
  const Result r = rec.recommend({"9", "3"}, o);
  ASSERT_EQ(r.lists.size(), 2u);
  EXPECT_FALSE(r.lists[0].personalised);
  EXPECT_EQ(entries(r.lists[0]),
            expected_popularity(train, opened.data.items, opened.data.users.find("9"), 10));
  EXPECT_TRUE(r.lists[1].personalised);
  const Result ghost = rec.recommend({"ghost"}, o);
  ASSERT_EQ(ghost.lists.size(), 1u);
  EXPECT_FALSE(ghost.lists[0].personalised);
  EXPECT_EQ(entries(ghost.lists[0]),
            expected_popularity(train, opened.data.items, std::nullopt, 10));
  // (Held in a variable: a range-for over a member of a temporary Result reads freed memory.)
  const Result similar = rec.similar_users("3", 299);
  for (const Scored& x : similar.lists[0].items) {
    EXPECT_NE(x.id, "9");
    EXPECT_NE(x.id, "5");
  }
  // The file the config names is required: a missing one is refused, naming it.
  fs::remove(opt);
  const std::string err = error_of([&] { Recommender::open(run); });
  EXPECT_NE(err.find("privacy.opt_out"), std::string::npos) << err;
  EXPECT_NE(err.find(opt), std::string::npos) << err;
  // "5" opted out at training (no row) and the file lists them no more: run.json's stored
  // opt-out set still answers them with popularity (no embedding until trained again), while
  // an id that was never in the data stays unknown.
  ASSERT_TRUE(opened.run.contains("excluded_users"));
  EXPECT_FALSE(opened.data.users.find("5").has_value());
  test::write_file(opt, "# nobody\n");
  {
    const Recommender again = Recommender::open(run);
    const Result five = again.recommend({"5"}, o);
    ASSERT_EQ(five.lists.size(), 1u);
    EXPECT_FALSE(five.lists[0].personalised);
    EXPECT_EQ(entries(five.lists[0]),
              expected_popularity(train, opened.data.items, std::nullopt, 10));
    EXPECT_FALSE(again.knows_user("ghost"));
  }
  // A key is for pseudonymised exports only.
  test::write_file(opt, "5\n");
  OpenOptions k;
  k.pseudonym_key = SecretKey::from_bytes(kKey, "test");
  k.key_where = "--pseudonym-key-file key.txt";
  const std::string key_err = error_of([&] { Recommender::open(run, k); });
  EXPECT_NE(key_err.find("--pseudonym-key-file key.txt: " + run +
                         " is a run directory, whose user ids are raw"),
            std::string::npos)
      << key_err;
  EXPECT_EQ(key_err.find(kKey), std::string::npos) << key_err;
  // A path that is no run directory is said as such, key or not (it was called a run directory).
  const std::string missing = error_of([&] { Recommender::open(run + "-nowhere", k); });
  EXPECT_EQ(missing.find("is a run directory"), std::string::npos) << missing;
  EXPECT_NE(missing.find(run + "-nowhere: no such run directory"), std::string::npos) << missing;
}

TEST(RecommendPrivacy, IntegerIdsOfTheOptOutFileAreCanonicalEverywhere) {
  // Training drops "+05" as user 5; the export's list and the run's answers must name the same
  // user (they once read the file as raw text, so "+05" matched no row and no query for "5").
  TempDir t;
  const std::string opt = test::write_file(t.file("opt-out.txt"), "  +05\n# a comment\n007\n");
  const std::string run = train_run(t, "c", "privacy:\n  opt_out: " + opt + "\n");
  const pipeline::OpenedRun opened = pipeline::open_run(run, "test");
  EXPECT_FALSE(opened.data.users.find("5").has_value());
  EXPECT_FALSE(opened.data.users.find("7").has_value());
  pipeline::export_run(run, t.file("exp"), {});
  EXPECT_EQ(artifact::load(t.file("exp")).opt_out, (std::vector<std::string>{"5", "7"}));
  Options o;
  o.k = 5;
  for (const std::string& source : {run, t.file("exp")}) {
    const Recommender rec = Recommender::open(source);
    const Result r = rec.recommend({"5", "7"}, o);
    ASSERT_EQ(r.lists.size(), 2u) << source;
    EXPECT_FALSE(r.lists[0].personalised) << source;
    EXPECT_FALSE(r.lists[1].personalised) << source;
  }
}

TEST(RecommendPrivacy, RawIdsWithTheKeyResolveLikeThePseudonyms) {
  TempDir t;
  const std::string key_file = test::write_file(t.file("key"), std::string(kKey) + "\n");
  const std::string opt = test::write_file(t.file("opt-out.txt"), "5\nghost\n");
  const std::string run = train_run(t, "r",
                                    "privacy:\n  opt_out: " + opt +
                                        "\nexport:\n  pseudonymize: true\n  pseudonym_key_file: " +
                                        key_file + "\n");
  pipeline::export_run(run, t.file("exp"), {});
  const std::string p3 = hmac_sha256_hex(kKey, "3");
  const std::string p5 = hmac_sha256_hex(kKey, "5");
  const Recommender plain = Recommender::open(t.file("exp"));
  OpenOptions k;
  k.pseudonym_key = SecretKey::from_file(key_file, "--pseudonym-key-file");
  const Recommender keyed = Recommender::open(t.file("exp"), k);
  Options o;
  o.k = 10;
  // Without the key only pseudonyms are known; with it, raw ids too (and pseudonyms still).
  EXPECT_FALSE(plain.knows_user("3"));
  const std::string unknown_err = error_of([&] { plain.recommend({"3"}, o); });
  EXPECT_NE(unknown_err.find("pseudonymised"), std::string::npos) << unknown_err;
  const Result by_pseudonym = plain.recommend({p3, p5, hmac_sha256_hex(kKey, "ghost")}, o);
  const Result by_raw = keyed.recommend({"3", "5", "ghost"}, o);
  const Result mixed = keyed.recommend({p3}, o);
  ASSERT_EQ(by_pseudonym.lists.size(), 3u);
  ASSERT_EQ(by_raw.lists.size(), 3u);
  for (size_t n = 0; n < 3; ++n) {
    EXPECT_EQ(entries(by_raw.lists[n]), entries(by_pseudonym.lists[n])) << n;
    EXPECT_EQ(by_raw.lists[n].personalised, n == 0) << n;
    EXPECT_EQ(by_pseudonym.lists[n].personalised, n == 0) << n;
  }
  EXPECT_EQ(entries(mixed.lists[0]), entries(by_raw.lists[0]));
  // Lists name users as the caller gave them.
  EXPECT_EQ(by_raw.lists[0].query, "3");
  EXPECT_EQ(by_pseudonym.lists[0].query, p3);
  EXPECT_EQ(entries(keyed.similar_users("3", 7).lists[0]),
            entries(plain.similar_users(p3, 7).lists[0]));

  // A wrong key is refused at open, naming where it came from, never its bytes.
  OpenOptions wrong;
  wrong.pseudonym_key = SecretKey::from_bytes("another-key-0123456789", "test");
  wrong.key_where = "--pseudonym-key-env RF_KEY";
  const std::string err = error_of([&] { Recommender::open(t.file("exp"), wrong); });
  EXPECT_EQ(err.rfind("--pseudonym-key-env RF_KEY: the key is not the one", 0), 0u) << err;
  EXPECT_EQ(err.find("another-key"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  // A key for an export whose ids are raw is refused too.
  pipeline::export_run(train_run(t, "raw", ""), t.file("raw-exp"), {});
  EXPECT_NE(error_of([&] { Recommender::open(t.file("raw-exp"), k); }).find("is not pseudonymised"),
            std::string::npos);
}

}  // namespace
}  // namespace recforge::recommend
