// A loaded export's factor matrices are read-only mappings of its .npy files, shared by every
// process that loads the same export: what is mapped, that copies share the mapping, and that
// writing through a matrix copies it first and never reaches the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/rng.h"
#include "pipeline/export.h"
#include "pipeline/train.h"
#include "recommend/recommend.h"
#include "test_util.h"

namespace recforge::artifact {
namespace {

namespace fs = std::filesystem;

/// The mapping of /proc/self/maps that holds `p`: its permissions and the path of its file
/// ("" when `p` lies in no mapping of a file).
struct MapLine {
  std::string perms, path;
};
MapLine mapping_of(const void* p) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, path);
    const size_t dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (at >= lo && at < hi) return {perms, path};
  }
  return {};
}

/// A small export written by artifact::write, with its factors kept for comparison.
struct SmallExport {
  test::TempDir t;
  Matrix users, items;
  std::string dir = t.file("exp");
  SmallExport() {
    Rng rng(3);
    auto fill = [&](Matrix& m, int64_t n) {
      m.rows = n;
      m.cols = 5;
      for (int64_t j = 0; j < n * 5; ++j) m.data.push_back(static_cast<float>(rng.normal()));
    };
    fill(users, 12);
    fill(items, 9);
    std::vector<std::string> u, i;
    for (int r = 0; r < 12; ++r) u.push_back("u" + std::to_string(r));
    for (int r = 0; r < 9; ++r) i.push_back("i" + std::to_string(r));
    uid = data::IdMap(u);
    iid = data::IdMap(i);
    seen.rows = 12;
    seen.cols = 9;
    seen.indptr.push_back(0);
    for (int r = 0; r < 12; ++r) {
      seen.indices.push_back(r % 9);
      seen.indptr.push_back(r + 1);
    }
    seen.data.assign(12, 1.f);
    in.model_type = "ials";
    in.model_parameters = {{"factors", 5}};
    in.users = &users;
    in.items = &items;
    in.user_ids = &uid;
    in.item_ids = &iid;
    in.seen = &seen;
    write(in, dir);
  }
  data::IdMap uid, iid;
  data::Csr seen;
  ExportInput in;
  /// The canonical path of `file` in the version directory `current` names.
  std::string version_file(const std::string& file) const {
    return fs::canonical(dir + "/current/" + file).string();
  }
};

TEST(MappedFactors, ALoadedExportViewsTheVersionsNpyFilesMappedReadOnlyAndShared) {
  const SmallExport e;
  const Artifact a = load(e.dir);
  ASSERT_TRUE(a.items.data.is_view());
  ASSERT_TRUE(a.users.data.is_view());
  EXPECT_EQ(a.items.data, e.items.data);
  EXPECT_EQ(a.users.data, e.users.data);
  for (const auto& [m, file] : {std::pair{&a.items, "item_factors.npy"},
                                std::pair{&a.users, "user_factors.npy"}}) {
    SCOPED_TRACE(file);
    // The first value and the last lie in a read-only shared mapping of the version's file.
    for (const float* p : {m->data.data(), m->data.data() + m->data.size() - 1}) {
      const MapLine l = mapping_of(p);
      EXPECT_EQ(l.path, e.version_file(file));
      EXPECT_EQ(l.perms, "r--s");
    }
    // The values start after the 128-byte header of format 1.0 (a multiple of 64): the mapping
    // starts on a page.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m->data.data()) % ::sysconf(_SC_PAGESIZE), 128u);
  }
  // A copy of the artifact's matrix shares the mapping instead of copying the values.
  const Matrix copy = a.items;
  EXPECT_TRUE(copy.data.is_view());
  EXPECT_EQ(copy.data.data(), a.items.data.data());
  EXPECT_EQ(copy.data.keeper(), a.items.data.keeper());
  // The mapping outlives the Artifact while a copy holds it.
  const Matrix kept = load(e.dir).users;
  EXPECT_EQ(mapping_of(kept.data.data()).path, e.version_file("user_factors.npy"));
  EXPECT_EQ(kept.data, e.users.data);
}

