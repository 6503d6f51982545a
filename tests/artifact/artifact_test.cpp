// The export artifact: what it holds, how loading refuses damaged files, and that a writer
// killed at any moment leaves the previous export or the new one, never a mix.
#include "artifact/artifact.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <limits>
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
    for (size_t e = 0; e < seen.indices.size(); ++e)  // distinct confidences (seen_data.npy)
      seen.data.push_back(1.f + 0.25f * static_cast<float>(e % 7));
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
  // The versioned layout: `current` → v-1 holding the files, and links to current/<file>.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"current", "index.faiss", "item_factors.npy",
                                             "item_ids.txt", "manifest.json", "opt_out.txt",
                                             "seen_data.npy",
                                             "seen_indices.npy", "seen_indptr.npy",
                                             "user_factors.npy", "user_ids.txt", "v-1"}));
  EXPECT_EQ(fs::read_symlink(dir + "/current"), "v-1");
  for (const std::string& name : names)
    if (name != "current" && name != "v-1") {
      EXPECT_EQ(fs::read_symlink(dir + "/" + name), "current/" + name);
      EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir + "/v-1/" + name))) << name;
    }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/v-1"), fs::directory_iterator()), 10);
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
  EXPECT_EQ(m["files"].size(), 9u);  // with opt_out.txt and seen_data.npy, empty without privacy.opt_out
  EXPECT_EQ(test::read_file(dir + "/opt_out.txt"), "");
  EXPECT_EQ(m["user_ids"], nlohmann::json({{"pseudonymized", false}}));
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
  EXPECT_EQ(a.version, "v-1");
  // seen_data.npy: the training confidences, parallel to seen_indices.
  ASSERT_FALSE(f.seen.data.empty());
  EXPECT_EQ(a.seen.data, f.seen.data);
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

