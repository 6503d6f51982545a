#include "eval/topk.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/blas.h"
#include "core/error.h"
#include "core/log.h"

namespace recforge::eval {

using data::index_t;
using data::offset_t;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNegInf = -kInf;
/// Queries per GEMM tile (reduced for very large k so the candidate buffers stay bounded).
constexpr int64_t kQueryBlock = 128;
/// Items per GEMM tile: a 128 × 2048 float tile (1 MiB per thread) stays in L2 between the GEMM
/// that writes it and the selection that reads it (faster than 8192 by 10-20% on a Xeon).
constexpr int64_t kItemTile = 2048;
/// Blocks of at most this many queries are scored by one GEMV per query instead of a GEMM:
/// OpenBLAS packs the item tile for a GEMM even of one row, and for 1-3 queries that packing
/// costs more than reading the tile once per query (at 2048 items, one thread: 1.7x faster for
/// one query at d 256, 3.5x at d 32-64; a tie at 4; tools/bench/bench_topk.cpp measures it). The
/// candidates do not depend on the choice: the slack bounds any summation order.
constexpr int64_t kGemvQueries = 3;
/// Upper bound on one thread's candidate buffers, in bytes.
constexpr int64_t kCandidateBytes = int64_t{64} << 20;

/// A candidate item and its score.
struct Cand {
  float score;
  index_t item;
};

/// Ranking order: higher score first, then lower item index.
inline bool better(const Cand& a, const Cand& b) {
  return a.score > b.score || (a.score == b.score && a.item < b.item);
}

/// Σ a_c·b_c in double: sixteen partial sums in a fixed order, combined pairwise. A product of
/// two floats is exact in double, so neither FMA contraction nor vectorisation of the lanes
/// changes a bit (and sixteen independent sums keep the FMA units busy).
double lane_dot(const float* a, const float* b, int d) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  int c = 0;
  for (; c + kLanes <= d; c += kLanes)
    for (int l = 0; l < kLanes; ++l)
      acc[l] += static_cast<double>(a[c + l]) * static_cast<double>(b[c + l]);
  for (int l = 0; c + l < d; ++l)
    acc[l] += static_cast<double>(a[c + l]) * static_cast<double>(b[c + l]);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

/// The score items are ranked by: exact_score, NaN counted as -inf.
float ranking_score(const float* query, const float* item, int d) {
  const float s = exact_score(query, item, d);
  return std::isnan(s) ? kNegInf : s;
}

/// The most a float GEMM score of a query q and an item x can differ from their exact_score,
/// given n = ‖q‖·max‖x‖ (any item). Without overflow or underflow, a float sum of d products, in
/// any order and with or without FMA, is within γ_d·Σ|q_c·x_c| of the exact sum (Higham,
/// Accuracy and Stability of Numerical Algorithms, §3.1; u = 2^-24, γ_d = du / (1 - du));
/// exact_score is within u·|sum| + γ'_d·Σ|q_c·x_c| (its double sum, u' = 2^-53, then one rounding
/// to float); and Σ|q_c·x_c| <= n (Cauchy–Schwarz). Doubled, for the rounding of the norms. Below
/// the normal range a product rounded to a subnormal float, and the final rounding, are each off
/// by up to 2^-150 more (additions that give subnormals are exact): (d + 1)·2^-149 covers them.
/// Above it, a product or partial sum may overflow (n >= 2^127 allows it): the slack is then
/// infinite and every item gets its exact score. A larger slack only costs exact scores.
/// Assumes IEEE arithmetic as configured by default (no flush-to-zero).
double slack_for(int d, double n) {
  const double u = std::ldexp(1.0, -24);
  const double u2 = std::ldexp(1.0, -53);
  const double inf = std::numeric_limits<double>::infinity();
  if (d * u >= 0.5 || !(n < std::ldexp(1.0, 127))) return inf;  // also NaN
  const double g = d * u / (1 - d * u);
  const double g2 = d * u2 / (1 - d * u2);
  return 2 * (g + u * (1 + g2) + g2) * n + (d + 1) * std::ldexp(1.0, -149);
}

/// The items masked for one query: its exclusion row (sorted) or nothing.
struct RowMask {
  const index_t* begin = nullptr;
  const index_t* end = nullptr;
};


/// The exclusion row of query q (empty without an exclusion matrix).
RowMask row_mask(const data::Csr* exclude, const std::vector<index_t>& query_rows, int64_t q) {
  RowMask m;
  if (exclude == nullptr) return m;
  const int64_t r = query_rows.empty() ? q : query_rows[static_cast<size_t>(q)];
  m.begin = exclude->indices.data() + exclude->indptr[r];
  m.end = exclude->indices.data() + exclude->indptr[r + 1];
  return m;
}

/// Sorts the best min(k, n) of `c[0..n)` to the front and writes them, padded, into `items` and
/// `scores` (k entries each).
void write_row(Cand* c, int64_t n, int k, index_t* items, float* scores) {
  const int64_t take = std::min<int64_t>(n, k);
  if (n > take) std::nth_element(c, c + take - 1, c + n, better);
  std::sort(c, c + take, better);
  for (int64_t j = 0; j < take; ++j) {
    items[j] = c[j].item;
    scores[j] = c[j].score;
  }
  for (int64_t j = take; j < k; ++j) {
    items[j] = -1;
    scores[j] = kNegInf;
  }
}

/// The GEMM score lower bound below which an item cannot enter a top-k whose k-th exact score
/// is `thr`, given that GEMM and exact scores differ by at most `slack`: thr - slack, rounded
/// down to a float.
float admit_below(float thr, double slack) {
  const double t = static_cast<double>(thr) - slack;
  float a = static_cast<float>(t);
  if (static_cast<double>(a) > t) a = std::nextafter(a, kNegInf);
  return a;
}

/// Running top-k selection of one query over item tiles visited in increasing item order, by
/// exact_score. The tile's GEMM scores do the selection; exact scores are computed only for the
/// items that can still be in the top k at the end (finish()).
///
/// The GEMM and exact scores of an item differ by at most `slack` (slack_for). So if g_k is
/// the k-th best GEMM score, every item of the exact top k has a GEMM score >= g_k - 2·slack (the
/// k items with the best GEMM scores have exact scores >= g_k - slack, so the k-th best exact
/// score is too). Candidates accumulate in a buffer of `cap` >= 2k entries by their GEMM score
/// (NaN as +inf: its exact score decides); when it fills, it is cut to the best k plus those
/// within 2·slack below the k-th, which becomes the admission threshold (it only rises, so every
/// item dropped is below the final g_k - 2·slack). finish() scores the survivors exactly.
///
/// Near-ties (many items within 2·slack of the k-th GEMM score, e.g. identical rows) could fill
/// the buffer without progress; then the selector scores its candidates exactly, keeps the best
/// k as a heap (worst on top), and from there admits an item only if its GEMM score is within
/// `slack` of the k-th exact score, and keeps it only if its exact score beats that. Either way,
/// later items have higher indices than every kept one, so they lose ties.
struct Selector {
  Cand* buf = nullptr;  // cap entries
  int64_t cap = 0;
  int k = 0;
  int64_t size = 0;
  const float* query = nullptr;  // this query's row
  const float* items = nullptr;  // all item rows
  int d = 0;
  double slack = 0;       // bound on |GEMM score - exact score| for this query
  bool exact = false;     // buf is a heap of exact scores (see above)
  float admit = kNegInf;  // GEMM scores below this are skipped

