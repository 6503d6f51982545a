#include "cli/index_bench.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "eval/topk.h"
#include "index/filtered_search.h"

namespace recforge::index {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Mean over queries of |a_q ∩ b_q| / |b_q| (queries whose exact list is empty are skipped).
double recall(const eval::TopK& ann, const eval::TopK& exact) {
  double sum = 0;
  int64_t counted = 0;
  for (int64_t q = 0; q < exact.n; ++q) {
    std::vector<data::index_t> want, got;
    for (int j = 0; j < exact.k; ++j) {
      if (exact.item(q, j) >= 0) want.push_back(exact.item(q, j));
      if (ann.item(q, j) >= 0) got.push_back(ann.item(q, j));
    }
    if (want.empty()) continue;
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    std::vector<data::index_t> both;
    std::set_intersection(want.begin(), want.end(), got.begin(), got.end(),
                          std::back_inserter(both));
    sum += static_cast<double>(both.size()) / static_cast<double>(want.size());
    ++counted;
  }
  return counted ? sum / static_cast<double>(counted) : 0.0;
}

/// Runs `f` repeatedly until `min_seconds` have passed (at least once); returns the mean seconds
/// of one run.
template <typename F>
double timed(double min_seconds, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  int64_t reps = 0;
  do {
    f();
    ++reps;
  } while (seconds_since(t0) < min_seconds);
  return seconds_since(t0) / static_cast<double>(reps);
}

}  // namespace

std::vector<int64_t> default_sweep(const ItemIndex& index) {
  std::vector<int64_t> v;
  const nlohmann::json d = index.describe();
  if (index.type() == Type::kIvfFlat || index.type() == Type::kIvfPq) {
    const int64_t nlist = d["nlist"].get<int64_t>();
    for (int64_t p = 1; p < nlist; p *= 2) v.push_back(p);
    v.push_back(nlist);
  } else if (index.type() == Type::kHnsw) {
    for (int64_t e = 16; e <= 1024; e *= 2) v.push_back(e);
  }
  return v;
}

std::vector<BenchRow> bench(const BenchInput& in, int64_t* users_measured) {
  RF_ASSERT(in.users && in.items && in.seen && in.index, "bench: missing input");
  const Matrix& users = *in.users;
  const Matrix& items = *in.items;
  const int d = static_cast<int>(items.cols);
  if (in.k < 1) fail("index-bench: k is {}; expected k >= 1", in.k);
  // The query users: all, or a seeded sample in increasing order.
  std::vector<data::index_t> rows(static_cast<size_t>(users.rows));
  std::iota(rows.begin(), rows.end(), 0);
  if (in.max_users > 0 && in.max_users < users.rows) {
    Rng rng(derive_seed(in.seed, 0xbe7c));
    for (int64_t i = 0; i < in.max_users; ++i)
      std::swap(rows[static_cast<size_t>(i)],
                rows[static_cast<size_t>(
                    i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(users.rows - i))))]);
    rows.resize(static_cast<size_t>(in.max_users));
    std::sort(rows.begin(), rows.end());
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  if (users_measured) *users_measured = n;
  std::vector<float> q(static_cast<size_t>(n) * d);
  for (int64_t i = 0; i < n; ++i)
    std::copy_n(users.row(rows[static_cast<size_t>(i)]), d, q.data() + i * d);
  const int k = static_cast<int>(std::min<int64_t>(in.k, items.rows));

  // Exact lists: the same similarity as the index (unit vectors for cosine).
  std::vector<float> qe = q;
  const float* item_data = items.data.data();
  std::vector<float> normalized_items;
  if (in.index->metric() == Metric::kCosine) {
    normalize_rows(qe.data(), n, d);
    normalized_items = items.data.to_vector();
    normalize_rows(normalized_items.data(), items.rows, d);
    item_data = normalized_items.data();
  }
  std::vector<BenchRow> out;
  eval::topk(qe.data(), std::min<int64_t>(n, 32), item_data, items.rows, d, k, in.seen,
             std::vector<data::index_t>(rows.begin(), rows.begin() + std::min<int64_t>(n, 32)));
  eval::TopK exact;
  BenchRow ex{"exact", "-", 0, 1.0, 0, 0};
  ex.seconds = timed(in.min_seconds, [&] {
    exact = eval::topk(qe.data(), n, item_data, items.rows, d, k, in.seen, rows);
  });
  ex.qps = n / std::max(ex.seconds, 1e-9);
  out.push_back(ex);

  const SearchFn search = [&](const float* x, int64_t nq, int kk, float* s, int64_t* l) {
    in.index->search(x, nq, kk, s, l);
  };
  std::vector<int64_t> values = in.values.empty() ? default_sweep(*in.index) : in.values;
  const bool ivf = in.index->type() == Type::kIvfFlat || in.index->type() == Type::kIvfPq;
  const bool hnsw = in.index->type() == Type::kHnsw;
  if (!ivf && !hnsw) values = {0};
  for (int64_t v : values) {
    if (ivf) in.index->set_nprobe(v);
    if (hnsw) in.index->set_ef_search(v);
    // Warm-up (thread pool start, caches) on a few queries, not timed.
    const int64_t warm = std::min<int64_t>(n, 32);
    search_filtered(search, q.data(), warm, d, items.rows, k, in.seen,
                    std::vector<data::index_t>(rows.begin(), rows.begin() + warm));
    eval::TopK ann;
    const double secs = timed(in.min_seconds, [&] {
      ann = search_filtered(search, q.data(), n, d, items.rows, k, in.seen, rows);
    });
    BenchRow r{type_name(in.index->type()),
               ivf    ? "nprobe"
               : hnsw ? "ef_search"
                      : "-",
               v,
               recall(ann, exact),
               0,
               secs};
    if (ivf) r.value = in.index->describe()["nprobe"].get<int64_t>();  // clamped to nlist
    r.qps = n / std::max(r.seconds, 1e-9);
    out.push_back(r);
  }
  return out;
}

std::string bench_csv(const std::vector<BenchRow>& rows, int k, int64_t users) {
  std::string csv = "index,param,value,k,users,recall,qps,seconds\n";
  for (const BenchRow& r : rows)
    csv += fmt::format("{},{},{},{},{},{:.6f},{:.1f},{:.6f}\n", r.method, r.param, r.value, k,
                       users, r.recall, r.qps, r.seconds);
  return csv;
}

}  // namespace recforge::index
