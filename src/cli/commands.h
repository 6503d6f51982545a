#pragma once
/// @file commands.h
/// The recforge verbs (datagen, train, evaluate, recommend, export, info, config).

#include <CLI/CLI.hpp>

#include "recommend/recommend.h"

namespace recforge::cli {

/// Adds every verb with its options and help to `app`.
void register_commands(CLI::App& app);

/// Runs the verb that was parsed; returns the process exit code.
int run_selected(CLI::App& app);

/// A CLI11 check that an integer option lies in [lo, hi], saying so in words ("must be an
/// integer from 1 to 2147483647, got \"0\"").
CLI::Validator int_range(int64_t lo, int64_t hi);

/// Adds --pseudonym-key-file and --pseudonym-key-env to a verb that answers for users (one
/// pair of values for the whole process: one verb runs).
void add_key_options(CLI::App* app);

/// How a verb opens its source (`verb` for its messages): the pseudonymisation key from those
/// options, when given.
recommend::OpenOptions open_options(const char* verb);

}  // namespace recforge::cli