TEST(MappedFactors, WritingThroughAMatrixCopiesItAndLeavesTheFileAndTheOtherCopiesAlone) {
  const SmallExport e;
  Artifact a = load(e.dir);
  const Matrix shared = a.items;  // shares the mapping
  const float* mapped = shared.data.data();
  const float before = e.items.data[7];

  a.items.data[7] = 42.f;  // a non-const access: copy first, then write
  EXPECT_FALSE(a.items.data.is_view());
  EXPECT_NE(a.items.data.data(), mapped);
  EXPECT_EQ(a.items.data[7], 42.f);
  EXPECT_EQ(a.items.data.size(), e.items.data.size());
  for (size_t j = 0; j < e.items.data.size(); ++j) {
    if (j == 7) continue;
    EXPECT_EQ(a.items.data[j], e.items.data[j]) << j;
  }
  // The copy that still views the mapping sees the file's value; so does the file itself, read
  // again from disk, and a new load verifies its SHA-256.
  EXPECT_TRUE(shared.data.is_view());
  EXPECT_EQ(shared.data[7], before);
  EXPECT_EQ(read_npy(e.version_file("item_factors.npy")).data, e.items.data);
  EXPECT_EQ(load(e.dir).items.data, e.items.data);

  // Every other mutating access copies as well: row(), begin(), resize(), push_back(), insert().
  Matrix r = shared;
  r.row(1)[0] = -1.f;
  EXPECT_FALSE(r.data.is_view());
  EXPECT_EQ(r.data[5], -1.f);
  Matrix b = shared;
  *b.data.begin() = 3.f;
  EXPECT_EQ(b.data[0], 3.f);
  EXPECT_EQ(b.data[1], e.items.data[1]);
  Matrix g = shared;
  g.data.resize(g.data.size() + 2);
  EXPECT_EQ(g.data.size(), e.items.data.size() + 2);
  EXPECT_EQ(g.data[g.data.size() - 3], e.items.data.back());
  EXPECT_EQ(g.data.back(), 0.f);
  Matrix p = shared;
  p.data.push_back(9.f);
  EXPECT_EQ(p.data[e.items.data.size()], 9.f);
  EXPECT_EQ(p.data[0], e.items.data[0]);
  Matrix i = shared;
  i.data.insert(i.data.end(), shared.data.begin(), shared.data.begin() + 2);
  EXPECT_EQ(i.data.size(), e.items.data.size() + 2);
  EXPECT_EQ(i.data[e.items.data.size() + 1], e.items.data[1]);
  EXPECT_TRUE(shared.data.is_view());
  EXPECT_EQ(shared.data, e.items.data);
  EXPECT_EQ(read_npy(e.version_file("item_factors.npy")).data, e.items.data);
}

TEST(MappedFactors, ALoadedVersionKeepsItsValuesWhenNewerExportsRemoveItsFiles) {
  SmallExport e;
  const Artifact a = load(e.dir);
  const FloatStore old_items = e.items.data;
  // Two newer exports with other item factors: v-1 is removed (its files unlinked).
  for (int round = 0; round < 2; ++round) {
    for (float& x : e.items.data) x += 1.f;
    write(e.in, e.dir);
  }
  ASSERT_FALSE(fs::exists(e.dir + "/v-1"));
  ASSERT_EQ(e.version_file("item_factors.npy"), fs::canonical(e.dir + "/v-3/item_factors.npy"));
  // The loaded version still views its (now unlinked) file, with its own values; a new load
  // gets the newest.
  EXPECT_TRUE(a.items.data.is_view());
  // (The writer renames a version away before removing it: the kernel shows the last name.)
  const std::string path = mapping_of(a.items.data.data()).path;
  const std::string deleted = "/item_factors.npy (deleted)";
  EXPECT_EQ(path.rfind(fs::canonical(e.dir).string() + "/", 0), 0u) << path;
  EXPECT_EQ(path.size() - std::min(path.size(), deleted.size()), path.rfind(deleted)) << path;
  EXPECT_EQ(a.items.data, old_items);
  EXPECT_EQ(load(e.dir).items.data, e.items.data);
  EXPECT_NE(e.items.data, old_items);
}

TEST(MappedFactors, ARecommenderOnAnExportKeepsTheMappingThroughItsFoldInModel) {
  // A real export with a fold_in section: the item factors move into the fold-in model, which
  // must keep viewing the mapping (neither copying it nor writing into it) while it answers.
  test::TempDir t;
  const std::string yaml = "run:\n  name: m\n  dir: " + t.str() +
                           "\n  progress: off\n  seed: 5\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 120\n  items: 80\n  interactions: 1500\n"
                           "split:\n  method: leave_last\n"
                           "model:\n  factors: 8\n  iterations: 2\n";
  const std::string run = pipeline::train(config::Config::parse(yaml, "m.yaml"));
  const std::string out = t.file("m-export");
  pipeline::export_run(run, out, {});
  const Matrix file_items = read_npy(out + "/item_factors.npy");

  const recommend::Recommender r = recommend::Recommender::open(out);
  ASSERT_TRUE(r.can_fold_in());
  const std::string items_file = fs::canonical(out + "/current/item_factors.npy").string();
  const std::string users_file = fs::canonical(out + "/current/user_factors.npy").string();
  const float* items_at = r.item_factors().data.data();
  ASSERT_TRUE(r.item_factors().data.is_view());
  EXPECT_EQ(mapping_of(items_at).path, items_file);
  EXPECT_EQ(mapping_of(r.user_factors().data.data()).path, users_file);

  recommend::Options o;
  o.k = 5;
  o.exact = true;
  const recommend::Result fold = r.recommend_new_user({r.item_ids().external(3)}, {}, o);
  ASSERT_EQ(fold.lists.size(), 1u);
  EXPECT_EQ(fold.lists[0].items.size(), 5u);
  const recommend::Result known = r.recommend({r.user_ids().external(0)}, o);
  EXPECT_EQ(known.lists[0].items.size(), 5u);
  // Still the same mapping, and the file unchanged.
  EXPECT_TRUE(r.item_factors().data.is_view());
  EXPECT_EQ(r.item_factors().data.data(), items_at);
  EXPECT_EQ(r.item_factors().data, file_items.data);
  EXPECT_EQ(read_npy(items_file).data, file_items.data);
}

}  // namespace
}  // namespace recforge::artifact
