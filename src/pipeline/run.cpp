#include "pipeline/run.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "artifact/artifact.h"
#include "artifact/files.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/npy.h"
#include "pipeline/options.h"
#include "pipeline/warm_start.h"

namespace recforge::pipeline {
namespace fs = std::filesystem;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
}

std::string no_run_directory(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec))
    return fmt::format("{}: is not a directory; expected a run directory (the directory "
                       "holding the run.json that recforge train writes)",
                       dir);
  if (const std::string aside = artifact::export_left_aside(dir); !aside.empty())
    return fmt::format("{}: no such run directory or export; an interrupted export left the "
                       "previous export at {} (rename it back, or export again)",
                       dir, aside);
  return fmt::format("{}: no such run directory", dir);
}

// "DIR: not a recforge run directory (run.json is missing)", and where DIR is a sweep trial
// trained with seeds (its runs are DIR/seed-N), which ones to name instead.
static std::string not_a_run(const std::string& dir) {
  std::vector<std::string> seeds;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("seed-", 0) == 0 && fs::exists(e.path() / "run.json", ec)) seeds.push_back(name);
  }
  std::sort(seeds.begin(), seeds.end());
  std::string out = fmt::format("{}: not a recforge run directory (run.json is missing)", dir);
  if (!seeds.empty())
    out += fmt::format("; it is a sweep trial of {} seed runs: name them ({}/{}{})", seeds.size(),
                       dir, seeds.front(), seeds.size() > 1 ? ", ..." : "");
  return out;
}

void record_export(const std::string& run_dir, const std::string& export_dir) {
  std::error_code ec;
  fs::path abs = fs::absolute(export_dir, ec);
  if (!ec) abs = fs::weakly_canonical(abs, ec).lexically_normal();
  const std::string path = run_dir + "/" + kExportsFile;
  const std::string line = (ec ? fs::path(export_dir) : abs).string() + "\n";
  {  // a directory written to again (a new version of the same export) is listed once
    std::ifstream in(path);
    for (std::string l; std::getline(in, l);)
      if (l + "\n" == line) return;
  }
  const int fd = open_or_create_file(path, O_APPEND);
  bool ok = fd >= 0;
  int err = errno;
  if (ok) {
    ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    if (!ok) err = errno;
    ::close(fd);
  }
  if (!ok)
    log().warn("{}: cannot record the export {} there ({}): forget and report-user of the run will "
               "not know it; give it to forget as --export {}",
               path, export_dir, std::strerror(err), export_dir);
}

namespace {

// True when the export in `dir` says it was written from another run than the one whose run.json
// is `run`: a later export of another run to the same place replaced it. Runs are told apart by
// run.json's random "id", never by path: one run is reached by many paths (a symlink, ".", a
// copy or a move keep it), and hiding one of its exports from forget and report-user would be
// worse than listing another's.
bool now_another_runs_export(const std::string& dir, const nlohmann::json& run) {
  nlohmann::json manifest;
  try {
    std::ifstream in(dir + "/manifest.json");
    if (!in) return false;
    manifest = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    return false;  // unreadable: listed, and whoever opens it says why
  }
  const auto source = manifest.find("source");
  if (source == manifest.end() || !source->is_object()) return false;
  const auto id = source->find("run_id");
  if (id == source->end() || !id->is_string() || id->get<std::string>().empty() ||
      !run.is_object() || !run.contains("id"))
    return false;  // written before exports recorded their run, or from such a run
  return *id != run["id"];
}

}  // namespace

std::vector<std::string> run_exports(const std::string& run_dir, const nlohmann::json& run) {
  std::vector<std::string> out, seen;
  const auto add = [&](const std::string& dir) {
    if (now_another_runs_export(dir, run)) return;
    std::error_code ec;
    fs::path key = fs::absolute(dir, ec);
    if (!ec) key = fs::weakly_canonical(key, ec).lexically_normal();
    if (!ec && !key.has_filename()) key = key.parent_path();  // "exp/" is "exp"
    const std::string k = ec ? dir : key.string();
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) return;
    seen.push_back(k);
    out.push_back(dir);
  };
  // exports.txt: absolute paths, training's first (runs since 2026-12-07).
  std::ifstream in(run_dir + "/" + kExportsFile);
  const bool listed = static_cast<bool>(in);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '/') add(line);
  // run.json's export: relative to the directory training ran in when run.dir or export.out was
  // relative, which is not known here. Absolute, it is taken as it is; relative, as the run's own
  // export/ when it names that one ("<...>/<run name>/export") and it is there; otherwise only
  // for runs without exports.txt (trained before it; resolved against the current directory),
  // since exports.txt holds training's export absolutely.
  if (run.is_object() && run.contains("export") && run["export"].is_string()) {
    const fs::path e = run["export"].get<std::string>();
    fs::path dir = fs::path(run_dir).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path();
    std::error_code ec;
    const bool own = (e.lexically_normal() == fs::path("export") ||
                      e.lexically_normal().parent_path().filename() == dir.filename()) &&
                     e.filename() == "export" && fs::exists(dir / "export", ec);
    if (e.is_absolute()) add(e.string());
    else if (own) add((dir / "export").string());
    else if (!listed) add(e.string());
  }
  return out;
}

