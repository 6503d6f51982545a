// `mpirun -np P recforge train CONFIG` against one process: the same per-iteration loss and test
// metrics within 1e-3 relative at P = 2 and 3 (uneven shards), on a synthetic set and on
// Gowalla; a killed rank, a bad line in one rank's shard and a bad config end the whole job
// with one clear sentence and leave no run directory. The job is started by the test, on this
// machine (shared memory), and always ends.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/clock.h"
#include "core/context.h"
#include "core/hash.h"
#include "dist_launch.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::Result;
using test::TempDir;

std::map<int, pid_t> rank_pids(pid_t launcher);  // below

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(test::read_file(path));
}

// `recforge ARGS` as P processes of one mpirun job (P = 0: one process, no mpirun).
Result run_ranks(int P, const std::string& cwd, const std::string& args) {
  if (P == 0) return test::run_recforge(cwd, args);
  return test::run_shell("cd '" + cwd + "' && " + test::mpirun_command(P) + " '" +
                         RECFORGE_BINARY + "' " + args);
}

// The config of the synthetic comparison: `data` lines, iALS with 16 factors.
std::string config(const std::string& runs, const std::string& data, int iterations = 5,
                   const std::string& extra = "") {
  return "run:\n  dir: " + runs + "\n  progress: off\n" + data +
         "model:\n  type: ials\n  factors: 16\n  iterations: " + std::to_string(iterations) +
         "\n  regularization: 0.1\n  unobserved_weight: 0.1\n  cg_steps: 3\n"
         "train:\n  threads: 1\neval:\n  ks: [10, 20]\n" + extra;
}

std::string synthetic_data(const TempDir& dir) {
  const Result g = test::run_recforge(dir.str(), "datagen --users 2000 --items 900 "
                                                 "--interactions 40000 --seed 5 --out syn.csv");
  EXPECT_EQ(g.rc, 0) << g.out;
  return "data:\n  format: delimited\n  path: syn.csv\n  header: true\n  user_col: user\n"
         "  item_col: item\n  weight_col: weight\n  time_col: timestamp\n"
         "  min_user_interactions: 2\n  min_item_interactions: 2\n"
         "split:\n  method: random\n  test_fraction: 0.2\n"
         "weighting:\n  scheme: log\n  alpha: 1.0\n";
}

// Runs the config as one process and as 2 and 3, and compares the runs.
void expect_same_as_one_process(const TempDir& dir, const std::string& yaml) {
  test::write_file(dir.file("c.yaml"), yaml);
  std::map<int, std::string> runs;
  for (int P : {0, 2, 3}) {
    const std::string name = "p" + std::to_string(P);
    const Result r = run_ranks(P, dir.str(), "train c.yaml --set run.name=" + name);
    ASSERT_EQ(r.rc, 0) << "P=" << P << "\n" << r.out;
    runs[P] = dir.file("runs/" + name);
  }
  const nlohmann::json one = read_json(runs[0] + "/run.json");
  const nlohmann::json m1 = read_json(runs[0] + "/metrics.json");
  for (int P : {2, 3}) {
    const nlohmann::json run = read_json(runs[P] + "/run.json");
    ASSERT_EQ(run["distributed"]["ranks"], P);
    ASSERT_EQ(run["history"].size(), one["history"].size());
    for (size_t it = 0; it < one["history"].size(); ++it) {
      const double a = one["history"][it]["loss"], b = run["history"][it]["loss"];
      // The ranks add the Gram matrices' float32 partial sums in another order (relative
      // rounding ~1e-7 per sum), which three CG steps carry into the factors at that scale;
      // 1e-3 is the bound.
      EXPECT_NEAR(b, a, 1e-3 * a) << "P=" << P << " iteration " << it + 1;
    }
    const nlohmann::json m = read_json(runs[P] + "/metrics.json");
    EXPECT_EQ(m["test"]["users"], m1["test"]["users"]);
    for (const char* key : {"recall@10", "ndcg@10", "recall@20", "ndcg@20", "precision@20",
                            "map@20", "hit_rate@20", "coverage@20"}) {
      const double a = m1["test"][key], b = m["test"][key];
      EXPECT_NEAR(b, a, 1e-3 * a) << "P=" << P << " " << key;
    }
    // One process reopens the distributed run: the same data (unordered fingerprint).
    const Result ev = test::run_recforge(dir.str(), "evaluate " + runs[P]);
    EXPECT_EQ(ev.rc, 0) << ev.out;
  }
}

TEST(DistTrain, SyntheticSetAtTwoAndThreeRanksEqualsOneProcess) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  expect_same_as_one_process(dir, config(dir.file("runs"), synthetic_data(dir)));
}

// model.observed_weight replaced (implicit's objective) is the same solve and loss across ranks.
TEST(DistTrain, ReplacedObservedWeightAtTwoAndThreeRanksEqualsOneProcess) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string yaml = config(dir.file("runs"), synthetic_data(dir));
  const std::string ials = "  type: ials\n";
  yaml.replace(yaml.find(ials), ials.size(), ials + "  observed_weight: replaced\n");
  expect_same_as_one_process(dir, yaml);
  EXPECT_EQ(read_json(dir.file("runs/p2/run.json"))["model"]["observed_weight"], "replaced");
}

