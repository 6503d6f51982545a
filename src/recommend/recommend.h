#pragma once
/// @file recommend.h
/// The query engine behind every front end (the CLI's recommend and similar verbs, the HTTP
/// server, the Python package): a Recommender opens a run directory (pipeline::open_run) or an
/// export (artifact::load) once and answers queries from it.
///
/// Every query method is const and safe to call from many threads at once on one Recommender:
/// nothing is cached lazily except the unit-length copies of the factors that cosine scoring
/// needs, which are built once under std::call_once. Searches go to the export's Faiss index on
/// the CPU (concurrent const searches of a CPU Faiss index are safe); fold-in runs the model's
/// own solve on the CPU (models::Model::fold_in is const).
///
/// Ids in a request are trimmed of surrounding spaces. Unknown ids are skipped and reported in
/// Result::unknown with the field they came from; a request with nothing answerable (no known
/// query id, no known fold-in item, no known candidate) throws recforge::Error with one sentence.
///
/// Users who opted out of personalisation (an export's opt_out.txt; for a run directory, the
/// file its config names in privacy.opt_out, read at open) are answered with the popularity of
/// the training data: items by their number of training users, the request's filters applied as
/// usual, score = that count, List::personalised false. They need no row (a user opted out at
/// training time has none). similar_users never returns them.
///
/// A user id is resolved by exact match first; when the Recommender was given the key of a
/// pseudonymised export (OpenOptions::pseudonym_key), else by its pseudonym HMAC-SHA256(key,
/// id). Lists name users as the caller gave them.

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/npy.h"
#include "core/secret.h"
#include "data/csr.h"
#include "data/interactions.h"
#include "eval/topk.h"

namespace recforge::models {
class Model;
}  // namespace recforge::models
namespace recforge::pipeline {
struct OpenedRun;
}  // namespace recforge::pipeline

namespace recforge::recommend {

/// How scores are computed.
enum class Metric {
  kDefault,  ///< the source's own: an export's manifest metric, the model's score (dot) for runs
  kDot,      ///< the inner product (the model's score)
  kCosine,   ///< the cosine of the two vectors
};

/// "default", "dot", "cosine".
const char* metric_name(Metric m);

/// An id of a request that the source does not know, and the request field it came from:
/// "users", "items" (fold-in), "exclude", "candidates", "item" or "user" (similar).
struct Unknown {
  std::string id;
  std::string field;
};

/// One entry of a list.
struct Scored {
  std::string id;           ///< external item (or user) id
  data::index_t row = -1;   ///< its row in the factors
  float score = 0;          ///< the score by the metric used
};

/// The answer for one query.
struct List {
  std::string query;          ///< the user (or item) asked about; "" for a folded-in new user
  std::vector<Scored> items;  ///< best first; shorter than k when fewer are eligible
  /// False for a user who opted out of personalisation: `items` are then the most popular
  /// training items, scored by their number of training users.
  bool personalised = true;
};

/// The answer to a request.
struct Result {
  std::vector<List> lists;       ///< one per known query id, in request order
  std::vector<Unknown> unknown;  ///< ids skipped, in request order
  int k = 0;                     ///< the list length asked for, clamped to what exists
  bool exact = true;             ///< false when the Faiss index was searched
};

/// Options of recommend and fold-in requests.
struct Options {
  int k = 10;                            ///< list length (>= 1; clamped to the number of items)
  std::vector<std::string> exclude;      ///< item ids never to return
  /// When set, only these items may be returned (implicit's `items`); scored exactly.
  std::optional<std::vector<std::string>> candidates;
  bool include_seen = false;             ///< also return the user's training (or given) items
  bool exact = false;                    ///< exports: score every item instead of the index
};

/// A new user folded in (Recommender::fold_in): their factors and the item rows they gave.
struct FoldedUser {
  std::vector<float> factors;          ///< the 1 × dim row fold_in returned
  std::vector<data::index_t> given;    ///< fold_in's `seen` (sorted item rows), masked unless include_seen
};

/// Options of similar_items and similar_users.
struct SimilarOptions {
  Metric metric = Metric::kDefault;  ///< dot, cosine, or the source's own
  bool exact = false;                ///< items of exports: score all instead of the index
};

/// How to open a source.
struct OpenOptions {
  /// Names the caller's purpose for the error when a run has no model ("recommend from").
  std::string verb = "recommend from";
  /// The key of a pseudonymised export, so that callers may give raw user ids. Refused at open
  /// when its check value differs from the manifest's user_ids.key_check, and for sources
  /// whose user ids are raw.
  std::optional<SecretKey> pseudonym_key;
  /// Where the key came from, for those errors ("--pseudonym-key-file").
  std::string key_where = "pseudonym key";
};

/// An opened run directory or export, ready to answer queries.
class Recommender {
 public:
  /// The same with OpenOptions (a pseudonymisation key).
  static Recommender open(const std::string& path, const OpenOptions& o);
  /// Opens `path`: an export when it holds manifest.json or `current` (artifact::load), else a
  /// run directory (pipeline::open_run, which re-prepares its data). `verb` names the caller's
  /// purpose for the error when a run has no model ("recommend from"). Throws recforge::Error.
  static Recommender open(const std::string& path, const std::string& verb = "recommend from");
  Recommender(Recommender&&) noexcept;
  Recommender& operator=(Recommender&&) noexcept;
  ~Recommender();

