#pragma once
/// @file export.h
/// `recforge export` and `export.enabled`: from a trained run to the serving artifact.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/secret.h"
#include "models/model.h"
#include "pipeline/dataset.h"

namespace recforge::pipeline {

/// The pseudonymisation key of `cfg` (export.pseudonymize), read from the file or environment
/// variable it names; nullopt when exports are not pseudonymised. Read for each export and never
/// stored; errors name the setting, never the key. `train` reads it once before training too,
/// so that a missing key fails the run at once rather than after training.
std::optional<SecretKey> pseudonym_key(const config::Config& cfg);

/// The artifact contents of a trained model: its factors, the data's id maps and training items,
/// the `index` section of `cfg`, the run's metrics, the resolved config and its source (the run
/// directory, the data's fingerprint), and what it records of its chain of warm starts
/// (pipeline::set_lineage of its run.json `run` and the hashes of its chain_users.txt). The
/// result points into `model` and `data`.
artifact::ExportInput export_input(const config::Config& cfg, const Dataset& data,
                                   const models::Model& model, const nlohmann::json& metrics,
                                   const std::string& run_dir, const std::string& fingerprint,
                                   const nlohmann::json& run,
                                   const std::vector<Digest>& chain_users);

/// Exports the run in `run_dir` to `out`. `overrides` ("index.key=value") change the index
/// settings of the run's config; other sections cannot be changed at export time. Returns `out`.
std::string export_run(const std::string& run_dir, const std::string& out,
                       const std::vector<std::string>& overrides);

}  // namespace recforge::pipeline