TEST(DistTrain, AWarmStartAtTwoAndThreeRanksEqualsOneProcess) {
  // model.init_from: each rank copies the export's rows of its own users and items, so the
  // runs start where one process starts (a cold start would be iterations 1-3 instead of 4-6,
  // far outside the 1e-3).
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  const std::string data = synthetic_data(dir);
  test::write_file(dir.file("base.yaml"), config(dir.file("runs"), data, 3,
                                                 "export:\n  enabled: true\n"));
  const Result base = run_ranks(0, dir.str(), "train base.yaml --set run.name=base");
  ASSERT_EQ(base.rc, 0) << base.out;
  std::string warm = config(dir.file("runs"), data, 3);
  warm.replace(warm.find("model:\n"), 7, "model:\n  init_from: runs/base\n");
  expect_same_as_one_process(dir, warm);
  const nlohmann::json one = read_json(dir.file("runs/p0/run.json"));
  ASSERT_TRUE(one.contains("init_from")) << one.dump();
  EXPECT_EQ(one["init_from"]["users_matched"], one["init_from"]["users"]);
  // Each CG step lowers its row's objective from where the row starts, so the first warm
  // iteration ends no higher than the base run's last (within the runs' 1e-3); a cold first
  // iteration ends far above it.
  const double last = read_json(dir.file("runs/base/run.json"))["history"].back()["loss"];
  for (const char* P : {"p0", "p2", "p3"}) {
    const nlohmann::json run = read_json(dir.file(std::string("runs/") + P + "/run.json"));
    nlohmann::json record = run["init_from"], expected = one["init_from"];
    EXPECT_GE(record["seconds"].get<double>(), 0.0) << P;
    record.erase("seconds");  // how long opening and matching took
    expected.erase("seconds");
    EXPECT_EQ(record, expected) << P;
    EXPECT_LE(run["history"][0]["loss"].get<double>(), last * (1 + 1e-3)) << P;
  }
  // model.init_from_max_age_days, decided on rank 0's clock for every rank: an export whose
  // chain began 40 days ago is not continued under a 30-day bound, so two ranks train from
  // random factors, as the cold base run did (within the runs' 1e-3).
  const std::string manifest =
      dir.file("runs/base/export/" + fs::read_symlink(dir.file("runs/base/export/current")).string() +
               "/manifest.json");
  nlohmann::json m = read_json(manifest);
  m["source"]["lineage"]["started"] = utc_string(std::time(nullptr) - 40 * 86400);
  test::write_file(manifest, m.dump(2));
  test::write_file(dir.file("warm.yaml"), warm);
  const Result bounded = run_ranks(2, dir.str(), "train warm.yaml --set run.name=bounded "
                                                 "--set model.init_from_max_age_days=30");
  ASSERT_EQ(bounded.rc, 0) << bounded.out;
  const nlohmann::json b = read_json(dir.file("runs/bounded/run.json"));
  EXPECT_EQ(b.count("init_from"), 0u) << b.dump();
  EXPECT_EQ(b["init_from_skipped"]["max_age_days"], 30) << b.dump();
  const nlohmann::json cold = read_json(dir.file("runs/base/run.json"))["history"];
  ASSERT_EQ(b["history"].size(), cold.size());
  for (size_t i = 0; i < cold.size(); ++i)
    EXPECT_NEAR(b["history"][i]["loss"].get<double>(), cold[i]["loss"].get<double>(),
                1e-3 * cold[i]["loss"].get<double>())
        << i;
}

TEST(DistTrain, AValidationSampleScoresTheSameUsersAsOneProcess) {
  // eval.validation_sample picks users by a hash of their ids, so two ranks, each testing its
  // own users, score the users one process scores: the same counts at every evaluation and
  // metrics within the runs' 1e-3. Test scores every user.
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string data = synthetic_data(dir);
  data.replace(data.find("  test_fraction: 0.2\n"), 21,
               "  test_fraction: 0.2\n  validation_fraction: 0.2\n");
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), data, 4,
                          "  validation_sample: 0.3\n  metric: ndcg@20\n"));
  std::map<int, nlohmann::json> run, metrics;
  for (int P : {0, 2}) {
    const std::string name = "p" + std::to_string(P);
    const Result r =
        run_ranks(P, dir.str(), "train c.yaml --set model.eval_every=2 --set run.name=" + name);
    ASSERT_EQ(r.rc, 0) << "P=" << P << "\n" << r.out;
    run[P] = read_json(dir.file("runs/" + name + "/run.json"));
    metrics[P] = read_json(dir.file("runs/" + name + "/metrics.json"));
  }
  const nlohmann::json& v1 = metrics[0]["validation"];
  ASSERT_TRUE(v1.contains("sampled_from")) << v1.dump();
  EXPECT_LT(v1["users"].get<int64_t>(), v1["sampled_from"].get<int64_t>());
  EXPECT_GT(v1["users"].get<int64_t>(), 0);
  EXPECT_EQ(metrics[2]["validation"]["users"], v1["users"]);
  EXPECT_EQ(metrics[2]["validation"]["sampled_from"], v1["sampled_from"]);
  for (const char* key : {"recall@20", "ndcg@20"}) {
    const double a = v1[key], b = metrics[2]["validation"][key];
    EXPECT_NEAR(b, a, 1e-3 * a) << key;
  }
  EXPECT_FALSE(metrics[0]["test"].contains("sampled_from"));
  EXPECT_FALSE(metrics[2]["test"].contains("sampled_from"));
  EXPECT_EQ(metrics[2]["test"]["users"], metrics[0]["test"]["users"]);
  for (const int it : {1, 3}) {  // iterations 2 and 4 were evaluated
    const nlohmann::json& a = run[0]["history"][static_cast<size_t>(it)]["validation"];
    const nlohmann::json& b = run[2]["history"][static_cast<size_t>(it)]["validation"];
    EXPECT_EQ(b["users"], v1["users"]) << it;
    EXPECT_EQ(a["users"], v1["users"]) << it;
    EXPECT_EQ(b["sampled_from"], v1["sampled_from"]) << it;
  }
}

