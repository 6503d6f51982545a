#include "recommend/explain.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "artifact/artifact.h"
#include "core/error.h"
#include "core/secret.h"
#include "models/model.h"
#include "pipeline/export.h"
#include "pipeline/run.h"
#include "pipeline/warm_start.h"

namespace recforge::recommend {
namespace {

const char* kind(const Recommender& r) { return r.is_export() ? "export" : "run"; }

// The user's row; an unknown user is one sentence. (A user opted out at training time has no
// row: callers handle opted-out users first.)
data::index_t user_row(const Recommender& r, const std::string& raw) {
  const std::string user = trim(raw);
  const auto u = r.user_row(user);
  if (!u)
    fail("{}: user \"{}\" is not in this {}; expected a user id of its training data{}", r.path(),
         user, kind(r), r.pseudonym_hint());
  return *u;
}

// The user's training row as a 1-row CSR over all items, values = confidences.
data::Csr training_row(const data::Csr& seen, data::index_t u) {
  data::Csr row;
  row.rows = 1;
  row.cols = seen.cols;
  const data::offset_t b = seen.indptr[static_cast<size_t>(u)];
  const data::offset_t e = seen.indptr[static_cast<size_t>(u) + 1];
  row.indptr = {0, e - b};
  row.indices.assign(seen.indices.begin() + b, seen.indices.begin() + e);
  row.data.assign(seen.data.begin() + b, seen.data.begin() + e);
  return row;
}

// The interactions of user `u` in `part`, as {item, weight[, timestamp]}.
nlohmann::ordered_json interactions_of(const data::Interactions& part, data::index_t u,
                                       const data::IdMap& items) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (data::offset_t k = 0; k < part.size(); ++k) {
    if (part.users[static_cast<size_t>(k)] != u) continue;
    nlohmann::ordered_json x = {{"item", items.external(part.items[static_cast<size_t>(k)])},
                                {"weight", part.weights[static_cast<size_t>(k)]}};
    if (part.has_times()) x["timestamp"] = part.times[static_cast<size_t>(k)];
    list.push_back(std::move(x));
  }
  return list;
}

// Whether the user_ids.txt of the export at `dir` holds `user` (false when it cannot be read).
bool export_holds(const std::string& dir, const std::string& user) {
  std::ifstream in(dir + "/user_ids.txt");
  std::string line;
  while (std::getline(in, line))
    if (line == user) return true;
  return false;
}

nlohmann::ordered_json chain_holds(const pipeline::ChainUsers& chain, const std::string& user,
                                   const std::optional<SecretKey>& key);  // below

// For an export of a warm-started run (its manifest's config names model.init_from): that
// export, and whether an earlier model of its chain was trained on `user` (its chain_users.txt;
// null for exports of builds before lineage was recorded); null for other exports.
nlohmann::ordered_json export_warm_start(const Recommender& r, const std::string& user) {
  const nlohmann::json* m = r.manifest();
  if (!m) return nullptr;
  const std::string from = artifact::manifest_text(*m, "/config/model/init_from");
  if (from.empty()) return nullptr;
  // Whether that export was trained on the user is the run's report to give (it holds the
  // record).
  const std::string run_dir = artifact::manifest_text(*m, "/source/run_dir");
  nlohmann::ordered_json w = {{"export", from},
                              {"version", nullptr},
                              {"trained_on_user", nullptr},
                              {"note", "this export's model was warm-started from that export "
                                       "(model.init_from, as its training named it); `recforge "
                                       "report-user " + (run_dir.empty() ? std::string("RUN") : run_dir) +
                                       "` says whether it was trained on this user"}};
  const nlohmann::json::json_pointer lineage("/source/lineage");
  w["earlier_in_chain"] =
      m->contains(lineage)
          ? chain_holds({r.chain_salt(), r.chain_key_checks(), r.chain_users()}, user,
                        r.pseudonym_key() ? std::optional<SecretKey>(*r.pseudonym_key()) : std::nullopt)
          : nlohmann::ordered_json(nullptr);
  return w;
}

}  // namespace

