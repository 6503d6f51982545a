#include "recommend/recommend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <atomic>
#include <mutex>
#include <numeric>
#include <unordered_set>

#include "artifact/artifact.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/exclusion.h"
#include "data/weight.h"
#include "index/filtered_search.h"
#include "index/index.h"
#include "models/model.h"
#include "pipeline/run.h"
#include "recommend/fold_in_model.h"

namespace recforge::recommend {

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::kDefault:
      return "default";
    case Metric::kDot:
      return "dot";
    case Metric::kCosine:
      return "cosine";
  }
  return "?";
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

/// What a Recommender holds. Built completely in open(); afterwards only read, except the
/// unit-length copies and the model's precomputed query state, each built once under its
/// once_flag.
struct Recommender::Impl {
  std::string path;
  std::unique_ptr<artifact::Artifact> artifact;  // an export
  std::unique_ptr<pipeline::OpenedRun> run;      // or a run directory
  const Matrix* users = nullptr;
  const Matrix* items = nullptr;
  const data::IdMap* user_ids = nullptr;
  const data::IdMap* item_ids = nullptr;
  const data::Csr* seen = nullptr;              // training items per user (values unused)
  const index::ItemIndex* index = nullptr;      // exports only
  Metric metric = Metric::kDot;                 // what kDefault means
  models::Model* model = nullptr;               // fold-in; nullptr when the export lacks it
  std::unique_ptr<models::Model> export_model;  // owns the export's fold-in model
  data::WeightOptions weighting;
  data::Bm25Corpus corpus;  // the training set's bm25 statistics, for fold-in rows
  std::optional<SecretKey> key;                   // a pseudonymised export's key, if given
  std::unordered_set<std::string> opt_out;        // opted-out ids, as user_ids names users
  std::vector<uint8_t> opted_row;                 // per user row: 1 when opted out
  // A run's users excluded at training (run.json "excluded_users"): those of its opt-out set
  // stay opted out (they have no row) even when the file no longer lists them.
  std::shared_ptr<const data::UserExclusion> excluded_at_training;
  std::vector<int64_t> popularity;                // per item row: number of training users
  std::vector<data::index_t> by_popularity;       // item rows, most training users first
  mutable std::once_flag unit_items_once, unit_users_once, fold_in_once, explain_once;
  mutable Matrix unit_items_, unit_users_;
  /// A matrix's largest row norm (eval::topk's rounding bound), computed on first use.
  struct Norm {
    std::once_flag once;
    double value = 0;
  };
  mutable Norm items_norm_, unit_items_norm_, users_norm_, unit_users_norm_;

  // The model for fold-in or explain, prepared for that query on first use (the factors never
  // change here, and a fold-in then skips the items × k² Gram products).
  const models::Model* queried(models::Model::Query which) const {
    if (model)
      std::call_once(which == models::Model::Query::kFoldIn ? fold_in_once : explain_once,
                     [&] { model->prepare_queries(which); });
    return model;
  }

  const Matrix& unit(const Matrix& m, std::once_flag& once, Matrix& out) const {
    std::call_once(once, [&] {
      out = m;
      index::normalize_rows(out.data.data(), out.rows, static_cast<int>(out.cols));
    });
    return out;
  }
  const Matrix& unit_items() const { return unit(*items, unit_items_once, unit_items_); }
  const Matrix& unit_users() const { return unit(*users, unit_users_once, unit_users_); }

  static double max_norm(const Matrix& m, Norm& n) {
    std::call_once(n.once, [&] {
      n.value = eval::max_row_norm(m.data.data(), m.rows, static_cast<int>(m.cols));
    });
    return n.value;
  }

  const char* kind() const { return artifact ? "export" : "run"; }

  Metric resolve(Metric m) const { return m == Metric::kDefault ? metric : m; }

