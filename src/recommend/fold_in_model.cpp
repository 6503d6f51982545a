// The only file of src/recommend that knows the config: an export's "fold_in" section back to a
// model and a weighting.
#include "recommend/fold_in_model.h"

#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "pipeline/dataset.h"
#include "pipeline/options.h"

namespace recforge::recommend {

FoldInSetup fold_in_setup(const nlohmann::json& section, Matrix items, const std::string& where) {
  if (!section.is_object() || !section.contains("model") || !section["model"].is_object() ||
      !section.contains("weighting") || !section["weighting"].is_object())
    fail("{}: field \"fold_in\" is not an object with \"model\" and \"weighting\" sections; "
         "export the run again with this recforge",
         where);
  config::Config cfg = config::Config::defaults();
  // A value as the YAML scalar or flow sequence that Config::set parses (JSON is valid YAML).
  auto set = [&](const std::string& key, const nlohmann::json& value) {
    if (value.is_null()) return;  // an optional left unset
    try {
      cfg.set(key + "=" + value.dump());
    } catch (const Error& e) {
      fail("{}: fold_in {} cannot be applied ({}); export the run again with this recforge",
           where, key, e.what());
    }
  };
  for (const char* part : {"model", "weighting"})
    for (const auto& [key, value] : section[part].items()) set(std::string(part) + "." + key, value);
  if (section.contains("seed")) set("run.seed", section["seed"]);
  if (section.contains("threads")) set("train.threads", section["threads"]);
  // Fold-in runs on the CPU, which holds float32 factors (the export's, exactly).
  cfg.set("model.dtype=float32");
  const Context ctx = Context::create("cpu", static_cast<int>(cfg.settings().train.threads));
  FoldInSetup s;
  s.model = pipeline::make_model(cfg, ctx);
  if (!s.model) fail("{}: fold_in names model.type none; this export has no model to fold in with", where);
  if (pipeline::embedding_dimension(cfg.settings()) != items.cols)
    fail("{}: fold_in describes a model of dimension {}, but item_factors.npy has {} columns", where,
         pipeline::embedding_dimension(cfg.settings()), items.cols);
  Matrix users;  // fold-in needs the item factors only
  users.rows = 0;
  users.cols = items.cols;
  s.model->set_factors(std::move(users), std::move(items));
  s.weighting = pipeline::weight_options(cfg);
  return s;
}

}  // namespace recforge::recommend
