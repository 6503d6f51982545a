// Fuzz target: the YAML config (src/config/config.cpp), from text as `recforge train` reads it.
// Lines starting with "#set " (YAML comments) are also applied as --set overrides. A config that
// parses must keep the documented promise of Config::to_yaml: parsing its output gives an equal
// config.
#include <sstream>

#include "config/config.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recforge;
  fuzz::scratch();  // logging off
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("#set ", 0) == 0) sets.push_back(line.substr(5));
  std::optional<config::Config> c;
  fuzz::expect_user_errors_only([&] { c = config::Config::parse(text, "fuzz.yaml", sets); });
  if (!c) return 0;
  const std::string yaml = c->to_yaml();
  try {
    const config::Config back = config::Config::parse(yaml, "resolved.yaml");
    RF_ASSERT(back == *c, "config: parse(to_yaml()) differs from the config:\n" + yaml);
  } catch (const Error& e) {
    throw InternalError(std::string("config: to_yaml() does not parse back: ") + e.what() +
                            "\n" + yaml,
                        __FILE__, __LINE__);
  }
  return 0;
}
