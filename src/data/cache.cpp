#include "data/cache.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"

namespace recforge::data {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'R', 'F', 'C', 'A', 'C', 'H', 'E', '\0'};
constexpr uint64_t kTrailer = 0x454E4F4448434652ULL;  // "RFCHDONE"
constexpr uint64_t kHeaderBytes = 8 + 4 + 8;          // magic, version, payload size
constexpr uint64_t kDigestBytes = 64;                 // SHA-256 of the payload, hex
constexpr uint64_t kTrailerBytes = kDigestBytes + 8;  // digest, "RFCHDONE"
constexpr uint64_t kMaxParts = 16;
constexpr const char* kTempTag = ".rfcache.tmp.";

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Writes the payload, hashing every byte.
class Writer {
 public:
  explicit Writer(std::FILE* f) : f_(f) {}
  void bytes(const void* p, size_t n) {
    if (!ok_ || n == 0) return;
    ok_ = std::fwrite(p, 1, n, f_) == n;
    hash_.update(p, n);
    size_ += n;
  }
  template <typename T>
  void pod(const T& v) {
    bytes(&v, sizeof v);
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    pod(static_cast<uint64_t>(v.size()));
    bytes(v.data(), v.size() * sizeof(T));
  }
  void str(const std::string& s) {
    pod(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  bool ok() const { return ok_; }
  uint64_t size() const { return size_; }
  std::string digest() { return hash_.hex(); }

 private:
  std::FILE* f_;
  bool ok_ = true;
  uint64_t size_ = 0;
  Sha256 hash_;
};

// Reads the payload, hashing every byte. Every length is checked against the bytes left in the
// payload before anything is allocated, so a damaged count cannot ask for more memory than the
// file holds.
class Reader {
 public:
  Reader(std::FILE* f, uint64_t size) : f_(f), left_(size) {}
  bool bytes(void* p, size_t n) {
    if (n > left_) return false;
    if (n && std::fread(p, 1, n, f_) != n) return false;
    hash_.update(p, n);
    left_ -= n;
    return true;
  }
  template <typename T>
  bool pod(T& v) {
    return bytes(&v, sizeof v);
  }
  template <typename T>
  bool vec(std::vector<T>& v) {
    uint64_t n;
    if (!pod(n) || n > left_ / sizeof(T)) return false;
    v.resize(n);
    return bytes(v.data(), n * sizeof(T));
  }
  bool str(std::string& s) {
    uint32_t n;
    if (!pod(n) || n > left_) return false;
    s.resize(n);
    return bytes(s.data(), n);
  }
  uint64_t left() const { return left_; }
  std::string digest() { return hash_.hex(); }

 private:
  std::FILE* f_;
  uint64_t left_;
  Sha256 hash_;
};

void write_ids(Writer& w, const IdMap& m) {
  w.pod(static_cast<uint64_t>(m.size()));
  for (const auto& s : m.ids()) w.str(s);
}

bool read_ids(Reader& r, IdMap& m) {
  uint64_t n;
  // Each id takes at least 5 bytes: its 4-byte length and one byte (ids are never empty).
  if (!r.pod(n) || n > r.left() / 5) return false;
  std::vector<std::string> ids;
  ids.reserve(n);
  for (uint64_t k = 0; k < n; ++k)
    if (!r.str(ids.emplace_back())) return false;
  m = IdMap(std::move(ids));
  return true;
}

// The report's counters in their on-disk order: the one list both read and write use.
std::array<int64_t*, 16> report_counts(LoadReport& r) {
  return {&r.lines,
          &r.skipped_lines,
          &r.raw_interactions,
          &r.duplicates_combined,
          &r.below_min_weight,
          &r.filtered_interactions,
          &r.filtered_users,
          &r.filtered_items,
          &r.test_unknown_user_interactions,
          &r.test_unknown_item_interactions,
          &r.opt_out_users,
          &r.opt_out_interactions,
          &r.forgotten_users,
          &r.forgotten_interactions,
          &r.retention_max_age_days,
          &r.retention_dropped};
}

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; }

// Why the id map is not one the loader produces (sorted, unique, canonical), or nullptr.
const char* check_ids(const IdMap& m, bool string_ids) {
  const auto& ids = m.ids();
  int64_t prev = 0;
  for (size_t k = 0; k < ids.size(); ++k) {
    const std::string& s = ids[k];
    if (s.empty()) return "an empty id";
    if (string_ids) {
      if (std::any_of(s.begin(), s.end(), is_control) || s.front() == ' ' || s.back() == ' ')
        return "an id the parser would not produce";
      if (k > 0 && !(ids[k - 1] < s)) return "ids not sorted and unique";
    } else {
      int64_t v;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size() || std::to_string(v) != s)
        return "an integer id that is not canonical";
      if (k > 0 && v <= prev) return "ids not sorted and unique";
      prev = v;
    }
  }
  return nullptr;
}

