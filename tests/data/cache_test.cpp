#include "data/cache.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <new>

#include "core/hash.h"
#include "test_util.h"

// The largest single operator-new request while g_track_allocations is set, to check that a
// damaged count does not make the reader allocate more than the file holds.
static std::atomic<bool> g_track_allocations{false};
static std::atomic<size_t> g_largest_allocation{0};

// Replacements of the global operator new/delete (malloc/free underneath, as the defaults).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    size_t prev = g_largest_allocation.load(std::memory_order_relaxed);
    while (n > prev && !g_largest_allocation.compare_exchange_weak(prev, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
// The nothrow forms too, so that every new and delete of this binary pairs malloc with free
// (a sanitizer's own nothrow new would not pair with the delete above).
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

// Every fsync while g_record_fsyncs is set: the path of the descriptor and whether a finished
// cache file existed in g_cache_dir at that moment (to tell "before the rename" from "after").
static std::atomic<bool> g_record_fsyncs{false};
static std::mutex g_fsync_mutex;
static std::vector<std::pair<std::string, bool>> g_fsyncs;
static std::string g_cache_dir;

extern "C" int fsync(int fd) {
  if (g_record_fsyncs.load()) {
    char buf[4096];
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = readlink(link.c_str(), buf, sizeof buf);
    bool finished = false;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(g_cache_dir, ec), end; !ec && it != end;
         it.increment(ec))
      finished = finished || it->path().extension() == ".rfcache";
    std::lock_guard<std::mutex> lock(g_fsync_mutex);
    g_fsyncs.emplace_back(n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string(),
                          finished);
  }
  return static_cast<int>(syscall(SYS_fsync, fd));
}

namespace recforge::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

std::vector<fs::path> cache_files(const std::string& dir) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".rfcache") out.push_back(e.path());
  return out;
}

TEST(Cache, ReusedWhenUnchangedRebuiltWhenFileOrOptionsChange) {
  TempDir t;
  const std::string cache = t.file("cache");
  const auto p = write_file(t.file("r.csv"), "1,10,2,100\n2,10,1,200\n2,11,4,300\n");
  LoadOptions o;
  o.cache_dir = cache;
  o.weight_col = "2";
  o.time_col = "3";
  const Loaded first = load({p}, o);
  EXPECT_FALSE(first.report.from_cache);
  ASSERT_EQ(cache_files(cache).size(), 1u);

  const Loaded second = load({p}, o);
  EXPECT_TRUE(second.report.from_cache);
  EXPECT_EQ(second.users.ids(), first.users.ids());
  EXPECT_EQ(second.items.ids(), first.items.ids());
  EXPECT_EQ(second.parts[0].weights, first.parts[0].weights);
  EXPECT_EQ(second.parts[0].times, first.parts[0].times);
  EXPECT_EQ(second.report.lines, 3);

  o.duplicates = Duplicates::kMax;  // another option → another key
  EXPECT_FALSE(load({p}, o).report.from_cache);
  EXPECT_EQ(cache_files(cache).size(), 2u);

  write_file(p, "1,10,2,100\n2,10,1,200\n2,11,9,300\n");  // same size, new content
  const Loaded changed = load({p}, o);
  EXPECT_FALSE(changed.report.from_cache);
  EXPECT_FLOAT_EQ(changed.parts[0].weights.back(), 9.f);
}

TEST(Cache, DamagedCacheFileIsRebuilt) {
  TempDir t;
  const std::string cache = t.file("cache");
  const auto p = write_file(t.file("r.txt"), "0 1 2\n1 2\n");
  LoadOptions o;
  o.format = Format::kAdjacency;
  o.cache_dir = cache;
  load({p}, o);
  const auto file = cache_files(cache).at(0);
  // Truncate the cache file: it must be detected and the source re-parsed.
  fs::resize_file(file, fs::file_size(file) - 9);
  EXPECT_FALSE(read_cache(file.string(), o, 1).has_value());
  const Loaded d = load({p}, o);
  EXPECT_FALSE(d.report.from_cache);
  EXPECT_EQ(d.parts[0].size(), 3);
  EXPECT_TRUE(load({p}, o).report.from_cache);  // rewritten whole
}

