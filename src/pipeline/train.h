#pragma once
/// @file train.h
/// `recforge train`: one run from a validated config to a complete run directory.

#include <string>

#include "config/config.h"

namespace recforge::pipeline {

/// Runs the pipeline and returns the final run directory. The directory holds config.yaml
/// (fully resolved), log.txt, stats.json (dataset statistics) and run.json (timings, versions),
/// and appears only once everything succeeded.
std::string train(const config::Config& cfg);

/// The run name: run.name, else the config file's name without extension, else "run".
std::string run_name(const config::Config& cfg);

}  // namespace recforge::pipeline
