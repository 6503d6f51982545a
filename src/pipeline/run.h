#pragma once
/// @file run.h
/// Reopening a finished run directory: its resolved config, its data (re-prepared from the
/// config and checked against the fingerprint saved at training time) and its factors.
/// Raw ids are not stored in run directories; they come back from the data itself.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/hash.h"
#include "models/model.h"
#include "pipeline/dataset.h"

namespace recforge::pipeline {

/// A reopened run.
struct OpenedRun {
  std::string dir;                        ///< the run directory
  config::Config config;                  ///< its config.yaml
  nlohmann::json run;                     ///< its run.json
  Dataset data;                           ///< the data, re-prepared and verified
  std::unique_ptr<models::Model> model;   ///< the model with the saved factors
  nlohmann::json metrics;                 ///< its metrics.json (verified), or an empty object
  /// A warm-started run's chain_users.txt (verified; pipeline::ChainUsers), or empty.
  std::vector<Digest> chain_users;
};

/// Parses a JSON file; throws recforge::Error naming the file when it is missing or invalid.
nlohmann::json read_json(const std::string& path);

/// Reads `dir/run.json`; throws recforge::Error when `dir` is not a finished run.
nlohmann::json read_run_json(const std::string& dir);
/// The sentence for a `dir` that is not a directory: "DIR: no such run directory", or, when a
/// something else has that name, that it is not a directory and a run directory was expected.
std::string no_run_directory(const std::string& dir);

/// The files of a run directory whose size and SHA-256 run.json records in "files".
const std::vector<std::string>& checksummed_run_files();

/// {"file": {"bytes", "sha256"}} of those of checksummed_run_files() that exist in `dir`: what
/// train stores in run.json "files" once the files are written.
nlohmann::json run_file_checksums(const std::string& dir);

/// The file of a run directory that lists the exports written from the run, one absolute path
/// per line, appended: training's (also run.json's "export") and each of `recforge export`.
/// What forget and report-user read to know every export that holds the run's users.
constexpr const char* kExportsFile = "exports.txt";

/// Appends `export_dir`, made absolute, to the run's exports.txt. A run directory that cannot be
/// written (a read-only copy) is a warning saying that forget and report-user will not know the
/// export, not an error: the export itself is complete.
void record_export(const std::string& run_dir, const std::string& export_dir);

/// Every export recorded for the run in `run_dir` whose run.json is `run`: those of exports.txt
/// in the order written (training's first, since training records its export there too), then
/// run.json's "export" (the only record in runs trained before exports.txt); each directory
/// once (compared as absolute, normalised paths). A line that is no absolute path is skipped,
/// and so is a directory that now holds another run's export (its manifest's source.run_id is
/// not this run.json's random "id"; runs are not told apart by path, which a symlink, a copy or
/// a move changes; exports and runs written before they recorded it are kept).
std::vector<std::string> run_exports(const std::string& run_dir, const nlohmann::json& run);

/// Reopens a run that has a trained model. The directory is opened once and each file read
/// once; when run.json lists checksums ("files"), config.yaml, the factors and metrics.json must
/// match them (a run written before recforge recorded them opens with a warning). Factors with
/// a NaN or an infinity are refused, naming the file. `verb` names what the caller wants to do, for the
/// error message when the run has no model. Data paths in config.yaml are relative to the
/// directory recforge runs in, as at training time.
OpenedRun open_run(const std::string& dir, const std::string& verb);

}  // namespace recforge::pipeline