// Why the parts are not what `load` produces with options `o`, or nullptr: indices in range,
// pairs sorted and unique (combined), weights as parsed and filtered, timestamps as configured,
// the per-user/item minimums holding on the first part.
const char* check_parts(const Loaded& d, const LoadOptions& o) {
  const int64_t nu = d.users.size(), ni = d.items.size();
  for (size_t k = 0; k < d.parts.size(); ++k) {
    const Interactions& p = d.parts[k];
    if (p.has_times() && !o.time_col) return "timestamps without data.time_col";
    if (!p.has_times() && o.time_col && p.size() > 0) return "no timestamps with data.time_col";
    for (offset_t j = 0; j < p.size(); ++j) {
      const index_t u = p.users[j], i = p.items[j];
      if (u < 0 || u >= nu || i < 0 || i >= ni) return "index out of range";
      if (j > 0 && !(p.users[j - 1] < u || (p.users[j - 1] == u && p.items[j - 1] < i)))
        return "interactions not sorted and combined";
      const float w = p.weights[j];
      if (!std::isfinite(w) || w < 0) return "a weight that is not finite and >= 0";
      if (o.min_weight > 0 && w < o.min_weight) return "a weight below data.min_weight";
      if (!o.weight_col &&
          (o.duplicates == Duplicates::kSum ? (w < 1 || w != std::floor(w)) : w != 1))
        return "a weight other than a count without data.weight_col";
    }
  }
  const Interactions& train = d.parts.front();
  if (train.size() == 0) return "no training interactions";
  std::vector<int64_t> cu(static_cast<size_t>(nu), 0), ci(static_cast<size_t>(ni), 0);
  for (offset_t j = 0; j < train.size(); ++j) ++cu[train.users[j]], ++ci[train.items[j]];
  for (int64_t c : cu)
    if (c < o.min_user_interactions) return "a user below data.min_user_interactions";
  for (int64_t c : ci)
    if (c < o.min_item_interactions) return "an item below data.min_item_interactions";
  return nullptr;
}

const char* check_report(LoadReport& r) {
  for (const int64_t* v : report_counts(r))
    if (*v < 0) return "a negative count in the load report";
  if (r.filter_rounds < 1 || !std::isfinite(r.parse_seconds) || r.parse_seconds < 0 ||
      !std::isfinite(r.lines_per_second) || r.lines_per_second < 0)
    return "a bad value in the load report";
  if (static_cast<int64_t>(r.opt_out_matched.size()) != r.opt_out_users ||
      static_cast<int64_t>(r.forgotten_matched.size()) != r.forgotten_users ||
      (!r.exclusion_applied && r.opt_out_users + r.forgotten_users > 0))
    return "excluded users that do not match their counts";
  for (const auto* list : {&r.opt_out_matched, &r.forgotten_matched})
    for (size_t k = 0; k < list->size(); ++k)
      if (!is_hex64((*list)[k]) || (k > 0 && !((*list)[k - 1] < (*list)[k])))
        return "an excluded user's hash that is not sorted hex";
  return nullptr;
}

// A cache file of this version opened and read up to the end of its source digests (the user
// ids follow), or nullopt when it is not one or is too short to tell.
struct CacheHead {
  File f;                            // positioned after the source digests
  uint64_t bytes = 0;                // the file's size
  std::vector<std::string> sources;  // the source digests
};

