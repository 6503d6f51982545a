// BPR, sampled softmax and CCL on the CPU: the sampler, the gradients of one step against finite
// differences of independently written losses, the bias column, fold-in, determinism and
// configuration errors. Quality on planted data on every device: tests/gpu/embedding_gpu_test.cpp.
#include "models/batch/batch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "models/batch/batch_cpu.h"
#include "config/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "random_data.h"

namespace recforge::models {
namespace {

using backend::BatchLoss;
using backend::BatchParams;
using backend::Optimizer;
using backend::cpu::BatchTrainerCpu;
using backend::cpu::ItemSampler;
using data::Csr;
using data::index_t;

TEST(ItemSampler, DrawsInProportionToPopularityToTheExponent) {
  const std::vector<int64_t> counts = {0, 1, 3, 7, 15, 0, 63};
  for (double beta : {0.0, 0.5, 1.0}) {
    const ItemSampler s(counts, beta);
    double total = 0;
    for (int64_t c : counts) total += std::pow(c + 1.0, beta);
    std::vector<int64_t> seen(counts.size(), 0);
    Rng rng(11);
    const int draws = 400000;
    for (int t = 0; t < draws; ++t) ++seen[s.draw(rng)];
    for (size_t j = 0; j < counts.size(); ++j) {
      const double want = std::pow(counts[j] + 1.0, beta) / total;
      EXPECT_NEAR(s.probability(static_cast<index_t>(j)), want, 1e-12) << "beta " << beta;
      // 400k draws: the standard error of a frequency is below 8e-4.
      EXPECT_NEAR(static_cast<double>(seen[j]) / draws, want, 4e-3) << "item " << j << " beta " << beta;
    }
  }
}

TEST(ItemSampler, TwoHalfDrawIsTheSameDraw) {
  // The BPR epoch draws a column, prefetches its table entry, and resolves it later: the same
  // random numbers must give the same item as one draw() (whose distribution the test above
  // checks), whatever the two become.
  const std::vector<int64_t> counts = {0, 1, 3, 7, 15, 0, 63, 2};
  for (double beta : {0.0, 0.75}) {
    const ItemSampler s(counts, beta);
    Rng a(5), b(5);
    std::vector<int64_t> seen(counts.size(), 0);
    for (int t = 0; t < 10000; ++t) {
      const index_t whole = s.draw(a);
      const ItemSampler::Column c = s.column(b);
      s.prefetch(c);
      ASSERT_EQ(s.resolve(c), whole) << "draw " << t << " beta " << beta;
      ++seen[whole];
    }
    // Not a constant: every item came up.
    for (size_t j = 0; j < counts.size(); ++j) EXPECT_GT(seen[j], 0) << "item " << j;
  }
}

TEST(ItemSampler, RejectsTheUsersOwnItemsWhenAsked) {
  const ItemSampler s(std::vector<int64_t>(10, 1), 0.0);
  const std::vector<index_t> row = {0, 1, 2, 3, 4, 6, 7, 8};  // unseen: 5 and 9
  Rng rng(3);
  std::map<index_t, int> got;
  for (int t = 0; t < 20000; ++t)
    ++got[backend::cpu::draw_negative(s, rng, 2, true, row.data(), row.data() + row.size())];
  // Each draw is unseen with probability 0.2; after 16 refused draws the sample is skipped (-1).
  const double skipped = std::pow(0.8, 16);
  ASSERT_EQ(got.size(), 3u) << "only items 5 and 9 are unseen";
  EXPECT_NEAR(got[-1] / 20000.0, skipped, 0.006);
  EXPECT_NEAR(got[5] / 20000.0, (1 - skipped) / 2, 0.02);
  EXPECT_NEAR(got[9] / 20000.0, (1 - skipped) / 2, 0.02);
  // Without rejection only the positive itself is refused.
  std::set<index_t> any;
  for (int t = 0; t < 20000; ++t)
    any.insert(backend::cpu::draw_negative(s, rng, 2, false, row.data(), row.data() + row.size()));
  EXPECT_EQ(any.size(), 9u);
  EXPECT_EQ(any.count(2), 0u);
  // A user who has seen everything but the positive gets no negative (-1, the sample is skipped).
  const std::vector<index_t> all = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(backend::cpu::draw_negative(s, rng, 2, true, all.data(), all.data() + all.size()), -1);
}

BatchParams params(BatchLoss loss, int factors, bool bias) {
  BatchParams p;
  p.loss = loss;
  p.factors = factors;
  p.item_bias = bias;
  p.optimizer = Optimizer::kSgd;
  p.regularization = 0.07;
  p.temperature = 0.6;
  return p;
}

// Factors with the bias column convention: users hold 1 in the last column.
std::pair<Matrix, Matrix> factors(int n_users, int n_items, const BatchParams& p) {
  Matrix u = test::random_matrix(n_users, p.dim(), 5, 0.5);
  Matrix v = test::random_matrix(n_items, p.dim(), 6, 0.5);
  if (p.item_bias)
    for (int64_t r = 0; r < u.rows; ++r) u.row(r)[p.dim() - 1] = 1.f;
  return {u, v};
}

// BPR's loss written from its definition, in double: Σ −log σ(u·(p − n)) + λ/2 (‖u‖² + ‖p‖² +
// ‖n‖²) over the triples, the users' bias column not penalised (it is not a parameter).
double bpr_loss(const BatchParams& p, const Matrix& U, const Matrix& V, const std::vector<index_t>& us,
                const std::vector<index_t>& ps, const std::vector<index_t>& ns) {
  double l = 0;
  for (size_t t = 0; t < us.size(); ++t) {
    double x = 0, reg = 0;
    for (int c = 0; c < p.dim(); ++c) {
      const double u = U.row(us[t])[c], a = V.row(ps[t])[c], b = V.row(ns[t])[c];
      x += u * (a - b);
      reg += (c < p.factors ? u * u : 0.0) + a * a + b * b;
    }
    l += std::log1p(std::exp(-x)) + 0.5 * p.regularization * reg;
  }
  return l;
}

// The sampled softmax loss from its definition: mean over rows of −log softmax over the kept
// candidates of z = u·v / T − log E, plus λ/2 of the squared norms of each distinct touched row.
double softmax_loss(const BatchParams& p, const Matrix& U, const Matrix& V,
                    const std::vector<index_t>& us, const std::vector<index_t>& ps,
                    const std::vector<index_t>& ns, const std::vector<double>& log_e) {
  std::vector<index_t> cand(ps);
  cand.insert(cand.end(), ns.begin(), ns.end());
  const size_t B = ps.size();
  double l = 0;
  for (size_t b = 0; b < B; ++b) {
    std::vector<double> z;
    double own = 0;
    for (size_t c = 0; c < cand.size(); ++c) {
      const bool keep = c == b || (c < B ? p.in_batch && cand[c] != ps[b] : cand[c] != ps[b]);
      if (!keep) continue;
      double s = 0;
      for (int k = 0; k < p.dim(); ++k) s += static_cast<double>(U.row(us[b])[k]) * V.row(cand[c])[k];
      const double zc = s / p.temperature - log_e[c];
      if (c == b) own = zc;
      z.push_back(zc);
    }
    double mx = -1e300, sum = 0;
    for (double v : z) mx = std::max(mx, v);
    for (double v : z) sum += std::exp(v - mx);
    l += -(own - mx - std::log(sum));
  }
  l /= static_cast<double>(B);
  double reg = 0;
  for (index_t u : std::set<index_t>(us.begin(), us.end()))
    for (int k = 0; k < p.factors; ++k) reg += static_cast<double>(U.row(u)[k]) * U.row(u)[k];
  for (index_t i : std::set<index_t>(cand.begin(), cand.end()))
    for (int k = 0; k < p.dim(); ++k) reg += static_cast<double>(V.row(i)[k]) * V.row(i)[k];
  return l + 0.5 * p.regularization * reg;
}

// Checks that one SGD step at learning rate 1 moved every weight by minus the central finite
// difference of `loss` (h = 1e-3 in double; the loss is smooth, so the error is O(h²)).
template <class Loss>
void expect_step_is_gradient(const Matrix& u0, const Matrix& v0, const Matrix& u1, const Matrix& v1,
                             const BatchParams& p, Loss loss) {
  const double h = 1e-3;
  auto check = [&](bool user_side) {
    const Matrix& before = user_side ? u0 : v0;
    const Matrix& after = user_side ? u1 : v1;
    for (int64_t r = 0; r < before.rows; ++r)
      for (int c = 0; c < p.dim(); ++c) {
        Matrix up = user_side ? u0 : v0, dn = up;
        up.row(r)[c] = static_cast<float>(before.row(r)[c] + h);
        dn.row(r)[c] = static_cast<float>(before.row(r)[c] - h);
        const double step = static_cast<double>(up.row(r)[c]) - dn.row(r)[c];
        const double lp = user_side ? loss(up, v0) : loss(u0, up);
        const double ln = user_side ? loss(dn, v0) : loss(u0, dn);
        const double fd = (lp - ln) / step;
        const double moved = static_cast<double>(before.row(r)[c]) - after.row(r)[c];
        if (user_side && p.item_bias && c == p.dim() - 1) {
          EXPECT_EQ(after.row(r)[c], 1.f) << "the users' bias column must stay 1";
          continue;
        }
        EXPECT_NEAR(moved, fd, 2e-4 + 1e-3 * std::abs(fd))
            << (user_side ? "user " : "item ") << r << " column " << c;
      }
  };
  check(true);
  check(false);
}

TEST(BatchStep, BprStepMovesEachWeightByItsGradient) {
  for (bool bias : {false, true}) {
    BatchParams p = params(BatchLoss::kBpr, 5, bias);
    const Csr x = test::random_csr(6, 12, 3, 1);  // only the trainer's bookkeeping reads it
    auto [u0, v0] = factors(6, 12, p);
    // Triples touching distinct rows, so applying them one after the other equals one step on
    // their summed loss.
    const std::vector<index_t> us = {0, 2, 5}, ps = {1, 4, 7}, ns = {3, 9, 11};
    Matrix u1 = u0, v1 = v0;
    BatchTrainerCpu t(p, x, 1);
    const double reported = t.step(u1, v1, us, ps, ns, 1.0);
    BatchParams no_reg = p;
    no_reg.regularization = 0;
    EXPECT_NEAR(reported, bpr_loss(no_reg, u0, v0, us, ps, ns), 1e-5);
    expect_step_is_gradient(u0, v0, u1, v1, p, [&](const Matrix& u, const Matrix& v) {
      return bpr_loss(p, u, v, us, ps, ns);
    });
  }
}

TEST(BatchStep, SoftmaxStepMovesEachWeightByItsGradient) {
  for (bool in_batch : {true, false})
    for (bool logq : {true, false}) {
      BatchParams p = params(BatchLoss::kSoftmax, 4, in_batch);  // bias with in-batch, for variety
      p.in_batch = in_batch;
      p.logq = logq;
      p.negatives = 3;
      const Csr x = test::random_csr(8, 10, 4, 2);
      auto [u0, v0] = factors(8, 10, p);
      // A repeated user (rows 0 and 3), a repeated positive (rows 1 and 2: accidental hits in
      // the batch) and a negative equal to row 0's positive.
      const std::vector<index_t> us = {1, 4, 6, 1}, ps = {2, 5, 5, 8}, ns = {2, 9, 0};
      Matrix u1 = u0, v1 = v0;
      BatchTrainerCpu t(p, x, 1);
      const double reported = t.step(u1, v1, us, ps, ns, 1.0);
      // The expected counts the trainer corrects with: B·n_c/nnz (in-batch) + N·q_c.
      const std::vector<int64_t> counts = backend::cpu::item_counts(x);
      std::vector<double> log_e;
      for (index_t c : {2, 5, 5, 8, 2, 9, 0}) {
        const double e = (in_batch ? 4.0 * counts[c] / static_cast<double>(x.nnz()) : 0.0) + 3.0 / 10.0;
        log_e.push_back(logq ? std::log(e) : 0.0);
      }
      BatchParams no_reg = p;
      no_reg.regularization = 0;
      EXPECT_NEAR(reported, softmax_loss(no_reg, u0, v0, us, ps, ns, log_e), 1e-5);
      expect_step_is_gradient(u0, v0, u1, v1, p, [&](const Matrix& u, const Matrix& v) {
        return softmax_loss(p, u, v, us, ps, ns, log_e);
      });
    }
}

// At a low temperature the positive's softmax probability underflows float32 (logit gaps above
// ~87 were clamped, above ~104 they give 0): the reported loss must still be −log softmax,
// mx − z_b + log Σ exp(z_c − mx), not a clamped or infinite value.
TEST(BatchStep, SoftmaxLossIsExactWhereTheProbabilityUnderflows) {
  BatchParams p = params(BatchLoss::kSoftmax, 4, true);
  p.temperature = 0.005;
  p.negatives = 3;
  p.regularization = 0;
  const Csr x = test::random_csr(8, 10, 4, 2);
  auto [u0, v0] = factors(8, 10, p);
  const std::vector<index_t> us = {1, 4, 6, 1}, ps = {2, 5, 5, 8}, ns = {2, 9, 0};
  const std::vector<int64_t> counts = backend::cpu::item_counts(x);
  std::vector<index_t> cand(ps);
  cand.insert(cand.end(), ns.begin(), ns.end());
  std::vector<double> log_e;
  for (index_t c : cand) log_e.push_back(std::log(4.0 * counts[c] / x.nnz() + 3.0 / 10.0));
  // Each float32 logit z = (u·v)·(1/T) − log E carries an error of at most (d + 2)·u·(Σ|u_k v_k|/T
  // + |log E|) (d products, the scaling, the subtraction); the loss adds two logits (z_b, mx)
  // and log Σ, whose fast_exp terms keep the 1e-5 of SoftmaxStepMovesEachWeightByItsGradient.
  double z_err = 0, widest_gap = 0;
  for (size_t b = 0; b < ps.size(); ++b) {
    double own = 0, mx = -1e300;
    for (size_t c = 0; c < cand.size(); ++c) {
      double s = 0, a = 0;
      for (int k = 0; k < p.dim(); ++k) {
        s += static_cast<double>(u0.row(us[b])[k]) * v0.row(cand[c])[k];
        a += std::fabs(static_cast<double>(u0.row(us[b])[k]) * v0.row(cand[c])[k]);
      }
      z_err = std::max(z_err, (p.dim() + 2) * 0x1p-24 * (a / p.temperature + std::fabs(log_e[c])));
      const bool keep = c == b || cand[c] != ps[b];  // in_batch: every other candidate
      if (!keep) continue;
      const double z = s / p.temperature - log_e[c];
      if (c == b) own = z;
      mx = std::max(mx, z);
    }
    widest_gap = std::max(widest_gap, mx - own);
  }
  ASSERT_GT(widest_gap, 104) << "a positive whose probability underflows float32";
  BatchTrainerCpu t(p, x, 1);
  Matrix u1 = u0, v1 = v0;
  const double reported = t.step(u1, v1, us, ps, ns, 1e-3);
  EXPECT_NEAR(reported, softmax_loss(p, u0, v0, us, ps, ns, log_e), 2 * z_err + 1e-5);
}

// The central finite difference (h in each column, in double) of `loss(users, items)` with
// respect to row r of the user (user_side) or item factors, the other matrix held at its value.
template <class Loss>
std::vector<double> row_gradient(const Matrix& u0, const Matrix& v0, bool user_side, int64_t r,
                                 double h, Loss loss) {
  const Matrix& before = user_side ? u0 : v0;
  std::vector<double> g(static_cast<size_t>(before.cols));
  for (int64_t c = 0; c < before.cols; ++c) {
    Matrix up = before, dn = before;
    up.row(r)[c] += static_cast<float>(h);
    dn.row(r)[c] -= static_cast<float>(h);
    const double step = static_cast<double>(up.row(r)[c]) - dn.row(r)[c];
    g[c] = user_side ? (loss(up, v0) - loss(dn, v0)) / step : (loss(u0, up) - loss(u0, dn)) / step;
  }
  return g;
}

TEST(BatchStep, NormalizedSoftmaxStepFollowsTheGradientOnTheSphere) {
  // Unit rows, scores are cosines: a small SGD step moves each touched row by −lr times the
  // gradient projected onto the row's tangent space (to first order in lr) and keeps it unit.
  // With an item bias the bias column is outside the sphere (score = cosine + bias): it takes
  // the plain step −lr (∂loss/∂b + λ b), and the users' 1 there stays 1.
  for (bool bias : {false, true}) {
    BatchParams p = params(BatchLoss::kSoftmax, 6, bias);
    p.normalize = true;
    p.negatives = 3;
    p.temperature = 0.2;
    const int k = p.factors;
    const Csr x = test::random_csr(8, 10, 4, 4);
    auto [u0, v0] = factors(8, 10, p);
    for (Matrix* m : {&u0, &v0})
      for (int64_t r = 0; r < m->rows; ++r) {
        double n = 0;
        for (int c = 0; c < k; ++c) n += static_cast<double>(m->row(r)[c]) * m->row(r)[c];
        for (int c = 0; c < k; ++c) m->row(r)[c] = static_cast<float>(m->row(r)[c] / std::sqrt(n));
      }
    const std::vector<index_t> us = {1, 4, 6}, ps = {2, 5, 8}, ns = {3, 9, 0};
    const std::vector<int64_t> counts = backend::cpu::item_counts(x);
    std::vector<double> log_e;
    for (index_t c : {2, 5, 8, 3, 9, 0})
      log_e.push_back(std::log(3.0 * counts[c] / static_cast<double>(x.nnz()) + 3.0 / 10.0));
    Matrix u1 = u0, v1 = v0;
    BatchTrainerCpu t(p, x, 1);
    const double lr = 1e-3;
    t.step(u1, v1, us, ps, ns, lr);
    BatchParams no_reg = p;
    no_reg.regularization = 0;  // radial on the sphere; the bias's L2 is added below
    auto loss = [&](const Matrix& u, const Matrix& v) { return softmax_loss(no_reg, u, v, us, ps, ns, log_e); };
    const double h = 1e-3;
    int moved_rows = 0;
    for (bool user_side : {true, false}) {
      const Matrix& before = user_side ? u0 : v0;
      const Matrix& after = user_side ? u1 : v1;
      for (int64_t r = 0; r < before.rows; ++r) {
        const std::vector<double> g = row_gradient(u0, v0, user_side, r, h, loss);
        double dot = 0, norm = 0, shift = 0;
        for (int c = 0; c < p.dim(); ++c) {
          if (c < k) {
            dot += g[c] * before.row(r)[c];
            norm += static_cast<double>(after.row(r)[c]) * after.row(r)[c];
          }
          shift += std::abs(after.row(r)[c] - before.row(r)[c]);
        }
        EXPECT_NEAR(norm, 1.0, 1e-5) << "row " << r << " bias " << bias;
        moved_rows += shift > 0;
        for (int c = 0; c < p.dim(); ++c) {
          const bool touched = shift > 0;
          double want = -lr * (g[c] - dot * before.row(r)[c]);
          if (c == k) want = user_side || !touched ? 0.0 : -lr * (g[c] + p.regularization * before.row(r)[c]);
          EXPECT_NEAR(after.row(r)[c] - before.row(r)[c], want, 2e-6 + 0.02 * std::abs(want))
              << (user_side ? "user " : "item ") << r << " column " << c << " bias " << bias;
        }
        if (bias && user_side) {
          EXPECT_EQ(after.row(r)[k], 1.f) << "user " << r;
        }
      }
    }
    EXPECT_EQ(moved_rows, 3 + 6) << "the batch touches 3 users and 6 items";
    if (bias) {
      // The biases of the six candidates moved, so the test above is not vacuous for them.
      double bias_shift = 0;
      for (index_t i : {2, 5, 8, 3, 9, 0}) bias_shift += std::abs(v1.row(i)[k] - v0.row(i)[k]);
      EXPECT_GT(bias_shift, 1e-5);
    }
  }
}

// SimpleX's cosine contrastive loss from its definition, in double: mean over rows of
// (1 − cos(u_b, i_b)) + w · mean over the row's negatives c (the shared candidates other than
// its positive) of max(0, cos(u_b, c) − margin). Cosines are computed from the rows as given
// (unit rows in the tests, so cos = u·v; the finite differences below step off the sphere and
// the projection removes the radial part).
// The same loss with row b's user vector given as user_vecs[b].
double ccl_loss_of(const BatchParams& p, const std::vector<std::vector<double>>& user_vecs,
                   const Matrix& V, const std::vector<index_t>& ps, const std::vector<index_t>& ns) {
  std::vector<index_t> cand;
  if (p.in_batch) cand = ps;
  cand.insert(cand.end(), ns.begin(), ns.end());
  auto score = [&](size_t b, index_t i) {
    double s = 0;
    for (int k = 0; k < p.dim(); ++k) s += user_vecs[b][static_cast<size_t>(k)] * V.row(i)[k];
    return s;
  };
  double l = 0;
  for (size_t b = 0; b < ps.size(); ++b) {
    double above = 0;
    int kept = 0;
    for (index_t c : cand) {
      if (c == ps[b]) continue;
      ++kept;
      above += std::max(0.0, score(b, c) - p.margin);
    }
    l += 1.0 - score(b, ps[b]) + (kept > 0 ? p.negative_weight * above / kept : 0.0);
  }
  return l / static_cast<double>(ps.size());
}

double ccl_loss(const BatchParams& p, const Matrix& U, const Matrix& V,
                const std::vector<index_t>& us, const std::vector<index_t>& ps,
                const std::vector<index_t>& ns) {
  std::vector<std::vector<double>> vecs;
  for (index_t u : us) vecs.emplace_back(U.row(u), U.row(u) + p.dim());
  return ccl_loss_of(p, vecs, V, ps, ns);
}

// SimpleX's aggregated user vector from its definition, in double: z / ‖z‖ with
// z = (1 − h) e_u + h W m_u, m_u the mean of the item rows of u's row of x, W row-major.
std::vector<double> aggregated_user(const BatchParams& p, const Matrix& U, const Matrix& V,
                                    const std::vector<double>& W, const Csr& x, index_t u) {
  const int d = p.factors;
  const double h = p.history_weight;
  std::vector<double> m(static_cast<size_t>(d), 0.0), z(static_cast<size_t>(d), 0.0);
  const int64_t n = x.row_size(u);
  for (auto e = x.indptr[u]; e < x.indptr[u + 1]; ++e)
    for (int c = 0; c < d; ++c) m[c] += V.row(x.indices[e])[c] / static_cast<double>(n);
  double norm = 0;
  for (int r = 0; r < d; ++r) {
    double a = 0;
    for (int c = 0; c < d; ++c) a += W[static_cast<size_t>(r * d + c)] * m[c];
    z[r] = (1 - h) * U.row(u)[r] + h * a;
    norm += z[r] * z[r];
  }
  for (double& v : z) v /= std::sqrt(norm);
  return z;
}

// The CCL settings of the finite-difference step tests: 6 factors, SGD (params()), 4 shared
// negatives, no in-batch ones, a margin low enough that some negatives are above it.
BatchParams small_ccl_params() {
  BatchParams p = params(BatchLoss::kCcl, 6, false);
  p.normalize = true;
  p.in_batch = false;
  p.negatives = 4;
  p.margin = 0.05;
  p.negative_weight = 3.0;
  return p;
}

// Scales every row of m to unit norm.
void unit_rows(Matrix& m) {
  for (int64_t r = 0; r < m.rows; ++r) backend::cpu::normalize_row(m.row(r), static_cast<int>(m.cols));
}

// The data and batch of the CCL finite-difference step tests: 8 users × 10 items, unit factor
// rows, and a batch with a repeated user (rows 0 and 3), a repeated positive (rows 1 and 2) and a
// negative equal to row 0's positive.
struct SmallCclCase {
  Csr x = test::random_csr(8, 10, 4, 4);
  Matrix u0, v0;
  std::vector<index_t> us = {1, 4, 6, 1}, ps = {2, 5, 5, 8}, ns = {2, 9, 0, 3};
  explicit SmallCclCase(const BatchParams& p) {
    std::tie(u0, v0) = factors(8, 10, p);
    unit_rows(u0);
    unit_rows(v0);
  }
};

// Σ_k a[k]·b[k] in double.
template <class A>
double dot_double(const A* a, const float* b, int d) {
  double x = 0;
  for (int k = 0; k < d; ++k) x += static_cast<double>(a[k]) * b[k];
  return x;
}

// Checks one small SGD step of unit rows (u0, v0 → u1, v1, learning rate lr) against the central
// differences of `loss`: every row stays unit and moved by −lr times the gradient projected onto
// its tangent space (to first order in lr; the O(lr²) rest is the rescaling, below the
// tolerance). Returns the user rows and the item rows that moved.
template <class Loss>
std::pair<std::set<int64_t>, std::set<int64_t>> expect_sphere_step(const Matrix& u0, const Matrix& v0,
                                                                   const Matrix& u1, const Matrix& v1,
                                                                   double lr, Loss loss,
                                                                   const std::string& label) {
  const double h = 1e-3;
  std::pair<std::set<int64_t>, std::set<int64_t>> moved;
  for (bool user_side : {true, false}) {
    const Matrix& before = user_side ? u0 : v0;
    const Matrix& after = user_side ? u1 : v1;
    for (int64_t r = 0; r < before.rows; ++r) {
      const std::vector<double> g = row_gradient(u0, v0, user_side, r, h, loss);
      double dot = 0, norm = 0, shift = 0;
      for (int64_t c = 0; c < before.cols; ++c) {
        dot += g[c] * before.row(r)[c];
        norm += static_cast<double>(after.row(r)[c]) * after.row(r)[c];
        shift += std::abs(after.row(r)[c] - before.row(r)[c]);
      }
      EXPECT_NEAR(norm, 1.0, 1e-5) << "row " << r << " " << label;
      if (shift > 0) (user_side ? moved.first : moved.second).insert(r);
      for (int64_t c = 0; c < before.cols; ++c) {
        const double want = -lr * (g[c] - dot * before.row(r)[c]);
        EXPECT_NEAR(after.row(r)[c] - before.row(r)[c], want, 2e-6 + 0.02 * std::abs(want))
            << (user_side ? "user " : "item ") << r << " column " << c << " " << label;
      }
    }
  }
  return moved;
}

TEST(BatchStep, CclStepFollowsTheGradientOnTheSphere) {
  // One small SGD step moves each touched row by −lr times the gradient of the batch's mean
  // CCL loss projected onto the row's tangent space (to first order in lr; the O(lr²) rest is
  // the rescaling, below the tolerance), and keeps the row unit. A repeated user (rows 0 and 3),
  // a repeated positive (rows 1 and 2) and a negative equal to row 0's positive cover the
  // deduplicated updates and the left-out accidental hits.
  // Both ways of forming the gradient products (dense GEMMs, and pair by pair over the
  // negatives above the margin: set_sparse_share) are checked.
  for (bool in_batch : {false, true})
    for (double share : {0.0, 1.0}) {
      SCOPED_TRACE(testing::Message() << "sparse share " << share);
      BatchParams p = small_ccl_params();
      p.in_batch = in_batch;
      const SmallCclCase small(p);
      const Csr& x = small.x;
      const Matrix &u0 = small.u0, &v0 = small.v0;
      const std::vector<index_t>&us = small.us, &ps = small.ps, &ns = small.ns;
      // The loss has kinks where a cosine equals the margin: the finite differences (h = 1e-3 on
      // unit rows moves a cosine by at most 2e-3) must not straddle one, and some negatives must
      // be above the margin, else the negative term would be untested.
      int above = 0;
      for (size_t b = 0; b < us.size(); ++b)
        for (index_t c : {2, 5, 8, 9, 0, 3}) {
          const double cos = dot_double(u0.row(us[b]), v0.row(c), p.dim());
          ASSERT_GT(std::abs(cos - p.margin), 5e-3) << "user " << us[b] << " item " << c;
          above += cos > p.margin;
        }
      ASSERT_GE(above, 4);
      Matrix u1 = u0, v1 = v0;
      BatchTrainerCpu t(p, x, 1);
      t.set_sparse_share(share);
      const double lr = 1e-3;
      const double reported = t.step(u1, v1, us, ps, ns, lr);
      EXPECT_EQ(t.hinge_counts().sparse_steps, share > 0 ? 1 : 0);
      // The nonzero entries of G: each row's candidates, but its positive, above the margin.
      std::vector<index_t> cand = in_batch ? ps : std::vector<index_t>{};
      cand.insert(cand.end(), ns.begin(), ns.end());
      int64_t active = 0;
      for (size_t b = 0; b < us.size(); ++b)
        for (index_t c : cand)
          active += c != ps[b] && dot_double(u0.row(us[b]), v0.row(c), p.dim()) > p.margin;
      EXPECT_EQ(t.hinge_counts().active, active);
      EXPECT_EQ(t.hinge_counts().pairs, static_cast<int64_t>(us.size() * cand.size()));
      // The reported loss: float32 cosines of unit rows (error ~ d·2^-24 each) against double.
      EXPECT_NEAR(reported, ccl_loss(p, u0, v0, us, ps, ns), 1e-5) << "in_batch " << in_batch;
      auto loss = [&](const Matrix& u, const Matrix& v) { return ccl_loss(p, u, v, us, ps, ns); };
      const auto [users_moved, items_moved] =
          expect_sphere_step(u0, v0, u1, v1, lr, loss, in_batch ? "in_batch" : "no in_batch");
      // At least the 3 users and the 3 positives moved (a negative moves only when some row's
      // cosine with it is above the margin), so the checks above are not vacuous.
      EXPECT_GE(users_moved.size() + items_moved.size(), 3u + 3u) << "in_batch " << in_batch;
    }
}

TEST(BatchStep, CclHistoryAggregationFollowsTheGradient) {
  // SimpleX's user-side aggregation (history_weight h): row b scores with u' = z / ‖z‖,
  // z = (1 − h) e_u + h W m_u, m_u the mean of the user's history items. One small SGD step
  // moves each user's own row and each item row (the candidates, the positives and every
  // history item of a batch user) by −lr times the gradient projected onto the row's tangent
  // space, and W, a free matrix, by −lr times its gradient: all against central differences of
  // the loss written in double (tolerances as in CclStepFollowsTheGradientOnTheSphere).
  BatchParams p = small_ccl_params();
  p.history_weight = 0.4;
  const int d = p.factors;
  const SmallCclCase small(p);
  const Csr& x = small.x;
  const Matrix &u0 = small.u0, &v0 = small.v0;
  const std::vector<index_t>&us = small.us, &ps = small.ps, &ns = small.ns;
  // W: the identity plus noise, so that a transposed W or gradient would show.
  std::vector<float> w0(static_cast<size_t>(d * d));
  Rng rng(17);
  for (int r = 0; r < d; ++r)
    for (int c = 0; c < d; ++c)
      w0[r * d + c] = (r == c ? 1.f : 0.f) + 0.3f * static_cast<float>(rng.uniform() - 0.5);
  const std::vector<double> w0d(w0.begin(), w0.end());
  auto loss_w = [&](const Matrix& u, const Matrix& v, const std::vector<double>& w) {
    std::vector<std::vector<double>> vecs;
    for (index_t b : us) vecs.push_back(aggregated_user(p, u, v, w, x, b));
    return ccl_loss_of(p, vecs, v, ps, ns);
  };
  auto loss = [&](const Matrix& u, const Matrix& v) { return loss_w(u, v, w0d); };
  // No cosine within 5e-3 of the margin's kink (a finite difference moves one by < 2e-3), and
  // some negatives above it.
  int above = 0;
  for (index_t b : us) {
    const std::vector<double> ub = aggregated_user(p, u0, v0, w0d, x, b);
    for (index_t c : {2, 5, 8, 9, 0, 3}) {
      const double cos = dot_double(ub.data(), v0.row(c), d);
      ASSERT_GT(std::abs(cos - p.margin), 5e-3) << "user " << b << " item " << c;
      above += cos > p.margin;
    }
  }
  ASSERT_GE(above, 4);
  // The exported vectors are the same u', for every user.
  const Matrix agg = backend::cpu::aggregate_users(p, u0, w0, v0, x, 2);
  for (index_t u = 0; u < 8; ++u) {
    const std::vector<double> want = aggregated_user(p, u0, v0, w0d, x, u);
    for (int c = 0; c < d; ++c) EXPECT_NEAR(agg.row(u)[c], want[c], 1e-6) << "user " << u;
  }

  for (double share : {0.0, 1.0}) {  // dense and pair-by-pair gradient products
    SCOPED_TRACE(testing::Message() << "sparse share " << share);
    BatchTrainerCpu t(p, x, 1);
    t.set_sparse_share(share);
    backend::cpu::OptimizerState state;
    state.map = w0;
    t.set_optimizer_state(state, 8, 10);
    Matrix u1 = u0, v1 = v0;
    const double lr = 1e-3;
    const double reported = t.step(u1, v1, us, ps, ns, lr);
    EXPECT_EQ(t.hinge_counts().sparse_steps, share > 0 ? 1 : 0);
    EXPECT_NEAR(reported, loss(u0, v0), 1e-5);
    const auto [users_moved, items_moved] =
        expect_sphere_step(u0, v0, u1, v1, lr, loss, "aggregated");
    std::set<index_t> history_items;
    for (index_t b : us)
      for (auto e = x.indptr[b]; e < x.indptr[b + 1]; ++e) history_items.insert(x.indices[e]);
    for (index_t i : history_items)
      EXPECT_TRUE(items_moved.count(i)) << "history item " << i << " did not move";
    const double h = 1e-3;
    // Items that only the history path moves, so the checks above cover it.
    int history_only = 0;
    for (index_t i : history_items) history_only += !std::set<index_t>{2, 5, 8, 9, 0, 3}.count(i);
    ASSERT_GE(history_only, 2) << "the batch users' histories reach beyond the candidates";
    const std::vector<float>& w1 = t.history_map();
    double moved = 0;
    for (int e = 0; e < d * d; ++e) {
      std::vector<double> up = w0d, dn = w0d;
      up[e] += h;
      dn[e] -= h;
      const double g = (loss_w(u0, v0, up) - loss_w(u0, v0, dn)) / (2 * h);
      EXPECT_NEAR(w1[e] - w0[e], -lr * g, 2e-6 + 0.02 * std::abs(lr * g)) << "W entry " << e;
      moved += std::abs(w1[e] - w0[e]);
    }
    EXPECT_GT(moved, 1e-5) << "W moved";
  }
}

TEST(BatchStep, CclDropoutMaskDropsItsShareAndKeepsTheMean) {
  // Each value is 0 with probability p, else 1/(1 − p): over 200 rows × 50 values at p 0.3 the
  // zero share is within 5 binomial standard deviations (sqrt(0.21/10000) ≈ 0.0046) of 0.3; the
  // same seed and row give the same mask, another row another one.
  const int d = 50;
  std::vector<float> m(d), again(d);
  int zeros = 0;
  for (int r = 0; r < 200; ++r) {
    backend::cpu::dropout_mask(77, r, d, 0.3, m.data());
    for (float v : m) {
      ASSERT_TRUE(v == 0.f || std::abs(v - 1.f / 0.7f) < 1e-6f) << v;
      zeros += v == 0.f;
    }
  }
  EXPECT_NEAR(zeros / 10000.0, 0.3, 5 * 0.0046);
  backend::cpu::dropout_mask(77, 5, d, 0.3, m.data());
  backend::cpu::dropout_mask(77, 5, d, 0.3, again.data());
  EXPECT_EQ(m, again);
  backend::cpu::dropout_mask(77, 6, d, 0.3, again.data());
  EXPECT_NE(m, again);
}

TEST(BatchStep, CclDropoutStepFollowsTheGradient) {
  // With model.dropout p, row b scores with its user vector (the own row, or u' with
  // aggregation) times its mask (dropout_mask of the step's seed): one small SGD step against
  // central differences of that loss, written in double with the same masks, as in the tests
  // above. User 1 is in rows 0 and 3 with different masks.
  for (double hw : {0.0, 0.4})
    for (double share : {0.0, 1.0}) {  // dense and pair-by-pair gradient products
      SCOPED_TRACE(testing::Message() << "sparse share " << share);
      BatchParams p = small_ccl_params();
      p.history_weight = hw;
      p.dropout = 0.3;
      const int d = p.factors;
      const SmallCclCase small(p);
      const Csr& x = small.x;
      const Matrix &u0 = small.u0, &v0 = small.v0;
      const std::vector<index_t>&us = small.us, &ps = small.ps, &ns = small.ns;
      std::vector<float> w0(static_cast<size_t>(d * d), 0.f);
      for (int c = 0; c < d; ++c) w0[c * d + c] = 1.f;
      const std::vector<double> w0d(w0.begin(), w0.end());
      BatchTrainerCpu t(p, x, 1);
      t.set_sparse_share(share);
      Matrix u1 = u0, v1 = v0;
      const double lr = 1e-3;
      const double reported = t.step(u1, v1, us, ps, ns, lr);
      EXPECT_EQ(t.hinge_counts().sparse_steps, share > 0 ? 1 : 0);
      std::vector<std::vector<float>> masks(us.size(), std::vector<float>(d));
      int dropped = 0;
      for (size_t b = 0; b < us.size(); ++b) {
        backend::cpu::dropout_mask(t.dropout_seed(), static_cast<int64_t>(b), d, p.dropout,
                                   masks[b].data());
        for (float m : masks[b]) dropped += m == 0.f;
      }
      ASSERT_GT(dropped, 0) << "some coordinates are dropped";
      ASSERT_NE(masks[0], masks[3]) << "a repeated user gets another mask";
      auto loss = [&](const Matrix& u, const Matrix& v) {
        std::vector<std::vector<double>> vecs;
        for (size_t b = 0; b < us.size(); ++b) {
          std::vector<double> ub = hw > 0 ? aggregated_user(p, u, v, w0d, x, us[b])
                                          : std::vector<double>(u.row(us[b]), u.row(us[b]) + d);
          for (int c = 0; c < d; ++c) ub[c] *= masks[b][c];
          vecs.push_back(ub);
        }
        return ccl_loss_of(p, vecs, v, ps, ns);
      };
      // No masked cosine within 5e-3 of the margin's kink.
      for (size_t b = 0; b < us.size(); ++b) {
        std::vector<double> ub = hw > 0 ? aggregated_user(p, u0, v0, w0d, x, us[b])
                                        : std::vector<double>(u0.row(us[b]), u0.row(us[b]) + d);
        for (index_t c : {2, 5, 8, 9, 0, 3}) {
          double cos = 0;
          for (int k = 0; k < d; ++k) cos += ub[k] * masks[b][k] * v0.row(c)[k];
          ASSERT_GT(std::abs(cos - p.margin), 5e-3) << "row " << b << " item " << c << " h " << hw;
        }
      }
      EXPECT_NEAR(reported, loss(u0, v0), 1e-5) << "h " << hw;
      const auto [users_moved, items_moved] =
          expect_sphere_step(u0, v0, u1, v1, lr, loss, hw > 0 ? "dropout, aggregated" : "dropout");
      EXPECT_EQ(users_moved.size(), 3u) << "h " << hw;
    }
}

TEST(BatchStep, CclHistoryAggregationStepIsTheSameOnTwoThreads) {
  // A batch large enough for the threaded path (B·(C+1)·d above 2^22): two threads split the
  // rows, candidates, W's rows and the history items' slots between them; the result must be
  // the one-thread step's up to float rounding (the GEMM slices sum in another order). SGD, so
  // that a weight's step is linear in its gradient: Adam's first step is lr·g/(|g| + ε), whose
  // sign a reordered sum can flip for a gradient near 0, on some CPUs and not others.
  BatchParams p = params(BatchLoss::kCcl, 32, false);
  p.normalize = true;
  p.in_batch = true;
  p.negatives = 512;
  // A margin below −1 keeps every negative above it: with 196,608 (row, candidate) cosines of
  // random 32-dim rows, several lie within a float rounding (~1e-6) of a margin inside (−1, 1),
  // where a reordered sum could switch a hinge term on in one run and off in the other (a jump
  // of weight/(C·B) in a gradient, not rounding). The hinge's kink has its own tests above.
  p.margin = -1.5;
  p.negative_weight = 5.0;
  p.history_weight = 0.5;
  const Csr x = test::random_csr(300, 600, 20, 8);
  auto [u0, v0] = factors(300, 600, p);
  unit_rows(u0);
  unit_rows(v0);
  Rng rng(3);
  std::vector<index_t> us, ps, ns;
  while (us.size() < 256) {  // users with a history (random_csr rows hold 0 to 39 items)
    const index_t u = static_cast<index_t>(rng.below(300));
    const int64_t n = x.row_size(u);
    if (n == 0) continue;
    us.push_back(u);
    ps.push_back(
        x.indices[x.indptr[u] + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)))]);
  }
  for (int n = 0; n < 512; ++n) ns.push_back(static_cast<index_t>(rng.below(600)));
  ASSERT_GE(static_cast<int64_t>(us.size()) * (256 + 512 + 1) * 32, int64_t{1} << 22);
  for (double share : {0.05, 1.0}) {
    // The default share keeps this batch's dense G (every pair above the margin) on the GEMMs;
    // share 1 runs the two threads' pair-by-pair products against the one-thread GEMMs.
    SCOPED_TRACE(testing::Message() << "sparse share " << share);
    Matrix u1 = u0, v1 = v0, u2 = u0, v2 = v0;
    BatchTrainerCpu one(p, x, 1), two(p, x, 2);
    two.set_sparse_share(share);
    const double l1 = one.step(u1, v1, us, ps, ns, 1.0);
    const double l2 = two.step(u2, v2, us, ps, ns, 1.0);
    int64_t pairs = 0;  // every candidate of every row but the row's positive
    for (size_t b = 0; b < us.size(); ++b) {
      for (index_t c : ps) pairs += c != ps[b];
      for (index_t c : ns) pairs += c != ps[b];
    }
    EXPECT_EQ(one.hinge_counts().active, pairs);
    EXPECT_EQ(two.hinge_counts().active, pairs);
    EXPECT_EQ(one.hinge_counts().pairs, 256 * 768);
    EXPECT_EQ(one.hinge_counts().sparse_steps, 0);
    EXPECT_EQ(two.hinge_counts().sparse_steps, share >= 1 ? 1 : 0);
    // The loss is 1 − cos⁺ + weight · mean(cos⁻ − margin) per row (every hinge active), averaged.
    // With γ_n = n·2⁻²⁴/(1 − n·2⁻²⁴), to first order: u' is the normalised z, a 32-term GEMM per
    // element that the two runs slice differently, so the two u' differ by at most 2γ_32 in norm;
    // cos⁺ is the same scalar dot in both runs and moves only with u' (≤ 2γ_32); a cos⁻ is a GEMM
    // entry of unit 32-vectors, its own rounding ≤ γ_32 per run, so ≤ 2γ_32 + 2γ_32 apart. A row's
    // terms, and so their mean (summed in double), differ by at most (2 + 4·weight)·γ_32.
    const double u = std::ldexp(1.0, -24), g32 = 32 * u / (1 - 32 * u);
    EXPECT_NEAR(l1, l2, (2 + 4 * p.negative_weight) * g32);
    // An SGD step at lr 1 moves a weight by its gradient: a sum of at most C = 768 terms of at
    // most weight/(C·B) ≈ 2.5e-5 each, so reordering changes it by at most γ_768 · 0.02 ≈ 1e-6,
    // and the rescaling to unit norm adds ~γ_32 ≈ 2e-6; 1e-5 is above both and far below a
    // missed or doubled row (a touched user's weights move by ~1e-3 on average).
    double moved = 0;
    for (size_t e = 0; e < u1.data.size(); ++e) {
      ASSERT_NEAR(u1.data[e], u2.data[e], 1e-5) << "user value " << e;
      moved += std::abs(u1.data[e] - u0.data[e]);
    }
    for (size_t e = 0; e < v1.data.size(); ++e)
      ASSERT_NEAR(v1.data[e], v2.data[e], 1e-5) << "item value " << e;
    const std::vector<float>& w1 = one.history_map();
    const std::vector<float>& w2 = two.history_map();
    for (size_t e = 0; e < w1.size(); ++e) ASSERT_NEAR(w1[e], w2[e], 1e-5) << "W entry " << e;
    EXPECT_GT(moved, 0.1) << "the step moved the users: " << moved;
  }
}

