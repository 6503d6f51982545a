#pragma once
/// @file exclusion.h
/// Users excluded from the data: those who opted out of personalisation at training time
/// (privacy.opt_out) and those forgotten (`recforge forget`). Only salted hashes are held:
/// HMAC-SHA256(salt, raw id), keyed by the salt's 64 hex characters as text, so that run.json
/// can record who was excluded without holding a raw id.
///
/// The salt is chosen from the content of the data (`salt_for_sources`), so every run and sweep
/// trial over the same data and opt-out list builds the same exclusion and shares one cache
/// entry; `forget` keeps the salt of the run it starts from. The hashes are a pseudonymisation,
/// not anonymity: whoever holds run.json and can enumerate candidate ids can test them.

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace recforge::data {

class UserExclusion {
 public:
  /// Which list a user is excluded by.
  enum class Set { kOptOut, kForgotten };

  UserExclusion() = default;
  /// An empty exclusion with this salt (64 lowercase hex characters; checked by from_json).
  explicit UserExclusion(std::string salt) : salt_(std::move(salt)) {}

  /// The salt derived from the content SHA-256 of the data files (in order; for synthetic data,
  /// a description of the generator's options): HMAC-SHA256("recforge user exclusion v1", the
  /// digests joined by ';').
  static std::string salt_for_sources(const std::vector<std::string>& source_hashes);

  const std::string& salt() const { return salt_; }
  /// HMAC-SHA256(salt, raw_id) as 64 hex characters.
  std::string hash(std::string_view raw_id) const;
  /// Adds a raw id to a set (its hash only is kept).
  void add(Set set, std::string_view raw_id) { add_hash(set, hash(raw_id)); }
  /// Adds an already hashed id.
  void add_hash(Set set, std::string hash_hex);
  /// Whether the raw id is in either set.
  bool excludes(std::string_view raw_id) const { return excludes_hash(hash(raw_id)); }
  bool excludes_hash(const std::string& hash_hex) const {
    return opt_out_.count(hash_hex) > 0 || forgotten_.count(hash_hex) > 0;
  }
  bool in(Set set, const std::string& hash_hex) const { return of(set).count(hash_hex) > 0; }
  const std::set<std::string>& of(Set set) const {
    return set == Set::kOptOut ? opt_out_ : forgotten_;
  }
  const std::set<std::string>& opt_out() const { return opt_out_; }
  const std::set<std::string>& forgotten() const { return forgotten_; }
  /// No hashes in either set.
  bool empty() const { return opt_out_.empty() && forgotten_.empty(); }

  /// {"salt": HEX, "opt_out": [...], "forgotten": [...]}, lists sorted: run.json's
  /// "excluded_users".
  nlohmann::json to_json() const;
  /// Parses to_json's shape; throws recforge::Error (one sentence naming `where`, e.g.
  /// "runs/x/run.json", and the field) for any other shape, a salt or hash that is not 64
  /// lowercase hex characters.
  static UserExclusion from_json(const nlohmann::json& j, const std::string& where);
  /// SHA-256 of the salt and both sorted lists: part of the data cache key.
  std::string fingerprint() const;

 private:
  std::string salt_;
  std::set<std::string> opt_out_, forgotten_;
};

/// Reads a file of user ids, one per line: surrounding spaces and tabs trimmed, blank lines and
/// lines starting with '#' ignored. `setting` names where the file came from in errors (e.g.
/// "privacy.opt_out" or "forget --users"). Throws recforge::Error, one sentence with
/// file[:line] and `setting`, when the file is missing, not a regular file, unreadable, or a
/// line holds a control character (the line's content is never quoted).
std::vector<std::string> read_user_id_file(const std::string& path, const std::string& setting);

}  // namespace recforge::data