std::vector<ItemExplanation> explain(const Recommender& r, const std::string& user_raw,
                                     const std::vector<std::string>& items_raw) {
  if (r.opted_out(user_raw))
    fail("{}: user \"{}\" opted out of personalisation (privacy.opt_out): they are answered with "
         "the most popular items, which nothing of theirs explains",
         r.path(), trim(user_raw));
  const data::index_t u = user_row(r, user_raw);
  std::vector<int64_t> rows;
  for (const std::string& raw : items_raw) {
    const std::string item = trim(raw);
    const auto i = r.item_ids().find(item);
    if (!i)
      fail("{}: item \"{}\" is not in this {}; expected an item id of its training data",
           r.path(), item, kind(r));
    rows.push_back(*i);
  }
  if (!r.can_fold_in())
    fail("{}: this export predates explanations (its manifest.json has no \"fold_in\" section "
         "with the model's hyperparameters); export the run again with this recforge",
         r.path());
  const data::Csr& seen = r.seen();
  if (seen.data.size() != seen.indices.size())
    fail("{}: this export has no seen_data.npy (the training confidences that explanations "
         "need); export the run again with this recforge",
         r.path());
  const models::Model* model = r.model();  // prepares explain's part on the first call
  const data::Csr row = training_row(seen, u);
  const std::vector<models::Explanation> ex = model->explain(row, r.user_factors().row(u), rows);
  std::vector<ItemExplanation> out;
  for (size_t q = 0; q < ex.size(); ++q) {
    const models::Explanation& e = ex[q];
    ItemExplanation x;
    x.user = trim(user_raw);
    x.item = trim(items_raw[q]);
    x.method = e.method;
    x.sums_to_score = e.method == "exact_decomposition";
    x.score = e.score;
    x.model_score = e.model_score;
    x.tolerance = e.tolerance;
    x.condition_bound = e.condition_bound;
    for (const models::Contribution& c : e.contributions)
      x.contributions.push_back(
          {r.item_ids().external(static_cast<data::index_t>(c.item)), c.value, c.confidence,
           c.contribution});
    out.push_back(std::move(x));
  }
  return out;
}

nlohmann::ordered_json to_json(const ItemExplanation& e, int top) {
  nlohmann::ordered_json j = {{"user", e.user},
                              {"item", e.item},
                              {"method", e.method},
                              {"sums_to_score", e.sums_to_score},
                              {"score", e.score},
                              {"model_score", e.model_score}};
  if (e.sums_to_score) {
    j["tolerance"] = e.tolerance;
    j["condition_bound"] = e.condition_bound;
  }
  j["training_items"] = e.contributions.size();
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  const size_t n = top < 0 ? e.contributions.size()
                           : std::min(e.contributions.size(), static_cast<size_t>(top));
  for (size_t q = 0; q < n; ++q) {
    const ExplainedItem& c = e.contributions[q];
    nlohmann::ordered_json x = {{"item", c.item},
                                {"value", c.value},
                                {"confidence", c.confidence},
                                {"contribution", c.contribution}};
    if (e.sums_to_score) x["share"] = e.score != 0 ? c.contribution / e.score : 0.0;
    list.push_back(std::move(x));
  }
  j["contributions"] = std::move(list);
  return j;
}