TEST(BatchStep, AdagradAndAdamScaleEachWeightsStep) {
  // One Adam step from zero state moves each weight by lr · sign(g) (up to ε); one Adagrad step
  // by lr · g / |g|: the same first step, the optimisers' defining property.
  for (Optimizer o : {Optimizer::kAdagrad, Optimizer::kAdam}) {
    BatchParams p = params(BatchLoss::kBpr, 6, false);
    p.optimizer = o;
    p.regularization = 0;
    const Csr x = test::random_csr(4, 6, 2, 3);
    auto [u0, v0] = factors(4, 6, p);
    Matrix u1 = u0, v1 = v0;
    BatchTrainerCpu t(p, x, 1);
    t.step(u1, v1, {0}, {1}, {2}, 0.01);
    for (int c = 0; c < p.dim(); ++c) {
      EXPECT_NEAR(std::abs(u1.row(0)[c] - u0.row(0)[c]), 0.01, 1e-5);
      EXPECT_NEAR(std::abs(v1.row(1)[c] - v0.row(1)[c]), 0.01, 1e-5);
      EXPECT_EQ(v1.row(3)[c], v0.row(3)[c]) << "untouched rows do not move";
    }
  }
}

TEST(BatchEpoch, HardNegativesTrainOnTheHighestScoredDraw) {
  // One user who likes item 0 of 10; item 7 has the highest score. With 64 draws per negative
  // (each of the 9 candidates missed with probability (8/9)^64 < 1e-3) the epoch's single triple
  // uses item 7, so only items 0 and 7 move.
  BatchParams p = params(BatchLoss::kBpr, 4, false);
  p.batch_size = 1;
  p.hard_negatives = 64;
  const Csr x = Csr::from_coo(1, 10, {0}, {0}, {1.f});
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    Matrix u = test::random_matrix(1, 4, 1, 0.5), v = test::random_matrix(10, 4, 2, 0.1);
    for (int c = 0; c < 4; ++c) v.row(7)[c] = u.row(0)[c];  // score ‖u‖², far above the rest
    const Matrix v0 = v;
    BatchTrainerCpu t(p, x, 1);
    t.epoch(u, v, 1, seed);
    for (int i = 0; i < 10; ++i) {
      const bool moved = !std::equal(v.row(i), v.row(i) + 4, v0.row(i));
      EXPECT_EQ(moved, i == 0 || i == 7) << "item " << i << " seed " << seed;
    }
  }
}

