#include "data/cache.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <unordered_set>

#include "core/log.h"

namespace recforge::data {
namespace {

constexpr char kMagic[8] = {'R', 'F', 'C', 'A', 'C', 'H', 'E', '\0'};
constexpr uint64_t kTrailer = 0x454E4F4448434652ULL;  // "RFCHDONE"

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

class Writer {
 public:
  explicit Writer(std::FILE* f) : f_(f) {}
  void bytes(const void* p, size_t n) { ok_ = ok_ && (n == 0 || std::fwrite(p, 1, n, f_) == n); }
  template <typename T>
  void pod(const T& v) { bytes(&v, sizeof v); }
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

 private:
  std::FILE* f_;
  bool ok_ = true;
};

class Reader {
 public:
  Reader(std::FILE* f, uint64_t size) : f_(f), left_(size) {}
  bool bytes(void* p, size_t n) {
    if (n > left_) return false;
    if (n && std::fread(p, 1, n, f_) != n) return false;
    left_ -= n;
    return true;
  }
  template <typename T>
  bool pod(T& v) { return bytes(&v, sizeof v); }
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
  /// Bytes not read yet.
  uint64_t left() const { return left_; }

 private:
  std::FILE* f_;
  uint64_t left_;
};

void write_ids(Writer& w, const IdMap& m) {
  w.pod(static_cast<uint64_t>(m.size()));
  for (const auto& s : m.ids()) w.str(s);
}

/// Reads an id map; nullptr on success, else why the file is unusable. The count is checked
/// against the bytes left (each id takes at least its 4-byte length) before anything is
/// allocated, and the ids must be unique, as IdMap requires.
const char* read_ids(Reader& r, IdMap& m) {
  uint64_t n;
  if (!r.pod(n) || n > r.left() / sizeof(uint32_t)) return "truncated id maps";
  std::vector<std::string> ids(n);
  for (auto& s : ids)
    if (!r.str(s)) return "truncated id maps";
  std::unordered_set<std::string_view> unique;
  unique.reserve(ids.size());
  for (const auto& s : ids)
    if (!unique.insert(s).second) return "an id map lists an id twice";
  m = IdMap(std::move(ids));
  return nullptr;
}

// The report's counters in their on-disk order: the one list both read and write use.
std::array<int64_t*, 8> report_counts(LoadReport& r) {
  return {&r.lines,           &r.skipped_lines,         &r.raw_interactions, &r.duplicates_combined,
          &r.below_min_weight, &r.filtered_interactions, &r.filtered_users,   &r.filtered_items};
}

}  // namespace

std::optional<Loaded> read_cache(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return std::nullopt;
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return std::nullopt;
  Reader r(f.get(), size);
  auto damaged = [&](const char* why) -> std::optional<Loaded> {
    log().warn("cache file {} is unusable ({}); re-parsing the source", path, why);
    return std::nullopt;
  };
  char magic[8];
  int32_t version;
  if (!r.bytes(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return damaged("bad magic");
  if (!r.pod(version) || version != kCacheVersion) return damaged("other version");
  Loaded d;
  if (const char* why = read_ids(r, d.users)) return damaged(why);
  if (const char* why = read_ids(r, d.items)) return damaged(why);
  uint64_t parts;  // load() writes one per input file: at least the training file
  if (!r.pod(parts) || parts == 0 || parts > 16) return damaged("bad part count");
  d.parts.resize(parts);
  for (auto& p : d.parts) {
    uint8_t has_times;
    if (!r.pod(has_times) || !r.vec(p.users) || !r.vec(p.items) || !r.vec(p.weights))
      return damaged("truncated interactions");
    if (has_times) {
      p.enable_times();
      if (!r.vec(p.times)) return damaged("truncated timestamps");
    }
    if (p.items.size() != p.users.size() || p.weights.size() != p.users.size() ||
        (has_times && p.times.size() != p.users.size()))
      return damaged("inconsistent sizes");
    for (size_t k = 0; k < p.users.size(); ++k)
      if (p.users[k] < 0 || p.users[k] >= d.users.size() || p.items[k] < 0 ||
          p.items[k] >= d.items.size())
        return damaged("index out of range");
  }
  {
    int32_t rounds = 0;
    for (int64_t* v : report_counts(d.report))
      if (!r.pod(*v)) return damaged("truncated report");
    if (!r.pod(rounds) || !r.pod(d.report.parse_seconds) || !r.pod(d.report.lines_per_second))
      return damaged("truncated report");
    d.report.filter_rounds = rounds;
  }
  uint64_t trailer;
  if (!r.pod(trailer) || trailer != kTrailer) return damaged("missing trailer");
  return d;
}

void write_cache(const std::string& path, const Loaded& d) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  bool ok = false;
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (f) {
      Writer w(f.get());
      w.bytes(kMagic, 8);
      w.pod(static_cast<int32_t>(kCacheVersion));
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
      w.pod(kTrailer);
      ok = w.ok() && std::fflush(f.get()) == 0;
    }
  }
  if (ok) fs::rename(tmp, path, ec);
  if (!ok || ec) {
    fs::remove(tmp, ec);
    log().warn("could not write the data cache {} (continuing without it)", path);
  }
}

}  // namespace recforge::data