  /// Item rows of trimmed ids, unknown ones reported under `field`.
  std::vector<data::index_t> item_rows(const std::vector<std::string>& ids, const char* field,
                                       std::vector<Unknown>* unknown) const {
    std::vector<data::index_t> rows;
    for (const std::string& raw : ids) {
      const std::string id = trim(raw);
      if (const auto i = item_ids->find(id))
        rows.push_back(*i);
      else if (unknown)
        unknown->push_back({id, field});
    }
    return rows;
  }

  /// The list length: k, at most `available`.
  static int list_length(int k, int64_t available) {
    if (k < 1) fail("the list length k is {}; expected an integer of at least 1", k);
    return static_cast<int>(std::min<int64_t>(k, std::max<int64_t>(available, 0)));
  }

  /// The sorted items masked for everyone: `exclude`, and everything outside `candidates`.
  std::vector<data::index_t> global_mask(const Options& o, std::vector<Unknown>* unknown) const {
    std::vector<data::index_t> mask = item_rows(o.exclude, "exclude", unknown);
    if (o.candidates) {
      std::vector<data::index_t> keep = item_rows(*o.candidates, "candidates", unknown);
      if (keep.empty())
        fail("{}: none of the {} candidate items is in this {}; expected item ids of its "
             "training data",
             path, o.candidates->size(), kind());
      std::vector<uint8_t> in(static_cast<size_t>(items->rows), 0);
      for (data::index_t i : keep) in[static_cast<size_t>(i)] = 1;
      for (data::index_t i = 0; i < items->rows; ++i)
        if (!in[static_cast<size_t>(i)]) mask.push_back(i);
    }
    std::sort(mask.begin(), mask.end());
    mask.erase(std::unique(mask.begin(), mask.end()), mask.end());
    return mask;
  }

  /// Says (once per process: a server would say it for every request) that `short_lists` of
  /// `n` lists came back shorter than k because the index returned fewer candidates than asked.
  void warn_short_lists(int64_t short_lists, int64_t n, int k) const {
    static std::atomic<bool> said{false};
    if (said.exchange(true)) return;
    const nlohmann::json d = index->describe();
    const std::string type = d.value("type", std::string("ANN"));
    const std::string fix =
        d.contains("nprobe")
            ? fmt::format(" (an IVF search finds only the items of the {} of its {} cells it "
                          "probes); raise index.nprobe (export --set index.nprobe=N) or ask for "
                          "exact scores (--exact)",
                          d["nprobe"].get<int64_t>(), d["nlist"].get<int64_t>())
            : "; ask for exact scores (--exact) for full lists";
    log().warn("{}: {} of {} lists hold fewer than k = {} items: the {} index returned fewer "
               "candidates than asked{} (said once)",
               path, short_lists, n, k, type, fix);
  }

  /// Top-k of `n` queries over the items: through the index when allowed (an export, !exact,
  /// no candidate subset, the index's metric), else exactly by `by`.
  eval::TopK score_items(const float* q, int64_t n, Metric by, int k, const data::Csr* mask,
                         const std::vector<data::index_t>& rows,
                         const std::vector<data::index_t>& global, bool exact,
                         bool* used_exact) const {
    const int d = static_cast<int>(items->cols);
    const bool cosine = by == Metric::kCosine;
    const bool index_fits =
        index && (index->metric() == index::Metric::kCosine) == cosine;
    if (used_exact) *used_exact = exact || !index_fits;
    if (n == 0) {
      eval::TopK empty;
      empty.k = k;
      return empty;
    }
    if (!exact && index_fits) {
      const index::SearchFn search = [this](const float* x, int64_t m, int kk, float* s,
                                            int64_t* l) { index->search(x, m, kk, s, l); };
      index::FilterStats stats;
      eval::TopK top =
          index::search_filtered(search, q, n, d, items->rows, k, mask, rows, &global, &stats);
      if (stats.short_lists > 0) warn_short_lists(stats.short_lists, n, k);
      return top;
    }
    if (!cosine)
      return eval::topk(q, n, items->data.data(), items->rows, d, k, mask, rows, &global,
                        max_norm(*items, items_norm_));
    std::vector<float> unit_q(q, q + n * d);
    index::normalize_rows(unit_q.data(), n, d);
    return eval::topk(unit_q.data(), n, unit_items().data.data(), items->rows, d, k, mask, rows,
                      &global, max_norm(unit_items(), unit_items_norm_));
  }

