// A world of one process: what dist::Comm does when recforge is not started by an MPI launcher
// (comm.cpp) and in a build without MPI (comm_nompi.cpp; test_dist_nompi compiles this file
// against it): every collective hands back this rank's own data, the counts say so, and nothing
// is counted as sent.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/comm.h"

namespace recforge::dist {
namespace {

// Sets (or unsets, with nullopt) an environment variable for the scope, then restores it.
class EnvVar {
 public:
  EnvVar(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// None of the launcher variables that launched_by_mpi() looks at.
struct NoLauncher {
  EnvVar a{"OMPI_COMM_WORLD_SIZE", std::nullopt};
  EnvVar b{"PMIX_RANK", std::nullopt};
  EnvVar c{"PMI_RANK", std::nullopt};
  EnvVar d{"PMI_SIZE", std::nullopt};
  EnvVar e{"SLURM_NTASKS", std::nullopt};
};

struct Pair {
  int32_t id;
  double value;
};

TEST(WorldOfOne, InitWithoutLauncherGivesOneRank) {
  NoLauncher none;
  EXPECT_FALSE(launched_by_mpi());
  EXPECT_EQ(launched_size(), 1);
  init(nullptr, nullptr);
  init(nullptr, nullptr);  // idempotent
  const Comm& w = world();
  EXPECT_EQ(w.rank(), 0);
  EXPECT_EQ(w.size(), 1);
  EXPECT_FALSE(w.distributed());
  finalize();
  finalize();
}

TEST(WorldOfOne, LauncherEnvironment) {
  NoLauncher none;
  {
    EnvVar s("OMPI_COMM_WORLD_SIZE", "4");
    EXPECT_TRUE(launched_by_mpi());
    EXPECT_EQ(launched_size(), 4);
  }
  {
    EnvVar r("PMI_RANK", "2");
    EnvVar s("PMI_SIZE", "5");
    EXPECT_TRUE(launched_by_mpi());
    EXPECT_EQ(launched_size(), 5);
  }
  {
    EnvVar r("PMIX_RANK", "0");
    EnvVar s("SLURM_NTASKS", "6");
    EXPECT_TRUE(launched_by_mpi());
    EXPECT_EQ(launched_size(), 6);
  }
  {
    // A launcher whose size we cannot read (or read as garbage) counts as one process.
    EnvVar r("PMIX_RANK", "0");
    EXPECT_EQ(launched_size(), 1);
    EnvVar s("OMPI_COMM_WORLD_SIZE", "3x");
    EXPECT_EQ(launched_size(), 1);
  }
  EXPECT_FALSE(launched_by_mpi());
  EXPECT_EQ(launched_size(), 1);
}

TEST(WorldOfOne, ReductionsLeaveTheDataAsItIs) {
  const Comm& w = world();
  const int64_t before = w.bytes_sent();
  std::vector<double> d = {0.1, -2.5e300, 3.0};
  const std::vector<double> d0 = d;
  w.allreduce_sum(d.data(), 3);
  EXPECT_EQ(std::memcmp(d.data(), d0.data(), sizeof(double) * 3), 0);
  std::vector<float> f = {1.5f, -0.3f};
  w.allreduce_sum(f.data(), 2);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -0.3f}));
  std::vector<int64_t> i = {-7, int64_t{1} << 40, 0};
  w.allreduce_sum(i.data(), 3);
  EXPECT_EQ(i, (std::vector<int64_t>{-7, int64_t{1} << 40, 0}));
  w.allreduce_max(i.data(), 3);
  w.allreduce_min(i.data(), 3);
  EXPECT_EQ(i, (std::vector<int64_t>{-7, int64_t{1} << 40, 0}));
  std::vector<uint8_t> b = {0x00, 0x81};
  w.allreduce_or(b.data(), 2);
  EXPECT_EQ(b, (std::vector<uint8_t>{0x00, 0x81}));
  EXPECT_EQ(w.sum(2.25), 2.25);
  EXPECT_EQ(w.sum(int64_t{-11}), -11);
  EXPECT_EQ(w.max(int64_t{42}), 42);
  EXPECT_TRUE(w.any(true));
  EXPECT_FALSE(w.any(false));
  char buf[5] = {'a', 'b', 'c', 'd', 'e'};
  w.broadcast(buf, 5, 0);
  EXPECT_EQ(std::string(buf, 5), "abcde");
  w.barrier();
  EXPECT_EQ(w.bytes_sent(), before);
}

TEST(WorldOfOne, GathersCopyAndCount) {
  const Comm& w = world();
  const int64_t before = w.bytes_sent();
  const std::vector<Pair> mine = {{1, 0.5}, {2, -1.25}, {3, 8.0}};
  std::vector<int64_t> counts = {9, 9};
  const std::vector<Pair> all = w.allgatherv(mine, &counts);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].id, 2);
  EXPECT_EQ(all[2].value, 8.0);
  EXPECT_EQ(counts, (std::vector<int64_t>{3}));

  const std::vector<Pair> at_root = w.gatherv(mine, 0, &counts);
  ASSERT_EQ(at_root.size(), 3u);
  EXPECT_EQ(at_root[0].id, 1);
  EXPECT_EQ(at_root[1].value, -1.25);
  EXPECT_EQ(counts, (std::vector<int64_t>{3}));

  const std::vector<int64_t> none;
  EXPECT_TRUE(w.allgatherv(none, &counts).empty());
  EXPECT_EQ(counts, (std::vector<int64_t>{0}));
  EXPECT_TRUE(w.gatherv(none, 0, &counts).empty());
  EXPECT_EQ(counts, (std::vector<int64_t>{0}));
  EXPECT_EQ(w.bytes_sent(), before);
}

TEST(WorldOfOne, AllToAllKeepsOwnPart) {
  const Comm& w = world();
  const int64_t before = w.bytes_sent();
  const std::vector<int64_t> send = {10, 20, 30, 40};
  std::vector<int64_t> recv_counts;
  EXPECT_EQ(w.alltoallv(send, {4}, &recv_counts), send);
  EXPECT_EQ(recv_counts, (std::vector<int64_t>{4}));
  EXPECT_TRUE(w.alltoallv(std::vector<int64_t>{}, {0}, &recv_counts).empty());
  EXPECT_EQ(recv_counts, (std::vector<int64_t>{0}));
  EXPECT_EQ(w.bytes_sent(), before);
}

TEST(WorldOfOne, MisuseIsAnInternalError) {
  const Comm& w = world();
  const std::vector<int64_t> send = {1, 2};
  EXPECT_THROW(w.alltoallv(send, {1, 1}), InternalError);  // one count per rank
  char c = 'x';
  EXPECT_THROW(w.broadcast(&c, 1, 1), InternalError);  // no rank 1
  EXPECT_THROW(w.gatherv(send, 1), InternalError);
  EXPECT_THROW(set_max_piece_bytes(0), InternalError);
  EXPECT_THROW(set_max_piece_bytes((int64_t{1} << 30) + 1), InternalError);
  EXPECT_EQ(set_max_piece_bytes(64), int64_t{1} << 30);
  EXPECT_EQ(set_max_piece_bytes(int64_t{1} << 30), 64);
}

}  // namespace
}  // namespace recforge::dist
