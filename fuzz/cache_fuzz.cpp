// Fuzz target: the data cache reader (src/data/cache.cpp read_cache). A damaged cache file must
// be refused (nullopt, so the source is re-parsed), never crash or throw; a cache that reads
// must hold parallel arrays whose indices lie inside its id maps of unique ids.
#include <string_view>
#include <unordered_set>

#include "data/cache.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recforge;
  const std::string path = (fuzz::scratch() / "input.rfcache").string();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  fuzz::write_file(path, bytes);
  // read_cache must not throw at all (a damaged cache is an optimisation lost, not an error).
  const std::optional<data::Loaded> d = data::read_cache(path);
  if (!d) return 0;
  RF_ASSERT(!d->parts.empty(), "read_cache: no part (the training part is always there)");
  for (const auto& p : d->parts) {
    RF_ASSERT(p.items.size() == p.users.size() && p.weights.size() == p.users.size(),
              "read_cache: parallel arrays differ in length");
    for (size_t k = 0; k < p.users.size(); ++k)
      RF_ASSERT(p.users[k] >= 0 && p.users[k] < d->users.size() && p.items[k] >= 0 &&
                    p.items[k] < d->items.size(),
                "read_cache: index outside the id maps");
  }
  // IdMap requires unique ids (its lookup maps each id to one row).
  for (const data::IdMap* m : {&d->users, &d->items}) {
    std::unordered_set<std::string_view> seen;
    for (const auto& id : m->ids())
      RF_ASSERT(seen.insert(id).second, "read_cache: an id map holds the id \"" + id + "\" twice");
  }
  return 0;
}