  float exact_of(index_t j) const {
    return ranking_score(query, items + static_cast<int64_t>(j) * d, d);
  }

  /// Keeps the best k of buf[0 .. size) and those whose key is within `margin` below the k-th;
  /// returns that lower bound on the keys kept.
  float cut(double margin) {
    std::nth_element(buf, buf + k - 1, buf + size, better);
    const float keep = admit_below(buf[k - 1].score, margin);
    int64_t n = k;
    for (int64_t i = k; i < size; ++i)
      if (!(buf[i].score < keep)) buf[n++] = buf[i];
    size = n;
    return keep;
  }

  /// The buffer is full: cut it, or switch to exact scores when near-ties leave no room.
  void prune() {
    admit = cut(2 * slack);
    if (size - k <= (cap - k) / 2) return;
    for (int64_t i = 0; i < size; ++i) buf[i].score = exact_of(buf[i].item);
    if (size > k) std::nth_element(buf, buf + k - 1, buf + size, better);
    size = std::min<int64_t>(size, k);
    std::make_heap(buf, buf + size, better);
    exact = true;
    admit = size == k ? admit_below(buf[0].score, slack) : kNegInf;
  }

  /// Offers item j whose GEMM score is g (admitted: not below `admit`).
  void push(float g, int64_t j) {
    if (!exact) {
      buf[size++] = Cand{std::isnan(g) ? kInf : g, static_cast<index_t>(j)};
      if (size == cap) prune();
      return;
    }
    const Cand c{exact_of(static_cast<index_t>(j)), static_cast<index_t>(j)};
    if (size == k) {
      if (!better(c, buf[0])) return;
      std::pop_heap(buf, buf + size, better);
      buf[size - 1] = c;
    } else {
      buf[size++] = c;
    }
    std::push_heap(buf, buf + size, better);
    if (size == k) admit = admit_below(buf[0].score, slack);
  }