// A cache built from a given-split pair with string ids, weights and timestamps, so that every
// field of the layout occurs; `cid` is only in the test file (dropped, and counted).
struct Built {
  TempDir t;
  LoadOptions o;
  std::vector<std::string> paths;
  Loaded first;
  std::string file, bytes;
  Built() {
    o.cache_dir = t.file("cache");
    o.string_ids = true;
    o.weight_col = "2";
    o.time_col = "3";
    paths = {write_file(t.file("train.csv"),
                        "ann,x,2,100\nann,y,1.5,200\nbob,x,3,300\nbob,z,1,50\nbob,x,1,60\n"),
             write_file(t.file("test.csv"), "ann,z,1,400\ncid,x,1,500\n")};
    first = load(paths, o);
    file = cache_files(o.cache_dir).at(0).string();
    bytes = test::read_file(file);
  }
  void put(const std::string& b) const { std::ofstream(file, std::ios::binary) << b; }
};

void expect_same(const Loaded& a, const Loaded& b) {
  EXPECT_EQ(a.users.ids(), b.users.ids());
  EXPECT_EQ(a.items.ids(), b.items.ids());
  ASSERT_EQ(a.parts.size(), b.parts.size());
  for (size_t k = 0; k < a.parts.size(); ++k) {
    EXPECT_EQ(a.parts[k].users, b.parts[k].users);
    EXPECT_EQ(a.parts[k].items, b.parts[k].items);
    EXPECT_EQ(a.parts[k].weights, b.parts[k].weights);
    EXPECT_EQ(a.parts[k].times, b.parts[k].times);
  }
  EXPECT_EQ(a.report.lines, b.report.lines);
  EXPECT_EQ(a.report.duplicates_combined, b.report.duplicates_combined);
  EXPECT_EQ(a.report.filtered_users, b.report.filtered_users);
  EXPECT_EQ(a.report.test_unknown_user_interactions, b.report.test_unknown_user_interactions);
}

// The documented layout, walked: name, offset and width of every field (for ids and arrays,
// their count and first element).
struct Field {
  std::string name;
  size_t at, width;
};
std::vector<Field> layout(const std::string& b) {
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
  };
  std::vector<Field> out{{"magic", 0, 8}, {"version", 8, 4}, {"payload size", 12, 8}};
  size_t p = 20;
  uint32_t sources;
  std::memcpy(&sources, b.data() + p, 4);
  out.push_back({"source count", p, 4});
  p += 4;
  for (uint32_t k = 0; k < sources; ++k) out.push_back({"source " + std::to_string(k), p + 64 * k, 64});
  p += 64 * sources;
  for (const char* map : {"user", "item"}) {
    const uint64_t n = u64(p);
    out.push_back({std::string(map) + " id count", p, 8});
    p += 8;
    for (uint64_t k = 0; k < n; ++k) {
      uint32_t len;
      std::memcpy(&len, b.data() + p, 4);
      if (k == 0) {
        out.push_back({std::string(map) + " id length", p, 4});
        out.push_back({std::string(map) + " id byte", p + 4, 1});
      }
      p += 4 + len;
    }
  }
  const uint64_t parts = u64(p);
  out.push_back({"part count", p, 8});
  p += 8;
  for (uint64_t k = 0; k < parts; ++k) {
    const std::string part = "part " + std::to_string(k) + " ";
    const bool times = b[p] != 0;
    out.push_back({part + "has_times", p, 1});
    p += 1;
    const std::vector<std::pair<std::string, size_t>> arrays = {
        {"users", 4}, {"items", 4}, {"weights", 4}, {"times", 8}};
    for (size_t a = 0; a < (times ? 4u : 3u); ++a) {
      const uint64_t n = u64(p);
      out.push_back({part + arrays[a].first + " count", p, 8});
      if (n > 0) out.push_back({part + arrays[a].first + "[0]", p + 8, arrays[a].second});
      p += 8 + n * arrays[a].second;
    }
  }
  for (int k = 0; k < 16; ++k) out.push_back({"report count " + std::to_string(k), p + 8 * k, 8});
  p += 128;
  out.push_back({"report rounds", p, 4});
  out.push_back({"report seconds", p + 4, 8});
  out.push_back({"report rate", p + 12, 8});
  out.push_back({"retention reference", p + 20, 8});
  out.push_back({"retention cutoff", p + 28, 8});
  out.push_back({"report exclusion applied", p + 36, 1});
  p += 37;
  for (const char* list : {"opt-out matched", "forgotten matched"}) {
    const uint64_t n = u64(p);
    out.push_back({std::string(list) + " count", p, 8});
    p += 8;
    for (uint64_t k = 0; k < n; ++k) {
      uint32_t len;
      std::memcpy(&len, b.data() + p, 4);
      p += 4 + len;
    }
  }
  out.push_back({"digest", p, 64});
  out.push_back({"trailer", p + 64, 8});
  EXPECT_EQ(p + 72, b.size()) << "the walk does not match the file";
  return out;
}