TEST(DistTrain, GowallaAtTwoAndThreeRanksEqualsOneProcess) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  RF_REQUIRE_SHARED(gowalla, "gowalla/train.txt");
  TempDir dir;
  const std::string data = "data:\n  format: adjacency\n  path: " + gowalla +
                           "\n  test_path: " + test::shared_data("gowalla/test.txt") +
                           "\n  cache: false\nsplit:\n  method: given\n";
  expect_same_as_one_process(dir, config(dir.file("runs"), data, 3));
}

// Opted-out users are dropped on every rank before anything else, as one process drops them
// (run.json keeps the same salted hashes); the export rank 0 writes verifies and holds the
// same users, items and seen lists as one process's.
TEST(DistTrain, OptOutAndExportMatchOneProcess) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  const std::string data = synthetic_data(dir);
  // Three users of the file (the first three distinct ones), one listed twice, one absent.
  std::ifstream csv(dir.file("syn.csv"));
  std::string line, ids;
  std::set<std::string> seen;
  std::getline(csv, line);
  while (seen.size() < 3 && std::getline(csv, line))
    if (seen.insert(line.substr(0, line.find(','))).second) ids += *seen.find(line.substr(0, line.find(','))) + "\n";
  test::write_file(dir.file("opt-out.txt"), ids + ids.substr(0, ids.find('\n') + 1) + "no-such-user\n");
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), data, 3,
                          "privacy:\n  opt_out: opt-out.txt\nexport:\n  enabled: true\n"));
  for (int P : {0, 3}) {
    const Result r = run_ranks(P, dir.str(), "train c.yaml --set run.name=p" + std::to_string(P));
    ASSERT_EQ(r.rc, 0) << "P=" << P << "\n" << r.out;
  }
  const nlohmann::json one = read_json(dir.file("runs/p0/run.json"));
  const nlohmann::json three = read_json(dir.file("runs/p3/run.json"));
  ASSERT_TRUE(one.contains("excluded_users"));
  EXPECT_EQ(three["excluded_users"], one["excluded_users"]);
  EXPECT_EQ(three["excluded_users"]["opt_out"].size(), 3u);
  const nlohmann::json s1 = read_json(dir.file("runs/p0/stats.json"));
  const nlohmann::json s3 = read_json(dir.file("runs/p3/stats.json"));
  EXPECT_EQ(s3["users"], s1["users"]);
  EXPECT_EQ(s3["items"], s1["items"]);
  EXPECT_EQ(s3["privacy"]["opt_out_users"], s1["privacy"]["opt_out_users"]);
  EXPECT_EQ(s3["privacy"]["opt_out_interactions"], s1["privacy"]["opt_out_interactions"]);
  const Result info = test::run_recforge(dir.str(), "info runs/p3/export");
  ASSERT_EQ(info.rc, 0) << info.out;
  for (const char* f : {"user_ids.txt", "item_ids.txt", "seen_indptr.npy", "seen_indices.npy",
                        "opt_out.txt"})
    EXPECT_EQ(test::read_file(dir.file(std::string("runs/p3/export/") + f)),
              test::read_file(dir.file(std::string("runs/p0/export/") + f)))
        << f;
  // An opted-out user is answered from popularity by the distributed run's export too.
  const std::string user = ids.substr(0, ids.find('\n'));
  const Result rec = test::run_recforge(dir.str(), "recommend runs/p3/export --user " + user);
  EXPECT_EQ(rec.rc, 0) << rec.out;
  // CSV rows end in the personalised column: false for every row of an opted-out user.
  EXPECT_NE(rec.out.find(",false\n"), std::string::npos) << rec.out;
  EXPECT_EQ(rec.out.find(",true\n"), std::string::npos) << rec.out;
}