  /// Offers items [j0, j1) whose GEMM scores are row[j0 .. j1). Most chunks hold no admitted
  /// item: a branch-free (vectorisable) test skips them. A NaN GEMM score is admitted.
  void scan(const float* row, int64_t j0, int64_t j1) {
    constexpr int64_t kChunk = 16;
    int64_t j = j0;
    for (; j + kChunk <= j1; j += kChunk) {
      const float* r = row + j;
      const float a = admit;
      int any = 0;
      for (int64_t c = 0; c < kChunk; ++c) any |= !(r[c] < a);
      if (!any) continue;
      for (int64_t c = 0; c < kChunk; ++c)
        if (!(r[c] < admit)) push(r[c], j + c);
    }
    for (; j < j1; ++j)
      if (!(row[j] < admit)) push(row[j], j);
  }

  /// Gives every candidate that can be in the top k its exact score: buf[0 .. size) then holds
  /// the query's top k (and maybe a few more), for write_row.
  void finish() {
    if (exact) return;
    if (size > k) cut(2 * slack);
    // The candidates' rows are scattered over the item matrix: fetch a few rows ahead.
    constexpr int64_t kAhead = 8;
    const int64_t row_bytes = static_cast<int64_t>(d) * static_cast<int64_t>(sizeof(float));
    auto fetch = [&](int64_t i) {
      const char* p = reinterpret_cast<const char*>(items + static_cast<int64_t>(buf[i].item) * d);
      for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(p + b);
    };
    for (int64_t i = 0; i < std::min(size, kAhead); ++i) fetch(i);
    for (int64_t i = 0; i < size; ++i) {
      if (i + kAhead < size) fetch(i + kAhead);
      buf[i].score = exact_of(buf[i].item);
    }
  }
};

// n_q lists of k padding entries (item -1, score -inf), to be filled.
TopK padded(int64_t n_q, int k) {
  TopK out;
  out.n = n_q;
  out.k = k;
  out.items.assign(static_cast<size_t>(n_q * k), -1);
  out.scores.assign(static_cast<size_t>(n_q * k), kNegInf);
  return out;
}

}  // namespace

float exact_score(const float* query, const float* item, int d) {
  return static_cast<float>(lane_dot(query, item, d));
}

double max_row_norm(const float* rows, int64_t n, int d) {
  double best = 0;
  bool nan = false;
#pragma omp parallel
  {
    double mine = 0;
    bool mine_nan = false;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      const double s = lane_dot(rows + i * d, rows + i * d, d);
      if (std::isnan(s)) mine_nan = true;
      else mine = std::max(mine, s);
    }
#pragma omp critical(recforge_max_row_norm)
    {
      best = std::max(best, mine);
      nan = nan || mine_nan;
    }
  }
  // NaN (its slack is NaN, and every item is then scored exactly).
  return nan ? std::numeric_limits<double>::quiet_NaN() : std::sqrt(best);
}