  /// A user of a request: their row (none for one opted out at training time) and whether
  /// they opted out; neither = unknown.
  struct Who {
    std::optional<data::index_t> row;
    bool opted_out = false;
    bool known() const { return row || opted_out; }
  };

  /// Resolves a trimmed id: exact match first, else (with the key) its pseudonym.
  Who resolve_user(const std::string& id) const {
    Who w;
    w.row = user_ids->find(id);
    w.opted_out = opt_out.count(id) > 0;
    if (!w.known() && key) {
      const std::string p = key->pseudonym(id);
      w.row = user_ids->find(p);
      w.opted_out = opt_out.count(p) > 0;
    }
    if (!w.known() && excluded_at_training &&
        excluded_at_training->in(data::UserExclusion::Set::kOptOut,
                                 excluded_at_training->hash(id)))
      w.opted_out = true;
    if (w.row && opted_row[static_cast<size_t>(*w.row)]) w.opted_out = true;
    return w;
  }

  /// What to add to "user X is not in this export" when its user ids are pseudonyms.
  std::string pseudonym_hint() const {
    if (!artifact || artifact->key_check.empty() || key) return "";
    return " (its user ids are pseudonymised: give the pseudonym, or the raw id with the key "
           "it was exported with, e.g. --pseudonym-key-file)";
  }

  /// Fills the opt-out tables from the opted-out ids and the training items per user.
  void index_opt_out_and_popularity() {
    opted_row.assign(static_cast<size_t>(user_ids->size()), 0);
    for (const std::string& id : opt_out)
      if (const auto u = user_ids->find(id)) opted_row[static_cast<size_t>(*u)] = 1;
    popularity.assign(static_cast<size_t>(seen->cols), 0);
    for (data::index_t i : seen->indices) ++popularity[static_cast<size_t>(i)];
    by_popularity.resize(popularity.size());
    std::iota(by_popularity.begin(), by_popularity.end(), 0);
    std::stable_sort(by_popularity.begin(), by_popularity.end(),
                     [&](data::index_t a, data::index_t b) {
                       return popularity[static_cast<size_t>(a)] > popularity[static_cast<size_t>(b)];
                     });
  }

  /// The popularity list of an opted-out user: the k most popular items not in `global`
  /// (sorted) nor, unless include_seen, in the training items of `row` (when they have one).
  List popularity_list(const std::string& query, std::optional<data::index_t> row, int k,
                       const std::vector<data::index_t>& global, bool include_seen) const {
    List l;
    l.query = query;
    l.personalised = false;
    std::vector<data::index_t> own;
    if (row && !include_seen)
      own.assign(seen->indices.begin() + seen->indptr[static_cast<size_t>(*row)],
                 seen->indices.begin() + seen->indptr[static_cast<size_t>(*row) + 1]);
    for (data::index_t i : by_popularity) {
      if (static_cast<int>(l.items.size()) >= k) break;
      if (std::binary_search(global.begin(), global.end(), i) ||
          std::binary_search(own.begin(), own.end(), i))
        continue;
      l.items.push_back(
          {item_ids->external(i), i, static_cast<float>(popularity[static_cast<size_t>(i)])});
    }
    return l;
  }

  /// Top-k of user rows (their training items masked unless include_seen), scored as
  /// recommend scores them.
  eval::TopK rows_topk(const std::vector<data::index_t>& rows, const Options& o, int k,
                       const std::vector<data::index_t>& global, bool* exact) const {
    const int d = static_cast<int>(users->cols);
    std::vector<float> q(rows.size() * static_cast<size_t>(d));
    for (size_t i = 0; i < rows.size(); ++i)
      std::copy_n(users->row(rows[i]), d, q.data() + i * static_cast<size_t>(d));
    return score_items(q.data(), static_cast<int64_t>(rows.size()), metric, k,
                       o.include_seen ? nullptr : seen, rows, global,
                       o.exact || o.candidates.has_value(), exact);
  }

