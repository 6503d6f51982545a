#pragma once
// Helpers of the sweep tests: running the recforge binary, reading CSV and JSON outputs.

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace recforge::test {

/// A JSON file.
inline nlohmann::json read_json_file(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

/// CSV text without quoting as rows of cells.
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream l(line);
    while (std::getline(l, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

/// A CSV file without quoting as rows of cells.
inline std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  return parse_csv(read_file(path));
}

/// The rows of a CSV without the column named `drop`.
inline std::vector<std::vector<std::string>> without_column(
    std::vector<std::vector<std::string>> rows, const std::string& drop) {
  if (rows.empty()) return rows;
  const auto at = std::find(rows[0].begin(), rows[0].end(), drop) - rows[0].begin();
  for (auto& r : rows)
    if (at < static_cast<long>(r.size())) r.erase(r.begin() + at);
  return rows;
}

/// An inline base of tiny synthetic data (300 users, 200 items) with a validation part and
/// per-iteration evaluation; each trial trains in milliseconds.
inline std::string tiny_base(int iterations = 4) {
  return "base:\n"
         "  run: {progress: off, log_level: warn}\n"
         "  data: {format: synthetic}\n"
         "  synthetic: {users: 300, items: 200, interactions: 6000}\n"
         "  split: {method: leave_last, validation_fraction: 0.1}\n"
         "  model: {factors: 8, iterations: " +
         std::to_string(iterations) +
         ", eval_every: 1}\n"
         "  eval: {ks: [10, 20]}\n";
}

}  // namespace recforge::test