void validate_topk_arguments(const float* queries, int64_t n_q, const float* items,
                             int64_t n_items, int d, int k, const data::Csr* exclude,
                             const std::vector<index_t>& query_rows,
                             const std::vector<index_t>* global_exclude) {
  if (n_q < 0) fail("top-k: the number of queries is {}; expected a count >= 0", n_q);
  if (n_items < 0) fail("top-k: the number of items is {}; expected a count >= 0", n_items);
  if (n_items > std::numeric_limits<index_t>::max())
    fail("top-k: the number of items is {}; expected at most {} (32-bit item indices)", n_items,
         std::numeric_limits<index_t>::max());
  if (d < 1) fail("top-k: the factor dimension is {}; expected d >= 1", d);
  if (k < 1) fail("top-k: k is {}; expected k >= 1", k);
  RF_ASSERT(n_q == 0 || queries != nullptr, "top-k: null query matrix");
  RF_ASSERT(n_items == 0 || items != nullptr, "top-k: null item matrix");
  if (!query_rows.empty() && static_cast<int64_t>(query_rows.size()) != n_q)
    fail("top-k: query_rows has {} entries; expected one per query ({})", query_rows.size(), n_q);
  if (exclude != nullptr) {
    if (exclude->cols != n_items)
      fail("top-k: the exclusion matrix has {} columns; expected one per item ({})", exclude->cols,
           n_items);
    RF_ASSERT(static_cast<int64_t>(exclude->indptr.size()) == exclude->rows + 1,
              "top-k: exclusion matrix indptr does not have rows + 1 entries");
    if (query_rows.empty()) {
      if (n_q > exclude->rows)
        fail(
            "top-k: {} queries but the exclusion matrix has {} rows; expected at least one row "
            "per query (or query_rows)",
            n_q, exclude->rows);
    } else {
      for (size_t q = 0; q < query_rows.size(); ++q)
        if (query_rows[q] < 0 || query_rows[q] >= exclude->rows)
          fail("top-k: query_rows[{}] is {}; expected a row of the exclusion matrix (0 to {})", q,
               query_rows[q], exclude->rows - 1);
    }
  }
  if (global_exclude != nullptr) {
    const auto& g = *global_exclude;
    for (size_t i = 0; i < g.size(); ++i) {
      if (g[i] < 0 || g[i] >= n_items)
        fail("top-k: global_exclude[{}] is {}; expected an item index from 0 to {}", i, g[i],
             n_items - 1);
      if (i > 0 && g[i] < g[i - 1])
        fail("top-k: global_exclude[{}] is {} after {}; expected sorted item indices", i, g[i],
             g[i - 1]);
    }
  }
}

TopK topk(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d, int k,
          const data::Csr* exclude, const std::vector<index_t>& query_rows,
          const std::vector<index_t>* global_exclude, double max_item_norm) {
  return detail::topk_scored(queries, n_q, items, n_items, d, k, exclude, query_rows,
                             global_exclude, max_item_norm, nullptr);
}

TopK topk_rows(const float* rows_of, const std::vector<index_t>& rows, const float* items,
               int64_t n_items, int d, int k, const data::Csr* exclude) {
  // Gathering every query row at once doubled an evaluation's memory at scale (8.2 GiB more for
  // 2.15M users × 1024 factors).
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t chunk =
      std::max<int64_t>(1024, (int64_t{64} << 20) / (int64_t{4} * std::max(d, 1)));
  const double norm = max_row_norm(items, n_items, d);
  TopK all;
  all.n = n;
  all.k = k;
  all.items.reserve(static_cast<size_t>(n * k));
  all.scores.reserve(static_cast<size_t>(n * k));
  std::vector<float> queries;
  for (int64_t q0 = 0; q0 < n; q0 += chunk) {
    const std::vector<index_t> part_rows(rows.begin() + q0, rows.begin() + std::min(n, q0 + chunk));
    queries.clear();
    for (const index_t r : part_rows)
      queries.insert(queries.end(), rows_of + static_cast<int64_t>(r) * d,
                     rows_of + (static_cast<int64_t>(r) + 1) * d);
    const TopK part = topk(queries.data(), static_cast<int64_t>(part_rows.size()), items, n_items,
                           d, k, exclude, part_rows, nullptr, norm);
    all.items.insert(all.items.end(), part.items.begin(), part.items.end());
    all.scores.insert(all.scores.end(), part.scores.begin(), part.scores.end());
  }
  return all;
}

