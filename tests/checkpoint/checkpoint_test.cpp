// Checkpoint and resume (train.checkpoint_every): the models' training state, the checkpoint
// files, the refusal of a checkpoint of other settings or data, and end to end through the
// recforge binary with a real SIGKILL: the rerun (or train --resume, or a resumed sweep) ends
// with the factors of an uninterrupted run, bit for bit with one thread.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <limits>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "config/config.h"
#include "core/error.h"
#include "models/batch/batch.h"
#include "models/ials/ials.h"
#include "pipeline/checkpoint.h"
#include "random_data.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using pipeline::Checkpoint;
using test::read_file;
using test::TempDir;
using test::write_file;

// ---- Models: training state ---------------------------------------------------------------

models::IalsOptions ials_options() {
  models::IalsOptions o;
  o.factors = 8;
  o.iterations = 4;
  o.solve.regularization = 0.05;
  o.solve.unobserved_weight = 0.1;
  o.unobserved_exp = 0.5;  // per-item weights, recomputed after a resume
  return o;
}

models::BatchOptions batch_options(backend::BatchLoss loss, backend::Optimizer opt) {
  models::BatchOptions o;
  o.params.loss = loss;
  o.params.optimizer = opt;
  o.params.factors = 8;
  o.params.item_bias = true;
  o.params.batch_size = 64;
  o.params.learning_rate = 0.05;
  o.params.lr_decay = 0.9;  // the epoch number sets the learning rate
  o.params.regularization = 1e-4;
  o.params.negatives = loss == backend::BatchLoss::kBpr ? 1 : 16;
  o.epochs = 4;
  return o;
}

using MakeModel = std::function<std::unique_ptr<models::Model>()>;

// Trains 4 iterations uninterrupted, and 2 + a checkpoint (written and read back) + 2 in a new
// model; returns whether the second ends bitwise where the first did. Without `keep_state`
// the resumed model gets the factors and iteration count but not Model::training_state().
bool resume_matches(const MakeModel& make, bool keep_state) {
  const data::Csr x = test::random_csr(120, 90, 8, 5);
  const data::Csr xt = x.transpose();
  auto whole = make();
  whole->init(x.rows, x.cols);
  for (int it = 0; it < 4; ++it) whole->iterate(x, xt);

  auto first = make();
  first->init(x.rows, x.cols);
  for (int it = 0; it < 2; ++it) first->iterate(x, xt);
  Checkpoint c;
  c.iteration = 2;
  c.iterations = 4;
  c.users = first->user_factors();
  c.items = first->item_factors();
  c.model = first->training_state();
  c.fit.history = {{{"iteration", 1}}, {{"iteration", 2}}};
  TempDir t;
  pipeline::write_checkpoint(t.file("ckpt"), c);
  Checkpoint back = pipeline::read_checkpoint(t.file("ckpt"));
  EXPECT_EQ(back.fit.history, c.fit.history);

  auto second = make();
  second->init(x.rows, x.cols);
  second->resume(std::move(back.users), std::move(back.items), back.iteration,
                 keep_state ? std::move(back.model) : models::TrainingState{});
  for (int it = 0; it < 2; ++it) second->iterate(x, xt);
  if (keep_state) {
    EXPECT_EQ(second->loss(x, xt), whole->loss(x, xt));
  }
  return second->user_factors().data == whole->user_factors().data &&
         second->item_factors().data == whole->item_factors().data;
}

TEST(CheckpointModels, IalsResumesBitwise) {
  EXPECT_TRUE(resume_matches([] { return std::make_unique<models::Ials>(ials_options(), 1); }, true));
}

