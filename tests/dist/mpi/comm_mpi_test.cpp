// dist::Comm over MPI, run by ctest under tests/dist/mpirun.sh with 2 and 3 processes
// (dist.mpi.np2, dist.mpi.np3). Every rank runs the same tests in the same order; rank 0 prints
// GoogleTest's output, the other ranks print only their failures, prefixed with their rank, and
// the exit status is the worst over all ranks, so a failure on any rank fails the test.
//
// Inside a test body, checks before or between collectives are EXPECT_* (non-fatal): an ASSERT
// that returned early on one rank would leave the others waiting in the next collective.
// Each test runs at the default piece size (1 GiB) and at a few bytes (kSmallPiece), so that the
// same small messages go in many pieces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "dist/comm.h"

namespace recforge::dist {
namespace {

constexpr int64_t kDefaultPiece = int64_t{1} << 30;
// 20 bytes: not a multiple of the 8- or 16-byte elements, so pieces split elements.
constexpr int64_t kSmallPiece = 20;

struct Entry {
  int32_t from;
  int32_t index;
  double value;
};
static_assert(sizeof(Entry) == 16);

class Collectives : public testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { set_max_piece_bytes(GetParam()); }
  void TearDown() override { set_max_piece_bytes(kDefaultPiece); }
  const Comm& w = world();
  const int P = world().size();
  const int me = world().rank();
};

// Every rank's copy of `v`, in rank order (through allgatherv, itself tested below).
template <typename T>
std::vector<std::vector<T>> everyones(const std::vector<T>& v) {
  std::vector<int64_t> counts;
  const std::vector<T> all = world().allgatherv(v, &counts);
  std::vector<std::vector<T>> out;
  size_t off = 0;
  for (const int64_t c : counts) {
    out.emplace_back(all.begin() + static_cast<ptrdiff_t>(off),
                     all.begin() + static_cast<ptrdiff_t>(off + static_cast<size_t>(c)));
    off += static_cast<size_t>(c);
  }
  return out;
}

TEST(Launch, LauncherStartedTheWorld) {
  EXPECT_TRUE(mpi_available());
  EXPECT_TRUE(launched_by_mpi());
  EXPECT_EQ(launched_size(), world().size());
  EXPECT_GE(world().size(), 2);
  EXPECT_TRUE(world().distributed());
  EXPECT_GE(world().rank(), 0);
  EXPECT_LT(world().rank(), world().size());
  // Every rank has a different rank.
  const std::vector<int64_t> ranks = world().allgatherv(std::vector<int64_t>{world().rank()});
  std::vector<int64_t> expected;
  for (int r = 0; r < world().size(); ++r) expected.push_back(r);
  EXPECT_EQ(ranks, expected);
}

TEST_P(Collectives, SumOfExactValues) {
  // Multiples of 1/4 far below 2^53: every order of summation gives the exact sum.
  const int64_t n = 37;  // 296 bytes of doubles: 15 pieces of 20 bytes
  std::vector<double> d(n);
  std::vector<float> f(n);
  std::vector<int64_t> i(n);
  for (int64_t j = 0; j < n; ++j) {
    d[j] = 0.25 * static_cast<double>((me + 1) * (j + 1)) - 3.0 * me;
    f[j] = 0.5f * static_cast<float>(me * 7 - j);
    i[j] = (int64_t{1} << 40) * me - j * (me + 2);
  }
  w.allreduce_sum(d.data(), n);
  w.allreduce_sum(f.data(), n);
  w.allreduce_sum(i.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    double ed = 0;
    float ef = 0;
    int64_t ei = 0;
    for (int r = 0; r < P; ++r) {
      ed += 0.25 * static_cast<double>((r + 1) * (j + 1)) - 3.0 * r;
      ef += 0.5f * static_cast<float>(r * 7 - j);
      ei += (int64_t{1} << 40) * r - j * (r + 2);
    }
    EXPECT_EQ(d[j], ed) << "j=" << j;
    EXPECT_EQ(f[j], ef) << "j=" << j;
    EXPECT_EQ(i[j], ei) << "j=" << j;
  }
}

TEST_P(Collectives, SumIsBitwiseTheSameOnEveryRank) {
  // Values whose sum rounds, with cancellation: the order of summation shows in the last bits.
  const int64_t n = 41;
  std::vector<double> d(n);
  std::vector<float> f(n);
  for (int64_t j = 0; j < n; ++j) {
    const double x = std::sin(1.0 + 0.37 * j + 1.91 * me) * std::pow(10.0, (me + j) % 7);
    d[j] = x;
    f[j] = static_cast<float>(x);
  }
  std::vector<double> d_in = d;
  std::vector<float> f_in = f;
  w.allreduce_sum(d.data(), n);
  w.allreduce_sum(f.data(), n);
  const auto all_d = everyones(d);
  const auto all_f = everyones(f);
  const auto inputs_d = everyones(d_in);
  const auto inputs_f = everyones(f_in);
  for (int r = 1; r < P; ++r) {
    EXPECT_EQ(std::memcmp(all_d[r].data(), all_d[0].data(), sizeof(double) * n), 0) << "rank " << r;
    EXPECT_EQ(std::memcmp(all_f[r].data(), all_f[0].data(), sizeof(float) * n), 0) << "rank " << r;
  }
  // And it is the sum: P - 1 additions in some order, each rounding by at most half an ulp of
  // a partial sum, so off by at most (P - 1) u Σ|x| (u = 2^-53 for double, 2^-24 for float).
  // The references are summed in long double (u = 2^-64) and double (for the float inputs),
  // whose own error is below the same bound again: tolerance 2 (P - 1) u Σ|x|.
  for (int64_t j = 0; j < n; ++j) {
    long double exact = 0, mag = 0;
    double exact_f = 0, mag_f = 0;
    for (int r = 0; r < P; ++r) {
      exact += inputs_d[r][j];
      mag += std::fabs(inputs_d[r][j]);
      exact_f += inputs_f[r][j];
      mag_f += std::fabs(inputs_f[r][j]);
    }
    EXPECT_NEAR(d[j], static_cast<double>(exact),
                2.0 * (P - 1) * std::ldexp(static_cast<double>(mag), -53)) << "j=" << j;
    EXPECT_NEAR(f[j], exact_f, 2.0 * (P - 1) * std::ldexp(mag_f, -24)) << "j=" << j;
  }
}

TEST_P(Collectives, MaxMinOrAny) {
  const int64_t n = 9;
  std::vector<int64_t> mx(n), mn(n);
  std::vector<uint8_t> bits(n);
  for (int64_t j = 0; j < n; ++j) {
    mx[j] = ((me * 5 + j) % P) * 1000 - j;  // the largest on a different rank for each j
    mn[j] = mx[j];
    bits[j] = static_cast<uint8_t>((j % 2 == 0) ? (1u << me) : 0u);
  }
  w.allreduce_max(mx.data(), n);
  w.allreduce_min(mn.data(), n);
  w.allreduce_or(bits.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    EXPECT_EQ(mx[j], (P - 1) * 1000 - j) << "j=" << j;
    EXPECT_EQ(mn[j], -j) << "j=" << j;
    EXPECT_EQ(bits[j], (j % 2 == 0) ? (1u << P) - 1 : 0u) << "j=" << j;
  }
  EXPECT_EQ(w.max(int64_t{me} * 3 - 1), (P - 1) * 3 - 1);
  EXPECT_EQ(w.sum(int64_t{me} + 1), int64_t{P} * (P + 1) / 2);
  EXPECT_EQ(w.sum(0.5 * me), 0.25 * P * (P - 1));
  EXPECT_TRUE(w.any(me == P - 1));
  EXPECT_FALSE(w.any(false));
  EXPECT_TRUE(w.any(true));
}

TEST_P(Collectives, Broadcast) {
  for (int root = 0; root < P; ++root) {
    std::vector<uint8_t> buf(101);
    for (size_t j = 0; j < buf.size(); ++j) {
      buf[j] = static_cast<uint8_t>(me == root ? (j * 7 + root) : 0xEE);
    }
    w.broadcast(buf.data(), static_cast<int64_t>(buf.size()), root);
    for (size_t j = 0; j < buf.size(); ++j) {
      EXPECT_EQ(buf[j], static_cast<uint8_t>(j * 7 + root)) << "root " << root << " j=" << j;
    }
  }
}

// Rank r's block for the gathers: 3r entries (rank 0 sends nothing).
std::vector<Entry> block_of(int r) {
  std::vector<Entry> v;
  for (int j = 0; j < 3 * r; ++j) v.push_back({r, j, r * 100.0 + j * 0.5});
  return v;
}

TEST_P(Collectives, AllgathervUnevenAndEmpty) {
  std::vector<int64_t> counts;
  const std::vector<Entry> all = w.allgatherv(block_of(me), &counts);
  std::vector<int64_t> expected_counts;
  std::vector<Entry> expected;
  for (int r = 0; r < P; ++r) {
    expected_counts.push_back(3 * r);
    for (const Entry& e : block_of(r)) expected.push_back(e);
  }
  EXPECT_EQ(counts, expected_counts);
  ASSERT_EQ(all.size(), expected.size());
  for (size_t k = 0; k < all.size(); ++k) {
    EXPECT_EQ(all[k].from, expected[k].from) << k;
    EXPECT_EQ(all[k].index, expected[k].index) << k;
    EXPECT_EQ(all[k].value, expected[k].value) << k;
  }
  // Nobody sends anything.
  EXPECT_TRUE(w.allgatherv(std::vector<double>{}, &counts).empty());
  EXPECT_EQ(counts, std::vector<int64_t>(P, 0));
}

TEST_P(Collectives, GathervAtEveryRoot) {
  for (int root = 0; root < P; ++root) {
    std::vector<int64_t> counts = {-1};
    const std::vector<Entry> got = w.gatherv(block_of(me), root, &counts);
    if (me != root) {
      EXPECT_TRUE(got.empty());
      EXPECT_TRUE(counts.empty());
      continue;
    }
    std::vector<int64_t> expected_counts;
    std::vector<Entry> expected;
    for (int r = 0; r < P; ++r) {
      expected_counts.push_back(3 * r);
      for (const Entry& e : block_of(r)) expected.push_back(e);
    }
    EXPECT_EQ(counts, expected_counts);
    EXPECT_EQ(got.size(), expected.size());
    for (size_t k = 0; k < std::min(got.size(), expected.size()); ++k) {
      EXPECT_EQ(got[k].from, expected[k].from) << k;
      EXPECT_EQ(got[k].index, expected[k].index) << k;
      EXPECT_EQ(got[k].value, expected[k].value) << k;
    }
  }
}

// What rank `from` sends rank `to` in the all-to-all: (from + 2 to) mod 4 entries, none at all
// from rank 1.
int64_t a2a_count(int from, int to) { return from == 1 ? 0 : (from + 2 * to) % 4; }
Entry a2a_entry(int from, int to, int j) { return {from, to * 1000 + j, from - 0.125 * j}; }

TEST_P(Collectives, AlltoallvUnevenAndEmpty) {
  std::vector<Entry> send;
  std::vector<int64_t> send_counts;
  for (int to = 0; to < P; ++to) {
    send_counts.push_back(a2a_count(me, to));
    for (int j = 0; j < a2a_count(me, to); ++j) send.push_back(a2a_entry(me, to, j));
  }
  std::vector<int64_t> recv_counts;
  const std::vector<Entry> got = w.alltoallv(send, send_counts, &recv_counts);
  std::vector<int64_t> expected_counts;
  std::vector<Entry> expected;
  for (int from = 0; from < P; ++from) {
    expected_counts.push_back(a2a_count(from, me));
    for (int j = 0; j < a2a_count(from, me); ++j) expected.push_back(a2a_entry(from, me, j));
  }
  EXPECT_EQ(recv_counts, expected_counts);
  EXPECT_EQ(got.size(), expected.size());
  for (size_t k = 0; k < std::min(got.size(), expected.size()); ++k) {
    EXPECT_EQ(got[k].from, expected[k].from) << k;
    EXPECT_EQ(got[k].index, expected[k].index) << k;
    EXPECT_EQ(got[k].value, expected[k].value) << k;
  }
}

TEST_P(Collectives, LongMessages) {
  // 100003 doubles (800024 bytes) in one piece each; with the 20-byte pieces, 2003 doubles
  // (16024 bytes: 802 pieces per message, 1002 reductions of 2 doubles).
  const int64_t n = GetParam() == kSmallPiece ? 2003 : 100003;
  std::vector<double> mine(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) mine[j] = me * 1e6 + j;
  std::vector<int64_t> counts;
  const std::vector<double> all = w.allgatherv(mine, &counts);
  EXPECT_EQ(counts, std::vector<int64_t>(P, n));
  EXPECT_EQ(static_cast<int64_t>(all.size()), P * n);
  int64_t wrong = 0;
  for (int r = 0; r < P; ++r) {
    for (int64_t j = 0; j < n && static_cast<int64_t>(all.size()) == P * n; ++j) {
      wrong += all[r * n + j] != r * 1e6 + j;
    }
  }
  EXPECT_EQ(wrong, 0);
  std::vector<double> s = mine;
  w.allreduce_sum(s.data(), n);
  wrong = 0;
  for (int64_t j = 0; j < n; ++j) wrong += s[j] != 1e6 * P * (P - 1) / 2 + P * static_cast<double>(j);
  EXPECT_EQ(wrong, 0);
}

TEST_P(Collectives, BytesSent) {
  const int64_t start = w.bytes_sent();
  int64_t expected = 0;
  std::vector<double> d(5, 1.0);
  w.allreduce_sum(d.data(), 5);
  expected += 40;  // the whole buffer
  EXPECT_EQ(w.bytes_sent() - start, expected);
  std::vector<float> f(3, 1.0f);
  w.allreduce_sum(f.data(), 3);
  std::vector<uint8_t> b(7, 0);
  w.allreduce_or(b.data(), 7);
  std::vector<int64_t> i(2, 0);
  w.allreduce_max(i.data(), 2);
  w.allreduce_min(i.data(), 2);
  w.sum(1.0);
  w.any(true);
  expected += 12 + 7 + 16 + 16 + 8 + 1;
  EXPECT_EQ(w.bytes_sent() - start, expected);
  w.barrier();
  EXPECT_EQ(w.bytes_sent() - start, expected);

  // Broadcast: the root sends its 100 bytes to each of the P - 1 others.
  std::vector<uint8_t> buf(100, 0);
  w.broadcast(buf.data(), 100, 1);
  if (me == 1) expected += 100 * (P - 1);
  EXPECT_EQ(w.bytes_sent() - start, expected);

  // All-gather: the own block (16 bytes × 3 me) once per other rank.
  w.allgatherv(block_of(me));
  expected += 48 * me * (P - 1);
  EXPECT_EQ(w.bytes_sent() - start, expected);

  // Gather at rank 0: every other rank sends its block once.
  w.gatherv(block_of(me), 0);
  if (me != 0) expected += 48 * me;
  EXPECT_EQ(w.bytes_sent() - start, expected);

  // All-to-all: what goes to the other ranks, not the own part.
  std::vector<Entry> send;
  std::vector<int64_t> send_counts;
  for (int to = 0; to < P; ++to) {
    send_counts.push_back(a2a_count(me, to));
    for (int j = 0; j < a2a_count(me, to); ++j) send.push_back(a2a_entry(me, to, j));
    if (to != me) expected += 16 * a2a_count(me, to);
  }
  w.alltoallv(send, send_counts);
  EXPECT_EQ(w.bytes_sent() - start, expected);

  // The exact totals at 3 ranks, written out.
  if (P == 3) {
    const int64_t reductions = 40 + 12 + 7 + 16 + 16 + 8 + 1;  // 100
    const int64_t totals[3] = {
        reductions + 0 + 0 + 0 + 16 * (2 + 0),         // rank 0: 2 entries to 1, 0 to 2
        reductions + 200 + 48 * 2 + 48 + 0,            // rank 1: the root; no all-to-all
        reductions + 0 + 96 * 2 + 96 + 16 * (2 + 0)};  // rank 2: 2 entries to 0, 0 to 1
    EXPECT_EQ(w.bytes_sent() - start, totals[me]);
  }
}

INSTANTIATE_TEST_SUITE_P(Pieces, Collectives, testing::Values(kDefaultPiece, kSmallPiece),
                         [](const testing::TestParamInfo<int64_t>& p) {
                           return p.param == kDefaultPiece ? std::string("OneGiB")
                                                           : std::string("TwentyBytes");
                         });

// Prints the failures of a rank other than 0, prefixed with its rank.
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
  void OnTestEnd(const testing::TestInfo& t) override {
    if (t.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, t.test_suite_name(), t.name());
    }
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace recforge::dist

int main(int argc, char** argv) {
  using namespace recforge::dist;
  init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  const int rank = world().rank();
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int rc = RUN_ALL_TESTS();
  // The worst status over the ranks, on every rank (and so mpirun's).
  const int64_t worst = world().max(int64_t{rc});
  std::vector<int64_t> failed = world().gatherv(std::vector<int64_t>{rc != 0 ? rank : -1}, 0);
  if (rank == 0) {
    for (const int64_t r : failed) {
      if (r >= 0) std::printf("dist: tests failed on rank %lld\n", static_cast<long long>(r));
    }
    std::printf("dist: %d ranks, %s\n", world().size(), worst == 0 ? "all passed" : "FAILED");
  }
  finalize();
  return worst == 0 ? 0 : 1;
}