nlohmann::json read_run_json(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}", no_run_directory(dir));
  const std::string path = dir + "/run.json";
  if (!fs::exists(path)) fail("{}", not_a_run(dir));
  return read_json(path);
}

const std::vector<std::string>& checksummed_run_files() {
  static const std::vector<std::string> files = {"config.yaml",      "stats.json",
                                                 "metrics.json",     "user_factors.npy",
                                                 "item_factors.npy", kChainUsersFile};
  return files;
}

nlohmann::json run_file_checksums(const std::string& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const std::string& f : checksummed_run_files()) {
    const std::string path = dir + "/" + f;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) continue;
    files[f] = {{"bytes", fs::file_size(path)}, {"sha256", sha256_file(path)}};
  }
  return files;
}

OpenedRun open_run(const std::string& dir, const std::string& verb) {
  // The directory is opened once and each file read once: its size and SHA-256 (recorded by
  // train in run.json "files") are checked on the bytes that are then parsed.
  std::error_code kind;
  if (!fs::is_directory(dir, kind)) fail("{}", no_run_directory(dir));
  const std::optional<artifact::DirReader> d = artifact::DirReader::open(dir, dir);
  if (!d) fail("{}", no_run_directory(dir));
  const std::optional<std::string> run_text = d->read("run.json");
  if (!run_text) fail("{}", not_a_run(dir));
  OpenedRun r{dir, config::Config::defaults(), {}, {}, nullptr, nlohmann::json::object(), {}};
  try {
    r.run = nlohmann::json::parse(*run_text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", d->shown("run.json"), e.what());
  }
  if (!r.run.is_object())
    fail("{}: the file is a JSON {}; expected an object", d->shown("run.json"), r.run.type_name());
  if (!r.run.contains("model") || r.run["model"].is_null())
    fail("{}: this run has no trained model, so there is nothing to {} (it was trained with "
         "model.type: none)",
         dir, verb);
  const nlohmann::json* files = r.run.contains("files") ? &r.run["files"] : nullptr;
  if (files && !files->is_object())
    fail("{}: field \"files\" is a JSON {}; expected an object with the size and SHA-256 of the "
         "run's files",
         d->shown("run.json"), files->type_name());
  if (!files)
    log().warn(
        "{}: run.json has no checksums of the run's files (written by an earlier recforge); "
        "its factors and config are used unverified",
        dir);
  // A file's bytes, checked against run.json when it lists checksums. The factors and the
  // config must be listed there.
  auto check = [&](const std::string& name, bool required, std::optional<std::string_view> bytes) {
    const std::string shown = d->shown(name);
    if (files && files->contains(name)) {
      if (!bytes)
        fail("{}: missing (run.json lists it with {} bytes)", shown,
             (*files)[name].is_object() && (*files)[name].contains("bytes")
                 ? (*files)[name]["bytes"].dump()
                 : "unknown");
      artifact::verify_entry(shown, *bytes, (*files)[name], "run.json");
    } else if (files && required) {
      fail("{}: has no checksum in run.json \"files\"; expected the run's checksums to cover it",
           shown);
    }
    if (!bytes && required) fail("{}: missing; expected the file that training wrote", shown);
  };
  auto read = [&](const std::string& name, bool required) -> std::optional<std::string> {
    std::optional<std::string> bytes = d->read(name);
    check(name, required, bytes ? std::optional<std::string_view>(*bytes) : std::nullopt);
    return bytes;
  };
  // The factors: mapped, checked and then viewed in place (copied only when written), so that
  // reopening a run does not hold its factors twice (file bytes and parsed matrix).
  auto mapped = [&](const std::string& name) {
    std::shared_ptr<const artifact::MappedFile> file = d->map(name);
    check(name, true, file ? std::optional<std::string_view>(file->bytes()) : std::nullopt);
    return file;
  };
  const std::string config_text = *read("config.yaml", true);
  const std::shared_ptr<const artifact::MappedFile> user_file = mapped("user_factors.npy");
  const std::shared_ptr<const artifact::MappedFile> item_file = mapped("item_factors.npy");
  if (const std::optional<std::string> metrics = read("metrics.json", false)) {
    try {
      r.metrics = nlohmann::json::parse(*metrics);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", d->shown("metrics.json"), e.what());
    }
  }

  // A warm-started run's chain users (pipeline::ChainUsers), which its exports carry on.
  const nlohmann::json::json_pointer chain_count("/init_from/chain_users/count");
  if (r.run.contains(chain_count) && r.run.at(chain_count) != 0)
    r.chain_users =
        artifact::parse_chain_users(*read(kChainUsersFile, true), d->shown(kChainUsersFile));
  r.config = config::Config::parse(config_text, d->shown("config.yaml"));
  set_progress_mode(r.config.settings().run.progress);
  const Context ctx = Context::create("cpu", static_cast<int>(r.config.settings().train.threads));
  // The users excluded at training time, as run.json stores them (not the opt-out file now,
  // which may have changed since: users who opted out later are answered at query time).
  std::shared_ptr<const data::UserExclusion> excluded;
  if (r.run.contains("excluded_users"))
    excluded = std::make_shared<const data::UserExclusion>(
        data::UserExclusion::from_json(r.run["excluded_users"], d->shown("run.json")));
  // Data paths are relative to where training ran: a run reopened from elsewhere says so.
  const config::DataSection& data_cfg = r.config.settings().data;
  for (const auto& [key, path] : {std::pair{"data.path", &data_cfg.path},
                                  std::pair{"data.test_path", &data_cfg.test_path}}) {
    std::error_code ec;
    if (*path && fs::path(**path).is_relative() && !fs::exists(**path, ec))
      fail("{}: config.yaml's {} is {}, which is not found from the current directory ({}); a "
           "run's relative data paths are read from the directory recforge runs in, as at "
           "training time: run this command from there",
           dir, key, **path, fs::current_path(ec).string());
  }
  r.data = prepare_dataset(r.config, excluded, /*read_opt_out=*/false);
  // run.json is not covered by its own checksums: a field of another type is damage, not a bug.
  auto text_field = [&](const char* key) -> std::string {
    if (!r.run.contains(key)) return "";
    if (!r.run[key].is_string())
      fail("{}: field \"{}\" is a JSON {}; expected the string that training wrote (the run "
           "directory is damaged)",
           d->shown("run.json"), key, r.run[key].type_name());
    return r.run[key].get<std::string>();
  };
  const std::string expected = text_field("data_fingerprint");
  // A distributed run (mpirun) held the data in pieces and fingerprinted it without its order.
  const bool unordered = text_field("data_fingerprint_kind") == "unordered";
  if ((unordered ? r.data.unordered_fingerprint() : r.data.fingerprint()) != expected)
    fail("{}: the data named in config.yaml is no longer what this run was trained on (its "
         "fingerprint changed); retrain, or restore the original files",
         dir);
  // The weights and timestamps (runs written before they were recorded have no "data_values").
  const std::string values = text_field("data_values");
  if (!values.empty() && r.data.values_digest() != values)
    fail("{}: the data named in config.yaml has other weights or timestamps than this run was "
         "trained on (the same users, items and split); retrain, or restore the original files",
         dir);
  // Reopened runs compute on the CPU, which holds float32 factors: a run trained on a GPU with
  // float16 or bfloat16 storage saved its factors as float32 (the stored values, exactly).
  config::Config cpu_config = r.config;
  if (cpu_config.settings().model.dtype != "float32") {
    log().debug("{}: factors were stored as {} on the GPU; reopened as float32 on the CPU", dir,
                cpu_config.settings().model.dtype);
    cpu_config.set("model.dtype=float32");
  }
  r.model = make_model(cpu_config, ctx);
  Matrix users = parse_npy_view(user_file->bytes(), user_file, d->shown("user_factors.npy"));
  Matrix items = parse_npy_view(item_file->bytes(), item_file, d->shown("item_factors.npy"));
  const int dim = embedding_dimension(r.config.settings());
  if (users.rows != r.data.users.size() || items.rows != r.data.items.size() ||
      users.cols != items.cols || users.cols != dim)
    fail("{}: factor files have shapes ({}, {}) and ({}, {}), expected ({}, {}) and ({}, {})", dir,
         users.rows, users.cols, items.rows, items.cols, r.data.users.size(), dim,
         r.data.items.size(), dim);
  check_finite(users, d->shown("user_factors.npy"));
  check_finite(items, d->shown("item_factors.npy"));
  r.model->set_factors(std::move(users), std::move(items));
  // What the solve depends on besides the factors (iALS's per-item unobserved weights).
  std::vector<int64_t> counts(static_cast<size_t>(r.data.user_items.cols), 0);
  for (const data::index_t i : r.data.user_items.indices) ++counts[static_cast<size_t>(i)];
  r.model->set_item_counts(counts);
  return r;
}

}  // namespace recforge::pipeline