// Checkpoints of a distributed run: each rank writes its rows, rank 0 commits. A job killed
// after a checkpoint continues from it when the same command runs again, and ends with the
// factors of an uninterrupted run, bit for bit (1 thread per rank: the same arithmetic in the
// same order). Another number of processes is refused with a sentence saying which.
TEST(DistTrain, AKilledJobResumesFromItsCheckpointToTheSameFactors) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  // 100 iterations: the job is killed as soon as its first checkpoint (iteration 3) appears, so
  // 97 iterations, each writing or waiting on checkpoint files, are left to kill it in (a job
  // that ends first is a skip, not a pass).
  constexpr int kIterations = 100;
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), synthetic_data(dir), kIterations));
  const Result ref = run_ranks(2, dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=ref");
  ASSERT_EQ(ref.rc, 0) << ref.out;
  EXPECT_FALSE(fs::exists(dir.file("runs/.ref.checkpoint")));  // removed once complete

  const std::string log = dir.file("out.txt");
  const std::string cmd = "cd '" + dir.str() + "' && exec " + test::mpirun_command(2) + " '" +
                          RECFORGE_BINARY + "' train c.yaml --set train.checkpoint_every=3 --set run.name=b > '" + log + "' 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string meta = dir.file("runs/.b.checkpoint/checkpoint.json");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(meta) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::map<int, pid_t> ranks = rank_pids(pid);
  if (ranks.count(1)) kill(ranks[1], SIGKILL);
  else kill(-pid, SIGKILL);  // no rank 1 to kill: end the whole job, never wait on it
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(fs::exists(meta)) << test::read_file(log);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    GTEST_SKIP() << "the job finished before it could be killed; nothing to resume";
  const int reached = read_json(meta)["iteration"];
  ASSERT_GE(reached, 3);
  EXPECT_EQ(reached % 3, 0);

  // Another number of processes: refused, the checkpoint kept.
  const Result three = run_ranks(3, dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=b");
  EXPECT_NE(three.rc, 0);
  EXPECT_NE(three.out.find("written by 2 processes, and this job has 3"), std::string::npos)
      << three.out;
  EXPECT_TRUE(fs::exists(meta));
  // One process: refused too.
  const Result one = test::run_recforge(dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=b");
  EXPECT_NE(one.rc, 0);
  EXPECT_NE(one.out.find("written by a distributed run of 2 processes"), std::string::npos)
      << one.out;
  // One weight changed (the same users, items and split): refused, the checkpoint kept; the
  // data restored, the job resumes.
  const std::string csv = test::read_file(dir.file("syn.csv"));
  {
    const size_t line = csv.find('\n') + 1;  // the first interaction: user,item,weight,time
    const size_t w = csv.find(',', csv.find(',', line) + 1) + 1;
    const size_t end = csv.find(',', w);
    std::string edited = csv;
    edited.replace(w, end - w, csv.compare(w, end - w, "7") == 0 ? "8" : "7");
    test::write_file(dir.file("syn.csv"), edited);
    const Result weighed = run_ranks(2, dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=b");
    EXPECT_EQ(weighed.rc, 1) << weighed.out;
    EXPECT_NE(weighed.out.find("this checkpoint was written from data with other weights or timestamps"),
              std::string::npos)
        << weighed.out;
    EXPECT_TRUE(fs::exists(meta));
    test::write_file(dir.file("syn.csv"), csv);
  }
  // A NaN in rank 1's rows (the last float of its users.npy): the checkpoint is damaged, said
  // once, naming the rank; restored, the job resumes.
  {
    const std::string rows = dir.file("runs/.b.checkpoint/" + read_json(meta)["arrays_dir"].get<std::string>() +
                                      "/rank-1/users.npy");
    const std::string original = test::read_file(rows);
    std::string damaged = original;
    const float nan = std::nanf("");
    std::memcpy(&damaged[damaged.size() - sizeof nan], &nan, sizeof nan);
    test::write_file(rows, damaged);
    const Result r = run_ranks(2, dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=b");
    EXPECT_EQ(r.rc, 1) << r.out;
    const std::string says = "the checkpoint is damaged (rank 1's user rows hold NaN or infinity)";
    ASSERT_NE(r.out.find(says), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << r.out;
    test::write_file(rows, original);
  }

  const Result again = run_ranks(2, dir.str(), "train c.yaml --set train.checkpoint_every=3 --set run.name=b");
  ASSERT_EQ(again.rc, 0) << again.out;
  EXPECT_NE(again.out.find("resuming from iteration"), std::string::npos) << again.out;
  EXPECT_EQ(read_json(dir.file("runs/b/run.json"))["resumed_from_iteration"], reached);
  EXPECT_EQ(test::read_file(dir.file("runs/b/user_factors.npy")),
            test::read_file(dir.file("runs/ref/user_factors.npy")));
  EXPECT_EQ(test::read_file(dir.file("runs/b/item_factors.npy")),
            test::read_file(dir.file("runs/ref/item_factors.npy")));
  EXPECT_EQ(read_json(dir.file("runs/b/run.json"))["history"].size(), size_t{kIterations});
  EXPECT_FALSE(fs::exists(dir.file("runs/.b.checkpoint")));
}

// Block-structured data (users of block b only touch items of block b, ids in block order):
// each rank's users need only their block's items, so the targeted exchange moves a fraction
// of what an all-gather would, and is the one taken; the run still equals one process's.
TEST(DistTrain, TheTargetedExchangeIsTakenWhereItMovesLessAndGivesTheSameRun) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string text = "user,item\n";
  constexpr int kBlocks = 6, kUsers = 150, kItems = 40;  // per block
  for (int b = 0; b < kBlocks; ++b)
    for (int u = 0; u < kUsers; ++u)
      for (int j = 0; j < 9; ++j) {
        // Eight items of the user's block and one of the next block (so rows do move).
        const int block = j < 8 ? b : (b + 1) % kBlocks;
        const int item = block * kItems + (u * 7 + j * 13) % kItems;
        text += std::to_string(b * kUsers + u) + "," + std::to_string(item) + "\n";
      }
  test::write_file(dir.file("blocks.csv"), text);
  const std::string data =
      "data:\n  format: delimited\n  path: blocks.csv\n  header: true\n"
      "split:\n  method: random\n  test_fraction: 0.25\n";
  test::write_file(dir.file("c.yaml"), config(dir.file("runs"), data, 4));
  const Result one = run_ranks(0, dir.str(), "train c.yaml --set run.name=p0");
  ASSERT_EQ(one.rc, 0) << one.out;
  const Result three = run_ranks(3, dir.str(), "train c.yaml --set run.name=p3");
  ASSERT_EQ(three.rc, 0) << three.out;
  const nlohmann::json r1 = read_json(dir.file("runs/p0/run.json"));
  const nlohmann::json r3 = read_json(dir.file("runs/p3/run.json"));
  EXPECT_EQ(r3["distributed"]["exchange"]["user_half"], "targeted");
  EXPECT_EQ(r3["distributed"]["exchange"]["item_half"], "targeted");
  // Rank r's users (blocks 2r, 2r+1) need their 80 item rows and up to 40 of the next rank's;
  // its items are also touched by the 150 users of the block before. An all-gather would send
  // each rank's 80 item rows and 300 user rows to the 2 others every iteration: the targeted
  // exchange sends at most (40 + 150) rows, plus the same k×k all-reduces (4 KiB) as before.
  const int64_t row = 16 * 4, gram = 4 * 16 * 16 * 4;
  const int64_t allgather_bytes = 2 * (80 + 300) * row + gram;
  for (const auto& b : r3["distributed"]["bytes_sent_per_iteration"]) {
    EXPECT_GT(b.get<int64_t>(), gram) << r3["distributed"].dump();  // rows did move
    EXPECT_LE(b.get<int64_t>(), (40 + 150) * row + 2 * gram) << r3["distributed"].dump();
    EXPECT_LT(b.get<int64_t>(), allgather_bytes / 2) << r3["distributed"].dump();
  }
  for (size_t it = 0; it < r1["history"].size(); ++it) {
    const double a = r1["history"][it]["loss"], b = r3["history"][it]["loss"];
    EXPECT_NEAR(b, a, 1e-3 * a) << "iteration " << it + 1;
  }
  const nlohmann::json m1 = read_json(dir.file("runs/p0/metrics.json"));
  const nlohmann::json m3 = read_json(dir.file("runs/p3/metrics.json"));
  for (const char* key : {"recall@20", "ndcg@20"}) {
    const double a = m1["test"][key], b = m3["test"][key];
    EXPECT_NEAR(b, a, 1e-3 * a) << key;
  }
}

TEST(DistTrain, ABadConfigIsSaidOnceAndEveryRankExitsWithOne) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), synthetic_data(dir), 2, "") + "");
  const Result r = run_ranks(3, dir.str(), "train c.yaml --set model.type=bpr");
  EXPECT_NE(r.rc, 0);
  const std::string sentence = "only ials trains across processes";
  ASSERT_NE(r.out.find(sentence), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(sentence), r.out.rfind(sentence)) << "said more than once:\n" << r.out;
  EXPECT_FALSE(fs::exists(dir.file("runs/c")));
  // A device no rank has (train.device cuda on a machine without a GPU, or a build without
  // CUDA): every rank's same error, said once (each rank printed it).
  if (backend::cuda_device_count() == 0) {
    const Result d = run_ranks(2, dir.str(), "train c.yaml --set train.device=cuda");
    EXPECT_EQ(d.rc, 1) << d.out;
    const std::string error = "recforge: error: ";
    ASSERT_NE(d.out.find(error), std::string::npos) << d.out;
    EXPECT_EQ(d.out.find(error), d.out.rfind(error)) << "said more than once:\n" << d.out;
    EXPECT_EQ(d.out.find("process 1 of 2"), std::string::npos) << d.out;
    EXPECT_FALSE(fs::exists(dir.file("runs/c")));
  }
}

