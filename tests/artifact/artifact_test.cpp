// The export artifact: what it holds, how loading refuses damaged files, and that a writer
// killed at any moment leaves the previous export or the new one, never a mix.
#include "artifact/artifact.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "test_util.h"

namespace recforge::artifact {
namespace {

namespace fs = std::filesystem;
using data::index_t;

/// A small model's worth of export input, owning its data.
struct Fixture {
  Matrix users, items;
  data::IdMap user_ids, item_ids;
  data::Csr seen;
  ExportInput in;
  Fixture(int64_t nu = 40, int64_t ni = 30, int d = 6, uint64_t seed = 1) {
    Rng rng(seed);
    auto fill = [&](Matrix& m, int64_t n) {
      m.rows = n;
      m.cols = d;
      m.data.resize(static_cast<size_t>(n * d));
      for (float& v : m.data) v = static_cast<float>(rng.normal());
    };
    fill(users, nu);
    fill(items, ni);
    std::vector<std::string> u, i;
    for (int64_t r = 0; r < nu; ++r) u.push_back("user-" + std::to_string(r * 7));
    for (int64_t r = 0; r < ni; ++r) i.push_back("item " + std::to_string(r * 3));  // a space
    user_ids = data::IdMap(u);
    item_ids = data::IdMap(i);
    seen.rows = nu;
    seen.cols = ni;
    seen.indptr.push_back(0);
    for (int64_t r = 0; r < nu; ++r) {
      for (index_t c = 0; c < ni; ++c)
        if (rng.uniform() < 0.2) seen.indices.push_back(c);
      seen.indptr.push_back(static_cast<data::offset_t>(seen.indices.size()));
    }
    seen.data.assign(seen.indices.size(), 1.f);
    in.model_type = "ials";
    in.model_parameters = {{"factors", d}};
    in.users = &users;
    in.items = &items;
    in.user_ids = &user_ids;
    in.item_ids = &item_ids;
    in.seen = &seen;
    in.metrics = {{"test", {{"recall@10", 0.25}}}};
    in.config = {{"model", {{"factors", d}}}};
  }
};

/// The error message of load(dir), or "loaded".
std::string load_error(const std::string& dir) {
  try {
    load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "loaded";
}

nlohmann::json manifest_of(const std::string& dir) {
  return nlohmann::json::parse(test::read_file(dir + "/manifest.json"));
}

TEST(Artifact, WritesWhatStockReadersNeedAndLoadsBack) {
  test::TempDir t;
  Fixture f;
  const std::string dir = t.file("exp");
  EXPECT_EQ(write(f.in, dir + "/"), dir);  // a trailing slash names the same directory
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"index.faiss", "item_factors.npy", "item_ids.txt",
                                             "manifest.json", "seen_indices.npy", "seen_indptr.npy",
                                             "user_factors.npy", "user_ids.txt"}));
  for (const auto& e : fs::directory_iterator(t.str()))  // no staging directory is left behind
    EXPECT_EQ(e.path().filename().string(), "exp");
  const nlohmann::json m = manifest_of(dir);
  EXPECT_EQ(m["format"], "recforge-export");
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["dtype"], "float32");
  EXPECT_EQ(m["metric"], "inner_product");
  EXPECT_EQ(m["counts"]["users"], 40);
  EXPECT_EQ(m["counts"]["items"], 30);
  EXPECT_EQ(m["counts"]["dim"], 6);
  EXPECT_EQ(m["counts"]["seen"], f.seen.nnz());
  EXPECT_EQ(m["model"]["type"], "ials");
  EXPECT_EQ(m["index"]["type"], "flat");
  EXPECT_EQ(m["index"]["faiss_version"], "1.7.3");
  EXPECT_EQ(m["metrics"]["test"]["recall@10"], 0.25);
  EXPECT_EQ(m["config"]["model"]["factors"], 6);
  EXPECT_EQ(m["created"].get<std::string>().size(), 20u);  // 2025-01-31T12:00:00Z
  EXPECT_EQ(m["files"].size(), 7u);
  for (const auto& [name, entry] : m["files"].items()) {
    EXPECT_EQ(entry["sha256"], sha256_file(dir + "/" + name)) << name;
    EXPECT_EQ(entry["bytes"], fs::file_size(dir + "/" + name)) << name;
  }
  EXPECT_EQ(m["files"]["user_factors.npy"]["shape"], nlohmann::json({40, 6}));
  // Raw ids one per line in row order; factors as .npy readable by read_npy (NumPy's layout).
  EXPECT_EQ(test::read_file(dir + "/item_ids.txt").substr(0, 16), "item 0\nitem 3\nit");
  EXPECT_EQ(read_npy(dir + "/user_factors.npy").data, f.users.data);
  EXPECT_EQ(read_npy_i64(dir + "/seen_indptr.npy"),
            std::vector<int64_t>(f.seen.indptr.begin(), f.seen.indptr.end()));

  const Artifact a = load(dir);
  EXPECT_EQ(a.items.data, f.items.data);
  EXPECT_EQ(a.users.data, f.users.data);
  EXPECT_EQ(a.user_ids.ids(), f.user_ids.ids());
  EXPECT_EQ(a.item_ids.ids(), f.item_ids.ids());
  EXPECT_EQ(a.seen.indptr, f.seen.indptr);
  EXPECT_EQ(a.seen.indices, f.seen.indices);
  EXPECT_EQ(a.index.size(), 30);
  EXPECT_EQ(a.index.type(), index::Type::kFlat);
  EXPECT_TRUE(is_artifact(dir));
  EXPECT_FALSE(is_artifact(t.str()));
}

