#pragma once
/// @file serve_command.h
/// `recforge serve`: the HTTP server over an export (src/serve/server.h), with its signals.

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

namespace recforge::cli {

/// Adds `serve` to `app`, and its action to `actions`.
void register_serve_command(CLI::App& app, std::map<std::string, std::function<int()>>& actions);

}  // namespace recforge::cli
