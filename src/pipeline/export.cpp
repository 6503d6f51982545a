#include "pipeline/export.h"

#include <filesystem>

#include "core/error.h"
#include "pipeline/options.h"
#include "pipeline/run.h"
#include "pipeline/warm_start.h"

namespace recforge::pipeline {

std::optional<SecretKey> pseudonym_key(const config::Config& cfg) {
  const config::ExportSection& e = cfg.settings().export_;
  if (!e.pseudonymize) return std::nullopt;
  // Errors name the setting and the file or variable, never the key.
  if (e.pseudonym_key_file)
    return SecretKey::from_file(
        *e.pseudonym_key_file,
        fmt::format("{}: export.pseudonym_key_file", cfg.where("export.pseudonym_key_file")));
  if (e.pseudonym_key_env)
    return SecretKey::from_env(
        *e.pseudonym_key_env,
        fmt::format("{}: export.pseudonym_key_env", cfg.where("export.pseudonym_key_env")));
  fail("{}: export.pseudonymize needs a key: set export.pseudonym_key_file or "
       "export.pseudonym_key_env",
       cfg.where("export.pseudonymize"));
}

artifact::ExportInput export_input(const config::Config& cfg, const Dataset& data,
                                   const models::Model& model, const nlohmann::json& metrics,
                                   const std::string& run_dir, const std::string& fingerprint,
                                   const nlohmann::json& run,
                                   const std::vector<Digest>& chain_users) {
  artifact::ExportInput in;
  in.model_type = model.type();
  in.model_parameters = model.describe();
  in.users = &model.user_factors();
  in.items = &model.item_factors();
  in.user_ids = &data.users;
  in.item_ids = &data.items;
  in.seen = &data.user_items;
  in.index = index_options(cfg.settings());
  in.metrics = metrics;
  in.config = cfg.to_json();
  in.source = {{"run_dir", run_dir},
               {"run_id", run.value("id", "")},  // which run, for run_exports
               {"data_fingerprint", fingerprint}};
  set_lineage(in, run, chain_users);
  in.train_weight_total =  // what bm25 weighting of a user folded in from the export needs
      data::bm25_corpus(data.split.train, data.users.size(), data.items.size()).total_weight;
  in.pseudonym_key = pseudonym_key(cfg);
  in.opt_out = opt_out_ids(cfg);
  return in;
}

std::string export_run(const std::string& run_dir, const std::string& out,
                       const std::vector<std::string>& overrides) {
  for (const std::string& s : overrides)
    if (s.rfind("index.", 0) != 0)
      fail(
          "--set {}: only index.* settings can be changed at export time; the model and data "
          "are those of the run",
          s);
  OpenedRun r = open_run(run_dir, "export");
  for (const std::string& s : overrides) r.config.set(s);
  // The run's metrics as open_run verified them (not read again).
  const artifact::ExportInput in =
      export_input(r.config, r.data, *r.model, r.metrics, run_dir, r.data.fingerprint(),
                   r.run, r.chain_users);
  const std::string written = artifact::write(in, out);
  record_export(run_dir, out);  // so that forget and report-user of the run know it
  return written;
}

}  // namespace recforge::pipeline
