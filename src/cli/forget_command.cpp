#include "cli/forget_command.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/cache.h"
#include "data/exclusion.h"
#include "data/load.h"
#include "pipeline/dataset.h"
#include "pipeline/run.h"
#include "pipeline/train.h"

namespace recforge::cli {
namespace {

namespace fs = std::filesystem;

struct ForgetArgs {
  std::string run_dir, users, name, export_dir;
  bool remove_source = false, remove_exports = false;
};

ForgetArgs g_forget;

// The ids of --users: the lines of a file (read_user_id_file's rules) when the value names an
// existing file, else a comma-separated list (spaces around ids ignored). Never echoed.
std::vector<std::string> requested_ids(const std::string& value) {
  std::error_code ec;
  if (fs::exists(value, ec)) return data::read_user_id_file(value, "forget --users");
  // A path that does not exist was taken as one user id ("0 of the 1 user id(s) given occur in
  // the data") and the retraining completed: an operator's typo looked like an erasure. A value
  // with a comma is a list of ids (which may hold '/'), and is not echoed.
  if (value.find('/') != std::string::npos && value.find(',') == std::string::npos)
    fail("forget --users {}: no such file (a value with '/' is read as a file of user ids, one "
         "per line); give the file's path, or the ids comma-separated",
         value);
  std::vector<std::string> ids;
  size_t b = 0;
  while (b <= value.size()) {
    const size_t e = std::min(value.find(',', b), value.size());
    std::string id = value.substr(b, e - b);
    while (!id.empty() && (id.front() == ' ' || id.front() == '\t')) id.erase(id.begin());
    while (!id.empty() && (id.back() == ' ' || id.back() == '\t')) id.pop_back();
    if (!id.empty()) ids.push_back(std::move(id));
    b = e + 1;
  }
  return ids;
}

// After an export to `out` swapped in the new version, removes the other versions v-<N> (the
// previous one, which `write` keeps, holds the forgotten users). Each is renamed away first, as
// artifact::write does, so that a reader notices and reads `current` again.
int remove_older_versions(const std::string& out) {
  std::error_code ec;
  const fs::path link = fs::path(out) / artifact::kCurrentLink;
  if (!fs::is_symlink(link, ec)) return 0;
  const std::string current = fs::read_symlink(link, ec).filename().string();
  if (ec || artifact::version_number(current) < 0) return 0;
  int removed = 0;
  std::vector<fs::path> old;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (artifact::version_number(name) >= 0 && name != current && !e.is_symlink()) old.push_back(e.path());
  }
  for (const fs::path& p : old) {
    const fs::path away =
        p.parent_path() / fmt::format(".removing-{}-{}", getpid(), p.filename().string());
    if (::rename(p.c_str(), away.c_str()) != 0)
      fail("{}: cannot remove this earlier export version, which holds the forgotten users: {}",
           p.string(), std::strerror(errno));
    fs::remove_all(away, ec);
    if (ec)
      fail("{}: cannot remove this earlier export version, which holds the forgotten users: {}",
           away.string(), ec.message());
    ++removed;
  }
  return removed;
}

std::string normalized(const std::string& p) {
  return fs::weakly_canonical(fs::absolute(p)).lexically_normal().string();
}

int cmd_forget() {
  const ForgetArgs& a = g_forget;
  std::string src = a.run_dir;
  while (src.size() > 1 && src.back() == '/') src.pop_back();
  std::error_code ec;
  if (!fs::is_directory(src, ec)) fail("forget {}", pipeline::no_run_directory(src));
  if (!is_run_directory(src))
    fail("forget {}: not a recforge run directory (expected the run.json that recforge train "
         "writes)",
         src);
  const std::vector<std::string> given = requested_ids(a.users);
  if (given.empty())
    fail("forget --users: no user ids given; expected a file of user ids (one per line) or a "
         "comma-separated list ID,ID,...");
  const nlohmann::json source_run = pipeline::read_run_json(src);
  const std::string from = normalized(src);
  if (a.remove_source && fs::is_symlink(src, ec))
    fail("forget --remove-source: {} is a symbolic link (to {}); give the run directory itself, "
         "which is what would be removed",
         src, from);
  if (a.remove_source && !a.export_dir.empty() &&
      (normalized(a.export_dir) + "/").rfind(from + "/", 0) == 0)
    fail("forget --export {}: that is inside the source run {}, which --remove-source removes; "
         "write the export elsewhere",
         a.export_dir, src);
  // "." or "..": the new run goes beside the run directory those name, not inside it.
  const fs::path src_path =
      fs::path(src).filename() == "." || fs::path(src).filename() == ".." ? fs::path(from)
                                                                          : fs::path(src);
  const std::string parent = src_path.has_parent_path() ? src_path.parent_path().string() : ".";
  const std::string src_name = src_path.filename().string();
  const std::string name = a.name.empty() ? src_name + "-forget" : a.name;
  if (name == src_name)
    fail("forget --name {}: that is the source run's own name; choose another name (with "
         "--remove-source the source is removed once the new run is complete)",
         name);
  std::vector<std::string> sets = {"run.dir=" + nlohmann::json(parent).dump(),
                                   "run.name=" + nlohmann::json(name).dump(),
                                   "export.enabled=true",
                                   "export.out=" + nlohmann::json(a.export_dir).dump()};
  config::Config cfg = config::Config::load(src + "/config.yaml", sets);
  if (!cfg.settings().model.init_from.empty()) {
    // Its factors were trained on the users too: the retraining starts from random factors.
    log().info("forget: the run was warm-started from {} (model.init_from), whose factors carry "
               "the users' data; the retraining starts from random factors",
               cfg.settings().model.init_from);
    cfg.set("model.init_from=\"\"");
  }

  // The source's exclusion (its salt, its opted-out and forgotten users) plus these users.
  auto exclusion = std::make_shared<data::UserExclusion>();
  if (source_run.contains("excluded_users"))
    *exclusion = data::UserExclusion::from_json(source_run["excluded_users"], src + "/run.json");
  else
    *exclusion = data::UserExclusion(pipeline::exclusion_salt(cfg));
  std::set<std::string> requested;  // hashes of the ids given
  for (const std::string& id : given)
    requested.insert(exclusion->hash(pipeline::canonical_user_id(cfg, id)));
  for (const std::string& h : requested)
    exclusion->add_hash(data::UserExclusion::Set::kForgotten, h);

  // The cache entries made from these data files hold the users: purged before the retraining
  // writes a fresh entry without them.
  const std::vector<std::string> sources = pipeline::data_source_hashes(cfg);
  if (!sources.empty()) {
    std::string cache_dir = cfg.settings().data.cache_dir;
    if (cache_dir.empty()) cache_dir = data::default_cache_dir();
    int unattributed = 0;
    const int purged = data::purge_cache_for_sources(cache_dir, sources, &unattributed);
    log().info("forget: removed {} data cache file(s) made from the run's data files in {}",
               purged, cache_dir);
    // Entries made from other versions of the data files (edited since the run trained, as
    // removing the users from the source does, or earlier ones) are not found by the sources'
    // digests: every entry that lists a forgotten user's id goes too. Entries record the files'
    // digests, not their paths, so this includes other data sets in the same cache directory
    // with that id (re-made by their next run).
    std::set<std::string> canonical;  // the ids given, as the data's ids compare
    for (const std::string& id : given) canonical.insert(pipeline::canonical_user_id(cfg, id));
    const int holding = data::purge_cache_holding_users(cache_dir, [&](const std::string& id) {
      return canonical.count(pipeline::canonical_user_id(cfg, id)) > 0;
    });
    if (holding > 0)
      log().info("forget: removed {} other data cache file(s) in {} that held the users' ids "
                 "(made from other versions of the data files, or from other data with those "
                 "ids; they are made again when needed)",
                 holding, cache_dir);
    if (unattributed > 0)
      log().warn("forget: {} data cache file(s) of an earlier recforge in {} record no source "
                 "files and may hold the users; remove them by hand",
                 unattributed, cache_dir);
  }

  pipeline::TrainOptions options;
  options.exclusion = exclusion;
  options.export_out_option = "forget --export";
  int64_t found = 0;
  options.on_dataset = [&](const pipeline::Dataset& data, nlohmann::json& run) {
    const auto& matched = data.load_report.forgotten_matched;
    found = std::count_if(requested.begin(), requested.end(), [&](const std::string& h) {
      return std::binary_search(matched.begin(), matched.end(), h);
    });
    const int64_t n = static_cast<int64_t>(requested.size());
    // Nothing to erase: none of the ids occurs, and the data is what the source trained on (its
    // fingerprint; data edited since, such as with the users' lines removed, still needs the
    // retraining), so the new run would equal the source and only look like an erasure (and
    // --remove-source would then remove the source). Said before anything is written.
    const auto source_fingerprint = source_run.find("data_fingerprint");
    if (found == 0 && source_fingerprint != source_run.end() &&
        *source_fingerprint == run["data_fingerprint"]) {
      std::error_code e2;
      fail("forget --users: none of the {} user id(s) given occurs in the run's data, which is "
           "unchanged since it trained, so there is nothing to forget; no new run was made and "
           "nothing was removed{}",
           n,
           a.users.find(',') == std::string::npos && !fs::exists(a.users, e2)
               ? " (the value was read as one user id, since no file of that name exists)"
               : "");
    }
    run["forgotten_from"] = from;
    run["forget"] = {{"requested_users", n}, {"found_users", found}, {"not_found_users", n - found}};
    // Counts only: the ids are never written.
    log().info("forget: {} of the {} user id(s) given occur in the data and were removed{}", found,
               n, n > found ? fmt::format("; {} do not occur in it", n - found) : std::string());
  };
  const std::string dir = pipeline::train(cfg, options);
  if (!a.export_dir.empty()) {
    const int removed = remove_older_versions(a.export_dir);
    if (removed > 0)
      log().info("forget: removed {} earlier version(s) of the export {}", removed, a.export_dir);
  }
  std::printf("%s\n", dir.c_str());
  // The exports of the source written elsewhere (by training or later by recforge export) are
  // not touched without --export or --remove-exports. run_exports lists only directories that
  // still hold the source's export (not one another run's export replaced since).
  for (const std::string& old_export : pipeline::run_exports(src, source_run)) {
    const bool inside = normalized(old_export).rfind(from + "/", 0) == 0;
    if (inside || (!a.export_dir.empty() && normalized(old_export) == normalized(a.export_dir)) ||
        !artifact::is_artifact(old_export))
      continue;
    if (!a.remove_exports) {
      std::printf("the source run's export %s still holds the forgotten users; replace it with "
                  "forget --export %s, remove it, or use --remove-exports\n",
                  old_export.c_str(), old_export.c_str());
      continue;
    }
    // Renamed away first, so that a reader never finds half of it; then removed. Through a
    // symbolic link, the directory it names is removed (the export recforge wrote), and the link
    // is left.
    const fs::path real = fs::path(normalized(old_export));
    fs::path away = real;
    away += fmt::format(".removing-{}", getpid());
    fs::rename(real, away, ec);
    fs::remove_all(ec ? real : away, ec);
    if (ec)
      fail("forget --remove-exports: cannot remove the source run's export {}: {}", old_export,
           ec.message());
    if (real != fs::path(old_export).lexically_normal() && fs::is_symlink(old_export, ec))
      std::printf("removed the source run's export %s (the directory %s, which the link names)\n",
                  old_export.c_str(), real.c_str());
    else
      std::printf("removed the source run's export %s\n", old_export.c_str());
  }
  if (a.remove_source) {
    if (!is_run_directory(src))
      fail("forget --remove-source: {} is no longer a recforge run directory; it was not removed",
           src);
    fs::remove_all(from, ec);  // the resolved path: "." itself cannot be removed
    if (ec) fail("forget --remove-source: cannot remove {}: {}", src, ec.message());
    std::printf("removed the source run %s\n", src.c_str());
  } else {
    std::printf("the source run %s still holds the forgotten users; remove it, or use "
                "--remove-source\n",
                src.c_str());
  }
  return 0;
}

}  // namespace

void register_forget_command(CLI::App& app, std::map<std::string, std::function<int()>>& actions) {
  auto* c = app.add_subcommand(
      "forget",
      "Retrain a run without some users (added to its forgotten set), purging the data cache "
      "made from its data files, into a new run with its export");
  c->add_option("run_dir", g_forget.run_dir, "The run directory to forget the users in")
      ->required();
  c->add_option("--users", g_forget.users,
                "A file of user ids (one per line; blank lines and # comments ignored) or a "
                "comma-separated list ID,ID,...")
      ->type_name("FILE|ID,ID,...");
  c->add_option("--name", g_forget.name, "Name of the new run (default: <source name>-forget)");
  c->add_option("--export", g_forget.export_dir,
                "Write the new run's export here (an earlier export there is replaced and its "
                "older versions removed) instead of inside the new run")
      ->type_name("DIR");
  c->add_flag("--remove-source", g_forget.remove_source,
              "Remove the source run directory once the new run is complete");
  c->add_flag("--remove-exports", g_forget.remove_exports,
              "Remove the source run's exports outside its directory (those recorded in its "
              "exports.txt that still hold its export) once the new run is complete");
  actions["forget"] = cmd_forget;
}

}  // namespace recforge::cli
