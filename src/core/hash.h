#pragma once
/// @file hash.h
/// SHA-256 of files and byte strings and HMAC-SHA256 (OpenSSL), used for the data cache key,
/// checksums and pseudonyms.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace recforge {

/// Incremental SHA-256; `hex()` finishes and returns the lowercase hex digest.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  /// Feeds bytes.
  void update(const void* data, size_t size);
  /// Feeds a string (length is not included; callers add separators where needed).
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// Finishes and returns the 64-character hex digest. Call once.
  std::string hex();

 private:
  void* ctx_;
};

/// SHA-256 hex digest of a whole file; throws recforge::Error naming the file when unreadable.
std::string sha256_file(const std::string& path);

/// SHA-256 hex digest of a file's size and of `blocks` blocks of `block_bytes` bytes spread
/// evenly over it, the first and the last included (of the whole file when it is no larger than
/// blocks * block_bytes): whether two readers see the same version of a large file, at the cost
/// of reading at most blocks * block_bytes of it. A file of the same size that differs only
/// outside the blocks gives the same digest. Throws recforge::Error naming the file when
/// unreadable; `size`, when given, receives the file's size in bytes.
std::string sha256_file_sample(const std::string& path, int64_t* size = nullptr, int blocks = 64,
                               int64_t block_bytes = int64_t{64} << 10);

/// HMAC-SHA256 (RFC 2104, OpenSSL) of `message` under `key`, as 64 lowercase hex characters.
/// Used for pseudonymised user ids (export.pseudonymize) and salted membership sets.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

/// A SHA-256 or HMAC-SHA256 digest as its 32 bytes: large sets of salted hashes are held so,
/// at a third of the memory of their hex text. Compares (and sorts) as its hex text does.
using Digest = std::array<unsigned char, 32>;

/// HMAC-SHA256 of `message` under `key` (as hmac_sha256_hex), as its 32 bytes.
Digest hmac_sha256(std::string_view key, std::string_view message);

/// The 64 lowercase hex characters of `d`.
std::string to_hex(const Digest& d);

/// The digest whose hex text is `s` (is_hex_digest), or nullopt when `s` is not one.
std::optional<Digest> parse_hex_digest(std::string_view s);

/// Whether `s` has the shape of a SHA-256 or HMAC-SHA256 digest as recforge writes them: 64
/// lowercase hex characters (salts and salted hashes are checked with it when read back).
bool is_hex_digest(std::string_view s);

/// A fixed 64-bit hash of a byte string: FNV-1a (64-bit), then splitmix64's finaliser to spread
/// its bits. The same value on every platform and in every recforge version, for choices that
/// must not change from run to run (eval.validation_sample's users). Not for secrets.
uint64_t stable_hash64(std::string_view s);

/// 32 lowercase hex characters of 128 random bits (OpenSSL's generator): an identifier no other
/// run or file will have, such as a run's run.json "id". Throws InternalError if the generator
/// fails.
std::string random_id();

}  // namespace recforge
