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

/// An integer option's range in words: "must be an integer from 1 to 2147483647, got \"0\"".
CLI::Validator explain_int_range(int64_t lo, int64_t hi);

}  // namespace recforge::cli