const Field& field(const std::vector<Field>& fs, const std::string& name) {
  for (const auto& f : fs)
    if (f.name == name) return f;
  throw std::runtime_error("no field " + name);
}

// Recomputes the payload checksum, so that a changed value reaches the value checks.
std::string resealed(std::string b) {
  Sha256 h;
  h.update(b.data() + 20, b.size() - 20 - 72);
  const std::string hex = h.hex();
  std::memcpy(&b[b.size() - 72], hex.data(), 64);
  return b;
}

TEST(Cache, EveryDamagedFieldIsDetectedAndRebuiltToTheSameDataset) {
  Built c;
  EXPECT_EQ(c.first.report.test_unknown_user_interactions, 1);
  const Loaded cached = load(c.paths, c.o);
  ASSERT_TRUE(cached.report.from_cache);
  expect_same(cached, c.first);
  const auto fields = layout(c.bytes);
  ASSERT_GE(fields.size(), 40u);
  for (const Field& f : fields) {
    // Flip the lowest bit of the first byte and the highest bit of the last byte.
    for (const auto& [at, mask] :
         {std::pair<size_t, int>{f.at, 0x01}, {f.at + f.width - 1, 0x80}}) {
      SCOPED_TRACE(f.name + " at byte " + std::to_string(at));
      std::string b = c.bytes;
      b[at] = static_cast<char>(b[at] ^ mask);
      c.put(b);
      EXPECT_FALSE(read_cache(c.file, c.o, 2).has_value());
      const Loaded d = load(c.paths, c.o);
      EXPECT_FALSE(d.report.from_cache);
      expect_same(d, c.first);
      EXPECT_TRUE(read_cache(c.file, c.o, 2).has_value()) << "not rewritten whole";
    }
  }
  // Truncated at every field boundary, and one byte too many.
  for (const Field& f : fields) {
    c.put(c.bytes.substr(0, f.at));
    EXPECT_FALSE(read_cache(c.file, c.o, 2).has_value()) << f.name;
  }
  c.put(c.bytes + "x");
  EXPECT_FALSE(read_cache(c.file, c.o, 2).has_value());
  c.put(c.bytes);
  EXPECT_TRUE(read_cache(c.file, c.o, 2).has_value());
  EXPECT_FALSE(read_cache(c.file, c.o, 1).has_value()) << "read for a load of one file";
}

