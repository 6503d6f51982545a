#include "data/cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

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
  EXPECT_FALSE(read_cache(file.string()).has_value());
  const Loaded d = load({p}, o);
  EXPECT_FALSE(d.report.from_cache);
  EXPECT_EQ(d.parts[0].size(), 3);
  EXPECT_TRUE(load({p}, o).report.from_cache);  // rewritten whole
}

}  // namespace
}  // namespace recforge::data
