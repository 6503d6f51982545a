#pragma once
/// @file forget_command.h
/// `recforge forget RUN_DIR --users FILE|ID,ID,...`: retrains a run without the given users
/// (added to the run's forgotten set, same salt), after purging the data cache entries made from
/// its data files, into a new run with its export (docs/cli.md, "Opt-out and erasure").

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

namespace recforge::cli {

/// Adds `forget` to `app`, and its action to `actions`.
void register_forget_command(CLI::App& app, std::map<std::string, std::function<int()>>& actions);

}  // namespace recforge::cli
