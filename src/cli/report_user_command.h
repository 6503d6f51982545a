#pragma once
/// @file report_user_command.h
/// `recforge report-user RUN_DIR|EXPORT --user ID`: what a run or an export holds about one
/// user, with their recommendations and why (recommend/explain.h).

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

namespace recforge::cli {

/// Adds `report-user` to `app`, and its action to `actions`.
void register_report_user_command(CLI::App& app,
                                  std::map<std::string, std::function<int()>>& actions);

}  // namespace recforge::cli