namespace {

// The top-k answer of the report: personalised (each with its 3 largest contributions) or, for
// an opted-out user, the popularity list.
// `row`: the user's factor row (none for a user opted out before training).
nlohmann::ordered_json report_recommendations(const Recommender& r, const std::string& user,
                                              std::optional<data::index_t> row, int k) {
  Options o;
  o.k = k;
  o.exact = true;
  const Result res = r.recommend({user}, o);
  const List& list = res.lists.at(0);
  std::vector<std::string> ids;
  for (const Scored& s : list.items) ids.push_back(s.id);
  std::vector<ItemExplanation> why;
  std::string why_not;
  if (!list.personalised)
    why_not = "the user opted out of personalisation: these are the most popular items of the "
              "training data (score: their number of training users)";
  else if (row && r.seen().row_size(*row) == 0)
    why_not = "the user has no training interaction: the model learned nothing of theirs, so "
              "nothing explains these scores and the list is arbitrary";
  else
    try {
      if (!ids.empty()) why = explain(r, user, ids);
    } catch (const Error& err) {
      why_not = err.what();
    }
  nlohmann::ordered_json recs = nlohmann::ordered_json::array();
  for (size_t q = 0; q < ids.size(); ++q) {
    nlohmann::ordered_json x = {{"item", ids[q]}, {"score", list.items[q].score}};
    if (!why.empty()) x["explained_by"] = to_json(why[q], 3)["contributions"];
    recs.push_back(std::move(x));
  }
  nlohmann::ordered_json out = {
      {"k", res.k}, {"personalised", list.personalised}, {"items", std::move(recs)}};
  if (!why.empty()) out["method"] = why[0].method;
  if (!why_not.empty()) out["explanations_unavailable"] = why_not;
  // An export of index.metric cosine ranks and scores by cosine, as it serves; the contributions
  // decompose the model's score u·v, of which the cosine is u·v / (|u| |v|).
  if (list.personalised && r.default_metric() == Metric::kCosine) {
    out["score_metric"] = "cosine";
    if (!why.empty())
      out["explanations_note"] =
          "the scores are cosine similarities (the export's index.metric), as it serves them; "
          "each item's contributions sum to the model's score u\u00b7v of the item (explain "
          "shows it), which divided by |u| |v| is that cosine";
  }
  return out;
}

// Whether the export at `dir` holds `user`: its user_ids.txt lists the raw id, or, when the
// export is `pseudonymised`, the pseudonym under the run's key (export.pseudonymize) when that
// key is the export's (`key_check`, the manifest's; empty: the run's own export, made with it).
// nullopt, with `note` saying why, when that cannot be told.
std::optional<bool> export_holds_user(const pipeline::OpenedRun& run, const std::string& dir,
                                      const std::string& user, bool pseudonymised,
                                      const std::string& key_check, std::string& note) {
  if (!pseudonymised) return export_holds(dir, user);
  try {
    const std::optional<SecretKey> key = pipeline::pseudonym_key(run.config);
    if (!key) fail("the run does not pseudonymise its exports");
    if (!key_check.empty() && key->check_value() != key_check)
      fail("the run's key is not the export's");
    return export_holds(dir, key->pseudonym(user));
  } catch (const Error& err) {
    note = std::string("the export is pseudonymised and this user's pseudonym cannot be made "
                       "here: ") + err.what();
    return std::nullopt;
  }
}

// Whether `chain` (pipeline::ChainUsers) holds the user of raw id `user`: true or false, or null
// when it does not and some of its pseudonyms are of a key other than `key` (they cannot be
// checked).
nlohmann::ordered_json chain_holds(const pipeline::ChainUsers& chain, const std::string& user,
                                   const std::optional<SecretKey>& key) {
  if (chain.holds(user, key)) return true;
  for (const std::string& check : chain.key_checks)
    if (!key || key->check_value() != check) return nullptr;
  return false;
}

// For a run warm-started from an export (run.json "init_from"): that export and whether the
// version it started from was trained on `user` (export_holds_user); null with a note when the
// version is gone. A warm-started model depends on the data its export was trained on, whoever
// is in this run's data. `*in_chain` is set when the run's chain users hold the user (the model
// depends on their data, whether or not the export version can still tell through whom).
nlohmann::ordered_json warm_start_of(const pipeline::OpenedRun& run, const std::string& user,
                                     bool* in_chain_out = nullptr) {
  if (in_chain_out) *in_chain_out = false;
  const auto it = run.run.find("init_from");
  if (it == run.run.end() || !it->is_object()) return nullptr;
  const std::string dir = it->value("export", std::string());
  const std::string version = it->value("version", std::string());
  nlohmann::ordered_json w = {{"export", dir}, {"version", version}};
  // Whether an earlier model of the chain was trained on the user although the starting export
  // does not hold them. The run's chain_users.txt holds the export's own chain users and the
  // export's users this run's data lacks (pipeline::WarmStart::chain), so an entry there is an
  // earlier model's user only when the export does not hold them (an export's chain never
  // holds its own users); unknown when that cannot be told.
  nlohmann::ordered_json in_chain;  // null: unknown (pseudonyms of another key)
  bool chain_recorded = false;
  if (const auto meta = it->find("chain_users"); meta != it->end() && meta->is_object()) {
    const pipeline::ChainUsers chain{meta->value("salt", std::string()),
                                     meta->value("key_checks", std::vector<std::string>()),
                                     run.chain_users};
    std::optional<SecretKey> key;
    if (!chain.key_checks.empty()) try {
        key = pipeline::pseudonym_key(run.config);
      } catch (const Error&) {
      }
    chain_recorded = true;
    in_chain = chain_holds(chain, user, key);
    if (in_chain_out) *in_chain_out = in_chain == true;
  }
  const auto earlier = [&](const nlohmann::ordered_json& trained_on_user) {
    if (in_chain.is_null() || in_chain == false) return in_chain;
    if (trained_on_user == true) return nlohmann::ordered_json(false);
    return trained_on_user == false ? nlohmann::ordered_json(true) : nlohmann::ordered_json(nullptr);
  };
  const std::string vdir = version.empty() ? dir : dir + "/" + version;
  std::error_code ec;
  nlohmann::json manifest;
  try {
    std::ifstream in(vdir + "/manifest.json");
    if (in) manifest = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
  }
  if (!manifest.is_object() || !std::filesystem::exists(vdir + "/user_ids.txt", ec)) {
    w["trained_on_user"] = nullptr;
    if (chain_recorded) w["earlier_in_chain"] = earlier(nullptr);
    w["note"] = "the export version the run started from is no longer there, so whether it was "
                "trained on this user cannot be told";
    return w;
  }
  const nlohmann::json::json_pointer pseudonymized("/user_ids/pseudonymized");
  std::string note;
  const std::optional<bool> held = export_holds_user(
      run, vdir, user, manifest.contains(pseudonymized) && manifest.at(pseudonymized) == true,
      artifact::manifest_text(manifest, "/user_ids/key_check"), note);
  w["trained_on_user"] = held ? nlohmann::ordered_json(*held) : nlohmann::ordered_json(nullptr);
  if (chain_recorded) w["earlier_in_chain"] = earlier(w["trained_on_user"]);
  if (!note.empty()) w["note"] = note;
  return w;
}

}  // namespace

