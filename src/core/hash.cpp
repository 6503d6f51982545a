#include "core/hash.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace recforge {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  RF_ASSERT(ctx_ != nullptr, "EVP_MD_CTX_new failed");
  RF_ASSERT(EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) == 1,
            "EVP_DigestInit_ex failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(const void* data, size_t size) {
  RF_ASSERT(EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size) == 1,
            "EVP_DigestUpdate failed");
}

namespace {

std::string to_hex(const unsigned char* digest, unsigned int len) {
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace

std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  RF_ASSERT(EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &len) == 1,
            "EVP_DigestFinal_ex failed");
  return to_hex(digest, len);
}

Digest hmac_sha256(std::string_view key, std::string_view message) {
  Digest digest;
  unsigned int len = 0;
  // An empty key is a valid HMAC key; HMAC() wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const unsigned char* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  const unsigned char* m =
      message.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(message.data());
  RF_ASSERT(HMAC(EVP_sha256(), k, static_cast<int>(key.size()), m, message.size(), digest.data(), &len) !=
                nullptr,
            "HMAC-SHA256 failed");
  RF_ASSERT(len == digest.size(), "HMAC-SHA256 gave a digest of another size");
  return digest;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  return to_hex(hmac_sha256(key, message));
}

std::string to_hex(const Digest& d) { return to_hex(d.data(), static_cast<unsigned>(d.size())); }

std::optional<Digest> parse_hex_digest(std::string_view s) {
  if (!is_hex_digest(s)) return std::nullopt;
  const auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  Digest d;
  for (size_t i = 0; i < d.size(); ++i)
    d[i] = static_cast<unsigned char>(nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]));
  return d;
}

std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open file: {}", path, std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) fail("{}: read error while hashing", path);
  return h.hex();
}

std::string sha256_file_sample(const std::string& path, int64_t* size, int blocks,
                               int64_t block_bytes) {
  RF_ASSERT(blocks >= 2 && block_bytes >= 1, "sha256_file_sample: at least two blocks of a byte");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open file: {}", path, std::strerror(errno));
  bool bad = std::fseek(f, 0, SEEK_END) != 0;
  const int64_t n = bad ? -1 : static_cast<int64_t>(std::ftell(f));
  bad = bad || n < 0;
  Sha256 h;
  h.update(&n, sizeof n);
  std::vector<char> buf(static_cast<size_t>(block_bytes));
  // Whole when small; else block b at b * (n - block) / (blocks - 1), so the last ends at n.
  const bool whole = n <= static_cast<int64_t>(blocks) * block_bytes;
  for (int b = 0; !bad && b < (whole ? 1 : blocks); ++b) {
    const int64_t at = whole ? 0 : b * (n - block_bytes) / (blocks - 1);
    if (std::fseek(f, static_cast<long>(at), SEEK_SET) != 0) {
      bad = true;
      break;
    }
    int64_t left = whole ? n : block_bytes;
    while (left > 0) {
      const size_t got = std::fread(buf.data(), 1, static_cast<size_t>(std::min<int64_t>(left, block_bytes)), f);
      if (got == 0) break;
      h.update(buf.data(), got);
      left -= static_cast<int64_t>(got);
    }
    bad = bad || left != 0;
  }
  bad = bad || std::ferror(f);
  std::fclose(f);
  if (bad) fail("{}: read error while hashing", path);
  if (size) *size = n;
  return h.hex();
}

uint64_t stable_hash64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a's offset basis and prime
  for (const char ch : s) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;  // splitmix64's finaliser
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

bool is_hex_digest(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string random_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw InternalError("random_id: OpenSSL's random generator failed", __FILE__, __LINE__);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : bytes) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

}  // namespace recforge
