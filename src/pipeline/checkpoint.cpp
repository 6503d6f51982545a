#include "pipeline/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"
#include "pipeline/train.h"

namespace recforge::pipeline {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "recforge-checkpoint";
constexpr int kVersion = 1;
constexpr const char* kMeta = "checkpoint.json";

// Parameters that do not change what training computes (see checkpoint_config).
bool outside_training(const std::string& path) {
  // train.device is where the run computes, like train.threads: `auto` already resumes on
  // whatever the machine has, and `--device cpu` must resume an `auto` run on a CPU machine.
  static const char* const kKeys[] = {
      "run.name",   "run.dir",        "run.exists",             "run.log_level",
      "run.progress", "train.threads", "train.device", "train.checkpoint_every", "data.cache",
      "data.cache_dir", "eval.test"};
  for (const char* k : kKeys)
    if (path == k) return true;
  return path.rfind("index.", 0) == 0 || path.rfind("export.", 0) == 0;
}

// Flushes `path` (a file or a directory) to disk. Directories on file systems that cannot sync
// them (EINVAL) are left as they are.
void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open it to sync the checkpoint to disk: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !(directory && (err == EINVAL || err == ENOTSUP)))
    fail("{}: cannot sync the checkpoint to disk: {}", path, std::strerror(err));
}

// Writes `text` to `path` through a synced temporary file renamed into place.
void write_synced(const std::string& path, const std::string& text) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  {
    const int fd = create_file(tmp);  // privacy.file_mode; the stream below reopens it
    if (fd < 0) fail("{}: cannot write the checkpoint file: {}", tmp, std::strerror(errno));
    ::close(fd);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot write the checkpoint file", tmp);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      fail("{}: writing the checkpoint failed (disk full?)", tmp);
    }
  }
  sync_path(tmp, false);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();  // before the removal resets `ec`
    fs::remove(tmp, ec);
    fail("{}: cannot move the checkpoint file into place: {}", path, why);
  }
}

void write_array(const std::string& dir, const std::string& name, const Matrix& m) {
  const std::string path = dir + "/" + name + ".npy";
  write_npy(path, m);
  sync_path(path, false);
}

// Removes what earlier checkpoints of this directory left (older array directories,
// temporaries of a writer that was killed), keeping `keep`. Only names this file creates.
void remove_stale(const std::string& dir, const std::string& keep) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    const bool ours = f.rfind("arrays-", 0) == 0 || f.rfind(".tmp-arrays-", 0) == 0 ||
                      f.rfind(std::string(kMeta) + ".tmp.", 0) == 0;
    if (ours && f != keep) fs::remove_all(e.path(), ec);
  }
}

std::string short_hash(const std::string& h) { return h.substr(0, 12); }

}  // namespace

void checkpoint_damaged(const std::string& dir, const std::string& what) {
  fail("{}: the checkpoint is damaged ({}); remove {} to start the run over", dir, what, dir);
}

std::string checkpoint_dir(const std::string& run_dir, const std::string& name) {
  return (fs::path(run_dir) / fmt::format(".{}.checkpoint", name)).string();
}

std::string checkpoint_dir(const config::Config& cfg) {
  return checkpoint_dir(cfg.settings().run.dir, run_name(cfg));
}

nlohmann::json checkpoint_config(const config::Config& cfg) {
  const nlohmann::json all = cfg.to_json();
  nlohmann::json out = nlohmann::json::object();
  for (const config::Param& p : config::params()) {
    if (outside_training(p.path)) continue;
    const size_t dot = p.path.find('.');
    out[p.path] = all.at(p.path.substr(0, dot)).at(p.path.substr(dot + 1));
  }
  return out;
}

std::string config_hash(const config::Config& cfg) {
  Sha256 h;
  h.update(checkpoint_config(cfg).dump());
  return h.hex();
}

bool has_checkpoint(const std::string& dir) { return fs::exists(fs::path(dir) / kMeta); }

