#pragma once
/// @file commands.h
/// The recforge verbs (datagen, train, evaluate, recommend, export, info, config).

#include <CLI/CLI.hpp>

namespace recforge::cli {

/// Adds every verb with its options and help to `app`.
void register_commands(CLI::App& app);

/// Runs the verb that was parsed; returns the process exit code.
int run_selected(CLI::App& app);

}  // namespace recforge::cli