std::optional<CacheHead> open_cache_head(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return std::nullopt;
  }
  File f(::fdopen(fd, "rb"));
  if (!f) {
    ::close(fd);
    return std::nullopt;
  }
  char magic[8];
  int32_t version;
  uint64_t payload;
  uint32_t n;
  if (std::fread(magic, 1, 8, f.get()) != 8 || std::memcmp(magic, kMagic, 8) != 0 ||
      std::fread(&version, sizeof version, 1, f.get()) != 1 || version != kCacheVersion ||
      std::fread(&payload, sizeof payload, 1, f.get()) != 1 ||
      std::fread(&n, sizeof n, 1, f.get()) != 1 || n > kMaxParts)
    return std::nullopt;
  std::vector<std::string> out(n, std::string(kDigestBytes, '\0'));
  for (auto& h : out)
    if (std::fread(h.data(), 1, kDigestBytes, f.get()) != kDigestBytes || !is_hex64(h))
      return std::nullopt;
  return CacheHead{std::move(f), static_cast<uint64_t>(st.st_size), std::move(out)};
}

// The source digests at the start of a cache file (`sources_at`), read without the payload:
// nullopt when the file is not a cache file of this version or is too short to tell.
std::optional<std::vector<std::string>> read_sources(const std::string& path) {
  std::optional<CacheHead> head = open_cache_head(path);
  if (!head) return std::nullopt;
  return std::move(head->sources);
}

// The version of a file that starts with the cache magic, or 0.
int32_t cache_file_version(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return 0;
  char head[12];
  const ssize_t n = ::read(fd, head, sizeof head);
  ::close(fd);
  if (n != 12 || std::memcmp(head, kMagic, 8) != 0) return 0;
  int32_t v;
  std::memcpy(&v, head + 8, 4);
  return v;
}

// This host's name as used in temporary file names: [A-Za-z0-9.-], others replaced by '_'.
std::string host_tag() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h(buf);
  for (char& c : h)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return h;
}