TEST(Cache, ValuesTheParserWouldRejectAreRebuiltEvenWithAMatchingChecksum) {
  Built c;
  const auto fields = layout(c.bytes);
  auto set_f32 = [](std::string& b, size_t at, float v) { std::memcpy(&b[at], &v, 4); };
  auto set_i32 = [](std::string& b, size_t at, int32_t v) { std::memcpy(&b[at], &v, 4); };
  const size_t w0 = field(fields, "part 0 weights[0]").at;
  const size_t i0 = field(fields, "part 0 items[0]").at;
  const size_t u0 = field(fields, "part 0 users[0]").at;
  const size_t id0 = field(fields, "item id byte").at;  // "x", the first of x < y < z
  std::vector<std::pair<std::string, std::string>> cases;
  std::string b = c.bytes;
  set_f32(b, w0, std::numeric_limits<float>::quiet_NaN());
  cases.emplace_back("NaN weight", b);
  b = c.bytes;
  set_f32(b, w0, -1.f);
  cases.emplace_back("negative weight", b);
  b = c.bytes;
  set_f32(b, w0, std::numeric_limits<float>::infinity());
  cases.emplace_back("infinite weight", b);
  b = c.bytes;
  set_i32(b, i0, 3);  // 3 items
  cases.emplace_back("item index out of range", b);
  b = c.bytes;
  set_i32(b, u0, -1);
  cases.emplace_back("negative user index", b);
  b = c.bytes;
  b[id0] = 'y';  // items "y", "y", "z": item 0 remapped onto another id
  cases.emplace_back("repeated item id", b);
  b = c.bytes;
  b[id0] = '~';  // items "~", "y", "z": no longer in the loader's order
  cases.emplace_back("unsorted item ids", b);
  b = c.bytes;
  b[id0] = '\r';
  cases.emplace_back("control character in an id", b);
  b = c.bytes;
  set_i32(b, i0 + 4, 0);  // ann's second item y → x: the pair (ann, x) twice
  cases.emplace_back("repeated (user, item) pair", b);
  b = c.bytes;
  std::memset(&b[field(fields, "report count 0").at], 0xFF, 8);  // lines = -1
  cases.emplace_back("negative report count", b);
  for (const auto& [what, bytes] : cases) {
    SCOPED_TRACE(what);
    c.put(resealed(bytes));
    EXPECT_FALSE(read_cache(c.file, c.o, 2).has_value());
    const Loaded d = load(c.paths, c.o);
    EXPECT_FALSE(d.report.from_cache);
    expect_same(d, c.first);
  }
  // The unchanged file, resealed, is still read: the checks refuse only what they should.
  c.put(resealed(c.bytes));
  EXPECT_TRUE(read_cache(c.file, c.o, 2).has_value());
  // ... but not for other options: the weights are not counts without a weight column.
  LoadOptions other = c.o;
  other.weight_col.reset();
  EXPECT_FALSE(read_cache(c.file, other, 2).has_value());
}

TEST(Cache, HugeCountsAllocateNoMoreThanTheFileHolds) {
  Built c;
  const auto fields = layout(c.bytes);
  // The most any read may hold per byte of file: one std::string per byte (ids take >= 5).
  const size_t bound = c.bytes.size() * sizeof(std::string);
  g_largest_allocation = 0;
  g_track_allocations = true;
  const bool ok = read_cache(c.file, c.o, 2).has_value();
  g_track_allocations = false;
  ASSERT_TRUE(ok);
  ASSERT_GT(g_largest_allocation.load(), 0u) << "allocations are not tracked";
  for (const Field& f : fields) {
    const bool count =
        f.name.find("count") != std::string::npos || f.name.find("length") != std::string::npos;
    if (!count || f.name.rfind("report", 0) == 0) continue;  // report counts allocate nothing
    const std::vector<uint64_t> huges =
        f.width == 8 ? std::vector<uint64_t>{uint64_t{1} << 62, (uint64_t{1} << 32) + 1, 1u << 20}
                     : std::vector<uint64_t>{0xFFFFFFFFu, 1u << 31, 1u << 20};
    for (uint64_t huge : huges) {
      SCOPED_TRACE(f.name + " = " + std::to_string(huge));
      std::string b = c.bytes;
      std::memcpy(&b[f.at], &huge, f.width);
      c.put(resealed(b));  // even with a matching checksum
      g_largest_allocation = 0;
      g_track_allocations = true;
      std::optional<Loaded> d;
      EXPECT_NO_THROW(d = read_cache(c.file, c.o, 2));
      g_track_allocations = false;
      EXPECT_FALSE(d.has_value());
      EXPECT_LE(g_largest_allocation.load(), bound);
    }
  }
}