TEST(CheckpointModels, BatchModelsResumeBitwiseOnlyWithTheirOptimizerState) {
  using backend::BatchLoss;
  using backend::Optimizer;
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax})
    for (Optimizer opt : {Optimizer::kAdam, Optimizer::kAdagrad, Optimizer::kSgd}) {
      const MakeModel make = [&] {
        return std::make_unique<models::BatchModel>(batch_options(loss, opt), 1);
      };
      EXPECT_TRUE(resume_matches(make, true)) << models::loss_name(loss) << " " << int(opt);
      // The optimiser's moments and step count are part of the state: without them the
      // continuation differs (SGD keeps none, so it needs only the epoch count).
      EXPECT_EQ(resume_matches(make, false), opt == Optimizer::kSgd)
          << models::loss_name(loss) << " " << int(opt);
    }
}

TEST(CheckpointModels, CclResumesBitwiseWithAndWithoutHistoryAggregation) {
  // With user-side aggregation the checkpoint's user factors are the served (aggregated)
  // vectors; the users' own rows and the history map W are part of the training state, so
  // without it even SGD continues differently. The aggregated case also uses dropout, whose
  // masks come from the batch seeds and so are the same after a resume.
  using backend::BatchLoss;
  using backend::Optimizer;
  for (double h : {0.0, 0.5})
    for (Optimizer opt : {Optimizer::kAdam, Optimizer::kSgd}) {
      models::BatchOptions o = batch_options(BatchLoss::kCcl, opt);
      o.params.item_bias = false;
      o.params.normalize = true;
      o.params.in_batch = false;
      o.params.margin = 0.5;
      o.params.negative_weight = 2;
      o.params.history_weight = h;
      o.params.dropout = h > 0 ? 0.2 : 0.0;
      if (opt == Optimizer::kSgd) o.params.learning_rate = 1.0;
      const MakeModel make = [&] { return std::make_unique<models::BatchModel>(o, 1); };
      EXPECT_TRUE(resume_matches(make, true)) << "h " << h << " " << int(opt);
      EXPECT_EQ(resume_matches(make, false), opt == Optimizer::kSgd && h == 0)
          << "h " << h << " " << int(opt);
    }
}

TEST(CheckpointModels, BatchModelsRefuseAStateThatDoesNotFitTheirSettings) {
  // What a damaged checkpoint can hand resume(): each variant of a real state (CCL with
  // aggregation and Adam, one epoch) is refused with recforge::Error naming the part, before
  // any of it reaches the trainer (whose own checks are internal errors).
  using backend::BatchLoss;
  using backend::Optimizer;
  models::BatchOptions o = batch_options(BatchLoss::kCcl, Optimizer::kAdam);
  o.params.item_bias = false;
  o.params.normalize = true;
  o.params.history_weight = 0.5;
  const data::Csr x = test::random_csr(60, 40, 6, 3);
  const data::Csr xt = x.transpose();
  models::BatchModel trained(o, 1);
  trained.init(x.rows, x.cols);
  trained.iterate(x, xt);
  const models::TrainingState good = trained.training_state();
  ASSERT_EQ(good.arrays.size(), 8u);  // 4 moments, the map and its 2 moments, the own rows
  const auto resume = [&](models::TrainingState s) {
    models::BatchModel m(o, 1);
    m.init(x.rows, x.cols);
    m.resume(trained.user_factors(), trained.item_factors(), 1, std::move(s));
    m.iterate(x, xt);
  };
  EXPECT_NO_THROW(resume(good));
  const auto refused = [&](models::TrainingState s, const std::string& names) {
    try {
      resume(std::move(s));
      ADD_FAILURE() << "resumed from a state with a damaged " << names;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
    }
  };
  models::TrainingState s = good;
  s.arrays["user_m"].rows -= 1;
  s.arrays["user_m"].data.resize(static_cast<size_t>(s.arrays["user_m"].rows * 8));
  refused(s, "model.user_m.npy holds 472 values; this model's has 480");
  s = good;
  s.arrays.erase("item_v");
  refused(s, "3 of the optimiser's 4 moment arrays");
  s = good;
  s.arrays["extra"] = test::random_matrix(2, 2, 1);
  refused(s, "model.extra.npy that ccl models do not keep");
  s = good;
  s.arrays["history_map"] = test::random_matrix(8, 4, 1);
  refused(s, "model.history_map.npy holds 32 values; this model's has 64");
  s = good;
  s.arrays.erase("history_map_v");
  refused(s, "history map (model.history_map.npy) without its moments (model.history_map_v.npy)");
  s = good;
  s.arrays["user_rows"] = test::random_matrix(59, 8, 1);
  refused(s, "own user rows (model.user_rows.npy, 59 × 8) do not fit this model (60 users");
  s = good;
  s.values["steps"] = -3;
  refused(s, "steps is -3; expected a whole number >= 0");
  s = good;
  s.values["last_loss"] = "low";
  refused(s, "last_loss is \"low\"; expected a number");
  // A model without aggregation keeps neither the map nor own rows; SGD keeps no moments.
  o.params.history_weight = 0;
  o.params.optimizer = Optimizer::kSgd;
  refused(good, "ccl with this optimiser and without model.history_weight does not keep");
}

