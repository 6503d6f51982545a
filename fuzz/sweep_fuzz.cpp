// Fuzz target: the sweep file (src/sweep/spec.cpp), from text, next to a valid base config
// `base.yaml` that `base: base.yaml` names. Lines starting with "#set " (YAML comments) are
// applied as --set overrides of the base. A sweep that parses must describe itself
// (definition()), enumerate int_range values inside their bounds, keep only distinct seeds >= 0
// (at most kMaxSeeds), and give a config for its first trial (best.yaml's model.seed: the first
// seed).
#include <sstream>

#include "fuzz_common.h"
#include "sweep/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recforge;
  static const std::string dir = [] {
    fuzz::write_file(fuzz::scratch() / "base.yaml",
                     "run: {name: fuzz}\n"
                     "data: {format: synthetic}\n"
                     "synthetic: {users: 50, items: 40, interactions: 500}\n"
                     "split: {method: leave_last, validation_fraction: 0.1}\n"
                     "model: {type: ials, factors: 8, iterations: 2, eval_every: 1}\n"
                     "eval: {ks: [5, 10], metric: ndcg@10}\n");
    return fuzz::scratch().string();
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("#set ", 0) == 0) sets.push_back(line.substr(5));
  fuzz::expect_user_errors_only([&] {
    const sweep::SweepSpec s = sweep::parse_sweep(text, dir + "/sweep.yaml", sets);
    (void)s.definition().dump();
    RF_ASSERT(s.seeds.size() <= sweep::kMaxSeeds, "SweepSpec: more seeds than kMaxSeeds");
    for (size_t i = 0; i < s.seeds.size(); ++i) {
      RF_ASSERT(s.seeds[i] >= 0, "SweepSpec: a negative seed");
      for (size_t j = 0; j < i; ++j) RF_ASSERT(s.seeds[i] != s.seeds[j], "SweepSpec: a seed twice");
    }
    std::vector<nlohmann::json> point;
    if (s.search == sweep::Search::kList && !s.points.empty()) {
      point = s.points.front();
    } else {
      for (const auto& d : s.space) {
        const std::vector<nlohmann::json> values = d.enumerate();  // empty when continuous
        if (d.kind == sweep::Dimension::Kind::kIntRange)
          for (const nlohmann::json& v : values)
            RF_ASSERT(v.get<double>() >= d.low && v.get<double>() <= d.high,
                      "Dimension::enumerate: an int_range value outside [low, high]");
        point.push_back(values.empty() ? nlohmann::json(d.low) : values.front());
      }
    }
    if (point.size() == s.space.size()) {
      (void)sweep::trial_config(s, point, dir, "t0", 1).to_yaml();
      const config::Config best = sweep::best_config(s, point);
      (void)best.to_yaml();
      if (!s.seeds.empty())
        RF_ASSERT(best.get_int("model.seed") == s.seeds.front(),
                  "best_config: model.seed is not the first seed");
    }
  });
  return 0;
}