// What fold-in from the export needs: the model and weighting sections of the config, run.seed,
// train.threads and the training weights' total, in "fold_in"; a config without the sections gets
// none.
TEST(Artifact, TheManifestCarriesWhatFoldInNeeds) {
  test::TempDir t;
  Fixture f;
  EXPECT_TRUE(fold_in_section(f.in.config, 1.0).is_null());  // no weighting section
  write(f.in, t.file("plain"));
  EXPECT_FALSE(load(t.file("plain")).manifest.contains("fold_in"));
  f.in.config = {{"model", {{"type", "ials"}, {"factors", 6}, {"alpha", 2.5}}},
                 {"weighting", {{"scheme", "log"}, {"eps", 0.5}}},
                 {"run", {{"seed", 11}, {"name", "x"}}},
                 {"train", {{"threads", 3}, {"device", "cuda"}}},
                 {"data", {{"path", "somewhere.csv"}}}};
  f.in.train_weight_total = 1234.5;
  write(f.in, t.file("full"));
  const nlohmann::json fold = load(t.file("full")).manifest.at("fold_in");
  EXPECT_EQ(fold, nlohmann::json({{"model", f.in.config["model"]},
                                  {"weighting", f.in.config["weighting"]},
                                  {"seed", 11},
                                  {"threads", 3},
                                  {"train_weight_total", 1234.5}}));
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
  const std::string v = dir + "/v-1";  // the version directory, which errors name
  const std::string sha = m0["files"]["item_factors.npy"]["sha256"];

  // One byte corrupted (in the data, past the .npy header).
  {
    std::fstream io(v + "/item_factors.npy", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(200);
    io.put('\x7f');
  }
  std::string e = load_error(dir);
  EXPECT_EQ(e.rfind(v + "/item_factors.npy: SHA-256 ", 0), 0u) << e;
  EXPECT_NE(
      e.find("does not match manifest.json's " + sha + " (the file is corrupt or was modified)"),
      std::string::npos)
      << e;

  fresh();
  fs::resize_file(v + "/index.faiss", fs::file_size(v + "/index.faiss") - 10);
  EXPECT_EQ(load_error(dir),
            fmt::format("{}/index.faiss: {} bytes, but manifest.json says {} (the file is "
                        "truncated or was replaced)",
                        v, m0["files"]["index.faiss"]["bytes"].get<uint64_t>() - 10,
                        m0["files"]["index.faiss"]["bytes"].get<uint64_t>()));

  fresh();
  fs::remove(v + "/seen_indices.npy");
  EXPECT_EQ(load_error(dir),
            fmt::format("{}/seen_indices.npy: missing (manifest.json lists it "
                        "with {} bytes)",
                        v, m0["files"]["seen_indices.npy"]["bytes"].get<uint64_t>()));

  // What a warm start reads (factors and ids, with_index and with_seen false) does not need
  // the seen lists or the index: it loads without them, and the full load still refuses.
  {
    const artifact::Artifact part = artifact::load(dir, false, false);
    EXPECT_EQ(part.seen.rows, 0);
    EXPECT_EQ(part.users.rows, f.in.users->rows);
    EXPECT_EQ(part.item_ids.size(), f.in.item_ids->size());
    fresh();
    const artifact::Artifact whole = artifact::load(dir);
    EXPECT_EQ(whole.seen.rows, f.in.users->rows);
    EXPECT_EQ(whole.seen.nnz(), f.in.seen->nnz());
  }

  fresh();
  nlohmann::json m = manifest_of(dir);
  m["format_version"] = 2;
  test::write_file(dir + "/manifest.json", m.dump(2));
  EXPECT_EQ(load_error(dir), v +
                                 "/manifest.json: format_version 2 is not supported; this "
                                 "recforge " RECFORGE_VERSION
                                 " reads format_version 1 (export "
                                 "again, or use a matching recforge)");

  // A manifest whose checksums were "fixed" by hand still cannot hide a wrong shape.
  fresh();
  m = manifest_of(dir);
  m["counts"]["users"] = 41;
  test::write_file(dir + "/manifest.json", m.dump(2));
  EXPECT_EQ(load_error(dir), v +
                                 "/user_factors.npy: shape (40, 6), expected (41, 6) as "
                                 "manifest.json counts");

  fresh();
  test::write_file(dir + "/manifest.json", "{\"format\": \"recforge-export\", ");
  EXPECT_EQ(load_error(dir).rfind(v + "/manifest.json: not valid JSON (", 0), 0u);
  // Malformed manifests are refused with a sentence, never an internal error.
  test::write_file(v + "/manifest.json", "[1, 2]");
  EXPECT_EQ(load_error(dir), v + "/manifest.json: the manifest is a JSON array; expected an object "
                                 "with \"format\": \"recforge-export\"");
  test::write_file(v + "/manifest.json",
                   "{\"format\": \"recforge-export\", \"format_version\": 1, \"dtype\": 4}");
  EXPECT_EQ(load_error(dir), v + "/manifest.json: dtype is 4, expected \"float32\"");
  test::write_file(v + "/manifest.json",
                   "{\"format\": \"recforge-export\", \"format_version\": 1, \"dtype\": "
                   "\"float32\", \"files\": []}");
  EXPECT_EQ(load_error(dir), v + "/manifest.json: field \"files\" is missing or not an object; "
                                 "expected an object of file entries");
  m = m0;
  m["counts"] = "many";
  test::write_file(v + "/manifest.json", m.dump());
  EXPECT_EQ(load_error(dir), v + "/manifest.json: field \"counts.users\" is missing or not a "
                                 "count; expected a non-negative integer");
  m = m0;
  m["files"]["index.faiss"] = 7;
  test::write_file(v + "/manifest.json", m.dump());
  EXPECT_EQ(load_error(dir), v + "/index.faiss: its entry in manifest.json \"files\" lacks bytes "
                                 "or sha256; expected both");
  fs::remove(v + "/manifest.json");
  EXPECT_EQ(load_error(dir), v + "/manifest.json: missing; " + dir + " is not a recforge export");
  fs::remove(dir + "/current");
  fs::create_directory(dir + "/current");
  EXPECT_EQ(load_error(dir), dir + "/current: is not a symbolic link; expected a link to the "
                                   "export's current version directory (v-<N>)");
  EXPECT_EQ(load_error(t.file("nothing")), t.file("nothing") + ": no such export directory");
}

TEST(Artifact, ReplacesAnEarlierExportButNothingElse) {
  test::TempDir t;
  Fixture a(40, 30, 6, 1), b(50, 20, 4, 2), c(40, 30, 6, 3);
  const std::string dir = t.file("exp");
  write(a.in, dir);
  test::write_file(dir + "/notes.txt", "mine");  // not recforge's: never touched
  write(b.in, dir);
  Artifact got = load(dir);
  EXPECT_EQ(got.version, "v-2");
  EXPECT_EQ(got.users.rows, 50);
  EXPECT_EQ(got.items.data, b.items.data);
  // The previous version is kept, complete (a version directory loads on its own too).
  EXPECT_EQ(load(dir + "/v-1").items.data, a.items.data);
  // A third export removes the oldest: the newest two remain.
  write(c.in, dir);
  got = load(dir);
  EXPECT_EQ(got.version, "v-3");
  EXPECT_EQ(got.items.data, c.items.data);
  EXPECT_FALSE(fs::exists(dir + "/v-1"));
  EXPECT_EQ(load(dir + "/v-2").items.data, b.items.data);
  EXPECT_EQ(test::read_file(dir + "/notes.txt"), "mine");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"current", "index.faiss", "item_factors.npy",
                                             "item_ids.txt", "manifest.json", "notes.txt",
                                             "opt_out.txt", "seen_data.npy", "seen_indices.npy",
                                             "seen_indptr.npy",
                                             "user_factors.npy", "user_ids.txt", "v-2", "v-3"}));
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