TopK detail::topk_scored(const float* queries, int64_t n_q, const float* items, int64_t n_items,
                         int d, int k, const data::Csr* exclude,
                         const std::vector<index_t>& query_rows,
                         const std::vector<index_t>* global_exclude, double max_item_norm,
                         const TileScores& tile_scores) {
  validate_topk_arguments(queries, n_q, items, n_items, d, k, exclude, query_rows, global_exclude);
  TopK out = padded(n_q, k);
  if (n_q == 0 || n_items == 0) return out;
  if (max_item_norm < 0) max_item_norm = max_row_norm(items, n_items, d);
  const int64_t cap = static_cast<int64_t>(k) + std::max<int64_t>(k, 256);
  // Query q's bound on |GEMM score - exact score| over all items.
  auto selector = [&](Cand* buf, int64_t q) {
    Selector s;
    s.buf = buf;
    s.cap = cap;
    s.k = k;
    s.query = queries + q * d;
    s.items = items;
    s.d = d;
    s.slack = slack_for(d, max_item_norm * std::sqrt(lane_dot(s.query, s.query, d)));
    return s;
  };

  const int64_t qb = std::clamp<int64_t>(
      kCandidateBytes / (cap * static_cast<int64_t>(sizeof(Cand))), 1, kQueryBlock);
  const int64_t tw = std::min(kItemTile, n_items);
  const int64_t n_blocks = (n_q + qb - 1) / qb;
  const index_t* g_begin = global_exclude ? global_exclude->data() : nullptr;
  const index_t* g_end = global_exclude ? global_exclude->data() + global_exclude->size() : nullptr;

  // Offers items [i0, i1) to the selectors of queries q0 .. q0 + nb, tile by tile: one GEMM per
  // tile, then each query's row scanned around its masked items. Any item range works: the
  // masks and the global list are sorted and skipped forward from i0.
  auto scan_items = [&](int64_t q0, int64_t nb, int64_t i0, int64_t i1, float* tile,
                        Selector* sel, RowMask* masks) {
    const index_t* g = g_begin;
    for (int64_t t0 = i0; t0 < i1; t0 += tw) {
      const int64_t t1 = std::min(i1, t0 + tw);
      const int64_t w = t1 - t0;
      // tile[i][j] = query (q0 + i) · item (t0 + j)
      if (tile_scores)
        tile_scores(q0, nb, t0, w, tile);
      else if (nb <= kGemvQueries)
        for (int64_t i = 0; i < nb; ++i)
          cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(w), d, 1.0f, items + t0 * d,
                      d, queries + (q0 + i) * d, 1, 0.0f, tile + i * w, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nb),
                    static_cast<int>(w), d, 1.0f, queries + q0 * d, d, items + t0 * d, d, 0.0f,
                    tile, static_cast<int>(w));
      while (g != g_end && *g < t0) ++g;
      for (int64_t i = 0; i < nb; ++i) {
        const float* row = tile + i * w - t0;  // row[j] is the score of item j
        RowMask& m = masks[i];
        const index_t* gi = g;
        int64_t j = t0;
        while (j < t1) {
          // Scan up to the next masked item (from either list), then skip it.
          while (m.begin != m.end && *m.begin < j) ++m.begin;
          while (gi != g_end && *gi < j) ++gi;
          int64_t next = t1;
          if (m.begin != m.end) next = std::min<int64_t>(next, *m.begin);
          if (gi != g_end) next = std::min<int64_t>(next, *gi);
          sel[i].scan(row, j, next);
          j = next + 1;
        }
      }
    }
  };

  Progress progress("top-k", n_q, "users");
  std::atomic<int64_t> done{0};
  BlasThreads one(1);
  const int64_t n_tiles = (n_items + tw - 1) / tw;
#ifdef _OPENMP
  const int64_t threads = omp_get_max_threads();
#else
  const int64_t threads = 1;