// Planted structure: 6 groups of 40 users and 20 items; each user has 10 of its group's items.
Csr planted(uint64_t seed) {
  Rng rng(seed);
  std::vector<index_t> r, c;
  for (int u = 0; u < 240; ++u) {
    const int g = u / 40;
    std::set<int> items;
    while (items.size() < 10) items.insert(g * 20 + static_cast<int>(rng.below(20)));
    for (int i : items) {
      r.push_back(u);
      c.push_back(i);
    }
  }
  return Csr::from_coo(240, 120, r, c, std::vector<float>(r.size(), 1.f));
}

BatchOptions small_options(BatchLoss loss) {
  BatchOptions o;
  o.params.loss = loss;
  o.params.factors = 16;
  o.params.batch_size = 64;
  o.params.learning_rate = 0.05;
  o.params.regularization = 1e-4;
  o.params.negatives = loss == BatchLoss::kBpr ? 1 : 16;
  o.params.temperature = 0.5;
  if (loss == BatchLoss::kCcl) {
    o.params.normalize = true;
    o.params.in_batch = false;
    o.params.negatives = 32;
    o.params.margin = 0.5;
    o.params.negative_weight = 2;
    o.params.learning_rate = 0.02;
  }
  o.epochs = 30;
  o.seed = 9;
  return o;
}

