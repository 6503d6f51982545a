// Fuzz target: the loader of delimited text (CSV, TSV, spaces) in src/data/load.cpp, from a
// file (three option bytes, then the file; see load_options.h), parsed, mapped and cleaned as
// `recforge train` does, cache off.
#include <cmath>

#include "data/load.h"
#include "fuzz_common.h"
#include "load_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recforge;
  data::LoadOptions o;
  std::string_view content;
  if (!fuzz::load_input(data, size, data::Format::kDelimited, o, content)) return 0;
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