#endif
  if (n_blocks < threads && n_tiles > 1) {
    // Fewer query blocks than threads (a server's small batches, a single user): every thread
    // takes a share of the item tiles for the whole block, and the shares' candidates are
    // merged. Each share keeps at least its own top k, so the merge is the exact top k, with
    // ties to the lower item index as in one pass.
    const int64_t parts = std::min(threads, n_tiles);
    std::vector<std::vector<Cand>> cand(static_cast<size_t>(parts));
    std::vector<std::vector<Selector>> sel(static_cast<size_t>(parts));
    std::vector<Cand> merged;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t q0 = b * qb;
      const int64_t nb = std::min(qb, n_q - q0);
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
      for (int64_t t = 0; t < parts; ++t) {
        std::vector<float> tile(static_cast<size_t>(nb * tw));
        std::vector<Cand>& c = cand[static_cast<size_t>(t)];
        std::vector<Selector>& s = sel[static_cast<size_t>(t)];
        c.resize(static_cast<size_t>(nb * cap));
        s.resize(static_cast<size_t>(nb));
        std::vector<RowMask> masks(static_cast<size_t>(nb));
        for (int64_t i = 0; i < nb; ++i) {
          s[static_cast<size_t>(i)] = selector(c.data() + i * cap, q0 + i);
          masks[static_cast<size_t>(i)] = row_mask(exclude, query_rows, q0 + i);
        }
        const int64_t i0 = n_tiles * t / parts * tw;
        const int64_t i1 = std::min(n_items, n_tiles * (t + 1) / parts * tw);
        scan_items(q0, nb, i0, i1, tile.data(), s.data(), masks.data());
        for (Selector& query_sel : s) query_sel.finish();
      }
      for (int64_t i = 0; i < nb; ++i) {
        merged.clear();
        for (int64_t t = 0; t < parts; ++t) {
          const Selector& one_part = sel[static_cast<size_t>(t)][static_cast<size_t>(i)];
          merged.insert(merged.end(), one_part.buf, one_part.buf + one_part.size);
        }
        const size_t o = static_cast<size_t>((q0 + i) * k);
        write_row(merged.data(), static_cast<int64_t>(merged.size()), k, out.items.data() + o,
                  out.scores.data() + o);
      }
      progress.update(q0 + nb);
    }
    progress.finish(n_q);
    return out;
  }
#pragma omp parallel
  {
    std::vector<float> tile(static_cast<size_t>(qb * tw));
    std::vector<Cand> cand(static_cast<size_t>(qb * cap));
    std::vector<Selector> sel(static_cast<size_t>(qb));
    std::vector<RowMask> masks(static_cast<size_t>(qb));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t q0 = b * qb;
      const int64_t nb = std::min(qb, n_q - q0);
      for (int64_t i = 0; i < nb; ++i) {
        sel[i] = selector(cand.data() + i * cap, q0 + i);
        masks[i] = row_mask(exclude, query_rows, q0 + i);
      }
      scan_items(q0, nb, 0, n_items, tile.data(), sel.data(), masks.data());
      for (int64_t i = 0; i < nb; ++i) {
        const size_t o = static_cast<size_t>((q0 + i) * k);
        sel[i].finish();
        write_row(sel[i].buf, sel[i].size, k, out.items.data() + o, out.scores.data() + o);
      }
      const int64_t now = done.fetch_add(nb, std::memory_order_relaxed) + nb;
#ifdef _OPENMP
      if (omp_get_thread_num() == 0) progress.update(now);
#else
      progress.update(now);
#endif
    }
  }
  progress.finish(n_q);
  return out;
}

TopK topk_naive(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d,
                int k, const data::Csr* exclude, const std::vector<index_t>& query_rows,
                const std::vector<index_t>* global_exclude) {
  validate_topk_arguments(queries, n_q, items, n_items, d, k, exclude, query_rows, global_exclude);
  TopK out = padded(n_q, k);
  std::vector<uint8_t> masked(static_cast<size_t>(n_items));
  std::vector<Cand> all;
  for (int64_t q = 0; q < n_q; ++q) {
    std::fill(masked.begin(), masked.end(), 0);
    const RowMask m = row_mask(exclude, query_rows, q);
    for (const index_t* p = m.begin; p != m.end; ++p) masked[*p] = 1;
    if (global_exclude)
      for (index_t i : *global_exclude) masked[i] = 1;
    all.clear();
    for (int64_t i = 0; i < n_items; ++i) {
      if (masked[i]) continue;
      all.push_back(Cand{ranking_score(queries + q * d, items + i * d, d), static_cast<index_t>(i)});
    }
    std::sort(all.begin(), all.end(), better);
    for (int64_t j = 0; j < std::min<int64_t>(k, static_cast<int64_t>(all.size())); ++j) {
      out.items[static_cast<size_t>(q * k + j)] = all[j].item;
      out.scores[static_cast<size_t>(q * k + j)] = all[j].score;
    }
  }
  return out;
}

}  // namespace recforge::eval
