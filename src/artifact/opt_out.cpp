// Reading an opt-out list (privacy.opt_out): the ids of users who opted out of personalisation.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "artifact/artifact.h"
#include "core/error.h"

namespace recforge::artifact {

std::vector<std::string> read_opt_out(const std::string& path, const std::string& where) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    fail("{}: cannot read the opt-out file {}: {}; expected a file of user ids, one per line",
         where, path, std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail("{}: the opt-out file {} is not a regular file; expected a file of user ids, one per line",
         where, path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the opt-out file {}: {}", where, path, std::strerror(errno));
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    ids.push_back(line.substr(b, e - b + 1));
  }
  if (in.bad()) fail("{}: read error in the opt-out file {}", where, path);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace recforge::artifact