// The pid in `name` when it is a temporary cache file written on this host
// (`<64 lowercase hex>.rfcache.tmp.<host>.<pid>`), else 0.
pid_t temp_file_pid(const std::string& name, const std::string& host) {
  const size_t tag = std::strlen(kTempTag);
  if (name.size() < 64 + tag || name.compare(64, tag, kTempTag) != 0) return 0;
  if (!std::all_of(name.begin(), name.begin() + 64,
                   [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    return 0;
  const std::string rest = name.substr(64 + tag);  // <host>.<pid>
  const size_t dot = rest.rfind('.');
  if (dot == std::string::npos || rest.compare(0, dot, host) != 0 || dot != host.size()) return 0;
  const std::string digits = rest.substr(dot + 1);
  if (digits.empty() || digits.size() > 10 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return 0;
  const long long pid = std::stoll(digits);
  return pid > 0 && pid <= INT_MAX ? static_cast<pid_t>(pid) : 0;
}

// fsyncs a directory so a rename inside it survives a crash; false on failure (the cache is
// an optimisation: a failure is a warning, not an error).
bool sync_directory(const std::string& dir) {
  try {
    sync_path(dir, /*directory=*/true);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::string parent_dir(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::string cache_temp_path(const std::string& path, int64_t pid) {
  return fmt::format("{}.tmp.{}.{}", path, host_tag(), pid);
}

int sweep_stale_cache_temps(const std::string& dir) {
  const std::string host = host_tag();
  int removed = 0;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const pid_t pid = temp_file_pid(name, host);
    if (pid == 0) continue;
    std::error_code sec;
    if (!it->is_regular_file(sec) || it->is_symlink(sec)) continue;
    // Only a pid that does not exist: EPERM means alive (another user's process).
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (fs::remove(it->path(), sec)) {
      ++removed;
      log().info("removed {}, a temporary cache file left by process {} that no longer runs",
                 it->path().string(), pid);
    }
  }
  return removed;
}

std::optional<Loaded> read_cache(const std::string& path, const LoadOptions& o, size_t n_parts) {
  sweep_stale_cache_temps(parent_dir(path));
  auto damaged = [&](const char* why) -> std::optional<Loaded> {
    log().warn("cache file {} is unusable ({}); re-parsing the source", path, why);
    return std::nullopt;
  };
  // O_NONBLOCK: a FIFO in the cache directory must not block the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return damaged(std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return damaged("not a regular file");
  }
  File f(::fdopen(fd, "rb"));
  if (!f) {
    ::close(fd);
    return damaged("cannot read it");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  char magic[8];
  int32_t version;
  uint64_t payload;
  if (size < kHeaderBytes + kTrailerBytes || std::fread(magic, 1, 8, f.get()) != 8 ||
      std::memcmp(magic, kMagic, 8) != 0)
    return damaged("bad magic");
  if (std::fread(&version, sizeof version, 1, f.get()) != 1 || version != kCacheVersion)
    return damaged("other version");
  if (std::fread(&payload, sizeof payload, 1, f.get()) != 1 ||
      payload != size - kHeaderBytes - kTrailerBytes)
    return damaged("payload size does not match the file size");

  Reader r(f.get(), payload);
  Loaded d;
  uint32_t n_sources;
  if (!r.pod(n_sources) || n_sources > kMaxParts) return damaged("bad source count");
  for (uint32_t k = 0; k < n_sources; ++k) {
    std::string h(kDigestBytes, '\0');
    if (!r.bytes(h.data(), kDigestBytes) || !is_hex64(h)) return damaged("bad source digest");
  }
  if (!read_ids(r, d.users) || !read_ids(r, d.items)) return damaged("truncated id maps");
  uint64_t parts;
  if (!r.pod(parts) || parts < 1 || parts > kMaxParts || (n_parts && parts != n_parts) ||
      (n_sources != 0 && n_sources != parts))
    return damaged("bad part count");
  d.parts.resize(parts);
  for (auto& p : d.parts) {
    uint8_t has_times;
    if (!r.pod(has_times) || has_times > 1 || !r.vec(p.users) || !r.vec(p.items) ||
        !r.vec(p.weights))
      return damaged("truncated interactions");
    if (has_times && !r.vec(p.times)) return damaged("truncated timestamps");
    if (has_times || o.time_col) p.enable_times();
    if (p.items.size() != p.users.size() || p.weights.size() != p.users.size() ||
        (has_times && p.times.size() != p.users.size()))
      return damaged("inconsistent sizes");
  }
  int32_t rounds = 0;
  for (int64_t* v : report_counts(d.report))
    if (!r.pod(*v)) return damaged("truncated report");
  if (!r.pod(rounds) || !r.pod(d.report.parse_seconds) || !r.pod(d.report.lines_per_second) ||
      !r.pod(d.report.retention_reference) || !r.pod(d.report.retention_cutoff))
    return damaged("truncated report");
  d.report.filter_rounds = rounds;
  uint8_t applied;
  if (!r.pod(applied) || applied > 1) return damaged("truncated report");
  d.report.exclusion_applied = applied != 0;
  for (auto* list : {&d.report.opt_out_matched, &d.report.forgotten_matched}) {
    uint64_t n;
    // Each entry takes at least 5 bytes: its 4-byte length and one byte.
    if (!r.pod(n) || n > r.left() / 5) return damaged("truncated excluded users");
    list->resize(n);
    for (auto& h : *list)
      if (!r.str(h)) return damaged("truncated excluded users");
  }
  if (r.left() != 0) return damaged("bytes after the report");
  char stored[kDigestBytes];
  uint64_t trailer;
  if (std::fread(stored, 1, kDigestBytes, f.get()) != kDigestBytes ||
      std::fread(&trailer, sizeof trailer, 1, f.get()) != 1 || trailer != kTrailer)
    return damaged("missing trailer");
  if (r.digest() != std::string_view(stored, kDigestBytes)) return damaged("checksum mismatch");
  // The checksum catches damage; these catch a well-formed file with values the loader would
  // not produce (another writer, a bug), before they reach training.
  if (const char* why = check_ids(d.users, o.string_ids)) return damaged(why);
  if (const char* why = check_ids(d.items, o.string_ids)) return damaged(why);
  if (const char* why = check_parts(d, o)) return damaged(why);
  if (const char* why = check_report(d.report)) return damaged(why);
  return d;
}

void write_cache(const std::string& path, const Loaded& d, const std::vector<std::string>& sources) {
  RF_ASSERT(sources.size() <= kMaxParts && (sources.empty() || sources.size() == d.parts.size()),
            "write_cache: one source digest per part");
  for (const auto& h : sources) RF_ASSERT(is_hex64(h), "write_cache: a source digest is not hex");
  std::error_code ec;
  const std::string dir = parent_dir(path);
  recforge::create_directories(dir, ec);  // privacy.file_mode for what it creates
  sweep_stale_cache_temps(dir);
  const std::string tmp = cache_temp_path(path, getpid());
  add_interrupt_cleanup(tmp, /*recursive=*/false);  // INT / TERM while writing: no debris
  bool ok = false;
  {
    File f(create_file_stream(tmp));
    if (f) {
      uint64_t payload = 0;  // rewritten once known
      bool head = std::fwrite(kMagic, 1, 8, f.get()) == 8;
      const int32_t version = kCacheVersion;
      head = head && std::fwrite(&version, sizeof version, 1, f.get()) == 1;
      head = head && std::fwrite(&payload, sizeof payload, 1, f.get()) == 1;
      Writer w(f.get());
      // The source digests first, flushed at once, so that purge_cache_for_sources can tell
      // what this file is made from while it is being written.
      w.pod(static_cast<uint32_t>(sources.size()));
      for (const auto& h : sources) w.bytes(h.data(), h.size());
      head = head && std::fflush(f.get()) == 0;
      write_ids(w, d.users);
      write_ids(w, d.items);
      w.pod(static_cast<uint64_t>(d.parts.size()));
      for (const auto& p : d.parts) {
        w.pod(static_cast<uint8_t>(p.has_times()));
        w.vec(p.users);
        w.vec(p.items);
        w.vec(p.weights);
        if (p.has_times()) w.vec(p.times);
      }
      LoadReport rep = d.report;
      for (const int64_t* v : report_counts(rep)) w.pod(*v);
      w.pod(static_cast<int32_t>(rep.filter_rounds));
      w.pod(rep.parse_seconds);
      w.pod(rep.lines_per_second);
      w.pod(rep.retention_reference);
      w.pod(rep.retention_cutoff);
      w.pod(static_cast<uint8_t>(rep.exclusion_applied));
      for (const auto* list : {&rep.opt_out_matched, &rep.forgotten_matched}) {
        w.pod(static_cast<uint64_t>(list->size()));
        for (const auto& h : *list) w.str(h);
      }
      payload = w.size();
      const std::string digest = w.digest();
      ok = head && w.ok() &&
           std::fwrite(digest.data(), 1, digest.size(), f.get()) == kDigestBytes &&
           std::fwrite(&kTrailer, sizeof kTrailer, 1, f.get()) == 1 &&
           std::fseek(f.get(), 8 + 4, SEEK_SET) == 0 &&
           std::fwrite(&payload, sizeof payload, 1, f.get()) == 1;
      // The data must be on disk before the rename makes the file visible under its final name.
      ok = ok && std::fflush(f.get()) == 0 && ::fsync(fileno(f.get())) == 0;
      ok = (std::fclose(f.release()) == 0) && ok;
    }
  }
  if (ok) without_interrupt_cleanup([&] { fs::rename(tmp, path, ec); });
  remove_interrupt_cleanup(tmp);
  if (!ok || ec) {
    fs::remove(tmp, ec);
    log().warn("could not write the data cache {} (continuing without it)", path);
    return;
  }
  if (!sync_directory(dir))
    log().warn("could not fsync the cache directory {} after writing {}", dir, path);
}

}  // namespace recforge::data

namespace recforge::data {

namespace {
// Whether the cache file at `path` (this layout) lists a user id that `holds` accepts: reads
// the header, the source digests and the user ids, nothing after them.
bool entry_holds_user(const std::string& path, const std::function<bool(const std::string&)>& holds) {
  const std::optional<CacheHead> head = open_cache_head(path);
  if (!head) return false;
  std::FILE* f = head->f.get();
  uint64_t n_users;  // as write_ids writes them: a count, then each id's length and bytes
  if (std::fread(&n_users, sizeof n_users, 1, f) != 1 || n_users > head->bytes / 5) return false;
  std::string id;
  for (uint64_t k = 0; k < n_users; ++k) {
    uint32_t len;
    if (std::fread(&len, sizeof len, 1, f) != 1 || len > head->bytes) return false;
    id.resize(len);
    if (len > 0 && std::fread(id.data(), 1, len, f) != len) return false;
    if (holds(id)) return true;
  }
  return false;
}

// Whether `p` is the last name of its file: an entry linked under a second key (data::load, for
// an exclusion listing ids the data lacks) is one entry, counted once when removed.
bool last_link(const fs::path& p) {
  std::error_code ec;
  const uintmax_t n = fs::hard_link_count(p, ec);
  return ec || n <= 1;
}

}  // namespace

int purge_cache_holding_users(const std::string& dir,
                              const std::function<bool(const std::string&)>& holds) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code sec;
    if (name.size() == 64 + std::strlen(".rfcache") && is_hex64(std::string_view(name).substr(0, 64)) &&
        name.compare(64, std::string::npos, ".rfcache") == 0 && !it->is_symlink(sec) &&
        it->is_regular_file(sec))
      entries.push_back(it->path());
  }
  int removed = 0;
  for (const fs::path& p : entries) {
    if (!entry_holds_user(p.string(), holds)) continue;
    const bool last_name = last_link(p);
    std::error_code rec;
    if (!fs::remove(p, rec))
      fail("{}: cannot remove the data cache file that holds a forgotten user: {}", p.string(),
           rec.message());
    removed += last_name;
  }
  if (removed > 0) sync_directory(dir);
  return removed;
}

int purge_cache_for_sources(const std::string& dir, const std::vector<std::string>& hashes,
                            int* unattributed) {
  if (unattributed) *unattributed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  sweep_stale_cache_temps(dir);  // dead writers' temporaries, whatever they were made from
  auto hex64 = [](const std::string& name) {
    return name.size() >= 64 && is_hex64(std::string_view(name).substr(0, 64));
  };
  std::vector<fs::path> entries, temps;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code sec;
    if (!hex64(name) || it->is_symlink(sec) || !it->is_regular_file(sec)) continue;
    if (name.size() == 64 + std::strlen(".rfcache") && name.compare(64, std::string::npos, ".rfcache") == 0)
      entries.push_back(it->path());
    else if (name.compare(64, std::strlen(kTempTag), kTempTag) == 0)
      temps.push_back(it->path());
  }
  auto made_from = [&](const fs::path& p) {
    const auto sources = read_sources(p.string());
    if (!sources) return false;
    for (const auto& h : *sources)
      if (std::find(hashes.begin(), hashes.end(), h) != hashes.end()) return true;
    return false;
  };
  int removed = 0;
  std::vector<std::string> removed_keys;
  for (const fs::path& p : entries) {
    if (made_from(p)) {
      const bool last_name = last_link(p);
      std::error_code rec;
      if (fs::remove(p, rec)) {
        removed += last_name;
        removed_keys.push_back(p.filename().string().substr(0, 64));
      } else {
        fail("{}: cannot remove the data cache file made from the forgotten data: {}",
             p.string(), rec.message());
      }
    } else if (unattributed) {
      const int32_t v = cache_file_version(p.string());
      if (v != 0 && v != kCacheVersion) ++*unattributed;  // an earlier layout: no sources
    }
  }
  for (const fs::path& p : temps) {
    const std::string key = p.filename().string().substr(0, 64);
    const bool of_removed =
        std::find(removed_keys.begin(), removed_keys.end(), key) != removed_keys.end();
    if (!of_removed && !made_from(p)) continue;
    std::error_code rec;
    if (fs::remove(p, rec)) ++removed;
  }
  if (removed > 0) sync_directory(dir);
  return removed;
}

}  // namespace recforge::data