TEST(Artifact, CosineExportHoldsUnitVectorsInTheIndexAndRawFactors) {
  test::TempDir t;
  Fixture f;
  f.in.index.metric = index::Metric::kCosine;
  write(f.in, t.file("exp"));
  const Artifact a = load(t.file("exp"));
  EXPECT_EQ(a.metric, index::Metric::kCosine);
  EXPECT_EQ(a.manifest["index"]["normalized"], true);
  EXPECT_EQ(a.items.data, f.items.data);  // the .npy keeps the model's factors
  std::vector<float> s(5);
  std::vector<int64_t> l(5);
  a.index.search(f.items.row(4), 1, 5, s.data(), l.data());
  EXPECT_EQ(l[0], 4);  // an item is its own nearest neighbour by cosine
  EXPECT_NEAR(s[0], 1.0f, 1e-5f);
}

TEST(Artifact, LoadingRefusesDamageWithOneSentenceNamingTheFile) {
  test::TempDir t;
  Fixture f;
  const std::string dir = t.file("exp");
  auto fresh = [&] {
    fs::remove_all(dir);
    write(f.in, dir);
    ASSERT_EQ(load_error(dir), "loaded");
  };
  const nlohmann::json m0 = (fresh(), manifest_of(dir));
  const std::string sha = m0["files"]["item_factors.npy"]["sha256"];

  // One byte corrupted (in the data, past the .npy header).
  {
    std::fstream io(dir + "/item_factors.npy", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(200);
    io.put('\x7f');
  }
  std::string e = load_error(dir);
  EXPECT_EQ(e.rfind(dir + "/item_factors.npy: SHA-256 ", 0), 0u) << e;
  EXPECT_NE(
      e.find("does not match manifest.json's " + sha + " (the file is corrupt or was modified)"),
      std::string::npos)
      << e;

  fresh();
  fs::resize_file(dir + "/index.faiss", fs::file_size(dir + "/index.faiss") - 10);
  EXPECT_EQ(load_error(dir),
            fmt::format("{}/index.faiss: {} bytes, but manifest.json says {} (the file is "
                        "truncated or was replaced)",
                        dir, m0["files"]["index.faiss"]["bytes"].get<uint64_t>() - 10,
                        m0["files"]["index.faiss"]["bytes"].get<uint64_t>()));

  fresh();
  fs::remove(dir + "/seen_indices.npy");
  EXPECT_EQ(load_error(dir),
            fmt::format("{}/seen_indices.npy: missing (manifest.json lists it "
                        "with {} bytes)",
                        dir, m0["files"]["seen_indices.npy"]["bytes"].get<uint64_t>()));

  fresh();
  nlohmann::json m = manifest_of(dir);
  m["format_version"] = 2;
  test::write_file(dir + "/manifest.json", m.dump(2));
  EXPECT_EQ(load_error(dir), dir +
                                 "/manifest.json: format_version 2 is not supported; this "
                                 "recforge " RECFORGE_VERSION
                                 " reads format_version 1 (export "
                                 "again, or use a matching recforge)");

  // A manifest whose checksums were "fixed" by hand still cannot hide a wrong shape.
  fresh();
  m = manifest_of(dir);
  m["counts"]["users"] = 41;
  test::write_file(dir + "/manifest.json", m.dump(2));
  EXPECT_EQ(load_error(dir), dir +
                                 "/user_factors.npy: shape (40, 6), expected (41, 6) as "
                                 "manifest.json counts");

  fresh();
  test::write_file(dir + "/manifest.json", "{\"format\": \"recforge-export\", ");
  EXPECT_EQ(load_error(dir).rfind(dir + "/manifest.json: not valid JSON (", 0), 0u);
  fs::remove(dir + "/manifest.json");
  EXPECT_EQ(load_error(dir), dir + "/manifest.json: missing; " + dir + " is not a recforge export");
  EXPECT_EQ(load_error(t.file("nothing")), t.file("nothing") + ": no such export directory");
}

TEST(Artifact, ReplacesAnEarlierExportButNothingElse) {
  test::TempDir t;
  Fixture a(40, 30, 6, 1), b(50, 20, 4, 2);
  const std::string dir = t.file("exp");
  write(a.in, dir);
  write(b.in, dir);
  const Artifact got = load(dir);
  EXPECT_EQ(got.users.rows, 50);
  EXPECT_EQ(got.items.data, b.items.data);
  for (const auto& e : fs::directory_iterator(t.str()))
    EXPECT_EQ(e.path().filename().string(), "exp") << "left behind";

  // A directory that is not an export is never replaced.
  fs::create_directories(t.file("mine"));
  test::write_file(t.file("mine/notes.txt"), "precious");
  try {
    write(a.in, t.file("mine"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), t.file("mine") +
                                         ": exists and is not a recforge export (no "
                                         "recforge manifest.json); choose another "
                                         "--out or remove it");
  }
  EXPECT_EQ(test::read_file(t.file("mine/notes.txt")), "precious");
  test::write_file(t.file("afile"), "x");
  EXPECT_THROW(write(a.in, t.file("afile")), Error);
  // An empty directory is fine.
  fs::create_directories(t.file("empty"));
  write(a.in, t.file("empty"));
  EXPECT_EQ(load_error(t.file("empty")), "loaded");
}

TEST(Npy, IntegerVectorsRoundTripAndWrongDtypesAreNamed) {
  test::TempDir t;
  const std::vector<int64_t> a = {0, 5, 1LL << 40, -3};
  const std::vector<int32_t> b = {7, -1, 2147483647};
  write_npy(t.file("a.npy"), a);
  write_npy(t.file("b.npy"), b);
  EXPECT_EQ(read_npy_i64(t.file("a.npy")), a);
  EXPECT_EQ(read_npy_i32(t.file("b.npy")), b);
  // The header NumPy writes: version 1.0, a 1-D shape, data aligned to 64 bytes.
  const std::string raw = test::read_file(t.file("a.npy"));
  EXPECT_EQ(raw.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(raw.find("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }"),
            std::string::npos);
  EXPECT_EQ(raw.size(), 128u + 4 * 8);  // a 118-byte header padded to 128
  write_npy(t.file("empty.npy"), std::vector<int32_t>{});
  EXPECT_TRUE(read_npy_i32(t.file("empty.npy")).empty());
  try {
    read_npy_i32(t.file("a.npy"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              t.file("a.npy") + ": expected dtype int32 ('<i4') in the .npy header");
  }
  fs::resize_file(t.file("b.npy"), fs::file_size(t.file("b.npy")) - 1);
  try {
    read_npy_i32(t.file("b.npy"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        t.file("b.npy") + ": truncated or padded: shape (3,) needs 12 data bytes, the file has 11");
  }
}

// ---- Crash safety: the real binary, killed with SIGKILL ------------------------------------

/// Runs `recforge ARGS` in `cwd` with environment assignments `env` ("A=1 B=2"); returns the
/// exit status.
int run_cli(const std::string& cwd, const std::string& args, const std::string& env = "") {
  const std::string cmd =
      "cd '" + cwd + "' && " + env + " '" + RECFORGE_BINARY + "' " + args + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Starts `recforge export runs/small --out exp --set index.type=TYPE` in `cwd` with `env`
/// ("NAME=VALUE" entries) added; returns the pid and a pipe reading its stderr.
std::pair<pid_t, int> start_export(const std::string& cwd, const std::string& type,
                                   const std::vector<std::string>& env) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(127);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    dup2(fds[1], 2);
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    close(fds[0]);
    const std::string set = "index.type=" + type;
    execl(RECFORGE_BINARY, RECFORGE_BINARY, "export", "runs/small", "--out", "exp", "--set",
          set.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

/// Reads the child's stderr until `line` appears (true) or the pipe closes (false).
bool wait_for_line(int fd, const std::string& line) {
  std::string seen;
  std::array<char, 512> buf;
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n <= 0) return false;
    seen.append(buf.data(), static_cast<size_t>(n));
    if (seen.find(line) != std::string::npos) return true;
  }
}

void kill_and_reap(pid_t pid, int fd) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fd);
}

/// The index type of the complete export at `dir` (load verifies every file), or the error.
std::string export_type(const std::string& dir) {
  try {
    return load(dir).manifest["index"]["type"];
  } catch (const Error& e) {
    return std::string("error: ") + e.what();
  }
}

/// A directory with a tiny trained run and an export of it (flat index) at exp/.
struct CrashFixture {
  test::TempDir t;
  CrashFixture() {
    test::write_file(t.file("small.yaml"),
                     "run:\n  name: small\n  progress: off\ndata:\n  format: synthetic\n  cache: "
                     "false\nsynthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                     "split:\n  method: leave_last\nmodel:\n  factors: 8\n  iterations: 2\n"
                     "index:\n  nlist: 8\n");
    EXPECT_EQ(run_cli(t.str(), "train small.yaml"), 0);
    EXPECT_EQ(run_cli(t.str(), "export runs/small --out exp"), 0);
    EXPECT_EQ(export_type(t.file("exp")), "flat");
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(t.str())) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }
};

TEST(ArtifactCrash, KilledWhileWritingLeavesThePreviousExportWhole) {
  CrashFixture f;
  // Killed after each of these steps, the new (ivf_flat) export never shows at exp/: the old one
  // (flat) is there, complete and verified, however far the new one got.
  for (const std::string step :
       {"item_factors.npy", "seen_indices.npy", "index.faiss", "manifest.json"}) {
    SCOPED_TRACE(step);
    auto [pid, fd] =
        start_export(f.t.str(), "ivf_flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=" + step});
    ASSERT_TRUE(wait_for_line(fd, "export: paused after " + step));
    // The staging directory holds the new export's files so far.
    EXPECT_TRUE(fs::exists(f.t.file(fmt::format("exp.tmp-{}/{}", pid, step))));
    kill_and_reap(pid, fd);
    EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  }
  // Killed just after the atomic swap: the new export is in place, complete.
  auto [pid, fd] =
      start_export(f.t.str(), "ivf_flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=swapped"});
  ASSERT_TRUE(wait_for_line(fd, "export: paused after swapped"));
  kill_and_reap(pid, fd);
  EXPECT_EQ(export_type(f.t.file("exp")), "ivf_flat");
  // The next export tidies the staging directories of the killed writers.
  EXPECT_GT(f.entries().size(), 3u);
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=hnsw"), 0);
  EXPECT_EQ(export_type(f.t.file("exp")), "hnsw");
  EXPECT_EQ(f.entries(), (std::vector<std::string>{"exp", "runs", "small.yaml"}));
}

