#include "core/secret.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/hash.h"

namespace recforge {
namespace {

std::string strip_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

void require_length(std::string& bytes, const std::string& where, const std::string& source) {
  if (bytes.size() >= SecretKey::kMinBytes) return;
  const size_t n = bytes.size();
  OPENSSL_cleanse(bytes.data(), bytes.size());
  // The length is said, never the content.
  fail("{}: the key in {} is {} byte(s) long, expected at least {} (for example 32 random bytes: "
       "`head -c 32 /dev/urandom | base64 > KEYFILE`)",
       where, source, n, SecretKey::kMinBytes);
}

}  // namespace

SecretKey::~SecretKey() { wipe(); }

void SecretKey::wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

SecretKey::SecretKey(SecretKey&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretKey& SecretKey::operator=(const SecretKey& other) {
  if (this != &other) {
    wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

SecretKey SecretKey::from_file(const std::string& path, const std::string& where) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    fail("{}: cannot read the key file {}: {}", where, path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: the key file {} is not a regular file", where, path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the key file {}: {}", where, path, std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error in the key file {}", where, path);
  bytes = strip_newline(std::move(bytes));
  require_length(bytes, where, "file " + path);
  return SecretKey(std::move(bytes));
}

SecretKey SecretKey::from_env(const std::string& name, const std::string& where) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr)
    fail("{}: the environment variable {} is not set; expected the pseudonymisation key in it",
         where, name);
  std::string bytes = strip_newline(v);
  require_length(bytes, where, "environment variable " + name);
  return SecretKey(std::move(bytes));
}

SecretKey SecretKey::from_bytes(std::string bytes, const std::string& where) {
  require_length(bytes, where, "the given bytes");
  return SecretKey(std::move(bytes));
}

std::string SecretKey::pseudonym(std::string_view raw_id) const {
  RF_ASSERT(!bytes_.empty(), "pseudonym() of an empty key");
  return hmac_sha256_hex(bytes_, raw_id);
}

std::string SecretKey::check_value() const {
  RF_ASSERT(!bytes_.empty(), "check_value() of an empty key");
  return hmac_sha256_hex(bytes_, "recforge key check").substr(0, 16);
}

}  // namespace recforge
