#pragma once
/// @file sweep_commands.h
/// The tuning verbs: `sweep` (a search over a YAML search space) and `compare` (runs side by
/// side, metric curves and their plot).

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

namespace recforge::cli {

/// Adds `sweep` and `compare` to `app`, and their actions to `actions` (by verb name).
void register_sweep_commands(CLI::App& app, std::map<std::string, std::function<int()>>& actions);

}  // namespace recforge::cli