nlohmann::ordered_json report_user(const Recommender& r, const std::string& user_raw, int k) {
  const std::string user = trim(user_raw);
  const bool opted = r.opted_out(user);
  const std::optional<data::index_t> row = r.user_row(user);
  nlohmann::ordered_json j = {
      {"user", user}, {"source", kind(r)}, {"path", r.path()}, {"opted_out", opted}};
  if (!row && !opted) {
    // Not in this run's data: still reported when its model depends on their data through a
    // warm start (the export it started from was trained on them, or an earlier model of its
    // chain was); otherwise the unknown-user sentence.
    bool in_chain = false;
    nlohmann::ordered_json w =
        r.run() ? warm_start_of(*r.run(), user, &in_chain) : export_warm_start(r, user);
    const bool depends =
        in_chain || (w.is_object() && (w.value("trained_on_user", nlohmann::ordered_json()) == true ||
                                       w.value("earlier_in_chain", nlohmann::ordered_json()) == true));
    if (!depends) user_row(r, user);  // throws the unknown-user sentence
    j["training"] = {{"count", 0}, {"interactions", nlohmann::ordered_json::array()}};
    j["validation"] = nullptr;
    j["test"] = nullptr;
    j["held_note"] = fmt::format(
        "this {}'s data does not hold the user, and it has no embedding of theirs; its model was "
        "warm-started (model.init_from) from factors trained on their data (below), so it still "
        "depends on it",
        kind(r));
    j["embedding"] = nullptr;
    j["warm_start"] = std::move(w);
    j["recommendations"] = nullptr;
    j["recommendations_note"] = fmt::format(
        "the user is unknown to this {}: it answers them as any unknown user, with no list", kind(r));
    return j;
  }
  if (!row) {
    // Opted out before training: their lines were dropped, so nothing of theirs is held here.
    j["training"] = {{"count", 0}, {"interactions", nlohmann::ordered_json::array()}};
    j["validation"] = nullptr;
    j["test"] = nullptr;
    j["held_note"] = "the user opted out before training: their interactions were dropped from "
                     "every part of the data, and no embedding was made";
    j["embedding"] = nullptr;
    j["recommendations"] = report_recommendations(r, user, std::nullopt, k);
    return j;
  }
  const data::index_t u = *row;

  // Training interactions: the training matrix's rows (duplicates combined, values after
  // weighting), with each raw interaction's weight and timestamp where the run has them.
  const data::Csr& seen = r.seen();
  const data::offset_t b = seen.indptr[static_cast<size_t>(u)];
  const data::offset_t e = seen.indptr[static_cast<size_t>(u) + 1];
  const pipeline::OpenedRun* run = r.run();
  nlohmann::ordered_json raw;
  if (run) raw = interactions_of(run->data.split.train, u, r.item_ids());
  nlohmann::ordered_json train = nlohmann::ordered_json::array();
  for (data::offset_t el = b; el < e; ++el) {
    const std::string item = r.item_ids().external(seen.indices[static_cast<size_t>(el)]);
    nlohmann::ordered_json x = {{"item", item}};
    x["confidence"] = seen.data.size() == seen.indices.size()
                          ? nlohmann::ordered_json(seen.data[static_cast<size_t>(el)])
                          : nlohmann::ordered_json(nullptr);  // an export before seen_data.npy
    if (run) {
      nlohmann::ordered_json events = nlohmann::ordered_json::array();
      for (const auto& ev : raw)
        if (ev["item"] == item) {
          nlohmann::ordered_json copy = ev;
          copy.erase("item");
          events.push_back(std::move(copy));
        }
      x["raw"] = std::move(events);
    }
    train.push_back(std::move(x));
  }
  j["training"] = {{"count", e - b}, {"interactions", std::move(train)}};

  if (run) {
    const data::Split& s = run->data.split;
    auto part = [&](const data::Interactions& p, const data::Interactions& history) {
      nlohmann::ordered_json list = interactions_of(p, u, r.item_ids());
      nlohmann::ordered_json out = {{"present", !list.empty()}, {"count", list.size()},
                                    {"interactions", std::move(list)}};
      // The `users` split's given history of a held-out user: data the run holds about them.
      nlohmann::ordered_json given = interactions_of(history, u, r.item_ids());
      if (!given.empty()) {
        out["history_count"] = given.size();
        out["history"] = std::move(given);
      }
      return out;
    };
    j["validation"] = part(s.validation, s.validation_foldin);
    j["test"] = part(s.test, s.test_foldin);
    if (e == b && (j["validation"].contains("history") || j["test"].contains("history")))
      j["held_note"] =
          "split.method users held this user out of training: the model learned nothing of "
          "theirs (their embedding is zero); evaluation folds them in from the history listed "
          "under validation/test";
  } else {
    j["validation"] = nullptr;
    j["test"] = nullptr;
    j["held_out_note"] = "an export holds no validation or test data";
  }

  double norm = 0;
  const float* xu = r.user_factors().row(u);
  for (int64_t c = 0; c < r.user_factors().cols; ++c) norm += static_cast<double>(xu[c]) * xu[c];
  nlohmann::ordered_json emb = {{"dim", r.user_factors().cols}, {"norm", std::sqrt(norm)}};
  if (r.is_export()) {
    emb["in_export"] = true;
    emb["export"] = r.path();
  } else {
    // Every export of the run: training's (run.json "export") and those `recforge export` wrote
    // later (exports.txt). "export" and "in_export" keep their meaning for the first; "exports"
    // lists each, and "in_export" is true when any of them holds the user.
    const std::vector<std::string> dirs = pipeline::run_exports(run->dir, run->run);
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    bool any = false, unknown = false;
    for (const std::string& dir : dirs) {
      std::error_code ec;
      const bool exists = std::filesystem::exists(dir, ec);
      std::string note, key_check;
      if (std::ifstream m(dir + "/manifest.json"); m) {
        const nlohmann::json manifest = nlohmann::json::parse(m, nullptr, false);
        if (!manifest.is_discarded())
          key_check = artifact::manifest_text(manifest, "/user_ids/key_check");
      }
      const std::optional<bool> held =
          exists ? export_holds_user(*run, dir, user, run->config.settings().export_.pseudonymize,
                                     key_check, note)
                 : std::optional<bool>(false);
      any = any || held.value_or(false);
      unknown = unknown || !held;
      nlohmann::ordered_json entry = {
          {"export", dir},
          {"exists", exists},
          {"holds_user", held ? nlohmann::ordered_json(*held) : nlohmann::ordered_json(nullptr)}};
      if (!note.empty()) entry["note"] = note;
      if (all.empty()) {
        emb["export"] = dir;
        emb["export_exists"] = exists;
      }
      // Why "in_export" may be unknown: the first export that could not be checked.
      if (!note.empty() && !emb.contains("in_export_note")) emb["in_export_note"] = note;
      all.push_back(std::move(entry));
    }
    if (dirs.empty()) emb["export"] = nullptr;
    emb["in_export"] = any ? nlohmann::ordered_json(true)
                           : unknown ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(false);
    emb["exports"] = std::move(all);
  }
  j["embedding"] = std::move(emb);
  if (run) {
    nlohmann::ordered_json w = warm_start_of(*run, user);
    if (!w.is_null()) j["warm_start"] = std::move(w);
  } else {
    nlohmann::ordered_json w = export_warm_start(r, user);
    if (!w.is_null()) j["warm_start"] = std::move(w);
  }

  j["recommendations"] = report_recommendations(r, user, u, k);
  return j;
}

}  // namespace recforge::recommend