TEST(BatchModel, SameSeedSameFactorsOnOneThread) {
  const Csr x = planted(1);
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax, BatchLoss::kCcl}) {
    BatchOptions o = small_options(loss);
    o.epochs = 3;
    BatchModel a(o, 1), b(o, 1);
    a.init(x.rows, x.cols);
    b.init(x.rows, x.cols);
    for (int e = 0; e < 3; ++e) {
      a.iterate(x, x);
      b.iterate(x, x);
    }
    EXPECT_EQ(a.user_factors().data, b.user_factors().data);
    EXPECT_EQ(a.item_factors().data, b.item_factors().data);
    o.seed = 10;
    BatchModel c(o, 1);
    c.init(x.rows, x.cols);
    c.iterate(x, x);
    EXPECT_NE(a.item_factors().data, c.item_factors().data);
  }
}

TEST(BatchModel, CclStartsFromUnitRowsWhateverNormalizeSays) {
  // CCL's scores are cosines and its steps keep rows on the sphere, which assumes rows start
  // there. A config run always sets normalize for ccl; a hand-built BatchParams (the default
  // normalize = false) started from the raw N(0, init_std²) draw instead.
  BatchOptions o = small_options(BatchLoss::kCcl);
  o.params.normalize = false;
  BatchModel m(o, 1);
  m.init(20, 30);
  for (const Matrix* f : {&m.user_factors(), &m.item_factors()})
    for (int64_t r = 0; r < f->rows; ++r) {
      double norm = 0;
      for (int64_t c = 0; c < f->cols; ++c) norm += static_cast<double>(f->row(r)[c]) * f->row(r)[c];
      // A float32 row rescaled to unit norm: within a few ulps of 1 per coordinate summed.
      ASSERT_NEAR(norm, 1.0, 1e-5) << (f == &m.user_factors() ? "user " : "item ") << r;
    }
}