/// The labels of the top 5 items of users 0..4 through the artifact's index.
std::vector<int64_t> index_top5(const Artifact& a) {
  std::vector<float> s(25);
  std::vector<int64_t> l(25);
  a.index.search(a.users.data.data(), 5, 5, s.data(), l.data());
  return l;
}

/// True when `a` is exactly the export of `f` (factors, ids, seen lists) and its index answers
/// as `top5` (that export's index, loaded on its own).
bool is_export_of(const Artifact& a, const Fixture& f, const std::vector<int64_t>& top5) {
  return a.users.data == f.users.data && a.items.data == f.items.data &&
         a.user_ids.ids() == f.user_ids.ids() && a.item_ids.ids() == f.item_ids.ids() &&
         a.seen.indptr == f.seen.indptr && a.seen.indices == f.seen.indices &&
         index_top5(a) == top5;
}

TEST(Artifact, ReadersWhileAWriterReplacesTheExportGetTheOldOrTheNewNeverAMix) {
  // Two models of the same shapes (a mix of their files would pass every shape check): a
  // reader loads in a loop while a writer replaces the export with one and the other.
  test::TempDir t;
  Fixture a(60, 40, 8, 11), b(60, 40, 8, 12);
  const std::string dir = t.file("exp");
  write(b.in, t.file("b"));
  const std::vector<int64_t> top_b = index_top5(load(t.file("b")));
  write(a.in, dir);
  const std::vector<int64_t> top_a = index_top5(load(dir));
  ASSERT_NE(top_a, top_b);
  constexpr int kWrites = 40;
  std::atomic<int> loads{0};
  std::atomic<bool> done{false};
  std::vector<std::string> problems;
  int saw_a = 0, saw_b = 0;
  std::thread reader([&] {
    while (!done.load()) {
      try {
        const Artifact got = load(dir);
        if (is_export_of(got, a, top_a))
          ++saw_a;
        else if (is_export_of(got, b, top_b))
          ++saw_b;
        else
          problems.push_back("a mix of the two exports (" + got.version + ")");
      } catch (const Error& e) {
        problems.push_back(e.what());
      }
      loads.fetch_add(1);
    }
  });
  for (int w = 0; w < kWrites; ++w) {
    // At least one load completes between writes, so loads run while versions come and go.
    const int before = loads.load();
    write((w % 2 == 0 ? b : a).in, dir);
    while (loads.load() == before) std::this_thread::yield();
  }
  done = true;
  reader.join();
  EXPECT_TRUE(problems.empty()) << problems.size() << " bad loads, first: " << problems.front();
  EXPECT_GE(saw_a + saw_b, kWrites);
  EXPECT_GT(saw_a, 0);
  EXPECT_GT(saw_b, 0);
  // The newest two versions are kept; nothing staged is left behind.
  std::vector<std::string> versions;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && !fs::is_symlink(e.symlink_status()))
      versions.push_back(e.path().filename().string());
  std::sort(versions.begin(), versions.end());
  EXPECT_EQ(versions, (std::vector<std::string>{fmt::format("v-{}", kWrites),
                                                fmt::format("v-{}", kWrites + 1)}));
}

