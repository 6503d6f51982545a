#include "pipeline/evaluate.h"

#include <fmt/ranges.h>

#include <algorithm>

#include <cmath>

#include "eval/topk_cuda.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "data/weight.h"

namespace recforge::pipeline {

const char* part_name(Part p) { return p == Part::kTest ? "test" : "validation"; }

std::vector<int> eval_ks(const config::Config& cfg) {
  std::vector<int> ks;
  for (int64_t k : cfg.settings().eval.ks) ks.push_back(static_cast<int>(k));
  return ks;
}

std::string users_scored(const eval::Metrics& m) {
  if (m.sampled_from > 0) return fmt::format("{} of {} users, a sample", m.users, m.sampled_from);
  return fmt::format("{} users", m.users);
}

namespace {

// CSR of an interaction set with all values 1 (membership only).
data::Csr membership(int64_t n_users, int64_t n_items, const data::Interactions& x) {
  return data::Csr::from_interactions(n_users, n_items, x, std::vector<float>(x.size(), 1.f));
}

// Concatenation of two interaction sets (users/items/weights only).
data::Interactions concat(const data::Interactions& a, const data::Interactions& b) {
  data::Interactions out;
  out.reserve(a.size() + b.size(), false);
  for (data::offset_t k = 0; k < a.size(); ++k) out.push(a.users[k], a.items[k], a.weights[k]);
  for (data::offset_t k = 0; k < b.size(); ++k) out.push(b.users[k], b.items[k], b.weights[k]);
  return out;
}

// The held-out interactions of `part`, and the fold-in interactions of its held-out users (empty
// unless split.method is users).
const data::Interactions& held_out(const Dataset& data, Part part) {
  return part == Part::kTest ? data.split.test : data.split.validation;
}
const data::Interactions& foldin(const Dataset& data, Part part) {
  return part == Part::kTest ? data.split.test_foldin : data.split.validation_foldin;
}

// The metrics of no users (a part with nothing held out): every value 0.
eval::Metrics no_users(const std::vector<int>& ks) {
  eval::Metrics none;
  none.ks = ks;
  for (auto* v : {&none.recall, &none.precision, &none.ndcg, &none.map, &none.hit_rate, &none.coverage})
    v->assign(ks.size(), 0.0);
  return none;
}

// Top-k over all items and the metrics, where the model computes: on its GPU when it has one and
// the work fits there, else on the CPU (always with `per_user`, which the GPU metrics do not
// fill). Masks: rows `mask_rows` of `mask` (identity when empty);
// truth: rows `query_users` of `truth`.
eval::Metrics rank_and_score(const models::Model& model, const Matrix& queries, const Matrix& items,
                             int k, const data::Csr& mask, const std::vector<data::index_t>& mask_rows,
                             const std::vector<data::index_t>& query_users, const data::Csr& truth,
                             const eval::MetricsOptions& mo, eval::PerUserMetrics* per_user) {
  const int d = static_cast<int>(items.cols);
  if (const auto gpu = per_user ? nullptr : model.cuda()) {
    const int64_t need = backend::cuda::topk_memory_bytes(queries.rows, items.rows, d, k, mask.nnz(),
                                                          truth.nnz());
    const int64_t free = backend::cuda::free_memory(*gpu);
    if (k <= backend::cuda::max_topk() && need <= free)
      return backend::cuda::topk_metrics(*gpu, queries.data.data(), queries.rows, items.data.data(),
                                         items.rows, d, &mask, mask_rows, truth, query_users, mo);
    log().info("evaluation runs on the CPU: top-{} needs {:.2f} GiB of GPU memory with {:.2f} GiB "
               "free, and the GPU selection handles k up to {}",
               k, need / 1073741824.0, free / 1073741824.0, backend::cuda::max_topk());
  }
  const eval::TopK top = eval::topk(queries.data.data(), queries.rows, items.data.data(), items.rows,
                                    d, k, &mask, mask_rows);
  return eval::compute_metrics(top, query_users, truth, items.rows, mo, per_user);
}

// Ranks the users `query_users` (rows of `truth`, the part's held-out items) of `part` and scores
// them.
eval::Metrics score(const models::Model& model, const Dataset& data, Part part,
                    const std::vector<int>& ks, const std::vector<data::index_t>& query_users,
                    const data::Csr& truth, eval::PerUserMetrics* per_user = nullptr) {
  const int64_t nu = data.users.size(), ni = data.items.size();
  const data::Interactions& foldin_x = foldin(data, part);
  eval::MetricsOptions mo;
  mo.ks = ks;
  const int k = *std::max_element(ks.begin(), ks.end());
  const Matrix& items = model.item_factors();
  const int d = static_cast<int>(items.cols);

  Matrix queries;
  data::Csr mask;
  if (foldin_x.size() > 0) {
    // Held-out users: factors from their fold-in interactions, by the training solve.
    const std::vector<float> conf = data::confidence(foldin_x, nu, ni, data.weighting);
    const data::Csr foldin = data::Csr::from_interactions(nu, ni, foldin_x, conf);
    data::Csr rows;  // the query users' fold-in rows only
    rows.rows = static_cast<int64_t>(query_users.size());
    rows.cols = ni;
    rows.indptr.push_back(0);
    for (data::index_t u : query_users) {
      for (data::offset_t e = foldin.indptr[u]; e < foldin.indptr[u + 1]; ++e) {
        rows.indices.push_back(foldin.indices[e]);
        rows.data.push_back(foldin.data[e]);
      }
      rows.indptr.push_back(static_cast<data::offset_t>(rows.indices.size()));
    }
    queries = model.fold_in(rows);
    return rank_and_score(model, queries, items, k, rows, {}, query_users, truth, mo, per_user);
  }
  const Matrix& users = model.user_factors();
  if (part == Part::kTest && data.split.validation.size() > 0)
    mask = membership(nu, ni, concat(data.split.train, data.split.validation));
  const data::Csr& m = mask.indptr.empty() ? data.user_items : mask;
  if (per_user || !model.cuda()) {  // on the CPU: the query rows in chunks
    const eval::TopK top =
        eval::topk_rows(users.data.data(), query_users, items.data.data(), items.rows, d, k, &m);
    return eval::compute_metrics(top, query_users, truth, items.rows, mo, per_user);
  }
  queries.rows = static_cast<int64_t>(query_users.size());
  queries.cols = d;
  queries.data.resize(static_cast<size_t>(queries.rows * d));
  for (size_t q = 0; q < query_users.size(); ++q)
    std::copy(users.row(query_users[q]), users.row(query_users[q]) + d, queries.row(static_cast<int64_t>(q)));
  return rank_and_score(model, queries, items, k, m, query_users, query_users, truth, mo, per_user);
}

}  // namespace

bool in_validation_sample(std::string_view id, double fraction) {
  if (fraction >= 1) return true;
  // A fraction below 1 times 2^64 is below 2^64 in double (at most 2^64 - 2^11).
  const uint64_t below = static_cast<uint64_t>(std::ldexp(fraction, 64));
  // Salted, so that the sample owes nothing to any other use of the hash.
  std::string key = "recforge eval.validation_sample\x1f";
  key.append(id);
  return stable_hash64(key) < below;
}

void check_validation_sample(const config::Config& cfg, int64_t users, int64_t sampled) {
  const double fraction = cfg.settings().eval.validation_sample;
  if (fraction >= 1 || users == 0) return;
  if (sampled == 0)
    fail("{}: eval.validation_sample {} selects none of the {} users with a validation item "
         "(about {:.2g} on average); expected a share that selects some",
         cfg.where("eval.validation_sample"), fraction, users, fraction * static_cast<double>(users));
  log().info("validation evaluations score {} of the {} users with a validation item "
             "(eval.validation_sample {})",
             sampled, users, fraction);
}

ScoredRows scored_rows(const data::Csr& truth, const data::IdMap& users, int64_t first,
                       double sample) {
  ScoredRows out;
  for (int64_t u = 0; u < truth.rows; ++u) {
    if (truth.row_size(u) == 0) continue;
    ++out.population;
    if (in_validation_sample(users.external(static_cast<data::index_t>(first + u)), sample))
      out.rows.push_back(static_cast<data::index_t>(u));
  }
  return out;
}

std::pair<int64_t, int64_t> validation_sample_size(const Dataset& data,
                                                   const config::Config& cfg) {
  const data::Csr truth = membership(data.users.size(), data.items.size(), data.split.validation);
  const ScoredRows s = scored_rows(truth, data.users, 0, cfg.settings().eval.validation_sample);
  return {s.population, static_cast<int64_t>(s.rows.size())};
}

eval::Metrics evaluate(const models::Model& model, const Dataset& data, Part part,
                       const config::Config& cfg) {
  return evaluate(model, data, part, eval_ks(cfg),
                  part == Part::kValidation ? cfg.settings().eval.validation_sample : 1.0);
}

eval::Metrics evaluate(const models::Model& model, const Dataset& data, Part part,
                       const std::vector<int>& ks, double sample) {
  const int64_t nu = data.users.size(), ni = data.items.size();
  const data::Interactions& truth_x = held_out(data, part);
  if (truth_x.size() == 0) return no_users(ks);  // nothing held out: no users evaluated
  const data::Csr truth = membership(nu, ni, truth_x);
  const ScoredRows s = scored_rows(truth, data.users, 0, sample);
  if (s.rows.empty())
    fail("eval.validation_sample {} selects none of the {} users with a {} item; expected a "
         "share that selects some",
         sample, s.population, part_name(part));
  eval::Metrics m = score(model, data, part, ks, s.rows, truth);
  if (sample < 1) m.sampled_from = s.population;
  return m;
}

UserMetrics evaluate_per_user(const models::Model& model, const Dataset& data, Part part,
                              const std::vector<int>& ks) {
  const int64_t nu = data.users.size(), ni = data.items.size();
  const data::Interactions& truth_x = held_out(data, part);
  UserMetrics out;
  if (truth_x.size() == 0) {
    out.metrics = no_users(ks);
    return out;
  }
  const data::Csr truth = membership(nu, ni, truth_x);
  const ScoredRows s = scored_rows(truth, data.users, 0, 1.0);
  out.metrics = score(model, data, part, ks, s.rows, truth, &out.per_user);
  const data::Interactions& foldin_x = foldin(data, part);
  std::vector<int64_t> foldin_count;
  if (foldin_x.size() > 0) {
    foldin_count.assign(static_cast<size_t>(nu), 0);
    for (data::offset_t e = 0; e < foldin_x.size(); ++e) ++foldin_count[static_cast<size_t>(foldin_x.users[e])];
  }
  std::vector<std::string> items;
  for (const int64_t q : out.per_user.queries) {
    const data::index_t u = s.rows[static_cast<size_t>(q)];
    out.users.push_back(data.users.external(u));
    // The held-out items by external id, sorted, so that two numberings of one split agree.
    items.clear();
    for (data::offset_t e = truth.indptr[u]; e < truth.indptr[u + 1]; ++e)
      items.push_back(data.items.external(truth.indices[e]));
    std::sort(items.begin(), items.end());
    std::string key;
    for (const std::string& i : items) key.append(i).push_back('\x1f');
    out.truth.push_back(stable_hash64(key));
    out.activity.push_back(foldin_count.empty() ? data.user_items.row_size(u)
                                                : foldin_count[static_cast<size_t>(u)]);
  }
  return out;
}

void check_activity_edges(const std::vector<int64_t>& edges, const std::string& what) {
  for (size_t e = 0; e < edges.size(); ++e)
    if (edges[e] < 1 || (e > 0 && edges[e] <= edges[e - 1]))
      fail("{}: expected increasing whole numbers >= 1, such as 5,10,20", what);
}

std::vector<ActivityBucket> by_activity(const UserMetrics& m, const std::vector<int64_t>& edges) {
  check_activity_edges(edges, fmt::format("activity bucket edges {}", fmt::join(edges, ",")));
  std::vector<ActivityBucket> out(edges.size() + 1);
  for (size_t b = 0; b < out.size(); ++b) {
    out[b].low = b == 0 ? 0 : edges[b - 1] + 1;
    out[b].high = b < edges.size() ? edges[b] : -1;
    out[b].means.assign(m.per_user.names.size(), 0.0);
  }
  std::vector<size_t> bucket(m.activity.size());
  for (size_t u = 0; u < m.activity.size(); ++u) {
    bucket[u] = static_cast<size_t>(std::lower_bound(edges.begin(), edges.end(), m.activity[u]) -
                                    edges.begin());
    ++out[bucket[u]].users;
  }
  for (size_t n = 0; n < m.per_user.names.size(); ++n)
    for (size_t u = 0; u < m.activity.size(); ++u) out[bucket[u]].means[n] += m.per_user.values[n][u];
  for (ActivityBucket& b : out)
    if (b.users > 0)
      for (double& v : b.means) v /= static_cast<double>(b.users);
  return out;
}

nlohmann::json activity_json(const UserMetrics& m, const std::vector<ActivityBucket>& buckets) {
  nlohmann::json out = nlohmann::json::array();
  for (const ActivityBucket& b : buckets) {
    nlohmann::json j = {{"min", b.low},
                        {"max", b.high < 0 ? nlohmann::json(nullptr) : nlohmann::json(b.high)},
                        {"users", b.users}};
    for (size_t n = 0; n < m.per_user.names.size(); ++n)
      j[m.per_user.names[n]] = b.users > 0 ? nlohmann::json(b.means[n]) : nlohmann::json(nullptr);
    out.push_back(j);
  }
  return out;
}

}  // namespace recforge::pipeline
