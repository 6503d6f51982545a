#include "pipeline/warm_start.h"

#include <algorithm>
#include <filesystem>

#include "core/clock.h"
#include "core/hash.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "pipeline/export.h"
#include "pipeline/options.h"

namespace recforge::pipeline {

namespace fs = std::filesystem;

Digest ChainUsers::hash(const std::string& id, const std::string& key_check) const {
  return hmac_sha256(salt, key_check.empty() ? "raw:" + id
                                                 : "pseudonym:" + key_check + ":" + id);
}

bool ChainUsers::holds(const std::string& raw, const std::optional<SecretKey>& key) const {
  if (std::binary_search(hashes.begin(), hashes.end(), hash(raw))) return true;
  if (!key || key_checks.empty()) return false;
  const std::string check = key->check_value();
  return std::find(key_checks.begin(), key_checks.end(), check) != key_checks.end() &&
         std::binary_search(hashes.begin(), hashes.end(), hash(key->pseudonym(raw), check));
}

void set_lineage(artifact::ExportInput& in, const nlohmann::json& run,
                 const std::vector<Digest>& hashes) {
  in.source["lineage"] = run_lineage(run);
  if (hashes.empty()) return;
  const nlohmann::json& meta = run.at("init_from").at("chain_users");
  in.chain_salt = meta.at("salt").get<std::string>();
  in.chain_key_checks = meta.at("key_checks").get<std::vector<std::string>>();
  in.chain_users = hashes;
}

nlohmann::json run_lineage(const nlohmann::json& run) {
  if (const auto it = run.find("init_from"); it != run.end()) {
    if (const auto l = it->find("lineage"); l != it->end()) return *l;
    return {{"started", nullptr}, {"warm_starts", nullptr}};  // warm, lineage not recorded
  }
  return {{"started", run.value("created", "")}, {"warm_starts", 0}};
}

namespace {

// Why a warm start from `src` would continue a chain older than model.init_from_max_age_days
// allows (empty: it may continue).
std::string chain_too_old(const InitSource& src, int64_t max_days, std::time_t now) {
  if (max_days <= 0) return "";
  const nlohmann::json& started = src.lineage.at("started");
  const std::optional<std::time_t> t =
      started.is_string() ? parse_utc(started.get<std::string>()) : std::nullopt;
  if (!t) return "it does not record when its chain of warm starts began";
  const double days = std::difftime(now, *t) / 86400.0;
  if (days <= static_cast<double>(max_days)) return "";
  return fmt::format("its chain of warm starts began with a run created {} ({:.1f} days ago), "
                     "more than model.init_from_max_age_days {} ago",
                     started.get<std::string>(), days, max_days);
}

}  // namespace

std::optional<InitSource> open_init_from(const config::Config& cfg, std::time_t now,
                                         nlohmann::json* skipped) {
  const config::Settings& s = cfg.settings();
  const std::string& from = s.model.init_from;
  if (from.empty()) return std::nullopt;
  const std::string where = cfg.where("model.init_from");
  std::string dir = from;
  if (!artifact::is_artifact(from)) {
    std::error_code ec;
    if (!fs::exists(from, ec))
      fail("{}: model.init_from is {}, which does not exist; expected an export directory (or a "
           "run directory holding export/)",
           where, from);
    dir = (fs::path(from) / "export").string();
    if (!artifact::is_artifact(dir))
      fail("{}: model.init_from is {}, which holds no export (no manifest.json or current link, "
           "and no export/ inside); export the run first with `recforge export RUN --out DIR` "
           "and name DIR",
           where, from);
  }
  InitSource src;
  src.dir = dir;
  src.export_ = artifact::load(dir, /*with_index=*/false, /*with_seen=*/false);
  const nlohmann::json& m = src.export_.manifest;
  const std::string type = artifact::manifest_text(m, "/model/type");
  if (type != s.model.type)
    fail("{}: model.init_from {} holds a model of type {}, but this run trains {} (model.type), "
         "whose factors mean something else; start from an export of a {} model or leave "
         "model.init_from empty",
         where, dir, type.empty() ? "(unnamed)" : type, s.model.type, s.model.type);
  const int dim = embedding_dimension(s);
  const bool bias = dim != s.model.factors;  // the item bias column of bpr and softmax
  const nlohmann::json::json_pointer bias_key("/model/parameters/item_bias");
  const bool export_bias = m.contains(bias_key) && m.at(bias_key) == true;  // iALS has none
  if (src.export_.items.cols == dim && export_bias != bias)
    fail("{}: model.init_from {} was trained {} an item bias column, and this run's model has "
         "{} (model.item_bias {}): its columns would mean something else; start from an export "
         "of the same model.item_bias or leave model.init_from empty",
         where, dir, export_bias ? "with" : "without", bias ? "one" : "none",
         bias ? "true" : "false");
  if (src.export_.items.cols != dim || export_bias != bias)
    fail("{}: model.init_from {} has {} columns per item{}, but this run's model has {} "
         "(model.factors {}{}); start from an export of the same width or leave model.init_from "
         "empty",
         where, dir, src.export_.items.cols, export_bias ? " (an item bias among them)" : "", dim,
         s.model.factors, bias ? " and the item bias column" : "");
  // The run's key, when the export's users or its chain's are pseudonyms to match or check.
  if (!src.export_.key_check.empty() || !src.export_.chain_key_checks.empty())
    src.run_key = pseudonym_key(cfg);
  if (src.run_key && src.run_key->check_value() == src.export_.key_check) src.key = src.run_key;
  const nlohmann::json::json_pointer lineage_key("/source/lineage");
  src.lineage = m.contains(lineage_key) && m.at(lineage_key).is_object()
                    ? m.at(lineage_key)
                    : nlohmann::json{{"started", nullptr}, {"warm_starts", nullptr}};
  for (const char* field : {"started", "warm_starts"})
    if (!src.lineage.contains(field)) src.lineage[field] = nullptr;
  if (const std::string why = chain_too_old(src, s.model.init_from_max_age_days, now);
      !why.empty()) {
    log().info("{}: this run starts from random factors, not from model.init_from {}: {}; its "
               "export begins a new chain",
               where, dir, why);
    if (skipped)
      *skipped = {{"export", dir},
                  {"version", src.export_.version},
                  {"lineage", src.lineage},
                  {"max_age_days", s.model.init_from_max_age_days},
                  {"reason", why}};
    return std::nullopt;
  }
  return src;
}

WarmStart match_init_from(const InitSource& source, const config::Config& cfg,
                          const data::IdMap& users, const data::IdMap& items,
                          const std::vector<std::string>& opt_out) {
  const artifact::Artifact& a = source.export_;
  const std::string where = cfg.where("model.init_from");
  const bool pseudonyms = !a.key_check.empty();
  const bool can_match_users = !pseudonyms || source.key.has_value();
  // The export's id of a raw user id: itself, or its pseudonym under the export's key.
  auto export_id = [&](const std::string& raw) {
    return pseudonyms ? source.key->pseudonym(raw) : raw;
  };
  WarmStart w;
  // The users earlier models of the export's chain were trained on (a new chain's salt is
  // derived from the export, so that the same export gives the same hashes).
  ChainUsers& chain = w.chain;
  chain.salt = !a.chain_salt.empty()
                   ? a.chain_salt
                   : hmac_sha256_hex("recforge chain users v1",
                                     artifact::manifest_text(a.manifest, "/created") + "\n" +
                                         artifact::manifest_text(a.manifest, "/source/run_dir") +
                                         "\n" + a.version);
  chain.key_checks = a.chain_key_checks;
  chain.hashes = a.chain_users;
  if (!opt_out.empty()) {
    if (!can_match_users)
      fail("{}: model.init_from {} holds pseudonymised user ids of a key this run does not have "
           "(export.pseudonymize), so the {} user(s) of privacy.opt_out cannot be checked "
           "against the users its factors were trained on; give the run the export's key or "
           "leave model.init_from empty",
           where, source.dir, opt_out.size());
    for (const std::string& check : chain.key_checks)
      if (!source.run_key || source.run_key->check_value() != check)
        fail("{}: model.init_from {} carries the users of earlier models of its chain of warm "
             "starts as pseudonyms of a key this run does not have (export.pseudonymize), so the "
             "{} user(s) of privacy.opt_out cannot be checked against them; give the run that "
             "key or leave model.init_from empty",
             where, source.dir, opt_out.size());
    int64_t trained_on = 0, through_chain = 0;
    for (const std::string& id : opt_out) {
      if (a.user_ids.find(export_id(id)))
        ++trained_on;
      else if (chain.holds(id, source.run_key))
        ++through_chain;
    }
    if (trained_on + through_chain > 0)
      fail("{}: model.init_from {} was trained on {} user(s) now on the privacy.opt_out list{}, "
           "so its factors carry their data; train this run from random factors (leave "
           "model.init_from empty) and warm-start later runs from its export",
           where, source.dir, trained_on + through_chain,
           through_chain > 0 ? fmt::format(" ({} of them through an earlier model of its chain "
                                           "of warm starts)",
                                           through_chain)
                             : std::string());
  }
  w.user_rows.assign(static_cast<size_t>(users.size()), -1);
  w.item_rows.assign(static_cast<size_t>(items.size()), -1);
  for (int64_t i = 0; i < items.size(); ++i)
    if (const auto row = a.item_ids.find(items.external(static_cast<data::index_t>(i)))) {
      w.item_rows[static_cast<size_t>(i)] = *row;
      ++w.items_matched;
    }
  std::vector<char> held(static_cast<size_t>(a.user_ids.size()), 0);  // export rows matched
  if (can_match_users)
    for (int64_t u = 0; u < users.size(); ++u)
      if (const auto row = a.user_ids.find(export_id(users.external(static_cast<data::index_t>(u))))) {
        w.user_rows[static_cast<size_t>(u)] = *row;
        held[static_cast<size_t>(*row)] = 1;
        ++w.users_matched;
      }
  if (can_match_users) w.users_departed = a.user_ids.size() - w.users_matched;
  // The export's users this run does not hold join the chain's (all of them when users are not
  // matched: their rows are not used, but the items' factors carry their data).
  bool added = false;
  for (int64_t r = 0; r < a.user_ids.size(); ++r)
    if (!held[static_cast<size_t>(r)]) {
      chain.hashes.push_back(
          chain.hash(a.user_ids.external(static_cast<data::index_t>(r)), a.key_check));
      added = true;
    }
  if (added && pseudonyms &&
      std::find(chain.key_checks.begin(), chain.key_checks.end(), a.key_check) ==
          chain.key_checks.end())
    chain.key_checks.push_back(a.key_check);
  std::sort(chain.hashes.begin(), chain.hashes.end());
  chain.hashes.erase(std::unique(chain.hashes.begin(), chain.hashes.end()), chain.hashes.end());
  nlohmann::json lineage = source.lineage;
  if (lineage["warm_starts"].is_number_integer())
    lineage["warm_starts"] = lineage["warm_starts"].get<int64_t>() + 1;
  std::error_code ec;
  const fs::path abs = fs::absolute(source.dir, ec).lexically_normal();
  w.record = {{"export", ec ? source.dir : abs.string()},
              {"version", a.version},
              {"created", artifact::manifest_text(a.manifest, "/created")},
              {"source_run", artifact::manifest_text(a.manifest, "/source/run_dir")},
              {"users", users.size()},
              {"users_matched", w.users_matched},
              {"items", items.size()},
              {"items_matched", w.items_matched},
              {"users_departed", w.users_departed},
              {"lineage", lineage},
              {"chain_users",
               {{"salt", chain.salt},
                {"key_checks", chain.key_checks},
                {"count", chain.hashes.size()}}}};
  if (!can_match_users)
    log().warn("warm start from {}: its user ids are pseudonyms of a key this run does not have "
               "(export.pseudonymize), so every user starts from random factors; only the "
               "items start from the export",
               source.dir);
  log().info("warm start from {}{}: {} of {} users and {} of {} items start from its factors, "
             "the others from random ones",
             source.dir, a.version.empty() ? "" : " (" + a.version + ")", w.users_matched,
             users.size(), w.items_matched, items.size());
  if (w.users_departed > 0)
    log().info("warm start: {} user(s) the export was trained on are not in this run's data; "
               "their data stays in the items' factors until a run starts from random factors "
               "(model.init_from_max_age_days bounds how long: {})",
               w.users_departed,
               cfg.settings().model.init_from_max_age_days > 0
                   ? fmt::format("{} days", cfg.settings().model.init_from_max_age_days)
                   : std::string("not set"));
  return w;
}

void warm_rows(const Matrix& from, const std::vector<int64_t>& rows, Matrix& m,
               int64_t first_row) {
  RF_ASSERT(from.cols == m.cols, "warm_rows: the export's width differs from the model's");
  RF_ASSERT(first_row + m.rows <= static_cast<int64_t>(rows.size()),
            "warm_rows: more rows than matched ids");
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t src = rows[static_cast<size_t>(first_row + r)];
    if (src >= 0) std::copy_n(from.row(src), m.cols, m.row(r));
  }
}

void apply_warm_start(const InitSource& source, const WarmStart& warm, Matrix& users,
                      Matrix& items, int64_t first_user, int64_t first_item) {
  warm_rows(source.export_.users, warm.user_rows, users, first_user);
  warm_rows(source.export_.items, warm.item_rows, items, first_item);
}

}  // namespace recforge::pipeline