// A pid that certainly ran on this host and has ended.
int64_t dead_pid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

TEST(Cache, TemporaryFilesOfDeadWritersAreSweptOthersKept) {
  TempDir t;
  LoadOptions o;
  o.cache_dir = t.file("cache");
  fs::create_directories(o.cache_dir);
  const std::string key = o.cache_dir + "/" + std::string(64, 'a') + ".rfcache";
  const int64_t dead = dead_pid();
  const std::string stale = write_file(cache_temp_path(key, dead), "partial");
  // Our parent process runs: its temporary file is being written.
  const std::string live = write_file(cache_temp_path(key, getppid()), "being written");
  std::string other_host = cache_temp_path(key, dead);
  other_host.insert(other_host.rfind('.'), "x");  // the same pid on another host
  write_file(other_host, "another host");
  const std::string foreign1 =
      write_file(o.cache_dir + "/notes.rfcache.tmp.x." + std::to_string(dead), "user");
  const std::string foreign2 =
      write_file(o.cache_dir + "/" + std::to_string(dead) + ".tmp", "user");
  const std::string as_dir =
      cache_temp_path(o.cache_dir + "/" + std::string(64, 'b') + ".rfcache", dead);
  fs::create_directories(as_dir);
  ASSERT_EQ(fs::path(stale).filename().string().rfind(std::string(64, 'a') + ".rfcache.tmp.", 0),
            0u);

  // Reading the cache sweeps (here a miss) ...
  EXPECT_FALSE(read_cache(key, o, 1).has_value());
  EXPECT_FALSE(fs::exists(stale));
  for (const auto& kept : {live, other_host, foreign1, foreign2, as_dir})
    EXPECT_TRUE(fs::exists(kept)) << kept;
  // ... and so does writing it ...
  const auto p = write_file(t.file("r.csv"), "1,2\n3,4\n");
  LoadOptions no_cache = o;
  no_cache.use_cache = false;
  const Loaded d = load({p}, no_cache);
  write_file(stale, "partial again");
  write_cache(key, d);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(read_cache(key, o, 1).has_value());
  // ... and so does a load.
  write_file(stale, "partial again");
  load({p}, o);
  EXPECT_FALSE(fs::exists(stale));
  for (const auto& kept : {live, other_host, foreign1, foreign2, as_dir})
    EXPECT_TRUE(fs::exists(kept)) << kept;
  EXPECT_EQ(sweep_stale_cache_temps(o.cache_dir), 0);
}

TEST(Cache, TemporaryFileIsSyncedBeforeTheRenameAndTheDirectoryAfter) {
  TempDir t;
  LoadOptions o;
  o.cache_dir = t.file("cache");
  const auto p = write_file(t.file("r.csv"), "1,2\n3,4\n");
  {
    std::lock_guard<std::mutex> lock(g_fsync_mutex);
    g_fsyncs.clear();
  }
  g_cache_dir = o.cache_dir;
  g_record_fsyncs = true;
  load({p}, o);
  g_record_fsyncs = false;
  const auto files = cache_files(o.cache_dir);
  ASSERT_EQ(files.size(), 1u);
  const std::string final_file = fs::canonical(files[0]).string();
  const std::string dir = fs::canonical(o.cache_dir).string();
  std::lock_guard<std::mutex> lock(g_fsync_mutex);
  bool temp_synced = false, dir_synced_after = false;
  for (const auto& [path, finished] : g_fsyncs) {
    if (path.rfind(final_file + ".tmp.", 0) == 0 && !finished) temp_synced = true;
    if (path == dir && finished) dir_synced_after = true;
  }
  EXPECT_TRUE(temp_synced) << "the temporary file was not fsync'ed under its temporary name";
  EXPECT_TRUE(dir_synced_after) << "the directory was not fsync'ed after the rename";
}

}  // namespace
}  // namespace recforge::data