// `train c.yaml` in `dir` as P ranks fails within 60 s, its output holding every one of `says`,
// and leaves nothing half-written: no run, no staging directory.
void expect_job_ends_saying(const TempDir& dir, int P, const std::vector<std::string>& says) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run_ranks(P, dir.str(), "train c.yaml");
  EXPECT_NE(r.rc, 0);
  for (const std::string& s : says) EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  if (fs::exists(dir.file("runs")))
    for (const auto& e : fs::directory_iterator(dir.file("runs"))) ADD_FAILURE() << "left " << e.path();
}

TEST(DistTrain, AMalformedLineInOneShardNamesItsLineAndEndsTheJob) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string text = "user,item\n";
  for (int j = 0; j < 3000; ++j) text += std::to_string(j % 97) + "," + std::to_string(j % 41) + "\n";
  text += "12,oops\n";  // line 3002, in the last third of the file
  for (int j = 0; j < 1000; ++j) text += std::to_string(j % 89) + "," + std::to_string(j % 37) + "\n";
  test::write_file(dir.file("bad.csv"), text);
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), "data:\n  format: delimited\n  path: bad.csv\n  header: "
                                            "true\nsplit:\n  method: random\n", 2));
  expect_job_ends_saying(dir, 3, {"process 2 of 3", "bad.csv:3002"});
}

// An input error met in one rank's solve (the conjugate gradient of a row with a confidence of
// 1e25 overflows float32) names the rank, the iteration and the side, and ends the job.
TEST(DistTrain, ASolveErrorOnOneRankNamesTheIterationAndEndsTheJob) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string text = "user,item,w\n";
  for (int u = 0; u < 60; ++u)
    for (int j = 0; j < 4; ++j) text += std::to_string(u) + "," + std::to_string((u * 7 + j * 3) % 40) + ",1\n";
  text += "45,39,1e25\n";
  test::write_file(dir.file("big.csv"), text);
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), "data:\n  format: delimited\n  path: big.csv\n  header: "
                                            "true\n  weight_col: w\nsplit:\n  method: none\n", 2));
  expect_job_ends_saying(
      dir, 2, {" of 2: iALS iteration 1, user factors: the conjugate gradient of 1 of "});
}