TEST(ArtifactCrash, KilledAtRandomMomentsNeverLeavesAMix) {
  CrashFixture f;
  // Time one whole export, then kill writers at moments spread over that span.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=flat"), 0);
  const double span = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Rng rng(3);
  int old_seen = 0, new_seen = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const std::string before = export_type(f.t.file("exp"));
    const std::string next = before == "flat" ? "ivf_flat" : "flat";
    auto [pid, fd] = start_export(f.t.str(), next, {});
    std::this_thread::sleep_for(std::chrono::duration<double>(span * 1.2 * rng.uniform()));
    kill_and_reap(pid, fd);
    const std::string after = export_type(f.t.file("exp"));
    EXPECT_TRUE(after == before || after == next) << "trial " << trial << ": " << after;
    (after == before ? old_seen : new_seen) += 1;
  }
  EXPECT_GT(old_seen, 0);  // the kills did interrupt some writers
}

TEST(ArtifactCrash, WithoutAtomicExchangeTheOldExportIsRecoverable) {
  CrashFixture f;
  // Forced fallback (file systems without RENAME_EXCHANGE), killed between its two renames:
  // exp/ is absent, the old export lies complete at exp.old-<pid>, and loading says so.
  auto [pid, fd] = start_export(
      f.t.str(), "ivf_flat",
      {"RECFORGE_TEST_EXPORT_NO_EXCHANGE=1", "RECFORGE_TEST_EXPORT_PAUSE_AFTER=moved-aside"});
  ASSERT_TRUE(wait_for_line(fd, "export: paused after moved-aside"));
  kill_and_reap(pid, fd);
  const std::string old = f.t.file(fmt::format("exp.old-{}", pid));
  EXPECT_FALSE(fs::exists(f.t.file("exp")));
  EXPECT_EQ(export_type(old), "flat");
  EXPECT_EQ(export_type(f.t.file("exp")),
            "error: " + f.t.file("exp") +
                ": no such export directory; an interrupted export left "
                "the previous one at " +
                old + " (rename it back, or export again)");
  // The next export first moves the old one back, so killing it too keeps the old export.
  auto [pid2, fd2] =
      start_export(f.t.str(), "ivf_flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=index.faiss"});
  ASSERT_TRUE(wait_for_line(fd2, "export: paused after index.faiss"));
  kill_and_reap(pid2, fd2);
  EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  // And the fallback path, run to the end, installs the new one.
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=ivf_flat",
                    "RECFORGE_TEST_EXPORT_NO_EXCHANGE=1"),
            0);
  EXPECT_EQ(export_type(f.t.file("exp")), "ivf_flat");
  EXPECT_EQ(f.entries(), (std::vector<std::string>{"exp", "runs", "small.yaml"}));
}

}  // namespace
}  // namespace recforge::artifact
