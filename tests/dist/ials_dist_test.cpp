// Distributed iALS in one process (the world of one every build has): the row solves with a
// given Gram matrix, the shard's initial rows, the partition of rows between ranks, the
// order-free data fingerprint, and IalsDist against models::Ials. Several processes:
// train_dist_test.cpp (mpirun).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/rng.h"
#include "dist/comm.h"
#include "dist/ials_dist.h"
#include "models/ials/ials.h"
#include "models/ials/ials_cpu.h"
#include "pipeline/dataset.h"
#include "random_data.h"

namespace recforge {
namespace {

namespace cpu = backend::cpu;

cpu::IalsSolveParams params(bool cholesky = false) {
  cpu::IalsSolveParams p;
  p.regularization = 0.1;
  p.unobserved_weight = 0.1;
  p.alpha = 1.0;
  p.cholesky = cholesky;
  p.cg_steps = 3;
  return p;
}

TEST(Partition, EvenRangesCoverEveryRowOnceAndOwnerFindsThem) {
  for (int64_t n : {0, 1, 2, 7, 10, 1000}) {
    for (int P : {1, 2, 3, 5}) {
      const dist::Partition parts = dist::Partition::even(n, P);
      ASSERT_EQ(parts.ranks(), P);
      ASSERT_EQ(parts.rows(), n);
      int64_t next = 0;
      for (int r = 0; r < P; ++r) {
        const dist::Range range = parts.range(r);
        EXPECT_EQ(range.begin, next);
        EXPECT_LE(range.size(), n / P + 1);  // even: sizes differ by at most one
        EXPECT_GE(range.size(), n / P);
        next = range.end;
        for (int64_t row = range.begin; row < range.end; ++row) ASSERT_EQ(parts.owner(row), r);
      }
      EXPECT_EQ(next, n);
    }
  }
  // Empty ranges in the middle (a rank whose users were all filtered out).
  const dist::Partition uneven(std::vector<int64_t>{0, 3, 3, 3, 8});
  EXPECT_EQ(uneven.owner(2), 0);
  EXPECT_EQ(uneven.owner(3), 3);
  EXPECT_EQ(uneven.owner(7), 3);
}

__extension__ typedef unsigned __int128 U128;  // exact products for the expected values

TEST(Partition, EvenRangesOfHugeCountsDoNotOverflow) {
  const int64_t n = (int64_t{1} << 62) + 12345;
  const dist::Partition parts = dist::Partition::even(n, 7);
  for (int r = 0; r <= 7; ++r) {  // ⌊n r / 7⌋ computed in 128 bits by the test
    const auto expected = static_cast<int64_t>(static_cast<U128>(n) * r / 7);
    EXPECT_EQ(parts.starts()[r], expected) << r;
  }
}

TEST(RandomFactors, AShardDrawsExactlyItsRowsOfTheWholeMatrix) {
  const Matrix whole = models::random_factors(50, 8, 0.1, 77);
  const Matrix part = models::random_factors(20, 8, 0.1, 77, 17);
  ASSERT_EQ(part.rows, 20);
  for (int64_t r = 0; r < 20; ++r)
    for (int c = 0; c < 8; ++c) ASSERT_EQ(part.row(r)[c], whole.row(17 + r)[c]);
}

// solve_rows with G given does what solve_side / solve_half do with G computed: the same
// operations in the same order, so the same bits.
TEST(SolveRows, WithTheGramGivenEqualsSolveSideAndSolveHalf) {
  const data::Csr r = test::random_csr(40, 30, 6, 5);
  const Matrix y = test::random_matrix(30, 16, 6);
  const Matrix x0 = test::random_matrix(40, 16, 7);
  for (const bool cholesky : {false, true}) {
    cpu::IalsSolveParams p = params(cholesky);
    p.cg_basis = cpu::CgBasis::kDense;
    Matrix a = x0, b = x0;
    cpu::solve_side(r, y, a, p, 2);
    const std::vector<float> g = cpu::weighted_gram(y, p.unobserved_weight);
    cpu::solve_rows(r, y, b, p, 2, cpu::GramView{g.data(), nullptr});
    EXPECT_EQ(a.data, b.data) << (cholesky ? "cholesky" : "cg");
  }
  // The eigenframe: solve_half rotates both sides; so does the caller of solve_rows.
  cpu::IalsSolveParams p = params();
  p.cg_basis = cpu::CgBasis::kEigen;
  Matrix ya = y, xa = x0, yb = y, xb = x0;
  cpu::solve_half(r, ya, xa, p, 2);
  std::vector<float> basis = cpu::weighted_gram(yb, p.unobserved_weight);
  const std::vector<float> eig = cpu::gram_eigen(basis, 16);
  cpu::rotate_rows(yb, basis, 2);
  cpu::rotate_rows(xb, basis, 2);
  cpu::solve_rows(r, yb, xb, p, 2, cpu::GramView{nullptr, eig.data()});
  EXPECT_EQ(ya.data, yb.data);
  EXPECT_EQ(xa.data, xb.data);
}

TEST(ObjectiveTerms, AddUpToTheObjective) {
  const data::Csr r = test::random_csr(40, 30, 6, 15);
  const data::Csr rt = r.transpose();
  const Matrix x = test::random_matrix(40, 8, 16), y = test::random_matrix(30, 8, 17);
  const cpu::IalsSolveParams p = params();
  // The observed term over the user rows equals the one over the item rows (same pairs).
  const double by_users = cpu::observed_term(r, x, y, p), by_items = cpu::observed_term(rt, y, x, p);
  EXPECT_NEAR(by_users, by_items, 1e-9 * by_users);
  // And the objective is its parts: recomputed here in double from the definition.
  double all = 0;
  for (int64_t u = 0; u < 40; ++u)
    for (int64_t i = 0; i < 30; ++i) {
      double s = 0;
      for (int c = 0; c < 8; ++c) s += static_cast<double>(x.row(u)[c]) * y.row(i)[c];
      all += s * s;
    }
  const double expected = by_users + p.unobserved_weight * all +
                          cpu::regularization_term(r, x, p) + cpu::regularization_term(rt, y, p);
  // The objective's unobserved term uses float Gram matrices: ⟨XᵀX, YᵀY⟩ from float sums of
  // 40 (30) products of factors ~0.3, each rounded with relative error 2^-24 per addition.
  EXPECT_NEAR(cpu::objective(r, rt, x, y, p), expected, 1e-5 * expected);
}

dist::IalsShard whole_shard(const data::Csr& ui) {
  dist::IalsShard s;
  s.n_users = ui.rows;
  s.n_items = ui.cols;
  s.user_parts = dist::Partition::even(ui.rows, 1);
  s.item_parts = dist::Partition::even(ui.cols, 1);
  s.users = {0, ui.rows};
  s.items = {0, ui.cols};
  s.user_items = ui;
  s.item_users = ui.transpose();
  for (int64_t i = 0; i < s.item_users.rows; ++i) s.item_counts.push_back(s.item_users.row_size(i));
  return s;
}

// In a world of one, IalsDist runs the single-process model's arithmetic: the same factors
// bit for bit; the loss sums the same terms in another order (its observed term over item rows).
TEST(IalsDist, OneProcessTrainsTheSingleProcessModel) {
  const dist::Comm& comm = dist::world();
  ASSERT_EQ(comm.size(), 1);
  const data::Csr ui = test::random_csr(60, 45, 7, 21);
  for (const double beta : {0.0, 0.5}) {
    for (const char* basis : {"dense", "eigen"}) {
      models::IalsOptions o;
      o.factors = 12;
      o.iterations = 3;
      o.seed = 9;
      o.unobserved_exp = beta;
      o.solve = params();
      o.solve.cg_basis = std::string(basis) == "dense" ? cpu::CgBasis::kDense : cpu::CgBasis::kEigen;
      models::Ials single(o, 2);
      single.init(ui.rows, ui.cols);
      const data::Csr iu = ui.transpose();
      dist::IalsShard shard = whole_shard(ui);
      dist::IalsDist distributed(o, 2, comm, shard);
      distributed.init();
      for (int it = 1; it <= 3; ++it) {
        single.iterate(ui, iu);
        distributed.iterate();
        const double a = single.loss(ui, iu), b = distributed.loss();
        // Sums of the same double terms in two orders: relative differences near 1e-15.
        EXPECT_NEAR(a, b, 1e-10 * a) << basis << " beta " << beta << " iteration " << it;
      }
      EXPECT_EQ(single.user_factors().data, distributed.users().data) << basis;
      EXPECT_EQ(single.item_factors().data, distributed.items().data) << basis;
      EXPECT_EQ(distributed.gather_users(0).data, single.user_factors().data);
      EXPECT_EQ(distributed.allgather_items().data, single.item_factors().data);
    }
  }
}

TEST(PairDigest, IsFreeOfOrderAndAddsUpOverPieces) {
  data::Interactions x;
  Rng rng(3);
  for (int k = 0; k < 500; ++k)
    x.push(static_cast<data::index_t>(rng.below(100)), static_cast<data::index_t>(rng.below(80)), 1.f);
  pipeline::PairDigest whole;
  whole.add(0, x);
  // Reversed, and in three pieces digested apart.
  pipeline::PairDigest reversed, a, b, c;
  for (int64_t k = x.size() - 1; k >= 0; --k) reversed.add(0, x.users[k], x.items[k]);
  for (int64_t k = 0; k < x.size(); ++k) (k % 3 == 0 ? a : k % 3 == 1 ? b : c).add(0, x.users[k], x.items[k]);
  a.merge(b);
  a.merge(c);
  EXPECT_EQ(whole.sum[0], reversed.sum[0]);
  EXPECT_EQ(whole.sum[1], reversed.sum[1]);
  EXPECT_EQ(whole.sum[0], a.sum[0]);
  EXPECT_EQ(whole.sum[1], a.sum[1]);
  // Another part, another pair: another digest and fingerprint.
  pipeline::PairDigest other_part;
  other_part.add(2, x);
  EXPECT_NE(other_part.sum[0], whole.sum[0]);
  const data::IdMap users(std::vector<std::string>{"a", "b"}), items(std::vector<std::string>{"x"});
  pipeline::PairDigest moved = whole;
  moved.add(0, 5, 6);
  EXPECT_NE(pipeline::unordered_fingerprint(users, items, whole),
            pipeline::unordered_fingerprint(users, items, moved));
  EXPECT_EQ(pipeline::unordered_fingerprint(users, items, whole),
            pipeline::unordered_fingerprint(users, items, reversed));
}

}  // namespace
}  // namespace recforge