TEST(Artifact, FlatExportsOfEarlierBuildsLoadAndTheNextExportConvertsThem) {
  test::TempDir t;
  Fixture a(40, 30, 6, 1), b(40, 30, 6, 2);
  const std::string dir = t.file("exp");
  write(a.in, dir);
  // The flat layout: the files directly in the directory, no `current`.
  const fs::path v1 = fs::path(dir) / "v-1";
  for (const auto& e : fs::directory_iterator(dir))
    if (fs::is_symlink(e.symlink_status())) fs::remove(e.path());
  for (const auto& e : fs::directory_iterator(v1))
    fs::rename(e.path(), fs::path(dir) / e.path().filename());
  fs::remove(v1);
  const Artifact flat = load(dir);
  EXPECT_EQ(flat.version, "");
  EXPECT_EQ(flat.items.data, a.items.data);
  // Errors name the files where they are.
  nlohmann::json m = manifest_of(dir);
  m["counts"]["items"] = 31;
  test::write_file(dir + "/manifest.json", m.dump());
  EXPECT_EQ(load_error(dir),
            dir + "/item_factors.npy: shape (30, 6), expected (31, 6) as manifest.json counts");
  m["counts"]["items"] = 30;
  test::write_file(dir + "/manifest.json", m.dump());
  // A stray file in it stops the conversion (the directory is replaced as a whole)...
  test::write_file(dir + "/notes.txt", "mine");
  try {
    write(b.in, dir);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir + ": holds notes.txt, which is not part of a recforge export; move it elsewhere "
                    "first (an export of this earlier layout is replaced as a whole)");
  }
  EXPECT_EQ(test::read_file(dir + "/notes.txt"), "mine");
  EXPECT_EQ(load(dir).items.data, a.items.data);
  // ...and without it, the next export replaces it with the versioned layout.
  fs::remove(dir + "/notes.txt");
  write(b.in, dir);
  const Artifact got = load(dir);
  EXPECT_EQ(got.version, "v-1");
  EXPECT_EQ(got.items.data, b.items.data);
  EXPECT_TRUE(fs::is_symlink(dir + "/current"));
  EXPECT_TRUE(fs::is_symlink(dir + "/item_factors.npy"));
}

// chain_users.txt (a warm-started model's chain users, pipeline::ChainUsers) round-trips with
// the manifest's salt and key checks, is only in the version directory (no link beside
// `current`), is covered by the checksums, and a manifest without its salt is refused.
TEST(Artifact, ChainUsersRoundTripAndAreChecked) {
  test::TempDir t;
  Fixture f;
  const std::string dir = t.file("exp");
  ExportInput in = f.in;
  in.chain_salt = std::string(64, 'a');
  in.chain_key_checks = {"0123456789abcdef"};
  in.chain_users = {*parse_hex_digest(std::string(64, '1')), *parse_hex_digest("2" + std::string(63, 'f'))};
  write(in, dir);
  const Artifact a = load(dir);
  EXPECT_EQ(a.chain_users, in.chain_users);
  EXPECT_EQ(test::read_file(dir + "/v-1/chain_users.txt"),
            std::string(64, '1') + "\n2" + std::string(63, 'f') + "\n");
  EXPECT_EQ(a.chain_salt, in.chain_salt);
  EXPECT_EQ(a.chain_key_checks, in.chain_key_checks);
  EXPECT_TRUE(fs::exists(dir + "/v-1/chain_users.txt"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir + "/chain_users.txt")));
  // Without chain users: no file, no manifest field, empty lists.
  write(f.in, t.file("plain"));
  EXPECT_TRUE(load(t.file("plain")).chain_users.empty());
  EXPECT_FALSE(manifest_of(t.file("plain/v-1")).contains("chain_users"));

  test::write_file(dir + "/v-1/chain_users.txt", std::string(64, '1') + "\n");
  EXPECT_NE(load_error(dir).find(dir + "/v-1/chain_users.txt: "), std::string::npos)
      << load_error(dir);
  write(in, dir);  // v-2
  nlohmann::json m = manifest_of(dir + "/v-2");
  m["chain_users"].erase("salt");
  test::write_file(dir + "/v-2/manifest.json", m.dump(2));
  EXPECT_NE(load_error(dir).find("manifest.json: chain_users is {\"key_checks\":"),
            std::string::npos)
      << load_error(dir);
}