// ---- Checkpoint files -----------------------------------------------------------------------

Checkpoint small_checkpoint(int iteration, float value) {
  Checkpoint c;
  c.iteration = iteration;
  c.iterations = 10;
  c.model_type = "ials";
  c.users = test::random_matrix(5, 3, 1);
  c.items = test::random_matrix(4, 3, 2);
  c.users.data[0] = value;
  c.data_values = "00112233445566778899aabbccddeeff";
  for (int k = 1; k <= iteration; ++k) c.fit.history.push_back({{"iteration", k}});
  return c;
}

TEST(CheckpointFiles, ReplacingKeepsOneWholeCheckpointAndOnlyRemovesItsOwnFiles) {
  TempDir t;
  const std::string dir = t.file("runs/.r.checkpoint");
  pipeline::write_checkpoint(dir, small_checkpoint(2, 2.f));
  // What a writer killed half-way leaves (arrays of a later iteration, never named by
  // checkpoint.json), and a file that recforge did not write.
  fs::create_directories(dir + "/.tmp-arrays-000006-1-0");
  fs::create_directories(dir + "/arrays-000006-1-1");
  write_file(dir + "/arrays-000006-1-1/users.npy", "half");
  write_file(dir + "/notes.txt", "mine");
  EXPECT_EQ(pipeline::read_checkpoint(dir).iteration, 2);
  EXPECT_EQ(pipeline::read_checkpoint(dir).data_values, "00112233445566778899aabbccddeeff");
  EXPECT_EQ(pipeline::read_checkpoint(dir).users.data[0], 2.f);

  pipeline::write_checkpoint(dir, small_checkpoint(4, 4.f));
  const Checkpoint c = pipeline::read_checkpoint(dir);
  EXPECT_EQ(c.iteration, 4);
  EXPECT_EQ(c.users.data[0], 4.f);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0].rfind("arrays-000004-" + std::to_string(getpid()) + "-", 0), 0u) << names[0];
  EXPECT_EQ(names[1], "checkpoint.json");
  EXPECT_EQ(names[2], "notes.txt");

  pipeline::remove_checkpoint(dir);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(fs::exists(t.file("runs")));
}

TEST(CheckpointFiles, AMissingArrayIsADamagedCheckpointToRemove) {
  TempDir t;
  const std::string dir = t.file(".r.checkpoint");
  pipeline::write_checkpoint(dir, small_checkpoint(2, 2.f));
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) fs::remove(e.path() / "items.npy");
  try {
    pipeline::read_checkpoint(dir);
    ADD_FAILURE() << "a checkpoint without its item factors was read";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(dir + ": the checkpoint is damaged (", 0), 0u) << m;
    EXPECT_NE(m.find("items.npy"), std::string::npos) << m;
    EXPECT_NE(m.find("remove " + dir + " to start the run over"), std::string::npos) << m;
  }
}