  /// A TopK's row q as a List.
  List to_list(const eval::TopK& top, int64_t q, const std::string& query,
               const data::IdMap& ids) const {
    List l;
    l.query = query;
    for (int j = 0; j < top.k; ++j) {
      const data::index_t i = top.item(q, j);
      if (i < 0) break;
      l.items.push_back({ids.external(i), i, top.score(q, j)});
    }
    return l;
  }
};

Recommender::Recommender(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Recommender::Recommender(Recommender&&) noexcept = default;
Recommender& Recommender::operator=(Recommender&&) noexcept = default;
Recommender::~Recommender() = default;

Recommender Recommender::open(const std::string& path, const std::string& verb) {
  OpenOptions o;
  o.verb = verb;
  return open(path, o);
}

Recommender Recommender::open(const std::string& path, const OpenOptions& opts) {
  const std::string& verb = opts.verb;
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.path = path;
  if (artifact::is_artifact(path)) {
    m.artifact = std::make_unique<artifact::Artifact>(artifact::load(path));
    artifact::Artifact& a = *m.artifact;
    m.users = &a.users;
    m.user_ids = &a.user_ids;
    m.item_ids = &a.item_ids;
    m.seen = &a.seen;
    m.index = &a.index;
    if (a.index.type() == index::Type::kFlat && a.metric == index::Metric::kInnerProduct) {
      // A flat inner-product index is a copy of the item factors, so the exact top-k over those
      // gives its answers; it is also much faster for the small batches of a server, which
      // Faiss scans one query at a time (below 20 queries: 10 ms per user at 41k items × 256
      // dimensions, against 0.3 ms in a GEMM). The index was verified by the load; its copy of
      // the vectors is freed, so a replica holds only the shared, mapped factors.
      a.index = index::ItemIndex();
      m.index = nullptr;
    }
    m.metric = a.metric == index::Metric::kCosine ? Metric::kCosine : Metric::kDot;
    const auto fold = a.manifest.find("fold_in");
    if (fold != a.manifest.end() && !fold->is_null() && fold->contains("train_weight_total")) {
      // The model holds the item factors; the artifact keeps none of its own.
      FoldInSetup s = fold_in_setup(*fold, std::move(a.items), path + "/manifest.json");
      a.items = Matrix();
      m.export_model = std::move(s.model);
      m.weighting = s.weighting;
      m.model = m.export_model.get();
      // bm25's statistics of the training set: its users, each item's interactions (the seen
      // lists are the training interactions) and the total raw weight.
      m.corpus.users = a.users.rows;
      m.corpus.item_counts.assign(static_cast<size_t>(a.seen.cols), 0);
      for (data::index_t i : a.seen.indices) ++m.corpus.item_counts[static_cast<size_t>(i)];
      // The seen lists are the training interactions: iALS's per-item unobserved weights
      // (model.unobserved_exp) come from the same counts as in training.
      m.export_model->set_item_counts(m.corpus.item_counts);
      const nlohmann::json& total = (*fold)["train_weight_total"];
      if (!total.is_number())
        fail("{}/manifest.json: fold_in.train_weight_total is {}; expected a number", path,
             total.dump());
      m.corpus.total_weight = total.get<double>();
      m.items = &m.model->item_factors();
    } else {
      m.items = &a.items;
    }
    m.opt_out.insert(a.opt_out.begin(), a.opt_out.end());
    if (opts.pseudonym_key) {
      if (a.key_check.empty())
        fail("{}: {} is not pseudonymised (its user ids are raw, manifest.json has no "
             "user_ids.key_check); give user ids without a key",
             opts.key_where, path);
      if (opts.pseudonym_key->check_value() != a.key_check)
        fail("{}: the key is not the one {} was pseudonymised with (its check value differs from "
             "manifest.json user_ids.key_check); give the key of export.pseudonym_key_file or "
             "export.pseudonym_key_env at export time",
             opts.key_where, path);
      m.key = opts.pseudonym_key;
    }
  } else {
    // A key with a path that is not a run directory: open_run's sentence (no such directory,
    // not a run) says what is wrong with the path.
    if (opts.pseudonym_key && is_run_directory(path))
      fail("{}: {} is a run directory, whose user ids are raw; a pseudonymisation key is for "
           "pseudonymised exports only",
           opts.key_where, path);
    m.run = std::make_unique<pipeline::OpenedRun>(pipeline::open_run(path, verb));
    pipeline::OpenedRun& r = *m.run;
    m.model = r.model.get();
    m.users = &r.model->user_factors();
    m.items = &r.model->item_factors();
    m.user_ids = &r.data.users;
    m.item_ids = &r.data.items;
    m.seen = &r.data.user_items;
    m.weighting = r.data.weighting;
    m.corpus = data::bm25_corpus(r.data.split.train, r.data.users.size(), r.data.items.size());
    m.metric = Metric::kDot;
    // Opted out now: the file the run's config names, read as it is today (it may have gained
    // users since training).
    const std::vector<std::string> ids = pipeline::opt_out_ids(r.config);
    m.opt_out.insert(ids.begin(), ids.end());
    if (r.data.excluded)
      m.excluded_at_training = std::make_shared<const data::UserExclusion>(*r.data.excluded);
  }
  m.index_opt_out_and_popularity();
  return Recommender(std::move(impl));
}

const std::string& Recommender::path() const { return impl_->path; }
bool Recommender::is_export() const { return impl_->artifact != nullptr; }
const nlohmann::json* Recommender::manifest() const {
  return impl_->artifact ? &impl_->artifact->manifest : nullptr;
}
const std::vector<Digest>& Recommender::chain_users() const {
  static const std::vector<Digest> none;
  return impl_->artifact ? impl_->artifact->chain_users : none;
}
const std::string& Recommender::chain_salt() const {
  static const std::string none;
  return impl_->artifact ? impl_->artifact->chain_salt : none;
}
const std::vector<std::string>& Recommender::chain_key_checks() const {
  static const std::vector<std::string> none;
  return impl_->artifact ? impl_->artifact->chain_key_checks : none;
}
const SecretKey* Recommender::pseudonym_key() const {
  return impl_->key ? &*impl_->key : nullptr;
}
Metric Recommender::default_metric() const { return impl_->metric; }
const data::IdMap& Recommender::user_ids() const { return *impl_->user_ids; }
const data::IdMap& Recommender::item_ids() const { return *impl_->item_ids; }
const Matrix& Recommender::user_factors() const { return *impl_->users; }
const Matrix& Recommender::item_factors() const { return *impl_->items; }
bool Recommender::can_fold_in() const { return impl_->model != nullptr; }
void Recommender::prepare() const {
  const Impl& m = *impl_;
  // Exact scoring by the default metric: what requests use when no index answers them (an
  // index's metric is the export's default metric). Not for an index: its exports would pay
  // for a norm, or a unit copy of every item for cosine, that requests rarely need.
  if (!m.index) {
    if (m.metric == Metric::kCosine)
      Impl::max_norm(m.unit_items(), m.unit_items_norm_);
    else
      Impl::max_norm(*m.items, m.items_norm_);
  }
  m.queried(models::Model::Query::kFoldIn);
}
bool Recommender::knows_user(const std::string& id) const {
  return impl_->resolve_user(trim(id)).known();
}
std::optional<data::index_t> Recommender::user_row(const std::string& id) const {
  return impl_->resolve_user(trim(id)).row;
}
bool Recommender::opted_out(const std::string& id) const {
  return impl_->resolve_user(trim(id)).opted_out;
}
std::string Recommender::pseudonym_hint() const { return impl_->pseudonym_hint(); }
bool Recommender::row_opted_out(data::index_t row) const {
  return impl_->opted_row.at(static_cast<size_t>(row)) != 0;
}
size_t Recommender::opt_out_size() const { return impl_->opt_out.size(); }
const models::Model* Recommender::model() const {
  return impl_->queried(models::Model::Query::kExplain);
}
const data::Csr& Recommender::seen() const { return *impl_->seen; }
const pipeline::OpenedRun* Recommender::run() const { return impl_->run.get(); }

eval::TopK Recommender::recommend_rows(const std::vector<data::index_t>& rows_in,
                                       const Options& o, std::vector<Unknown>* unknown,
                                       bool* exact) const {
  const Impl& m = *impl_;
  const int k = Impl::list_length(o.k, m.items->rows);
  const std::vector<data::index_t> global = m.global_mask(o, unknown);
  std::vector<data::index_t> rows = rows_in;
  if (rows.empty()) {
    rows.resize(static_cast<size_t>(m.users->rows));
    for (size_t u = 0; u < rows.size(); ++u) rows[u] = static_cast<data::index_t>(u);
  }
  eval::TopK top = m.rows_topk(rows, o, k, global, exact);
  // Opted-out users: their row holds the popularity list instead.
  for (size_t q = 0; q < rows.size(); ++q) {
    if (!m.opted_row[static_cast<size_t>(rows[q])]) continue;
    const List l = m.popularity_list("", rows[q], top.k, global, o.include_seen);
    const size_t at = q * static_cast<size_t>(top.k);
    for (int j = 0; j < top.k; ++j) {
      const bool has = j < static_cast<int>(l.items.size());
      top.items[at + static_cast<size_t>(j)] = has ? l.items[static_cast<size_t>(j)].row : -1;
      top.scores[at + static_cast<size_t>(j)] =
          has ? l.items[static_cast<size_t>(j)].score : -std::numeric_limits<float>::infinity();
    }
  }
  return top;
}

Result Recommender::recommend(const std::vector<std::string>& users, const Options& o) const {
  const Impl& m = *impl_;
  Result res;
  std::vector<Impl::Who> who;
  std::vector<std::string> names;
  std::vector<data::index_t> rows;  // of the users answered personally
  for (const std::string& raw : users) {
    const std::string id = trim(raw);
    const Impl::Who w = m.resolve_user(id);
    if (w.known()) {
      who.push_back(w);
      names.push_back(id);
      if (!w.opted_out) rows.push_back(*w.row);
    } else {
      res.unknown.push_back({id, "users"});
    }
  }
  if (who.empty()) {
    if (users.size() == 1)
      fail("{}: user \"{}\" is not in this {}; expected a user id of its training data{}", m.path,
           trim(users[0]), m.kind(), m.pseudonym_hint());
    fail("{}: none of the {} users asked for is in this {}; expected user ids of its training "
         "data{}",
         m.path, users.size(), m.kind(), m.pseudonym_hint());
  }
  const int k = Impl::list_length(o.k, m.items->rows);
  const std::vector<data::index_t> global = m.global_mask(o, &res.unknown);
  res.k = k;
  res.exact = true;
  eval::TopK top;
  if (!rows.empty()) top = m.rows_topk(rows, o, k, global, &res.exact);
  // In request order: personal lists from the TopK, popularity lists for opted-out users.
  int64_t q = 0;
  for (size_t n = 0; n < who.size(); ++n) {
    if (who[n].opted_out)
      res.lists.push_back(m.popularity_list(names[n], who[n].row, k, global, o.include_seen));
    else
      res.lists.push_back(m.to_list(top, q++, names[n], *m.item_ids));
  }
  return res;
}

Matrix Recommender::fold_in(const std::vector<std::string>& items,
                            const std::vector<float>& weights, std::vector<Unknown>* unknown,
                            std::vector<data::index_t>* seen) const {
  const Impl& m = *impl_;
  if (!m.model)
    fail("{}: this export predates fold-in support (its manifest.json has no \"fold_in\" "
         "section with the model's hyperparameters); export the run again with this recforge",
         m.path);
  if (!weights.empty() && weights.size() != items.size())
    fail("fold-in: {} weights for {} items; expected one weight per item", weights.size(),
         items.size());
  data::Interactions x;
  for (size_t j = 0; j < items.size(); ++j) {
    const float w = weights.empty() ? 1.f : weights[j];
    if (!std::isfinite(w) || w < 0)
      fail("fold-in: the weight of item \"{}\" is {}; expected a finite weight >= 0",
           trim(items[j]), w);
    const std::string id = trim(items[j]);
    if (const auto i = m.item_ids->find(id))
      x.push(0, *i, w);
    else if (unknown)
      unknown->push_back({id, "items"});
  }
  if (x.size() == 0) {
    if (items.size() == 1)
      fail("{}: item \"{}\" is not in this {}; expected item ids of its training data to fold "
           "in",
           m.path, trim(items[0]), m.kind());
    fail("{}: none of the {} items given to fold in is in this {}; expected item ids of its "
         "training data",
         m.path, items.size(), m.kind());
  }
  data::combine_duplicates(x, 1, data::Duplicates::kMax);  // an item listed twice counts once
  const int64_t n_items = m.items->rows;
  const std::vector<float> conf = data::confidence(x, 1, n_items, m.weighting, m.corpus);
  // A weight near float's limit can overflow the model's confidence (alpha·w); the solve then
  // gave zero or NaN factors and the answer was arbitrary items with score 0.
  for (size_t j = 0; j < conf.size(); ++j)
    if (!std::isfinite(conf[j]))
      fail("fold-in: the weight {} of item \"{}\" gives a non-finite confidence under this {}'s "
           "weighting; expected a smaller weight",
           x.weights[j], m.item_ids->external(x.items[j]), m.kind());
  const data::Csr row = data::Csr::from_interactions(1, n_items, x, conf);
  if (seen) seen->assign(row.indices.begin(), row.indices.end());
  return m.queried(models::Model::Query::kFoldIn)->fold_in(row);  // refuses a solve that broke down (Model::fold_in)
}

Result Recommender::recommend_new_user(const std::vector<std::string>& items,
                                       const std::vector<float>& weights,
                                       const Options& o) const {
  std::vector<Unknown> unknown;
  FoldedUser user;
  const Matrix q = fold_in(items, weights, &unknown, &user.given);
  user.factors.assign(q.data.begin(), q.data.end());
  Result res = recommend_folded({user}, o);
  res.unknown.insert(res.unknown.begin(), unknown.begin(), unknown.end());  // the items first
  return res;
}

Result Recommender::recommend_folded(const std::vector<FoldedUser>& users,
                                     const Options& o) const {
  const Impl& m = *impl_;
  const int64_t d = m.items->cols, n_items = m.items->rows;
  Result res;
  const int k = Impl::list_length(o.k, n_items);
  const std::vector<data::index_t> global = m.global_mask(o, &res.unknown);
  std::vector<float> q;
  q.reserve(users.size() * static_cast<size_t>(d));
  data::Csr mask;  // the given items, masked unless include_seen
  mask.rows = static_cast<int64_t>(users.size());
  mask.cols = n_items;
  mask.indptr = {0};
  for (size_t u = 0; u < users.size(); ++u) {
    const FoldedUser& f = users[u];
    if (static_cast<int64_t>(f.factors.size()) != d)
      fail("recommend: folded-in user {} has {} factors; expected {}, this {}'s dimension", u,
           f.factors.size(), d, m.kind());
    for (size_t j = 0; j < f.given.size(); ++j)
      if (f.given[j] < 0 || f.given[j] >= n_items || (j > 0 && f.given[j] <= f.given[j - 1]))
        fail("recommend: folded-in user {} gives item row {} at position {}; expected sorted "
             "distinct item rows from 0 to {}",
             u, f.given[j], j, n_items - 1);
    q.insert(q.end(), f.factors.begin(), f.factors.end());
    mask.indices.insert(mask.indices.end(), f.given.begin(), f.given.end());
    mask.indptr.push_back(static_cast<data::offset_t>(mask.indices.size()));
  }
  mask.data.assign(mask.indices.size(), 1.f);
  const int64_t n = static_cast<int64_t>(users.size());
  const eval::TopK top =
      m.score_items(q.data(), n, m.metric, k, o.include_seen ? nullptr : &mask, {}, global,
                    o.exact || o.candidates.has_value(), &res.exact);
  res.k = top.k;
  for (int64_t u = 0; u < n; ++u) res.lists.push_back(m.to_list(top, u, "", *m.item_ids));
  return res;
}

Result Recommender::similar_items(const std::string& item, int k,
                                  const SimilarOptions& o) const {
  return similar_items_batch({item}, k, o);
}

Result Recommender::similar_items_batch(const std::vector<std::string>& items_raw, int k,
                                        const SimilarOptions& o) const {
  const Impl& m = *impl_;
  std::vector<std::string> items;
  std::vector<data::index_t> rows;
  for (const std::string& raw : items_raw) {
    items.push_back(trim(raw));
    const auto i = m.item_ids->find(items.back());
    if (!i)
      fail("{}: item \"{}\" is not in this {}; expected an item id of its training data", m.path,
           items.back(), m.kind());
    rows.push_back(*i);
  }
  Result res;
  res.k = Impl::list_length(k, m.items->rows - 1);
  if (res.k == 0 || items.empty()) {
    for (const std::string& item : items) res.lists.push_back({item, {}});
    return res;
  }
  // The queries are the items' own rows; each excludes itself (row j of the mask), so an
  // item's list does not depend on the others in the call.
  const int64_t n = static_cast<int64_t>(rows.size());
  const int d = static_cast<int>(m.items->cols);
  std::vector<float> q(static_cast<size_t>(n * d));
  data::Csr self;
  self.rows = n;
  self.cols = m.items->rows;
  self.indptr.push_back(0);
  for (int64_t j = 0; j < n; ++j) {
    std::copy_n(m.items->row(rows[static_cast<size_t>(j)]), d, q.data() + j * d);
    self.indices.push_back(rows[static_cast<size_t>(j)]);
    self.data.push_back(1.f);
    self.indptr.push_back(j + 1);
  }
  const eval::TopK top = m.score_items(q.data(), n, m.resolve(o.metric), res.k, &self, {}, {},
                                       o.exact, &res.exact);
  for (int64_t j = 0; j < n; ++j)
    res.lists.push_back(m.to_list(top, j, items[static_cast<size_t>(j)], *m.item_ids));
  return res;
}

Result Recommender::similar_users(const std::string& user_raw, int k,
                                  const SimilarOptions& o) const {
  const Impl& m = *impl_;
  const std::string user = trim(user_raw);
  const Impl::Who w = m.resolve_user(user);
  if (!w.known())
    fail("{}: user \"{}\" is not in this {}; expected a user id of its training data{}", m.path,
         user, m.kind(), m.pseudonym_hint());
  Result res;
  res.k = Impl::list_length(k, m.users->rows - 1);
  res.exact = true;
  if (w.opted_out) {  // their factors are not used to personalise anything
    res.lists.push_back({user, {}, false});
    return res;
  }
  if (res.k == 0) {
    res.lists.push_back({user, {}});
    return res;
  }
  const std::optional<data::index_t> u = w.row;
  std::vector<data::index_t> self{*u};  // itself and every opted-out user
  for (size_t r = 0; r < m.opted_row.size(); ++r)
    if (m.opted_row[r]) self.push_back(static_cast<data::index_t>(r));
  std::sort(self.begin(), self.end());
  const int d = static_cast<int>(m.users->cols);
  const bool cosine = m.resolve(o.metric) == Metric::kCosine;
  const Matrix& users = cosine ? m.unit_users() : *m.users;
  const eval::TopK top =
      eval::topk(users.row(*u), 1, users.data.data(), users.rows, d, res.k, nullptr, {}, &self,
                 Impl::max_norm(users, cosine ? m.unit_users_norm_ : m.users_norm_));
  res.lists.push_back(m.to_list(top, 0, user, *m.user_ids));
  return res;
}

}  // namespace recforge::recommend
