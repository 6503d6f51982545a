#pragma once
/// @file warm_start.h
/// model.init_from: a run that starts from the factors of an earlier export instead of random
/// ones. Every user and item of this run's data found in the export by id starts from its row
/// there; the others start from the random factors they would have had without it. Nightly
/// retraining on today's interactions then needs fewer iterations than a cold start, and the
/// embeddings of unchanged users and items move less from one export to the next.
///
/// The export's model type and dimension must be this run's. A warm-started model depends on
/// the data its export was trained on, so a warm start is refused when a user that export
/// trained on has opted out since (privacy.opt_out), and `recforge forget` always retrains from
/// random factors (docs/privacy.md).
///
/// Each run and export records its lineage: when the chain of warm starts it belongs to began
/// (the creation time of the chain's cold-started run) and how many warm starts followed.
/// model.init_from_max_age_days bounds that age: an older chain is not continued, so the data
/// of users who left the data without opting out leaves the models within that many days.

#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/hash.h"
#include "core/secret.h"
#include "data/interactions.h"

namespace recforge::pipeline {

/// The users whose data a warm-started model carries without holding their rows: those that an
/// earlier model of its chain of warm starts was trained on and that its own data does not
/// hold (they left the source, or retention or the cleaning filters dropped them). Exports
/// carry them forward (chain_users.txt), so that an opt-out is checked against every user a
/// chain was trained on, not only the last export's. Held as HMAC-SHA256(salt, tag + id) (32
/// bytes each; their hex in files), keyed by the salt's 64 hex characters as text: tag "raw:" before a raw id, or
/// "pseudonym:<key check>:" before a pseudonym (an export of export.pseudonymize, whose raw ids
/// are unknown); the key checks of such pseudonyms are listed. The hashes are a
/// pseudonymisation: whoever holds them and can enumerate candidate ids can test them.
struct ChainUsers {
  std::string salt;                     ///< 64 hex characters, kept along the chain
  std::vector<std::string> key_checks;  ///< of the keys of "pseudonym:" entries
  std::vector<Digest> hashes;           ///< sorted, each once
  /// The hash of a raw id (`key_check` empty) or of a pseudonym made with the key of
  /// `key_check`.
  Digest hash(const std::string& id, const std::string& key_check = "") const;
  /// Whether the user of raw id `raw` is among them: by raw id, and by pseudonym under `key`
  /// when the entries include pseudonyms of that key.
  bool holds(const std::string& raw, const std::optional<SecretKey>& key) const;
};

/// The export that model.init_from names, loaded (factors and ids; not its Faiss index) and
/// checked against the run's model.
struct InitSource {
  std::string dir;           ///< the export directory read (model.init_from, or its export/)
  artifact::Artifact export_;
  /// The run's pseudonymisation key when the export's user ids are pseudonyms made with it;
  /// nullopt for raw ids, or when the run has no such key (users are then not matched).
  std::optional<SecretKey> key;
  /// The run's pseudonymisation key (export.pseudonymize), read when the export or its chain
  /// users hold pseudonyms; nullopt otherwise.
  std::optional<SecretKey> run_key;
  /// The export's lineage (manifest source.lineage): {"started": the UTC time its chain's
  /// cold-started run was created, "warm_starts": how many since}; both null when the export
  /// does not record it.
  nlohmann::json lineage;
};

/// The lineage of a run from its run.json: its init_from record's, or, for a cold-started run,
/// {"started": its creation time, "warm_starts": 0}. Exports record it as source.lineage.
nlohmann::json run_lineage(const nlohmann::json& run);

/// The run directory's file of a warm-started run's ChainUsers hashes (checksummed in
/// run.json; its salt and key checks are in run.json's init_from.chain_users), written as
/// artifact::chain_users_text and read back by artifact::parse_chain_users.
constexpr const char* kChainUsersFile = artifact::kChainUsersFile;

/// What an export of a run records of its chain of warm starts: source.lineage (run_lineage of
/// its run.json) and, for a warm-started run, its chain's users (`hashes`, the run's
/// chain_users.txt; the salt and key checks from run.json).
void set_lineage(artifact::ExportInput& in, const nlohmann::json& run,
                 const std::vector<Digest>& hashes);

/// Opens model.init_from: an export directory, or a run directory holding one in export/.
/// Returns nullopt when the setting is empty, and also when model.init_from_max_age_days is set
/// and the export's chain began more than that many days before `now` or does not say when:
/// the run then starts from random factors (logged), and `*skipped`, when given, receives
/// run.json's "init_from_skipped" record (the export, its lineage, the bound, why). Throws
/// recforge::Error with one sentence naming the setting when the path holds no export, or the
/// export's model type or dimension is not this run's (model.type, model.factors and
/// model.item_bias).
std::optional<InitSource> open_init_from(const config::Config& cfg,
                                         std::time_t now = std::time(nullptr),
                                         nlohmann::json* skipped = nullptr);

/// Where each row of this run's data starts: the export's row of the same id, or -1 (random).
struct WarmStart {
  std::vector<int64_t> user_rows;  ///< per user of the run: the export's row, or -1
  std::vector<int64_t> item_rows;  ///< per item of the run: the export's row, or -1
  int64_t users_matched = 0, items_matched = 0;
  /// Users of the export that are not in this run's data (they left it, or retention or the
  /// cleaning filters dropped them): their data stays in the items' factors. 0 when users are
  /// not matched (pseudonyms without the key).
  int64_t users_departed = 0;
  /// The chain's users this run carries: the export's and its users not in this run's data.
  ChainUsers chain;
  /// run.json's "init_from": the export, its version and creation time, the run it came from,
  /// the counts matched and departed, and the run's lineage (the export's, one warm start on).
  nlohmann::json record;
};

/// Matches this run's users and items (their external ids) against the export's. Users are
/// matched by raw id, or by pseudonym when the export is pseudonymised with the run's key
/// (export.pseudonymize); without that key users start at random (logged). Throws
/// recforge::Error when the export holds a user who is on this run's opt-out list
/// (`opt_out`: pipeline::opt_out_ids), since its factors carry that user's data; also when the
/// list is not empty and the export's pseudonyms cannot be checked against it (no key). The
/// check covers the export's chain users (ChainUsers) as well as its user ids.
WarmStart match_init_from(const InitSource& source, const config::Config& cfg,
                          const data::IdMap& users, const data::IdMap& items,
                          const std::vector<std::string>& opt_out);

/// Copies into `m` (rows first_row.. of this run's side, e.g. a distributed rank's shard) the
/// export's rows of the ids `rows` matched; the other rows keep their values.
void warm_rows(const Matrix& from, const std::vector<int64_t>& rows, Matrix& m,
               int64_t first_row = 0);

/// warm_rows of both sides: the export's user and item rows that `warm` matched into `users`
/// and `items` (a model's initial factors, or a distributed rank's rows first_user.. and
/// first_item..).
void apply_warm_start(const InitSource& source, const WarmStart& warm, Matrix& users,
                      Matrix& items, int64_t first_user = 0, int64_t first_item = 0);

}  // namespace recforge::pipeline