TEST(BatchModel, ItemBiasIsTheLastColumnAndUsersKeepOne) {
  const Csr x = planted(2);
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax}) {
    BatchOptions o = small_options(loss);
    o.params.item_bias = true;
    BatchModel m(o, 2);
    m.init(x.rows, x.cols);
    for (int e = 0; e < 5; ++e) m.iterate(x, x);
    ASSERT_EQ(m.user_factors().cols, 17);
    ASSERT_EQ(m.item_factors().cols, 17);
    for (int64_t u = 0; u < m.user_factors().rows; ++u) ASSERT_EQ(m.user_factors().row(u)[16], 1.f);
    // Biases were learned: not all still 0.
    double spread = 0;
    for (int64_t i = 0; i < m.item_factors().rows; ++i) spread += std::abs(m.item_factors().row(i)[16]);
    EXPECT_GT(spread, 0.1);
  }
}

TEST(BatchModel, FoldInRecoversTheGroupOfANewUser) {
  const Csr x = planted(3);
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax, BatchLoss::kCcl}) {
    BatchModel m(small_options(loss), 2);
    m.init(x.rows, x.cols);
    for (int e = 0; e < 30; ++e) m.iterate(x, x);
    // New users with 5 items of group g each: of the 115 items they did not list, 15 are in g,
    // and at least 13 of the 15 best must be (by chance: below 1e-10).
    for (int g = 0; g < 6; ++g) {
      const std::vector<index_t> rr(5, 0), cc = {g * 20 + 1, g * 20 + 4, g * 20 + 9, g * 20 + 13, g * 20 + 17};
      const Csr row = Csr::from_coo(1, 120, rr, cc, std::vector<float>(5, 1.f));
      const Matrix q = m.fold_in(row);
      std::vector<std::pair<float, int>> s;
      for (int i = 0; i < 120; ++i) {
        if (std::find(cc.begin(), cc.end(), i) != cc.end()) continue;
        s.push_back({std::inner_product(q.row(0), q.row(0) + q.cols, m.item_factors().row(i), 0.f), i});
      }
      std::sort(s.rbegin(), s.rend());
      int in_group = 0;
      for (int t = 0; t < 15; ++t) in_group += s[t].second / 20 == g;
      EXPECT_GE(in_group, 13) << loss_name(loss) << " group " << g;
    }
  }
}

}  // namespace
}  // namespace recforge::models