// The split's emptiness checks count every rank's part: here the second half of the users (the
// second rank's) have one interaction each, which random and validation splits keep in train, so
// that rank's test and validation parts are empty while the whole split's are not. The job trains
// as one process does (same part sizes, same test users); a split empty on every rank is refused
// once, with the single-process sentence.
TEST(DistTrain, APartEmptyOnOneRankButNotOverallTrainsAsOneProcessDoes) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  std::string text = "user,item\n";
  for (int u = 0; u < 100; ++u)
    for (int j = 0; j < (u < 50 ? 12 : 1); ++j) text += std::to_string(u) + "," + std::to_string((u * 7 + j * 5) % 60) + "\n";
  test::write_file(dir.file("skew.csv"), text);
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), "data:\n  format: delimited\n  path: skew.csv\n  header: "
                                            "true\nsplit:\n  method: random\n  test_fraction: 0.25\n"
                                            "  validation_fraction: 0.2\n", 2));
  for (int P : {0, 2}) {
    const Result r = run_ranks(P, dir.str(), "train c.yaml --set run.name=p" + std::to_string(P));
    ASSERT_EQ(r.rc, 0) << "P=" << P << "\n" << r.out;
  }
  const nlohmann::json one = read_json(dir.file("runs/p0/stats.json"));
  const nlohmann::json two = read_json(dir.file("runs/p2/stats.json"));
  ASSERT_GT(one["test"]["interactions"].get<int64_t>(), 0);
  EXPECT_EQ(two["test"]["interactions"], one["test"]["interactions"]);
  EXPECT_EQ(two["validation"]["interactions"], one["validation"]["interactions"]);
  EXPECT_EQ(two["train"]["interactions"], one["train"]["interactions"]);
  EXPECT_EQ(read_json(dir.file("runs/p2/metrics.json"))["test"]["users"],
            read_json(dir.file("runs/p0/metrics.json"))["test"]["users"]);
  // Empty on every rank: one interaction per user leaves no test interaction anywhere.
  std::string ones = "user,item\n";
  for (int u = 0; u < 100; ++u) ones += std::to_string(u) + "," + std::to_string(u % 60) + "\n";
  test::write_file(dir.file("skew.csv"), ones);
  const Result r = run_ranks(2, dir.str(), "train c.yaml --set run.name=empty");
  EXPECT_EQ(r.rc, 1) << r.out;
  const std::string says = "split.test_fraction 0.25 left the test set empty";
  ASSERT_NE(r.out.find(says), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << "said more than once:\n" << r.out;
  EXPECT_EQ(r.out.find("process 1 of 2"), std::string::npos) << r.out;
}

// Retention (data.max_age_days) counts back from the newest timestamp of every rank: the same
// interactions dropped as by one process, and the same log line, said once by rank 0.
TEST(DistTrain, RetentionDropsWhatOneProcessDropsAndSaysItOnce) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  test::write_file(dir.file("c.yaml"), config(dir.file("runs"), synthetic_data(dir), 2));
  std::map<int, std::string> said;
  for (int P : {0, 2}) {
    const Result r = run_ranks(P, dir.str(), "train c.yaml --set data.max_age_days=60 "
                                             "--set run.log_level=info --set run.name=p" + std::to_string(P));
    ASSERT_EQ(r.rc, 0) << "P=" << P << "\n" << r.out;
    const size_t at = r.out.find("retention: dropped ");
    ASSERT_NE(at, std::string::npos) << r.out;
    EXPECT_EQ(at, r.out.rfind("retention: dropped ")) << r.out;
    said[P] = r.out.substr(at, r.out.find('\n', at) - at);
  }
  EXPECT_EQ(said[2], said[0]);
  const nlohmann::json one = read_json(dir.file("runs/p0/stats.json"))["retention"];
  EXPECT_GT(one["dropped_interactions"].get<int64_t>(), 0) << one.dump();
  EXPECT_EQ(read_json(dir.file("runs/p2/stats.json"))["retention"], one);
}

// Each rank in its own working directory `DIR/rR` (R its rank), where the config's relative
// paths (data.path, privacy.opt_out) lead to that rank's copy of the files: a cluster where
// one machine holds another version behind the same path. `extra` follows the command.
Result run_ranks_apart(int P, const TempDir& dir, const std::string& extra = "") {
  return test::run_shell("cd '" + dir.str() + "' && " + test::mpirun_command(P) +
                         " bash -c 'cd r$OMPI_COMM_WORLD_RANK && exec \"$0\" train ../c.yaml " + extra +
                         "' '" + RECFORGE_BINARY + "'");
}

// The job ends with one sentence naming what differs between the ranks, said once, and leaves
// no run.
void expect_apart_fails(const TempDir& dir, int P, const std::string& says, const std::string& extra = "") {
  const Result r = run_ranks_apart(P, dir, extra);
  EXPECT_EQ(r.rc, 1) << r.out;
  ASSERT_NE(r.out.find(says), std::string::npos) << says << "\n" << r.out;
  EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << "said more than once:\n" << r.out;
  EXPECT_NE(r.out.find("every process must run the same command on the same files"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir.file("runs/c"))) << r.out;
}