TEST(Artifact, NonFiniteFactorsAreNeitherExportedNorLoaded) {
  test::TempDir t;
  Fixture f;
  f.users.data[3 * 6 + 2] = std::numeric_limits<float>::quiet_NaN();
  try {
    write(f.in, t.file("exp"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "export: the user factors hold nan at row 3, column 2; expected finite values (the "
              "model diverged, or its factor files are damaged)");
  }
  EXPECT_FALSE(fs::exists(t.file("exp")));
  for (const auto& e : fs::directory_iterator(t.str())) ADD_FAILURE() << "left " << e.path();
  // An export whose factors became infinite, with checksums that match (rewritten by hand).
  Fixture g;
  const std::string dir = t.file("exp");
  write(g.in, dir);
  Matrix items = g.items;
  items.data[7 * 6 + 5] = -std::numeric_limits<float>::infinity();
  write_npy(dir + "/v-1/item_factors.npy", items);
  nlohmann::json m = manifest_of(dir);
  const std::string bytes = test::read_file(dir + "/v-1/item_factors.npy");
  m["files"]["item_factors.npy"]["sha256"] = sha256_file(dir + "/v-1/item_factors.npy");
  m["files"]["item_factors.npy"]["bytes"] = bytes.size();
  test::write_file(dir + "/v-1/manifest.json", m.dump(2));
  EXPECT_EQ(load_error(dir), dir + "/v-1/item_factors.npy: row 7, column 5 is -inf; expected "
                                   "finite float32 values (the file is corrupt, or the model "
                                   "diverged)");
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
  /// Entries of exp/ whose names start with '.' (what writers stage there).
  size_t hidden_in_export() const {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(t.file("exp")))
      n += e.path().filename().string()[0] == '.';
    return n;
  }
};

/// Turns the versioned export `dir` into the flat layout of earlier recforge builds: the files
/// of its current version directly in `dir`.
void flatten(const std::string& dir) {
  const fs::path version = fs::path(dir) / fs::read_symlink(fs::path(dir) / "current");
  for (const auto& e : fs::directory_iterator(dir))
    if (fs::is_symlink(e.symlink_status())) fs::remove(e.path());
  for (const auto& e : fs::directory_iterator(version))
    fs::rename(e.path(), fs::path(dir) / e.path().filename());
  fs::remove(version);
  for (const auto& e : fs::directory_iterator(dir)) ASSERT_TRUE(fs::is_regular_file(e.path()));
}

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
    // The staging directory inside the export holds the new version's files so far.
    EXPECT_TRUE(fs::exists(f.t.file(fmt::format("exp/.staging-{}/{}", pid, step))));
    kill_and_reap(pid, fd);
    EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  }
  // Each writer removed the staging directories of those killed before it: the last one's is left.
  EXPECT_EQ(f.hidden_in_export(), 1u);
  // Killed just after the atomic swap: the new export is in place, complete.
  auto [pid, fd] =
      start_export(f.t.str(), "ivf_flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=swapped"});
  ASSERT_TRUE(wait_for_line(fd, "export: paused after swapped"));
  kill_and_reap(pid, fd);
  EXPECT_EQ(export_type(f.t.file("exp")), "ivf_flat");
  // Each export tidies the staging directories of killed writers.
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=hnsw"), 0);
  EXPECT_EQ(export_type(f.t.file("exp")), "hnsw");
  EXPECT_EQ(f.hidden_in_export(), 0u);
  EXPECT_EQ(f.entries(), (std::vector<std::string>{"exp", "runs", "small.yaml"}));
}