void write_checkpoint(const std::string& dir, const Checkpoint& c) {
  static std::atomic<int> counter{0};
  std::error_code ec;
  const bool created = !fs::exists(dir);
  if (created) {
    recforge::create_directories(dir, ec);
    if (ec) fail("{}: cannot create the checkpoint directory: {}", dir, ec.message());
    sync_path(fs::path(dir).parent_path().string(), true);
  }
  // The arrays go into a new directory, complete and synced before checkpoint.json names it.
  const std::string arrays =
      fmt::format("arrays-{:06}-{}-{}", c.iteration, getpid(), counter.fetch_add(1));
  const std::string tmp = dir + "/.tmp-" + arrays;
  nlohmann::json names = nlohmann::json::array();
  try {
    fs::remove_all(tmp, ec);
    if (make_directory(tmp) != 0) ec = std::error_code(errno, std::generic_category());
    if (ec) fail("{}: cannot create the checkpoint's array directory: {}", tmp, ec.message());
    const auto put = [&](const std::string& name, const Matrix& m) {
      write_array(tmp, name, m);
      names.push_back(name);
    };
    put("users", c.users);
    put("items", c.items);
    if (c.fit.best_users.rows > 0) {
      put("best_users", c.fit.best_users);
      put("best_items", c.fit.best_items);
    }
    for (const auto& [name, m] : c.model.arrays) put("model." + name, m);
    sync_path(tmp, true);
    fs::rename(tmp, dir + "/" + arrays, ec);
    if (ec) fail("{}: cannot move the checkpoint's arrays into place: {}", dir, ec.message());
    sync_path(dir, true);
  } catch (...) {
    // Leave the previous checkpoint as it was, and no half-written arrays beside it.
    fs::remove_all(tmp, ec);
    if (created) fs::remove_all(dir, ec);
    throw;
  }

  const nlohmann::json meta = {
      {"format", kFormat},
      {"version", kVersion},
      {"recforge_version", RECFORGE_VERSION},
      {"created", utc_now()},
      {"iteration", c.iteration},
      {"iterations", c.iterations},
      {"model_type", c.model_type},
      {"config_hash", c.config_hash},
      {"config", c.config},
      {"config_yaml", c.config_yaml},
      {"config_origins", c.config_origins},
      {"data_fingerprint", c.data_fingerprint},
      {"data_values", c.data_values},
      {"start", c.start},
      {"arrays_dir", arrays},
      {"arrays", names},
      {"model_state", c.model.values},
      {"fit",
       {{"history", c.fit.history},
        {"best", c.fit.best},
        {"best_iteration", c.fit.best_iter},
        {"since_best", c.fit.since_best}}}};
  try {
    write_synced(dir + "/" + kMeta, meta.dump(1) + "\n");
  } catch (...) {
    fs::remove_all(dir + "/" + arrays, ec);  // the previous checkpoint.json still holds
    if (created) fs::remove_all(dir, ec);
    throw;
  }
  sync_path(dir, true);
  remove_stale(dir, arrays);
}

nlohmann::json read_checkpoint_json(const std::string& dir) {
  const std::string path = dir + "/" + kMeta;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: there is no checkpoint here (no {})", dir, kMeta);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_discarded() && j.is_object() &&
      j.value("format", "") == "recforge-distributed-checkpoint")  // dist/checkpoint_dist.h
    fail("{}: this checkpoint was written by a distributed run of {} processes; resume it with "
         "mpirun -np {}, or remove {} to start the run over",
         dir, j.value("ranks", 0), j.value("ranks", 0), dir);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kFormat)
    checkpoint_damaged(dir, fmt::format("{} is not a recforge checkpoint", kMeta));
  if (j.value("version", 0) != kVersion)
    fail("{}: the checkpoint has format version {}, this recforge reads version {}; finish the "
         "run with the recforge that started it, or remove {} to start over",
         dir, j.value("version", 0), kVersion, dir);
  return j;
}