// A rank that reads another version of a data file or of the opt-out list, or runs another
// configuration, is found before any work: the job would otherwise split overlapping byte
// ranges, or train users another rank's list opts out.
TEST(DistTrain, RanksThatReadOtherFilesOrSettingsAreRefusedNamingWhat) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  const std::string data = synthetic_data(dir);
  const std::string csv = test::read_file(dir.file("syn.csv"));
  const std::string first_user = csv.substr(csv.find('\n') + 1, csv.find(',', csv.find('\n')) - csv.find('\n') - 1);
  test::write_file(dir.file("c.yaml"),
                   config(dir.file("runs"), data, 2, "privacy:\n  opt_out: opt-out.txt\n"));
  auto lay_out = [&](const std::string& csv1, const std::string& opt_out1) {
    for (int r = 0; r < 2; ++r) {
      fs::create_directories(dir.file("r" + std::to_string(r)));
      test::write_file(dir.file("r" + std::to_string(r) + "/syn.csv"), r == 0 ? csv : csv1);
      test::write_file(dir.file("r" + std::to_string(r) + "/opt-out.txt"),
                       r == 0 ? first_user + "\n" : opt_out1);
    }
  };
  // The same files everywhere train.
  lay_out(csv, first_user + "\n");
  const Result same = run_ranks_apart(2, dir);
  ASSERT_EQ(same.rc, 0) << same.out;
  EXPECT_EQ(read_json(dir.file("runs/c/run.json"))["excluded_users"]["opt_out"].size(), 1u);
  fs::remove_all(dir.file("runs"));
  // A shorter file on rank 1 (its last 10 lines missing).
  std::string shorter = csv;
  for (int j = 0; j < 11; ++j) shorter.erase(shorter.rfind('\n', shorter.size() - 2) + 1);
  lay_out(shorter, first_user + "\n");
  expect_apart_fails(dir, 2,
                     "syn.csv: process 1 of 2 reads another version of the file than process 0 (" +
                         std::to_string(shorter.size()) + " bytes, process 0 " +
                         std::to_string(csv.size()) + " bytes)");
  // One digit changed in the middle: the same size, other bytes.
  std::string edited = csv;
  const size_t at = edited.find_first_of("123456789", edited.size() / 2);
  edited[at] = edited[at] == '1' ? '2' : '1';
  lay_out(edited, first_user + "\n");
  expect_apart_fails(dir, 2, "syn.csv: process 1 of 2 reads another version of the file than "
                             "process 0 (the same size, other bytes)");
  // The opt-out list empty on rank 1: its share of the user would have been trained.
  lay_out(csv, "");
  expect_apart_fails(dir, 2, "opt-out.txt: process 1 of 2 reads other user ids from the file than "
                             "process 0");
  // Another setting on rank 1.
  lay_out(csv, first_user + "\n");
  expect_apart_fails(dir, 2, "model.factors is 17 in process 1 of 2 but 16 in process 0",
                     "--set model.factors=$((16 + OMPI_COMM_WORLD_RANK))");
  // Another warm-start export behind model.init_from on rank 1 (one trained with another seed):
  // the ranks would start from other factors. The same export everywhere trains.
  for (int r = 0; r < 2; ++r) {
    const Result w = test::run_recforge(
        dir.file("r" + std::to_string(r)),
        "train ../c.yaml --set run.name=w" + std::to_string(r) + " --set run.seed=" +
            std::to_string(r + 1) + " --set export.enabled=true --set export.out=exp");
    ASSERT_EQ(w.rc, 0) << w.out;
  }
  expect_apart_fails(dir, 2, "model.init_from exp: process 1 of 2 reads another version of it than "
                             "process 0", "--set model.init_from=exp");
  fs::remove_all(dir.file("r1/exp"));
  fs::copy(dir.file("r0/exp"), dir.file("r1/exp"),
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  {
    const Result r = run_ranks_apart(2, dir, "--set model.init_from=exp");
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(read_json(dir.file("runs/c/run.json")).contains("init_from"));
    fs::remove_all(dir.file("runs"));
  }
  // Settings that decide before the data is read (the model type, checked for what trains
  // across processes) are compared first too; a rank's threads and log level may differ.
  expect_apart_fails(dir, 2, "model.type is \"bpr\" in process 1 of 2 but \"ials\" in process 0",
                     "--set model.type=$([ $OMPI_COMM_WORLD_RANK = 1 ] && echo bpr || echo ials)");
  {
    const Result r = run_ranks_apart(2, dir, "--set train.threads=$((1 + OMPI_COMM_WORLD_RANK)) "
                                             "--set run.log_level=$([ $OMPI_COMM_WORLD_RANK = 1 ] "
                                             "&& echo debug || echo info)");
    ASSERT_EQ(r.rc, 0) << r.out;
    fs::remove_all(dir.file("runs"));
  }
  // A config file that one host lacks: that rank's error, said once.
  {
    test::write_file(dir.file("r0/own.yaml"), test::read_file(dir.file("c.yaml")));
    const Result r = test::run_shell("cd '" + dir.str() + "' && " + test::mpirun_command(2) +
                                     " bash -c 'cd r$OMPI_COMM_WORLD_RANK && exec \"$0\" train own.yaml' '" +
                                     RECFORGE_BINARY + "'");
    EXPECT_EQ(r.rc, 1) << r.out;
    const std::string says = "process 1 of 2: own.yaml";
    ASSERT_NE(r.out.find(says), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << r.out;
  }
  // A file past the sampled digest's 4 MiB, edited between two sampled blocks: the sizes and
  // samples agree, but with an opt-out list every rank hashes the files whole for the salt.
  {
    const Result g = test::run_recforge(dir.str(), "datagen --users 20000 --items 3000 "
                                                   "--interactions 300000 --seed 6 --out big.csv");
    ASSERT_EQ(g.rc, 0) << g.out;
    const std::string big = test::read_file(dir.file("big.csv"));
    ASSERT_GT(big.size(), size_t{4} << 20);  // past 64 blocks of 64 KiB
    const size_t n = big.size(), block = 64 << 10;
    // Between block 0 (ends at 64 KiB) and block 1 (starts at (n - 64 KiB) / 63).
    const size_t gap = block + ((n - block) / 63 - block) / 2;
    std::string between = big;
    const size_t at_digit = between.find_first_of("123456789", gap);
    ASSERT_LT(at_digit, (n - block) / 63);
    between[at_digit] = between[at_digit] == '1' ? '2' : '1';
    int64_t s0 = 0, s1 = 0;
    test::write_file(dir.file("r0/syn.csv"), big);
    test::write_file(dir.file("r1/syn.csv"), between);
    ASSERT_EQ(sha256_file_sample(dir.file("r0/syn.csv"), &s0), sha256_file_sample(dir.file("r1/syn.csv"), &s1));
    expect_apart_fails(dir, 2, "process 1 of 2 reads other data than process 0: the SHA-256 of its data files differs");
    lay_out(csv, first_user + "\n");
  }
  // A file missing on rank 1 only is that rank's error, said once; missing on every rank, the
  // one sentence without a rank.
  fs::remove(dir.file("r1/syn.csv"));
  {
    const Result r = run_ranks_apart(2, dir);
    EXPECT_EQ(r.rc, 1) << r.out;
    const std::string says = "process 1 of 2: syn.csv:";
    ASSERT_NE(r.out.find(says), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << r.out;
  }
  fs::remove(dir.file("r0/syn.csv"));
  {
    const Result r = run_ranks_apart(2, dir);
    EXPECT_EQ(r.rc, 1) << r.out;
    const std::string says = "syn.csv:";
    ASSERT_NE(r.out.find(says), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(says), r.out.rfind(says)) << "said more than once:\n" << r.out;
    EXPECT_EQ(r.out.find("process 1 of 2"), std::string::npos) << r.out;
  }
}

// The pids of the ranks of the mpirun job started as `launcher` (tests/dist/mpirun.sh, whose
// mpirun child starts them: the processes below it that hold OMPI_COMM_WORLD_RANK), by rank.
std::map<int, pid_t> rank_pids(pid_t launcher) {
  std::map<pid_t, pid_t> parent;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    parent[static_cast<pid_t>(std::stol(name))] = ppid;
  }
  const auto below_launcher = [&](pid_t p) {
    for (int depth = 0; depth < 64 && parent.count(p); ++depth) {
      p = parent[p];
      if (p == launcher) return true;
    }
    return false;
  };
  std::map<int, pid_t> out;
  for (const auto& entry : parent) {
    const pid_t pid = entry.first;
    if (!below_launcher(pid)) continue;
    const std::string env = test::read_file("/proc/" + std::to_string(pid) + "/environ");
    const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
    const size_t at = env.find(key);
    if (at == std::string::npos) continue;
    out[std::stoi(env.substr(at + key.size()))] = pid;
  }
  return out;
}

TEST(DistTrain, ARankKilledMidTrainingEndsTheJobNamingTheCause) {
  if (!test::mpi_built()) GTEST_SKIP() << test::mpi_skip_reason();
  TempDir dir;
  test::write_file(dir.file("c.yaml"), config(dir.file("runs"), synthetic_data(dir), 100000));
  const std::string log = dir.file("out.txt");
  const std::string cmd = "cd '" + dir.str() + "' && exec " + test::mpirun_command(3) + " '" +
                          RECFORGE_BINARY + "' train c.yaml --set run.progress=off > '" + log +
                          "' 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training is under way (rank 0 logged an iteration), then kill rank 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool training = false;
  while (!training && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    training = test::read_file(log).find("iteration 2/") != std::string::npos;
  }
  std::map<int, pid_t> ranks = rank_pids(pid);
  if (!training || ranks.count(1) == 0) {
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "the job did not start training with rank 1 visible:\n" << test::read_file(log);
  }
  ASSERT_EQ(kill(ranks[1], SIGKILL), 0);
  const auto killed = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - killed < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (done == 0) {  // still running after a minute: a hang
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "the job did not end within 60 s of the kill:\n" << test::read_file(log);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_LT(seconds, 30.0);  // "within seconds"; generous for a loaded 2-core machine
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string out = test::read_file(log);
  EXPECT_NE(out.find("signal 9"), std::string::npos) << out;
  // The ranks seen before the kill have ended (a process that has ended, or a zombie, shows no
  // environment; the launcher has been waited for, so its descendants cannot be looked up).
  for (const auto& [rank, p] : ranks)
    if (test::read_file("/proc/" + std::to_string(p) + "/environ").find("OMPI_COMM_WORLD_RANK=") !=
        std::string::npos)
      ADD_FAILURE() << "rank " << rank << " (pid " << p << ") still runs";
  // The other ranks were stopped by mpirun's SIGTERM, and say so as processes of the job (not as
  // a stop the user asked for); rank 0 removed its staging directory and the runs directory it
  // had created.
  EXPECT_NE(out.find(" of 3 stopped by signal 15 (Terminated), as mpirun stops every process of "
                     "the job when one of them fails or the job is stopped"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("recforge: stopped by signal"), std::string::npos) << out;
  if (fs::exists(dir.file("runs")))
    for (const auto& e : fs::directory_iterator(dir.file("runs"))) ADD_FAILURE() << "left " << e.path();
  EXPECT_FALSE(fs::exists(dir.file("runs")));
}

}  // namespace
}  // namespace recforge
