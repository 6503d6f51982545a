#include "data/exclusion.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/hash.h"

namespace recforge::data {

std::string UserExclusion::salt_for_sources(const std::vector<std::string>& source_hashes) {
  std::string joined;
  for (size_t k = 0; k < source_hashes.size(); ++k) joined += (k ? ";" : "") + source_hashes[k];
  return hmac_sha256_hex("recforge user exclusion v1", joined);
}

std::string UserExclusion::hash(std::string_view raw_id) const {
  return hmac_sha256_hex(salt_, raw_id);
}

void UserExclusion::add_hash(Set set, std::string hash_hex) {
  (set == Set::kOptOut ? opt_out_ : forgotten_).insert(std::move(hash_hex));
}

nlohmann::json UserExclusion::to_json() const {
  // std::set iterates in sorted order.
  return {{"salt", salt_},
          {"opt_out", std::vector<std::string>(opt_out_.begin(), opt_out_.end())},
          {"forgotten", std::vector<std::string>(forgotten_.begin(), forgotten_.end())}};
}

UserExclusion UserExclusion::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object())
    fail("{}: \"excluded_users\" is a JSON {}; expected an object {{\"salt\", \"opt_out\", "
         "\"forgotten\"}}",
         where, j.type_name());
  for (const auto& [key, value] : j.items())
    if (key != "salt" && key != "opt_out" && key != "forgotten")
      fail("{}: \"excluded_users\" has the unknown field \"{}\"; expected only salt, opt_out and "
           "forgotten",
           where, key);
  const auto salt = j.find("salt");
  if (salt == j.end() || !salt->is_string() || !is_hex_digest(salt->get<std::string>()))
    fail("{}: \"excluded_users.salt\" is missing or not 64 lowercase hex characters", where);
  UserExclusion e(salt->get<std::string>());
  for (const auto& [name, set] : {std::pair{"opt_out", Set::kOptOut},
                                  std::pair{"forgotten", Set::kForgotten}}) {
    const auto list = j.find(name);
    if (list == j.end())
      fail("{}: \"excluded_users.{}\" is missing; expected a list of hex digests", where, name);
    if (!list->is_array())
      fail("{}: \"excluded_users.{}\" is a JSON {}; expected a list of hex digests", where, name,
           list->type_name());
    for (size_t k = 0; k < list->size(); ++k) {
      const nlohmann::json& h = (*list)[k];
      if (!h.is_string() || !is_hex_digest(h.get<std::string>()))
        fail("{}: \"excluded_users.{}\"[{}] is not 64 lowercase hex characters", where, name, k);
      e.add_hash(set, h.get<std::string>());
    }
  }
  return e;
}

std::string UserExclusion::fingerprint() const {
  Sha256 h;
  h.update("salt=" + salt_ + ";opt_out=");
  for (const auto& s : opt_out_) h.update(s + ",");
  h.update(";forgotten=");
  for (const auto& s : forgotten_) h.update(s + ",");
  return h.hex();
}

std::vector<std::string> read_user_id_file(const std::string& path, const std::string& setting) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    fail("{}: cannot open the user id file of {}: {}", path, setting, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: the user id file of {} is not a regular file", path, setting);
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot read the user id file of {}: {}", path, setting, std::strerror(err));
    }
  }
  ::close(fd);
  std::vector<std::string> ids;
  size_t pos = 0;
  int64_t line_no = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;  // a byte order mark
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    const auto bad = std::find_if(line.begin(), line.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7F;
    });
    if (bad != line.end())
      fail("{}:{}: {}: the line holds the control character 0x{:02x}; expected one user id per "
           "line",
           path, line_no, setting, static_cast<unsigned char>(*bad));
    ids.emplace_back(line);
  }
  return ids;
}

}  // namespace recforge::data