Checkpoint read_checkpoint(const std::string& dir) {
  const nlohmann::json j = read_checkpoint_json(dir);
  Checkpoint c;
  try {
    c.iteration = j.at("iteration").get<int>();
    c.iterations = j.at("iterations").get<int>();
    c.model_type = j.at("model_type").get<std::string>();
    c.config_hash = j.at("config_hash").get<std::string>();
    c.config = j.at("config");
    c.config_yaml = j.at("config_yaml").get<std::string>();
    c.config_origins = j.value("config_origins", nlohmann::json());
    c.data_fingerprint = j.at("data_fingerprint").get<std::string>();
    c.data_values = j.value("data_values", std::string());
    c.start = j.value("start", nlohmann::json());
    c.model.values = j.at("model_state");
    const nlohmann::json& f = j.at("fit");
    c.fit.history = f.at("history");
    c.fit.best = f.at("best").get<double>();
    c.fit.best_iter = f.at("best_iteration").get<int>();
    c.fit.since_best = f.at("since_best").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    checkpoint_damaged(dir, fmt::format("{}: {}", kMeta, e.what()));
  }
  const std::string arrays = dir + "/" + j.value("arrays_dir", "");
  for (const nlohmann::json& n : j.value("arrays", nlohmann::json::array())) {
    const std::string name = n.get<std::string>();
    Matrix m;
    try {
      m = read_npy(arrays + "/" + name + ".npy");
    } catch (const Error& e) {
      checkpoint_damaged(dir, e.what());
    }
    if (name == "users") c.users = std::move(m);
    else if (name == "items") c.items = std::move(m);
    else if (name == "best_users") c.fit.best_users = std::move(m);
    else if (name == "best_items") c.fit.best_items = std::move(m);
    else if (name.rfind("model.", 0) == 0) c.model.arrays[name.substr(6)] = std::move(m);
  }
  if (c.users.rows == 0 || c.items.rows == 0 || c.users.cols != c.items.cols)
    checkpoint_damaged(dir, "its factor matrices are missing or of different widths");
  // Training writes finite factors only (it stops at a non-finite epoch), so these are damage;
  // a model would resume from them and fail later with a sentence about its settings.
  for (const auto& [what, m] : {std::pair<const char*, const Matrix*>{"user", &c.users},
                                {"item", &c.items},
                                {"best user", &c.fit.best_users},
                                {"best item", &c.fit.best_items}})
    if (!models::all_finite(*m)) checkpoint_damaged(dir, fmt::format("its {} factors hold NaN or infinity", what));
  if (c.iteration < 1 || c.iteration > c.iterations)
    checkpoint_damaged(dir, fmt::format("iteration {} of {}", c.iteration, c.iterations));
  // The training loop's progress: one history entry per iteration done, numbered from 1, and a
  // best validation no later than the checkpoint, whose kept factors (model.patience) have the
  // factors' shapes.
  const FitProgress& f = c.fit;
  bool history_fits = f.history.is_array() && f.history.size() == static_cast<size_t>(c.iteration);
  for (size_t k = 0; history_fits && k < f.history.size(); ++k) {
    const nlohmann::json& e = f.history[k];
    history_fits = e.is_object() && e.contains("iteration") && e["iteration"].is_number_integer() &&
                   e["iteration"].get<int64_t>() == static_cast<int64_t>(k) + 1;
  }
  if (!history_fits)
    checkpoint_damaged(dir, fmt::format("its history is not one entry per iteration done, {}",
                                        c.iteration));
  const auto kept_fits = [](const Matrix& best, const Matrix& now) {
    return best.rows == 0 || (best.rows == now.rows && best.cols == now.cols);
  };
  if (f.best_iter < 0 || f.best_iter > c.iteration || f.since_best < 0 ||
      !kept_fits(f.best_users, c.users) || !kept_fits(f.best_items, c.items))
    checkpoint_damaged(dir, fmt::format("its best validation, iteration {} with {} evaluations "
                                        "since, and the factors kept for it do not fit a run at "
                                        "iteration {}",
                                        f.best_iter, f.since_best, c.iteration));
  return c;
}

void check_checkpoint(const Checkpoint& c, const config::Config& cfg, const std::string& fingerprint,
                      const std::string& values, const std::string& dir) {
  const std::string how = fmt::format(
      "run with the settings it was written with, or remove {} to start the run over", dir);
  if (c.config_hash != config_hash(cfg)) {
    const nlohmann::json now = checkpoint_config(cfg);
    // A key the checkpoint lacks is one added to recforge after it was written (such as
    // model.observed_weight): at its default, the run computes what the checkpoint's did.
    config::Config fresh = config::Config::defaults();  // defaults may follow model.type
    fresh.set("model.type=" + cfg.settings().model.type);
    const nlohmann::json defaults = checkpoint_config(fresh);
    bool differs = false;
    for (const auto& [path, value] : now.items()) {
      if (c.config.contains(path) && c.config[path] == value) continue;
      if (!c.config.contains(path) && defaults.contains(path) && defaults[path] == value) continue;
      const std::string then = c.config.contains(path) ? c.config[path].dump() : "(no value)";
      fail("{}: this checkpoint was written with {} {}, but this run has {} {} ({}); {}", dir,
           path, then, path, value.dump(), cfg.where(path), how);
    }
    for (const auto& [path, value] : c.config.items())  // a key this recforge no longer has
      differs = differs || (!now.contains(path) && !outside_training(path));
    if (differs || c.config.empty())
      fail("{}: this checkpoint was written with a different config (config hash {}, now {}); {}",
           dir, short_hash(c.config_hash), short_hash(config_hash(cfg)), how);
  }
  if (c.data_fingerprint != fingerprint) {
    // The opt-out list is read again when training resumes: a user added to it (or removed)
    // since the checkpoint changes the data as much as an edited data file does.
    const auto& opt_out = cfg.settings().privacy.opt_out;
    fail("{}: this checkpoint was written from different data (data fingerprint {}, now {}): "
         "the data files {}changed; restore them, or remove {} to start the run over",
         dir, short_hash(c.data_fingerprint), short_hash(fingerprint),
         opt_out ? fmt::format("or the opt-out list {} (privacy.opt_out) ", *opt_out) : "", dir);
  }
  // The same users, items and split, other weights or timestamps: the factors were fitted to the
  // old confidences, and the run would finish as a mix of both.
  if (!c.data_values.empty() && c.data_values != values)
    fail("{}: this checkpoint was written from data with other weights or timestamps (values "
         "digest {}, now {}; the same users, items and split): restore the data files, or remove "
         "{} to start the run over",
         dir, short_hash(c.data_values), short_hash(values), dir);
}

void remove_checkpoint(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  fs::remove_all(dir, ec);
  if (ec) log().warn("{}: cannot remove the finished run's checkpoint: {}", dir, ec.message());
}

}  // namespace recforge::pipeline