TEST(ArtifactCrash, AVersionThatCurrentNeverNamedIsRemovedAndThePreviousKept) {
  CrashFixture f;  // exp: v-1 (flat index)
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=hnsw"), 0);  // v-2
  // Killed after its files became v-3 but before `current` named it: v-2 stays in service.
  auto [pid, fd] =
      start_export(f.t.str(), "ivf_flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=version"});
  ASSERT_TRUE(wait_for_line(fd, "export: paused after version"));
  kill_and_reap(pid, fd);
  EXPECT_EQ(export_type(f.t.file("exp")), "hnsw");
  EXPECT_EQ(export_type(f.t.file("exp/v-3")), "ivf_flat");
  // The next export (v-4) keeps the one `current` named (v-2), not the newer orphan v-3.
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp --set index.type=flat"), 0);
  EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  EXPECT_EQ(load(f.t.file("exp")).version, "v-4");
  EXPECT_EQ(export_type(f.t.file("exp/v-2")), "hnsw");
  EXPECT_FALSE(fs::exists(f.t.file("exp/v-3")));
  EXPECT_FALSE(fs::exists(f.t.file("exp/v-1")));
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
  // The whole directory is swapped when it holds an export of the flat layout (or is new).
  flatten(f.t.file("exp"));
  EXPECT_EQ(export_type(f.t.file("exp")), "flat");
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
  // The commands that open an export or a run by that path say so too (they said "no such run
  // directory"), and serve.
  for (const std::string cmd : {"recommend exp --user 1", "info exp", "similar exp --item 1",
                                 "serve exp --listen 127.0.0.1:0"}) {
    const test::Result r = test::run_shell("cd '" + f.t.str() + "' && timeout 60 '" +
                                           RECFORGE_BINARY + "' " + cmd);  // serve: never hangs
    EXPECT_EQ(r.rc, 1) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find("the previous " + std::string(cmd.rfind("serve", 0) == 0 ? "one" : "export") +
                         " at " + old + " (rename it back, or export again)"),
              std::string::npos)
        << cmd << "\n" << r.out;
  }
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
  EXPECT_EQ(load(f.t.file("exp")).version, "v-1");  // now of the versioned layout
  EXPECT_EQ(f.entries(), (std::vector<std::string>{"exp", "runs", "small.yaml"}));
}

// Only what an interrupted export of a process that is gone left beside the export is tidied:
// a user's directories named like it (a dated backup exp.old-20240101, exp.tmp-31337 holding
// their files) stay as they are, also when exp/ is absent.
TEST(ArtifactCrash, AUsersDirectoriesNamedLikeAnInterruptedExportsAreLeftAlone) {
  CrashFixture f;
  // A stale staging directory of a new export (exp/ absent), left by a killed writer.
  fs::remove_all(f.t.file("exp"));
  auto [pid, fd] = start_export(f.t.str(), "flat", {"RECFORGE_TEST_EXPORT_PAUSE_AFTER=index.faiss"});
  ASSERT_TRUE(wait_for_line(fd, "export: paused after index.faiss"));
  kill_and_reap(pid, fd);
  const std::string stale = f.t.file(fmt::format("exp.tmp-{}", pid));
  ASSERT_TRUE(fs::exists(stale + "/v-1/index.faiss"));
  for (const char* dir : {"exp.old-20240101", "exp.tmp-31337", "exp.tmp-31338"})
    fs::create_directories(f.t.file(dir));
  test::write_file(f.t.file("exp.old-20240101/notes.txt"), "mine");
  test::write_file(f.t.file("exp.tmp-31338/notes.txt"), "mine too");
  ASSERT_EQ(run_cli(f.t.str(), "export runs/small --out exp"), 0);
  EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(test::read_file(f.t.file("exp.old-20240101/notes.txt")), "mine");
  EXPECT_EQ(test::read_file(f.t.file("exp.tmp-31338/notes.txt")), "mine too");
  EXPECT_TRUE(fs::is_directory(f.t.file("exp.tmp-31337")));
  // The export's own `current` link and version directories are not export targets: the swap
  // would have replaced the link with a directory (and the export would no longer load).
  for (const auto& [out, says] : std::vector<std::pair<std::string, std::string>>{
           {"exp/current", "exp/current: is a symbolic link (to v-1); give the export directory "
                           "itself as --out"},
           {"exp/v-1", "exp/v-1: is inside the export " + fs::canonical(f.t.file("exp")).string() +
                           "; give that export (or a new directory outside it) as --out"}}) {
    const test::Result r = test::run_recforge(f.t.str(), "export runs/small --out " + out);
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_NE(r.out.find("recforge: error: " + says), std::string::npos) << r.out;
  }
  EXPECT_EQ(export_type(f.t.file("exp")), "flat");
  EXPECT_TRUE(fs::is_symlink(f.t.file("exp/current")));
}

}  // namespace
}  // namespace recforge::artifact