TEST(CheckpointFiles, NonFiniteFactorsAreADamagedCheckpoint) {
  // Training never checkpoints non-finite factors (it stops at such an epoch), so they are
  // damage, refused before a model would resume from them.
  TempDir t;
  const std::string dir = t.file(".r.checkpoint");
  pipeline::write_checkpoint(dir, small_checkpoint(2, std::numeric_limits<float>::quiet_NaN()));
  try {
    pipeline::read_checkpoint(dir);
    ADD_FAILURE() << "a checkpoint with a NaN user factor was read";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir + ": the checkpoint is damaged (its user factors hold NaN or infinity); remove " +
                  dir + " to start the run over");
  }
  pipeline::write_checkpoint(dir, small_checkpoint(2, 1.f));
  EXPECT_EQ(pipeline::read_checkpoint(dir).users.data[0], 1.f);
}

TEST(CheckpointFiles, OtherSettingsOrDataAreRefusedNamingWhatDiffers) {
  const config::Config cfg = config::Config::defaults();
  Checkpoint c;
  c.config_hash = pipeline::config_hash(cfg);
  c.config = pipeline::checkpoint_config(cfg);
  c.data_fingerprint = "0123456789abcdef0123";
  EXPECT_NO_THROW(pipeline::check_checkpoint(c, cfg, c.data_fingerprint, c.data_values, "runs/.r.checkpoint"));
  // Settings that do not change what training computes may differ.
  config::Config same = cfg;
  for (const char* s : {"run.log_level=debug", "train.threads=3", "train.checkpoint_every=5",
                        "export.enabled=true", "index.type=hnsw", "eval.test=false", "run.name=x",
                        "train.device=cpu"})
    same.set(s);
  EXPECT_NO_THROW(pipeline::check_checkpoint(c, same, c.data_fingerprint, c.data_values, "runs/.r.checkpoint"));

  config::Config other = cfg;
  other.set("model.factors=16");
  try {
    pipeline::check_checkpoint(c, other, c.data_fingerprint, c.data_values, "runs/.r.checkpoint");
    ADD_FAILURE() << "a checkpoint of other settings was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("runs/.r.checkpoint: this checkpoint was written with model.factors 64, but "
                     "this run has model.factors 16 (--set model.factors=16)"),
              std::string::npos)
        << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  try {
    pipeline::check_checkpoint(c, cfg, "fedcba9876543210fedc", c.data_values, "runs/.r.checkpoint");
    ADD_FAILURE() << "a checkpoint of other data was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written from different data (data fingerprint "
                                         "0123456789ab, now fedcba987654)"),
              std::string::npos)
        << e.what();
  }
  // A checkpoint of a recforge before a key existed (no model.observed_weight in it, and so
  // another config hash): resumed when the run has that key at its default, refused otherwise.
  Checkpoint older = c;
  older.config.erase("model.observed_weight");
  older.config_hash = "0000000000000000";
  EXPECT_NO_THROW(pipeline::check_checkpoint(older, cfg, c.data_fingerprint, c.data_values, "runs/.r.checkpoint"));
  // A checkpoint written when train.device was in the hash (an `auto` run) resumes with
  // --device cpu: the device is where a run computes, not what it computes.
  Checkpoint with_device = c;
  with_device.config["train.device"] = "auto";
  with_device.config_hash = "1111111111111111";
  config::Config on_cpu = cfg;
  on_cpu.set("train.device=cpu");
  EXPECT_NO_THROW(pipeline::check_checkpoint(with_device, on_cpu, c.data_fingerprint, c.data_values,
                                             "runs/.r.checkpoint"));
  config::Config replaced = cfg;
  replaced.set("model.observed_weight=replaced");
  try {
    pipeline::check_checkpoint(older, replaced, c.data_fingerprint, c.data_values, "runs/.r.checkpoint");
    ADD_FAILURE() << "a checkpoint without the key was taken for replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written with model.observed_weight (no value), but this "
                                         "run has model.observed_weight \"replaced\""),
              std::string::npos)
        << e.what();
  }
  // The same fingerprint, other weights or timestamps (the values digest): refused; a checkpoint
  // written before the digest was recorded (none) is not compared.
  Checkpoint cv = c;
  cv.data_values = "00112233445566778899aabbccddeeff";
  EXPECT_NO_THROW(pipeline::check_checkpoint(cv, cfg, c.data_fingerprint, cv.data_values, "runs/.r.checkpoint"));
  try {
    pipeline::check_checkpoint(cv, cfg, c.data_fingerprint, "ffeeddccbbaa99887766554433221100",
                               "runs/.r.checkpoint");
    ADD_FAILURE() << "a checkpoint of other weights was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "runs/.r.checkpoint: this checkpoint was written from data with other weights or "
              "timestamps (values digest 001122334455, now ffeeddccbbaa; the same users, items and "
              "split): restore the data files, or remove runs/.r.checkpoint to start the run over");
  }
  EXPECT_NO_THROW(pipeline::check_checkpoint(c, cfg, c.data_fingerprint, "ffeeddccbbaa99887766554433221100",
                                             "runs/.r.checkpoint"));
  // With an opt-out list, the message names it too: it is read again when training resumes.
  config::Config opted = cfg;
  opted.set("privacy.opt_out=opt-out.txt");
  Checkpoint co = c;
  co.config_hash = pipeline::config_hash(opted);
  co.config = pipeline::checkpoint_config(opted);
  try {
    pipeline::check_checkpoint(co, opted, "fedcba9876543210fedc", c.data_values, "runs/.r.checkpoint");
    ADD_FAILURE() << "a checkpoint of other data was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the data files or the opt-out list opt-out.txt "
                                         "(privacy.opt_out) changed; restore them"),
              std::string::npos)
        << e.what();
  }
}

