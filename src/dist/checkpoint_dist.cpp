#include "dist/checkpoint_dist.h"

#include <filesystem>
#include <fstream>

#include "core/clock.h"
#include "core/fs.h"
#include "core/log.h"
#include "dist/errors.h"
#include "models/model.h"
#include "pipeline/checkpoint.h"

namespace recforge::dist {
namespace {

namespace fs = std::filesystem;

constexpr int kVersion = 1;
constexpr const char* kMeta = "checkpoint.json";

std::string iteration_dir(int iteration) { return fmt::format("it-{:06}", iteration); }

void write_rows(const std::string& dir, const std::string& name, const Matrix& m) {
  const std::string path = dir + "/" + name + ".npy";
  write_npy(path, m);
  sync_path(path, false);
}

}  // namespace

void write_dist_checkpoint(const Comm& comm, const std::string& dir, const config::Config& cfg,
                           const std::string& fingerprint, const std::string& values,
                           const DistCheckpoint& c) {
  const std::string it = iteration_dir(c.iteration);
  const std::string mine = fmt::format("{}/{}/rank-{}", dir, it, comm.rank());
  std::string error;
  try {
    std::error_code ec;
    fs::remove_all(mine, ec);  // a half-written try of the same iteration
    if (!create_directories(mine, ec))
      fail("{}: cannot create the checkpoint directory: {}", mine, ec.message());
    write_rows(mine, "users", c.users);
    write_rows(mine, "items", c.items);
    if (c.best_users.rows > 0 || c.best_items.rows > 0) {
      write_rows(mine, "best_users", c.best_users);
      write_rows(mine, "best_items", c.best_items);
    }
    sync_path(mine, true);
    sync_path(dir + "/" + it, true);
  } catch (const Error& e) {
    error = e.what();
  }
  agree(comm, error);  // every rank's rows are on disk
  if (comm.rank() == 0) {
    try {
      const nlohmann::json meta = {
          {"format", kDistCheckpointFormat},
          {"version", kVersion},
          {"recforge_version", RECFORGE_VERSION},
          {"created", utc_now()},
          {"ranks", comm.size()},
          {"iteration", c.iteration},
          {"config_hash", pipeline::config_hash(cfg)},
          {"config", pipeline::checkpoint_config(cfg)},
          {"config_yaml", cfg.to_yaml()},
          {"data_fingerprint", fingerprint},
          {"data_values", values},
          {"arrays_dir", it},
          {"with_best", c.best_users.rows > 0 || c.best_items.rows > 0},
          {"fit",
           {{"history", c.history},
            {"best", c.best},
            {"best_iteration", c.best_iter},
            {"since_best", c.since_best}}}};
      write_file_atomic(dir + "/" + kMeta, meta.dump(1) + "\n");
      sync_path(dir, true);
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir, ec)) {  // earlier iterations' rows
        const std::string f = e.path().filename().string();
        if (f.rfind("it-", 0) == 0 && f != it) fs::remove_all(e.path(), ec);
      }
    } catch (const Error& e) {
      error = e.what();
    }
  }
  agree(comm, error);
  log().debug("checkpoint of iteration {} written to {}", c.iteration, dir);
}

