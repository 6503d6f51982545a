#pragma once
/// @file load_options.h
/// The loader targets' input: three option bytes, then the file's bytes. The option bytes choose
/// what a config could (delimiter, header and column names, weight and time columns, id type,
/// on_error, duplicates, minimums), so that every parsing path is reached. With bit 0 of the
/// third byte set, the content's first line is not part of the file but gives the column
/// settings as a config would (data.user_col|item_col|weight_col|time_col, "|"-separated; an
/// empty one keeps the choice of the option bytes).

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "data/load.h"
#include "fuzz_common.h"

namespace recforge::fuzz {

/// Splits `in` into options and file content; false when the input is too short.
inline bool load_input(const uint8_t* data, size_t size, data::Format format,
                       data::LoadOptions& o, std::string_view& content) {
  if (size < 3) return false;
  const uint8_t a = data[0], b = data[1], c = data[2];
  content = std::string_view(reinterpret_cast<const char*>(data) + 3, size - 3);
  o = data::LoadOptions();
  o.format = format;
  o.use_cache = false;
  static constexpr char kDelims[8] = {0, ',', '\t', ' ', ';', '|', 0, ','};
  o.delimiter = kDelims[a & 7];
  o.header = (a & 8) != 0;
  const bool names = o.header && (a & 16);
  o.user_col = names ? "user" : "0";
  o.item_col = names ? "item" : "1";
  if (a & 32) o.weight_col = names ? "weight" : "2";
  if (a & 64) o.time_col = names ? "timestamp" : "3";
  o.string_ids = (a & 128) != 0;
  o.skip_errors = (b & 1) != 0;
  static constexpr data::Duplicates kDup[4] = {data::Duplicates::kSum, data::Duplicates::kMax,
                                               data::Duplicates::kLast, data::Duplicates::kSum};
  o.duplicates = kDup[(b >> 1) & 3];
  o.min_user_interactions = 1 + ((b >> 3) & 3);
  o.min_item_interactions = 1 + ((b >> 5) & 3);
  o.min_weight = (b & 128) ? 0.5 : 0.0;
  if (c & 1) {
    const size_t nl = content.find('\n');
    std::string_view cols = content.substr(0, nl);
    content = nl == std::string_view::npos ? std::string_view() : content.substr(nl + 1);
    for (int k = 0; k < 4; ++k) {
      const size_t bar = cols.find('|');
      const std::string spec(cols.substr(0, bar));
      cols = bar == std::string_view::npos ? std::string_view() : cols.substr(bar + 1);
      if (spec.empty()) continue;
      if (k == 0) o.user_col = spec;
      if (k == 1) o.item_col = spec;
      if (k == 2) o.weight_col = spec;
      if (k == 3) o.time_col = spec;
    }
  }
  return true;
}

/// One loader run on a fuzz input in `format`: parsed, mapped and cleaned as `recforge train`
/// does, cache off; user errors are the expected answer, and what loads must keep load's
/// promises (checked with RF_ASSERT, a finding when broken).
inline int fuzz_load(const uint8_t* data, size_t size, data::Format format) {
  data::LoadOptions o;
  std::string_view content;
  if (!fuzz::load_input(data, size, format, o, content)) return 0;
  const std::string path = (fuzz::scratch() / "input.txt").string();
  fuzz::write_file(path, content);
  fuzz::expect_user_errors_only([&] {
    data::Loaded d = data::load({path}, o);
    // What load promises: one part per file, of parallel arrays whose indices lie in the id
    // maps, with finite weights >= 0.
    RF_ASSERT(d.parts.size() == 1, "load: not one part for one file");
    for (const auto& p : d.parts) {
      RF_ASSERT(p.items.size() == p.users.size() && p.weights.size() == p.users.size(),
                "load: parallel arrays differ in length");
      for (size_t k = 0; k < p.users.size(); ++k) {
        RF_ASSERT(p.users[k] >= 0 && p.users[k] < d.users.size() && p.items[k] >= 0 &&
                      p.items[k] < d.items.size(),
                  "load: index outside the id maps");
        RF_ASSERT(std::isfinite(p.weights[k]) && p.weights[k] >= 0,
                  "load: a weight is not a finite number >= 0");
      }
    }
  });
  return 0;
}

}  // namespace recforge::fuzz