  /// The path given to open().
  const std::string& path() const;
  /// Whether it is an export (else a run directory).
  bool is_export() const;
  /// An export's manifest.json as loaded at open (of the version `current` named then);
  /// nullptr for a run directory.
  const nlohmann::json* manifest() const;
  /// An export's users that earlier models of its chain of warm starts were trained on
  /// (pipeline::ChainUsers: its chain_users.txt hashes, the manifest's salt and key checks)
  /// and the key it was opened with; empty lists and nullptr for a run directory or an export
  /// without them.
  const std::vector<Digest>& chain_users() const;
  const std::string& chain_salt() const;
  const std::vector<std::string>& chain_key_checks() const;
  const SecretKey* pseudonym_key() const;
  /// The metric of kDefault for recommend: an export's manifest metric, dot for runs.
  Metric default_metric() const;
  /// Raw ids by row.
  const data::IdMap& user_ids() const;
  const data::IdMap& item_ids() const;
  /// Factor matrices (users × dim, items × dim).
  const Matrix& user_factors() const;
  const Matrix& item_factors() const;
  /// Whether fold_in can run: a run directory, or an export that carries its "fold_in" section.
  bool can_fold_in() const;
  /// Computes now what the first queries would otherwise compute on their way: without an
  /// index, the largest item norm of the default metric's exact scoring (and the unit-length
  /// items for cosine); and the model's fold-in preparation (models::Model::prepare_queries,
  /// the Gram matrix of iALS).
  /// A server calls it while loading, so that no request pays for it. Safe to call from many
  /// threads, and more than once.
  void prepare() const;
  /// For explain.h: the model (nullptr for an export without "fold_in"), prepared for explain
  /// (models::Model::prepare_queries) at the first call, the training rows
  /// (values: the confidences; an export without seen_data.npy has none), and the opened run
  /// (nullptr for an export).
  const models::Model* model() const;
  const data::Csr& seen() const;
  const pipeline::OpenedRun* run() const;

  /// Whether `id` (trimmed; raw with the key, or as the source names it) can be answered: a
  /// user with a row, or one who opted out.
  bool knows_user(const std::string& id) const;
  /// The factor row of `id` (same resolution), or nullopt for an unknown user or one opted out
  /// at training time (who has no row).
  std::optional<data::index_t> user_row(const std::string& id) const;
  /// Whether `id` (same resolution) opted out of personalisation.
  bool opted_out(const std::string& id) const;
  /// What to add to "user X is not in this export" ("" or " (its user ids are pseudonymised:
  /// ...)" when they are and no key was given).
  std::string pseudonym_hint() const;
  /// Whether the user of row `row` opted out.
  bool row_opted_out(data::index_t row) const;
  /// The number of opted-out ids the source lists (rows or not).
  size_t opt_out_size() const;

  /// Top-k for each of `users` (one GEMM over the batch, or one batched index search), each
  /// user's training items masked unless include_seen, `exclude` masked for all, only
  /// `candidates` eligible when given (then scored exactly).
  Result recommend(const std::vector<std::string>& users, const Options& o) const;

  /// The same for user rows (every user when `rows` is empty), as a TopK (for large outputs:
  /// `recommend --all`); the rows of opted-out users hold the popularity list (row_opted_out).
  /// Unknown exclude/candidate ids are appended to `unknown`.
  eval::TopK recommend_rows(const std::vector<data::index_t>& rows, const Options& o,
                            std::vector<Unknown>* unknown, bool* exact = nullptr) const;

  /// A new user's factors from their items, by the model's own solve (models::Model::fold_in)
  /// on confidences computed as in training (data::confidence with the run's weighting).
  /// `weights` are raw interaction weights (finite, >= 0), one per item, or empty for 1 each;
  /// an item listed twice counts once, with its largest weight. Returns a 1 × dim matrix; the
  /// item rows used (sorted) go to `seen` when given.
  Matrix fold_in(const std::vector<std::string>& items, const std::vector<float>& weights,
                 std::vector<Unknown>* unknown, std::vector<data::index_t>* seen = nullptr) const;

  /// Top-k for a new user folded in from `items` (and `weights`); the given items are masked
  /// unless include_seen. Scored like recommend (index for exports unless exact): fold_in, then
  /// recommend_folded for the one user.
  Result recommend_new_user(const std::vector<std::string>& items,
                            const std::vector<float>& weights, const Options& o) const;

  /// Top-k for new users already folded in, one list per user in order, scored in one call as
  /// recommend scores a batch (one GEMM, or one batched index search): with exact scoring each
  /// list is the one the user gets alone. Throws recforge::Error for factors of another
  /// dimension or given rows that are not sorted item rows.
  Result recommend_folded(const std::vector<FoldedUser>& users, const Options& o) const;

  /// The k items most similar to `item` (itself excluded) by dot or cosine, through the
  /// export's index when its metric is the one asked for and !exact, else exactly.
  Result similar_items(const std::string& item, int k, const SimilarOptions& o = {}) const;
  /// similar_items of several items in one call (one GEMM over their factor rows, or one
  /// batched index search): a Result with one list per item, in order, each equal to what
  /// similar_items gives that item alone. Throws recforge::Error naming the first unknown item.
  Result similar_items_batch(const std::vector<std::string>& items, int k,
                             const SimilarOptions& o = {}) const;

  /// The k users most similar to `user` (itself and opted-out users excluded), exactly over the
  /// user factors; for an opted-out `user`, an empty list with personalised false.
  Result similar_users(const std::string& user, int k, const SimilarOptions& o = {}) const;

  struct Impl;

 private:
  explicit Recommender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// `s` without leading and trailing spaces and tabs.
std::string trim(const std::string& s);

}  // namespace recforge::recommend