bool read_dist_checkpoint(const Comm& comm, const std::string& dir, const config::Config& cfg,
                          const std::string& fingerprint, const std::string& values,
                          int64_t users, int64_t items, int k, DistCheckpoint& c) {
  // Rank 0 reads and checks checkpoint.json and shares it.
  std::string meta_text, error;
  if (comm.rank() == 0 && fs::exists(dir + "/" + kMeta)) {
    try {
      std::ifstream in(dir + "/" + kMeta, std::ios::binary);
      meta_text.assign(std::istreambuf_iterator<char>(in), {});
      const nlohmann::json j = nlohmann::json::parse(meta_text, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        pipeline::checkpoint_damaged(dir, fmt::format("{} is not JSON", kMeta));
      if (j.value("format", "") != kDistCheckpointFormat)
        fail("{}: this checkpoint was written by a run of one process; resume it without "
             "mpirun, or remove {} to start the run over",
             dir, dir);
      if (j.value("version", 0) != kVersion)
        fail("{}: the checkpoint has format version {}, this recforge reads version {}; remove {} "
             "to start the run over",
             dir, j.value("version", 0), kVersion, dir);
      if (j.value("ranks", 0) != comm.size())
        fail("{}: this checkpoint was written by {} processes, and this job has {}; resume with "
             "mpirun -np {}, or remove {} to start the run over",
             dir, j.value("ranks", 0), comm.size(), j.value("ranks", 0), dir);
      pipeline::Checkpoint check;  // the fields pipeline::check_checkpoint compares
      check.config_hash = j.at("config_hash").get<std::string>();
      check.config = j.at("config");
      check.data_fingerprint = j.at("data_fingerprint").get<std::string>();
      check.data_values = j.value("data_values", std::string());
      pipeline::check_checkpoint(check, cfg, fingerprint, values, dir);
    } catch (const Error& e) {
      error = e.what();
    } catch (const nlohmann::json::exception& e) {
      error = fmt::format("{}: the checkpoint is damaged ({}); remove {} to start the run over",
                          dir, e.what(), dir);
    }
  }
  int64_t n = static_cast<int64_t>(error.size());
  comm.broadcast(&n, sizeof n, 0);
  if (n > 0) {
    error.resize(static_cast<size_t>(n));
    comm.broadcast(error.data(), n, 0);
    throw CollectiveError(error);
  }
  n = static_cast<int64_t>(meta_text.size());
  comm.broadcast(&n, sizeof n, 0);
  if (n == 0) return false;
  meta_text.resize(static_cast<size_t>(n));
  comm.broadcast(meta_text.data(), n, 0);
  const nlohmann::json j = nlohmann::json::parse(meta_text);
  std::string mine;
  try {
    // Every rank reads the same checkpoint.json (broadcast), so these checks agree.
    c.iteration = j.at("iteration").get<int>();
    const nlohmann::json& f = j.at("fit");
    c.history = f.at("history");
    c.best = f.at("best").get<double>();
    c.best_iter = f.at("best_iteration").get<int>();
    c.since_best = f.at("since_best").get<int64_t>();
    mine = fmt::format("{}/{}/rank-{}", dir, j.at("arrays_dir").get<std::string>(), comm.rank());
    if (c.iteration < 1 || !c.history.is_array() || c.history.size() != static_cast<size_t>(c.iteration) ||
        c.best_iter < 0 || c.best_iter > c.iteration || c.since_best < 0)
      error = fmt::format("{}: the checkpoint is damaged (iteration {} with {} history entries, best "
                          "iteration {}); remove {} to start the run over",
                          dir, c.iteration, c.history.is_array() ? c.history.size() : 0, c.best_iter, dir);
  } catch (const nlohmann::json::exception& e) {
    error = fmt::format("{}: the checkpoint is damaged ({}); remove {} to start the run over", dir,
                        e.what(), dir);
  }
  agree(comm, error);
  try {
    c.users = read_npy(mine + "/users.npy");
    c.items = read_npy(mine + "/items.npy");
    if (j.value("with_best", false)) {
      c.best_users = read_npy(mine + "/best_users.npy");
      c.best_items = read_npy(mine + "/best_items.npy");
    }
    if (c.users.rows != users || c.items.rows != items || c.users.cols != k || c.items.cols != k)
      pipeline::checkpoint_damaged(
          dir, fmt::format("rank {}'s rows are {} × {} and {} × {}, expected {} × {} and {} × {}",
                           comm.rank(), c.users.rows, c.users.cols, c.items.rows, c.items.cols,
                           users, k, items, k));
    if (j.value("with_best", false) &&
        (c.best_users.rows != users || c.best_items.rows != items || c.best_users.cols != k ||
         c.best_items.cols != k))
      pipeline::checkpoint_damaged(dir, fmt::format("rank {}'s best rows are not of its rows' shapes",
                                                    comm.rank()));
    // Training writes finite rows only; a NaN resumed from would surface as an overflow error
    // blaming the weights.
    for (const auto& [what, m] : {std::pair<const char*, const Matrix*>{"user", &c.users},
                                  {"item", &c.items},
                                  {"best user", &c.best_users},
                                  {"best item", &c.best_items}})
      if (!models::all_finite(*m))
        pipeline::checkpoint_damaged(
            dir, fmt::format("rank {}'s {} rows hold NaN or infinity", comm.rank(), what));
  } catch (const Error& e) {
    error = e.what();
  }
  agree(comm, error);
  return true;
}

}  // namespace recforge::dist
