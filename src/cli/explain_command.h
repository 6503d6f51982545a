#pragma once
/// @file explain_command.h
/// `recforge explain RUN_DIR|EXPORT --user ID --item ID`: why the model scores an item for a
/// user (recommend/explain.h).

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

namespace recforge::cli {

/// Adds `explain` to `app`, and its action to `actions`.
void register_explain_command(CLI::App& app,
                              std::map<std::string, std::function<int()>>& actions);

}  // namespace recforge::cli