// ---- End to end, with a real kill -------------------------------------------------------------

// A recforge command running in the background, its output in a file; killed and reaped when
// the object goes, whichever way the test ends.
class Background {
 public:
  Background(const std::string& cwd, const std::string& args, const std::string& log) {
    const std::string cmd =
        "cd '" + cwd + "' && exec '" + RECFORGE_BINARY + "' " + args + " > '" + log + "' 2>&1";
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !reaped_) kill9();
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  // Whether the process has ended (and is reaped).
  bool ended() {
    if (reaped_ || pid_ <= 0) return true;  // reaped, or fork failed
    reaped_ = waitpid(pid_, &status_, WNOHANG) == pid_;
    return reaped_;
  }
  // SIGKILL; returns whether the process was still running then.
  bool kill9() {
    if (ended()) return false;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
    return WIFSIGNALED(status_) && WTERMSIG(status_) == SIGKILL;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

// Polls until `path` exists; false when the process ended first.
bool wait_for(const std::string& path, Background& p) {
  while (!fs::exists(path)) {
    if (p.ended()) return fs::exists(path);
    usleep(500);
  }
  return true;
}

struct Result {
  int rc = -1;
  std::string out;
};

Result run(const std::string& cwd, const std::string& args) {
  const std::string cmd = "cd '" + cwd + "' && '" + RECFORGE_BINARY + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  Result r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The iterations a log reports as done, in order.
std::vector<int> iterations_logged(const std::string& log) {
  std::vector<int> out;
  static const std::regex re(R"(iteration (\d+)/\d+: loss)");
  for (std::sregex_iterator m(log.begin(), log.end(), re), end; m != end; ++m)
    out.push_back(std::stoi((*m)[1]));
  return out;
}

// "resuming from iteration K of N": K, or -1.
int resumed_from(const std::string& log) {
  static const std::regex re(R"(resuming from iteration (\d+) of \d+ \(checkpoint )");
  std::smatch m;
  return std::regex_search(log, m, re) ? std::stoi(m[1]) : -1;
}

// Synthetic data large enough that a run takes a good fraction of a second after its first
// checkpoint, on one thread.
std::string config_text(const std::string& model) {
  return "run:\n  name: ck\n  progress: lines\n"
         "data:\n  format: synthetic\n  cache: false\n"
         "synthetic:\n  users: 2000\n  items: 1500\n  interactions: 60000\n"
         "split:\n  method: leave_last\n  validation_fraction: 0.1\n"
         "train:\n  threads: 1\n"
         "model:\n" + model;
}

void expect_same_factors(const std::string& a, const std::string& b) {
  for (const char* f : {"user_factors.npy", "item_factors.npy"}) {
    const std::string x = read_file(a + "/" + f), y = read_file(b + "/" + f);
    ASSERT_FALSE(x.empty()) << a << "/" << f;
    EXPECT_TRUE(x == y) << f << " of " << a << " and " << b << " differ";
  }
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> out;
  // Held in a variable: a range-for over a member of a temporary would read freed memory.
  const nlohmann::json run = nlohmann::json::parse(read_file(run_dir + "/run.json"));
  for (const auto& h : run["history"])
    out.push_back(h["loss"].get<double>());
  return out;
}

// Kills `train ARGS` with SIGKILL once its first checkpoint exists and reruns it (or resumes it
// with `resume_args`); the rerun must continue from the last checkpoint, lose at most `every`
// iterations, and end with exactly the factors and losses of an uninterrupted run.
void kill_and_rerun(const std::string& model, int every, const std::string& resume_args = "") {
  TempDir t;
  write_file(t.file("ck.yaml"), config_text(model));
  const Result whole = run(t.str(), "train ck.yaml --name whole");
  ASSERT_EQ(whole.rc, 0) << whole.out;

  const std::string args = fmt::format("train ck.yaml --set train.checkpoint_every={}", every);
  const std::string ckpt = t.file("runs/.ck.checkpoint");
  int checkpointed = 0;
  {
    Background p(t.str(), args, t.file("killed.log"));
    ASSERT_TRUE(wait_for(ckpt + "/checkpoint.json", p))
        << "the run ended before its first checkpoint:\n" << read_file(t.file("killed.log"));
    ASSERT_TRUE(p.kill9()) << "the run ended before it could be killed";
  }
  EXPECT_FALSE(fs::exists(t.file("runs/ck")));  // killed while staged
  checkpointed = nlohmann::json::parse(read_file(ckpt + "/checkpoint.json"))["iteration"];
  EXPECT_EQ(checkpointed % every, 0);
  const std::vector<int> done = iterations_logged(read_file(t.file("killed.log")));
  ASSERT_FALSE(done.empty());
  EXPECT_GE(done.back(), checkpointed);

  const Result again = run(t.str(), resume_args.empty() ? args : resume_args);
  ASSERT_EQ(again.rc, 0) << again.out;
  EXPECT_EQ(resumed_from(again.out), checkpointed) << again.out;
  EXPECT_LE(done.back() - checkpointed, every) << "more iterations than train.checkpoint_every redone";
  const std::vector<int> redone = iterations_logged(again.out);
  ASSERT_FALSE(redone.empty()) << again.out;
  EXPECT_EQ(redone.front(), checkpointed + 1);
  expect_same_factors(t.file("runs/whole"), t.file("runs/ck"));
  EXPECT_EQ(losses(t.file("runs/whole")), losses(t.file("runs/ck")));
  EXPECT_EQ(nlohmann::json::parse(read_file(t.file("runs/ck/run.json")))["resumed_from_iteration"],
            checkpointed);
  EXPECT_FALSE(nlohmann::json::parse(read_file(t.file("runs/whole/run.json")))
                   .contains("resumed_from_iteration"));
  EXPECT_FALSE(fs::exists(ckpt)) << "the checkpoint outlived its complete run";
  // The resumed run's config.yaml and run.json name where each value came from when the run
  // started (they named the checkpoint's JSON, removed by now, for every key, defaults too).
  const std::string yaml = read_file(t.file("runs/ck/config.yaml"));
  EXPECT_EQ(yaml.find("checkpoint.json"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("# Resolved recforge configuration (from ck.yaml)."), std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("  factors: 16  # ck.yaml:"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find(fmt::format("  checkpoint_every: {}  # --set train.checkpoint_every={}\n",
                                  every, every)),
            std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("  exists: suffix\n"), std::string::npos) << yaml;  // a default
  EXPECT_EQ(nlohmann::json::parse(read_file(t.file("runs/ck/run.json")))["config_source"],
            "ck.yaml");
}

TEST(CheckpointKill, IalsRerunEndsWithTheFactorsOfAnUninterruptedRun) {
  kill_and_rerun("  type: ials\n  factors: 16\n  iterations: 30\n", 1);
}

TEST(CheckpointKill, BprRerunEndsWithTheFactorsOfAnUninterruptedRun) {
  // Adam (moments and step count in the checkpoint), learning-rate decay (the epoch number),
  // validation with patience (history and best factors in the checkpoint).
  kill_and_rerun("  type: bpr\n  factors: 16\n  iterations: 30\n  optimizer: adam\n"
                 "  lr_decay: 0.97\n  eval_every: 3\n  patience: 100\n",
                 2);
}

TEST(CheckpointKill, ResumeVerbContinuesFromTheCheckpointsConfig) {
  // --resume RUN without a config file: the checkpoint's resolved config, run.dir and run.name
  // of RUN.
  kill_and_rerun("  type: ials\n  factors: 16\n  iterations: 30\n", 2, "train --resume runs/ck");
}

// A one-line user error (exit status 1) containing `expected`.
void expect_error(const Result& r, const std::string& expected) {
  EXPECT_EQ(r.rc, 1) << r.out;
  std::vector<std::string> errors;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    if (l.rfind("recforge: error: ", 0) == 0) errors.push_back(l);
  ASSERT_EQ(errors.size(), 1u) << r.out;
  EXPECT_NE(errors[0].find(expected), std::string::npos) << errors[0];
}

TEST(CheckpointKill, ACheckpointOfOtherSettingsOrDataIsRefusedAndKept) {
  TempDir t;
  const Result gen = run(t.str(), "datagen --out data.csv --users 2000 --items 1500 "
                                  "--interactions 60000");
  ASSERT_EQ(gen.rc, 0) << gen.out;
  write_file(t.file("ck.yaml"),
             "run:\n  name: ck\n  progress: lines\n"
             "data:\n  path: data.csv\n  header: true\n  time_col: \"3\"\n  weight_col: weight\n"
             "  cache: false\n"
             "split:\n  method: leave_last\n"
             "train:\n  threads: 1\n  checkpoint_every: 1\n"
             "model:\n  type: ials\n  factors: 16\n  iterations: 30\n");
  const std::string ckpt = t.file("runs/.ck.checkpoint");
  {
    Background p(t.str(), "train ck.yaml", t.file("killed.log"));
    ASSERT_TRUE(wait_for(ckpt + "/checkpoint.json", p)) << read_file(t.file("killed.log"));
    ASSERT_TRUE(p.kill9());
  }
  const std::string before = read_file(ckpt + "/checkpoint.json");
  expect_error(run(t.str(), "train ck.yaml --set model.regularization=0.5"),
               "runs/.ck.checkpoint: this checkpoint was written with model.regularization 0.01, "
               "but this run has model.regularization 0.5 (--set model.regularization=0.5); run "
               "with the settings it was written with, or remove runs/.ck.checkpoint to start "
               "the run over");
  // The same config on changed data (one interaction fewer).
  const std::string data = read_file(t.file("data.csv"));
  write_file(t.file("data.csv"), data.substr(0, data.rfind('\n', data.size() - 2) + 1));
  expect_error(run(t.str(), "train ck.yaml"),
               "runs/.ck.checkpoint: this checkpoint was written from different data (data "
               "fingerprint ");
  EXPECT_EQ(read_file(ckpt + "/checkpoint.json"), before);
  EXPECT_FALSE(fs::exists(t.file("runs/ck")));
  // The same users, items and split, one weight changed (the first line's: user,item,w,time).
  {
    const size_t line = data.find('\n') + 1;
    const size_t w = data.find(',', data.find(',', line) + 1) + 1;
    std::string edited = data;
    edited.replace(w, data.find(',', w) - w, data.compare(w, data.find(',', w) - w, "5") == 0 ? "6" : "5");
    write_file(t.file("data.csv"), edited);
    expect_error(run(t.str(), "train ck.yaml"),
                 "runs/.ck.checkpoint: this checkpoint was written from data with other weights or "
                 "timestamps (values digest ");
    EXPECT_EQ(read_file(ckpt + "/checkpoint.json"), before);
  }
  // With the data restored, thread count and logging may change; the run then completes and
  // the checkpoint goes.
  write_file(t.file("data.csv"), data);
  const Result ok = run(t.str(), "train ck.yaml --set train.threads=2 --set run.log_level=info");
  ASSERT_EQ(ok.rc, 0) << ok.out;
  EXPECT_GE(resumed_from(ok.out), 1) << ok.out;
  EXPECT_FALSE(fs::exists(ckpt));
}

TEST(CheckpointCli, ResumeWithoutACheckpointIsOneLineError) {
  TempDir t;
  expect_error(run(t.str(), "train --resume runs/nothing"),
               "train --resume runs/nothing: there is no checkpoint runs/.nothing.checkpoint to "
               "continue from");
  expect_error(run(t.str(), "train"), "train: give a YAML config file, or --resume RUN");
  EXPECT_FALSE(fs::exists(t.file("runs")));
}

TEST(CheckpointKill, ResumedSweepContinuesItsTrialFromTheCheckpoint) {
  TempDir t;
  const std::string base =
      "base:\n"
      "  run: {progress: lines}\n"
      "  data: {format: synthetic, cache: false}\n"
      "  synthetic: {users: 2000, items: 1500, interactions: 60000}\n"
      "  split: {method: leave_last, validation_fraction: 0.1}\n"
      "  train: {threads: 1, checkpoint_every: 2}\n"
      "  model: {factors: 16, iterations: 24, eval_every: 2}\n"
      "  eval: {ks: [10]}\n"
      "metric: ndcg@10\n"
      "space:\n  model.regularization: [0.01, 0.1]\n";
  write_file(t.file("a.yaml"), base + "out: a\n");
  write_file(t.file("b.yaml"), base + "out: b\n");
  const Result whole = run(t.str(), "sweep b.yaml");
  ASSERT_EQ(whole.rc, 0) << whole.out;

  const std::string ckpt = t.file("a/.trial-001.checkpoint");
  {
    Background p(t.str(), "sweep a.yaml", t.file("killed.log"));
    ASSERT_TRUE(wait_for(ckpt + "/checkpoint.json", p)) << read_file(t.file("killed.log"));
    ASSERT_TRUE(p.kill9());
  }
  const int checkpointed = nlohmann::json::parse(read_file(ckpt + "/checkpoint.json"))["iteration"];
  const Result again = run(t.str(), "sweep a.yaml");
  ASSERT_EQ(again.rc, 0) << again.out;
  const std::string log = read_file(t.file("a/trial-001/log.txt"));
  EXPECT_EQ(resumed_from(log), checkpointed) << log;
  const std::vector<int> trained = iterations_logged(log);
  ASSERT_FALSE(trained.empty());
  EXPECT_EQ(trained.front(), checkpointed + 1);
  expect_same_factors(t.file("b/trial-001"), t.file("a/trial-001"));
  expect_same_factors(t.file("b/trial-002"), t.file("a/trial-002"));
  // The trial's record, with its validation curve from before the kill, is the same too.
  const auto ta = nlohmann::json::parse(read_file(t.file("a/sweep.json")))["trials"][0];
  const auto tb = nlohmann::json::parse(read_file(t.file("b/sweep.json")))["trials"][0];
  EXPECT_EQ(ta["curve"], tb["curve"]);
  EXPECT_EQ(ta["validation"], tb["validation"]);
  EXPECT_EQ(ta["status"], "finished");
  EXPECT_FALSE(fs::exists(ckpt));
}

}  // namespace
}  // namespace recforge
