// Exact top-k and ranking metrics on the GPU: the host side (uploads, the tile loop of cuBLAS
// SGEMMs and fused selections, the metric reductions). Kernels: eval/topk_cuda.cu, metrics.cu.
#include "eval/topk_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/launch.h"
#include "core/error.h"
#include "core/log.h"

namespace recforge::backend::cuda {
namespace {

using data::index_t;

constexpr int kMaxTopK = 7680;                     // candidate buffer 16,384 keys (128 KiB)
constexpr int64_t kScoreBytes = int64_t{256} << 20;  // one tile of scores
constexpr int64_t kStateBytes = int64_t{256} << 20;  // kept keys of a batch of queries

// How the score matrix is tiled.
struct TopkPlan {
  int tile = 0;        // items per GEMM tile (a multiple of 4: the row stride)
  int64_t batch = 0;   // queries per GEMM
};

TopkPlan plan_topk(int64_t n_q, int64_t n_items, int k) {
  TopkPlan p;
  const int64_t want = k <= 1024 ? 16384 : 65536;  // fewer merges per query for large k
  p.tile = static_cast<int>(std::min<int64_t>(want, (std::max<int64_t>(n_items, 1) + 3) / 4 * 4));
  p.batch = std::clamp<int64_t>(
      std::min(kScoreBytes / (int64_t{4} * p.tile), kStateBytes / (int64_t{8} * k)), 1,
      std::max<int64_t>(n_q, 1));
  return p;
}

// eval::topk's argument checks (same messages), plus this implementation's limit on k.
void validate_topk(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d,
                   int k, const data::Csr* exclude, const std::vector<index_t>& query_rows) {
  eval::validate_topk_arguments(queries, n_q, items, n_items, d, k, exclude, query_rows, nullptr);
  if (k > kMaxTopK)
    fail("top-k on the GPU: k is {}; expected at most {} (use the CPU for longer lists)", k,
         kMaxTopK);
}


void validate_truth(const std::vector<index_t>& truth_rows, int64_t n_lists, const data::Csr& truth,
                    int64_t n_items) {
  if (n_items < 1) fail("metrics: n_items is {}; expected the number of items (>= 1)", n_items);
  if (truth.cols > n_items)
    fail("metrics: the truth matrix has {} columns; expected at most n_items ({})", truth.cols,
         n_items);
  if (!truth_rows.empty() && static_cast<int64_t>(truth_rows.size()) != n_lists)
    fail("metrics: query_rows has {} entries; expected one per ranked list ({})", truth_rows.size(),
         n_lists);
  if (truth_rows.empty() && n_lists > truth.rows)
    fail("metrics: {} ranked lists but the truth matrix has {} rows; expected at least one row "
         "per list (or query_rows)",
         n_lists, truth.rows);
  for (size_t q = 0; q < truth_rows.size(); ++q)
    if (truth_rows[q] < 0 || truth_rows[q] >= truth.rows)
      fail("metrics: query_rows[{}] is {}; expected a row of the truth matrix (0 to {})", q,
           truth_rows[q], truth.rows - 1);
}

template <typename T>
DeviceBuffer<T> upload(CudaResources& g, const T* data, int64_t n) {
  DeviceBuffer<T> b(n);
  copy_to_device(b.data(), data, n, g.stream());
  return b;
}

// Device copies of a CSR's structure (values are not needed).
struct DeviceRows {
  DeviceBuffer<int64_t> indptr;
  DeviceBuffer<int32_t> indices;
  DeviceBuffer<int32_t> rows;  // query → row, empty for the identity
};

DeviceRows upload_rows(CudaResources& g, const data::Csr& m, const std::vector<index_t>& rows) {
  DeviceRows d;
  d.indptr = upload(g, m.indptr.data(), m.rows + 1);
  d.indices = upload(g, m.indices.data(), m.nnz());
  if (!rows.empty()) d.rows = upload(g, rows.data(), static_cast<int64_t>(rows.size()));
  return d;
}

// Top-k lists of the device queries into out_items / out_scores (n_q × k, device).
// `gemm_only` runs the same GEMM tiles without the selection (the benchmark's baseline).
void run_topk(CudaResources& g, const float* queries, int64_t n_q, const float* items,
              int64_t n_items, int d, int k, const MaskView& mask, int32_t* out_items,
              float* out_scores, bool gemm_only = false) {
  const cudaStream_t s = g.stream();
  if (n_q == 0) return;
  const TopkPlan plan = plan_topk(n_q, n_items, k);
  const size_t smem = select_smem_bytes(k, plan.tile);
  if (smem > g.properties().sharedMemPerBlockOptin)
    fail("top-k on the GPU: k = {} needs {} bytes of shared memory per block and {} allows {}; "
         "use a smaller k or the CPU",
         k, smem, g.description(), g.properties().sharedMemPerBlockOptin);
  TempBuffer<float> scores(g, plan.batch * plan.tile);
  TempBuffer<uint64_t> kept(g, plan.batch * k), threshold(g, plan.batch);
  TempBuffer<int32_t> count(g, plan.batch);
  SelectState state;
  state.kept = kept.data();
  state.count = count.data();
  state.threshold = threshold.data();
  const float one = 1.f, zero = 0.f;
  for (int64_t q0 = 0; q0 < n_q; q0 += plan.batch) {
    const int64_t nb = std::min(plan.batch, n_q - q0);
    RF_CHECK_CUDA(cudaMemsetAsync(count.data(), 0, sizeof(int32_t) * nb, s));
    RF_CHECK_CUDA(cudaMemsetAsync(threshold.data(), 0xff, sizeof(uint64_t) * nb, s));
    for (int64_t t0 = 0; t0 < n_items; t0 += plan.tile) {
      const int w = static_cast<int>(std::min<int64_t>(plan.tile, n_items - t0));
      // Column-major (w × nb, stride tile) = items_tᵀ · queries: row qi of the row-major tile
      // holds query q0 + qi's scores of items t0 ... t0 + w.
      RF_CHECK_CUBLAS(cublasSgemm(g.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, w, static_cast<int>(nb), d,
                                  &one, items + t0 * d, d, queries + q0 * d, d, &zero,
                                  scores.data(), plan.tile));
      if (!gemm_only)
        launch_topk_select(scores.data(), plan.tile, nb, q0, t0, w, plan.tile, k, state, mask, s);
    }
    if (!gemm_only) launch_topk_finalize(state, nb, k, out_items + q0 * k, out_scores + q0 * k, s);
  }
}

// Metrics of device lists (n_q × k) against the device truth rows.
eval::Metrics run_metrics(CudaResources& g, const int32_t* lists, int64_t n_q, int k,
                          const DeviceRows& truth, int64_t n_items, const eval::MetricsOptions& o) {
  const cudaStream_t s = g.stream();
  const int max_k = eval::validate_cutoffs(o);
  const int nk = static_cast<int>(o.ks.size());
  RF_ASSERT(nk <= kMaxCutoffs, "GPU metrics: too many cutoffs");
  std::vector<int> sorted = o.ks;
  std::sort(sorted.begin(), sorted.end());
  const int ncols = 1 + 5 * nk;
  DeviceBuffer<int> d_ks = upload(g, sorted.data(), nk);
  TempBuffer<int32_t> first_rank(g, n_items);
  launch_fill(first_rank.data(), n_items, max_k, s);
  TempBuffer<double> values(g, std::max<int64_t>(n_q, 1) * ncols);
  launch_metrics_users(lists, n_q, k, truth.indptr.data(), truth.indices.data(), truth.rows.data(),
                       nk, d_ks.data(), max_k, first_rank.data(), values.data(), s);
  const int blocks = static_cast<int>(std::clamp<int64_t>((n_q + 255) / 256, 1, 256));
  TempBuffer<double> sums(g, int64_t{ncols} * blocks);
  launch_column_sums(values.data(), n_q, ncols, sums.data(), blocks, s);
  const int cblocks = static_cast<int>(std::clamp<int64_t>((n_items + 255) / 256, 1, 256));
  TempBuffer<long long> covered(g, int64_t{nk} * cblocks);
  launch_coverage(first_rank.data(), n_items, nk, d_ks.data(), covered.data(), cblocks, s);
  std::vector<double> h_sums(static_cast<size_t>(ncols * blocks));
  std::vector<long long> h_cov(static_cast<size_t>(nk * cblocks));
  copy_to_host(h_sums.data(), sums.data(), int64_t{ncols} * blocks, s);
  copy_to_host(h_cov.data(), covered.data(), int64_t{nk} * cblocks, s);
  g.synchronize();
  auto column = [&](int c) {
    double t = 0;
    for (int b = 0; b < blocks; ++b) t += h_sums[static_cast<size_t>(c * blocks + b)];
    return t;
  };
  eval::Metrics m;
  m.ks = o.ks;
  m.users = static_cast<int64_t>(std::llround(column(0)));
  const double n = m.users > 0 ? static_cast<double>(m.users) : 1.0;
  for (int c = 0; c < nk; ++c) {
    const int pos = static_cast<int>(std::find(sorted.begin(), sorted.end(), o.ks[c]) - sorted.begin());
    const int base = 1 + 5 * pos;
    m.recall.push_back(column(base) / n);
    m.precision.push_back(column(base + 1) / n);
    m.ndcg.push_back(column(base + 2) / n);
    m.map.push_back(column(base + 3) / n);
    m.hit_rate.push_back(column(base + 4) / n);
    long long cov = 0;
    for (int b = 0; b < cblocks; ++b) cov += h_cov[static_cast<size_t>(pos * cblocks + b)];
    m.coverage.push_back(static_cast<double>(cov) / static_cast<double>(n_items));
  }
  return m;
}

}  // namespace

int max_topk() { return kMaxTopK; }

int64_t free_memory(CudaResources& gpu) {
  DeviceScope scope(gpu.device());
  return gpu.free_bytes();
}

int64_t topk_memory_bytes(int64_t n_q, int64_t n_items, int d, int k, int64_t exclude_nnz,
                          int64_t truth_nnz) {
  const TopkPlan p = plan_topk(n_q, n_items, std::max(k, 1));
  return (n_q + n_items) * d * 4               // queries and items
         + n_q * k * 8                         // lists
         + p.batch * p.tile * 4                // a tile of scores
         + p.batch * (k * 8 + 12)              // selection state
         + (exclude_nnz + truth_nnz) * 4       // masks and truth
         + 3 * (n_q + 1) * 8                   // their offsets and row maps (upper bound)
         + n_q * (1 + 5 * kMaxCutoffs) * 8     // per-query metric values
         + n_items * 4                         // best rank per item
         + (int64_t{64} << 20);                // cuBLAS and pool slack
}

eval::TopK topk(CudaResources& gpu, const float* queries, int64_t n_q, const float* items,
                int64_t n_items, int d, int k, const data::Csr* exclude,
                const std::vector<index_t>& query_rows) {
  validate_topk(queries, n_q, items, n_items, d, k, exclude, query_rows);
  eval::TopK out;
  out.n = n_q;
  out.k = k;
  out.items.assign(static_cast<size_t>(n_q * k), -1);
  out.scores.assign(static_cast<size_t>(n_q * k), -std::numeric_limits<float>::infinity());
  if (n_q == 0 || n_items == 0) return out;
  DeviceScope scope(gpu.device());
  DeviceBuffer<float> dq = upload(gpu, queries, n_q * d), di = upload(gpu, items, n_items * d);
  DeviceRows mask_rows;
  MaskView mask;
  if (exclude) {
    mask_rows = upload_rows(gpu, *exclude, query_rows);
    mask.indptr = mask_rows.indptr.data();
    mask.indices = mask_rows.indices.data();
    mask.rows = mask_rows.rows.data();
  }
  DeviceBuffer<int32_t> li(n_q * k);
  DeviceBuffer<float> ls(n_q * k);
  run_topk(gpu, dq.data(), n_q, di.data(), n_items, d, k, mask, li.data(), ls.data());
  copy_to_host(out.items.data(), li.data(), n_q * k, gpu.stream());
  copy_to_host(out.scores.data(), ls.data(), n_q * k, gpu.stream());
  gpu.synchronize();
  return out;
}

eval::Metrics compute_metrics(CudaResources& gpu, const eval::TopK& ranked,
                              const std::vector<index_t>& query_rows, const data::Csr& truth,
                              int64_t n_items, const eval::MetricsOptions& options) {
  const int max_k = eval::validate_cutoffs(options);
  if (ranked.k < max_k)
    fail("metrics: the ranked lists hold {} items per user; expected at least the largest cutoff "
         "({})",
         ranked.k, max_k);
  RF_ASSERT(static_cast<int64_t>(ranked.items.size()) == ranked.n * ranked.k,
            "metrics: ranked.items does not hold n × k entries");
  validate_truth(query_rows, ranked.n, truth, n_items);
  for (int64_t q = 0; q < ranked.n; ++q)
    for (int j = 0; j < max_k; ++j) {
      const index_t item = ranked.item(q, j);
      if (item < -1 || item >= n_items)
        fail("metrics: ranked item {} (list {}, rank {}) is outside 0 to {}; expected an item "
             "index or -1 padding",
             item, q, j + 1, n_items - 1);
    }
  if (static_cast<int>(options.ks.size()) > kMaxCutoffs)
    return eval::compute_metrics(ranked, query_rows, truth, n_items, options);
  DeviceScope scope(gpu.device());
  DeviceBuffer<int32_t> lists = upload(gpu, ranked.items.data(), ranked.n * ranked.k);
  const DeviceRows t = upload_rows(gpu, truth, query_rows);
  return run_metrics(gpu, lists.data(), ranked.n, ranked.k, t, n_items, options);
}

eval::Metrics topk_metrics(CudaResources& gpu, const float* queries, int64_t n_q,
                           const float* items, int64_t n_items, int d, const data::Csr* exclude,
                           const std::vector<index_t>& exclude_rows, const data::Csr& truth,
                           const std::vector<index_t>& truth_rows,
                           const eval::MetricsOptions& options) {
  const int k = eval::validate_cutoffs(options);
  validate_topk(queries, n_q, items, n_items, d, k, exclude, exclude_rows);
  validate_truth(truth_rows, n_q, truth, n_items);
  if (static_cast<int>(options.ks.size()) > kMaxCutoffs) {  // rare: lists to the host
    const eval::TopK top = topk(gpu, queries, n_q, items, n_items, d, k, exclude, exclude_rows);
    return eval::compute_metrics(top, truth_rows, truth, n_items, options);
  }
  DeviceScope scope(gpu.device());
  DeviceBuffer<int32_t> li(std::max<int64_t>(n_q, 1) * k);
  DeviceBuffer<float> ls(std::max<int64_t>(n_q, 1) * k);
  if (n_items > 0 && n_q > 0) {
    DeviceBuffer<float> dq = upload(gpu, queries, n_q * d), di = upload(gpu, items, n_items * d);
    DeviceRows mask_rows;
    MaskView mask;
    if (exclude) {
      mask_rows = upload_rows(gpu, *exclude, exclude_rows);
      mask.indptr = mask_rows.indptr.data();
      mask.indices = mask_rows.indices.data();
      mask.rows = mask_rows.rows.data();
    }
    run_topk(gpu, dq.data(), n_q, di.data(), n_items, d, k, mask, li.data(), ls.data());
  } else {
    launch_fill(li.data(), li.size(), -1, gpu.stream());
  }
  const DeviceRows t = upload_rows(gpu, truth, truth_rows);
  const auto t0 = std::chrono::steady_clock::now();
  eval::Metrics m = run_metrics(gpu, li.data(), n_q, k, t, n_items, options);
  log().debug("GPU metrics for {} queries in {:.3f} s", n_q,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return m;
}

TopkTiming time_topk(CudaResources& gpu, int64_t users, int64_t items, int d, int k) {
  RF_ASSERT(users >= 1 && items >= 1 && d >= 1 && k >= 1 && k <= kMaxTopK, "time_topk: sizes");
  DeviceScope scope(gpu.device());
  const cudaStream_t s = gpu.stream();
  // Random factors (normal; cuRAND wants an even count), never zeros.
  auto random = [&](int64_t n) {
    DeviceBuffer<float> b(n + 1);
    RF_CHECK_CURAND(curandGenerateNormal(gpu.curand(), b.data(), static_cast<size_t>((n + 1) / 2 * 2),
                                         0.f, 1.f));
    return b;
  };
  DeviceBuffer<float> q = random(users * d), it = random(items * d);
  DeviceBuffer<int32_t> li(users * k);
  DeviceBuffer<float> ls(users * k);
  const MaskView none;
  const int64_t warm = std::min<int64_t>(users, 256);
  run_topk(gpu, q.data(), warm, it.data(), items, d, k, none, li.data(), ls.data());
  run_topk(gpu, q.data(), warm, it.data(), items, d, k, none, li.data(), ls.data(), true);
  CudaEvent a(true), b(true), c(true);
  a.record(s);
  run_topk(gpu, q.data(), users, it.data(), items, d, k, none, li.data(), ls.data());
  b.record(s);
  run_topk(gpu, q.data(), users, it.data(), items, d, k, none, li.data(), ls.data(), true);
  c.record(s);
  TopkTiming t;
  t.users = users;
  t.topk_seconds = b.ms_since(a) / 1e3;
  t.gemm_seconds = c.ms_since(b) / 1e3;
  return t;
}

}  // namespace recforge::backend::cuda
