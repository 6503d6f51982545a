#pragma once
/// @file secret.h
/// A secret key (the pseudonymisation key of export.pseudonymize), read from a file or an
/// environment variable. Its bytes are never formatted into a message, a log line, a run or an
/// export: errors name the file or the variable, never the content. The memory is wiped when
/// the key is destroyed.

#include <string>
#include <string_view>

namespace recforge {

class SecretKey {
 public:
  /// Shortest key accepted, in bytes (after one trailing newline is removed).
  static constexpr size_t kMinBytes = 16;

  SecretKey() = default;
  ~SecretKey();
  SecretKey(const SecretKey& other) : bytes_(other.bytes_) {}
  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(const SecretKey& other);
  SecretKey& operator=(SecretKey&& other) noexcept;

  /// Reads the whole of `path` (a regular file; one trailing "\n" or "\r\n" is not part of the
  /// key). `where` names the setting in errors, e.g. "config.yaml:12:5: export.pseudonym_key_file".
  /// Throws recforge::Error: missing, not a regular file, unreadable, shorter than kMinBytes.
  static SecretKey from_file(const std::string& path, const std::string& where);
  /// Reads the environment variable `name` (same rules). Throws recforge::Error when it is unset
  /// or too short.
  static SecretKey from_env(const std::string& name, const std::string& where);
  /// A key from bytes already in memory (tests, the library); throws when too short.
  static SecretKey from_bytes(std::string bytes, const std::string& where);

  bool empty() const { return bytes_.empty(); }
  /// The key's bytes: pass them to hmac_sha256_hex only.
  std::string_view bytes() const { return bytes_; }
  /// HMAC-SHA256(key, raw id): the pseudonym of `raw_id`.
  std::string pseudonym(std::string_view raw_id) const;
  /// A public check value of the key (the first 16 hex characters of
  /// HMAC-SHA256(key, "recforge key check")), written to manifests so that a reader can tell a
  /// wrong key from an unknown user without the key being recoverable from it.
  std::string check_value() const;

 private:
  explicit SecretKey(std::string bytes) : bytes_(std::move(bytes)) {}
  void wipe();
  std::string bytes_;
};

}  // namespace recforge
