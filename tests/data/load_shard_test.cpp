// data::load_shard (issue 21): each process of a distributed run reads the lines that start in its
// byte range of the input files.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "data/exclusion.h"
#include "data/load.h"
#include "test_util.h"

namespace recforge::data {
namespace {

using test::TempDir;
using test::write_file;

const std::string kBom = "\xEF\xBB\xBF";

// One interaction: user and item as external ids (canonical form), weight, time (0 without).
using Rec = std::tuple<std::string, std::string, float, int64_t>;

std::vector<Rec> records(const Loaded& d, size_t part = 0) {
  std::vector<Rec> out;
  const Interactions& x = d.parts[part];
  for (offset_t k = 0; k < x.size(); ++k)
    out.emplace_back(d.users.external(x.users[k]), d.items.external(x.items[k]), x.weights[k],
                     x.has_times() ? x.times[k] : 0);
  return out;
}

// Shard i of n of a file of S bytes begins at floor(S·i/n) (S is small in these tests).
uint64_t range_begin(uint64_t size, int i, int n) {
  return size * static_cast<uint64_t>(i) / static_cast<uint64_t>(n);
}

// The shard whose byte range holds `offset`.
int shard_of(uint64_t offset, uint64_t size, int n) {
  for (int i = 0; i < n; ++i)
    if (offset >= range_begin(size, i, n) && offset < range_begin(size, i + 1, n)) return i;
  ADD_FAILURE() << "offset " << offset << " is in no shard of a file of " << size << " bytes";
  return -1;
}

// The ids of the interactions, in the order load numbers them (numeric for integer ids).
std::vector<std::string> sorted_ids(const std::vector<Rec>& recs, bool users, bool strings) {
  std::set<std::string> s;
  for (const Rec& r : recs) s.insert(users ? std::get<0>(r) : std::get<1>(r));
  std::vector<std::string> v(s.begin(), s.end());
  if (!strings)
    std::sort(v.begin(), v.end(),
              [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
  return v;
}

std::string shard_error(const std::string& path, const LoadOptions& o, Shard s) {
  try {
    load_shard({path}, o, s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A file written by a test together with what it holds: the interactions of each data line in
// file order, and the byte where each data line starts.
struct Case {
  std::string name, text;
  LoadOptions options;
  std::vector<Rec> expected;
  std::vector<uint64_t> expected_line;  // index into line_starts of each expected interaction
  std::vector<uint64_t> line_starts;    // data lines (not blank, not the header)

  // A line that is not data (blank, header).
  void other(const std::string& s) { text += s; }
  // A data line and its interactions.
  void data(const std::string& s, const std::vector<Rec>& recs) {
    line_starts.push_back(text == kBom ? 0 : text.size());  // the first line starts at byte 0
    for (const Rec& r : recs) {
      expected.push_back(r);
      expected_line.push_back(line_starts.size() - 1);
    }
    text += s;
  }
};

// Header with named columns in another order, comma-separated, weights and times, integer ids.
Case header_named_columns() {
  Case c;
  c.name = "header";
  c.options.header = true;
  c.options.user_col = "user";
  c.options.item_col = "item";
  c.options.weight_col = "rating";
  c.options.time_col = "ts";
  c.other("ts,item,user,rating\n");
  for (int k = 0; k < 40; ++k) {
    const int64_t t = 1600000000 + 37 * k;
    const int user = 1 + k % 9, item = 3 + k;  // items distinct: no duplicate pairs
    const double w = 0.25 * (k % 13);
    c.data(fmt::format("{},{},{},{}\n", t, item, user, w),
           {Rec{std::to_string(user), std::to_string(item), static_cast<float>(w), t}});
  }
  return c;
}

// Tab-separated weights and times, integer ids written with leading zeros and plus signs.
Case tsv_canonical_ids() {
  Case c;
  c.name = "tsv";
  c.options.weight_col = "2";
  c.options.time_col = "3";
  for (int k = 0; k < 50; ++k) {
    const int user = 1 + k % 7, item = 100 + k;
    const std::string u = k % 3 == 0 ? fmt::format("{:04}", user) : k % 3 == 1 ? fmt::format("+{}", user)
                                                                               : std::to_string(user);
    const std::string i = k % 2 ? fmt::format("+00{}", item) : std::to_string(item);
    const double w = 1.5 + 0.5 * (k % 4);
    const int64_t t = k % 5 == 0 ? -(k + 1) : 1000000000000LL + k;
    c.data(fmt::format("{}\t{}\t{}{}\t{}{}\n", u, i, k % 2 ? "+" : "", w, t >= 0 && k % 2 ? "+" : "", t),
           {Rec{std::to_string(user), std::to_string(item), static_cast<float>(w), t}});
  }
  return c;
}

// Adjacency lists with one line far longer than the rest (it spans several shard ranges), and a
// user with no items.
Case adjacency_long_line() {
  Case c;
  c.name = "adjacency";
  c.options.format = Format::kAdjacency;
  auto user_line = [&](int user, int first, int count) {
    std::string s = std::to_string(user);
    std::vector<Rec> recs;
    for (int i = first; i < first + count; ++i) {
      s += (i % 5 == 0 ? " 0" : " ") + std::to_string(i);
      recs.push_back(Rec{std::to_string(user), std::to_string(i), 1.f, 0});
    }
    c.data(s + "\n", recs);
  };
  for (int u = 0; u < 8; ++u) user_line(u, 3 * u, 4);
  user_line(8, 0, 3000);  // about 15 kB, most of the file
  c.data("9\n", {});      // a user and no items: a data line with no interaction
  for (int u = 10; u < 18; ++u) user_line(u, 5 * u, 3);
  return c;
}

// String ids; a byte order mark, then blank lines, then the header; CRLF line ends, blank lines
// between, a field of 20 kB, and a last line without '\n'.
Case string_ids_bom_crlf() {
  Case c;
  c.name = "bom-crlf";
  c.options.header = true;
  c.options.string_ids = true;
  c.options.user_col = "who";
  c.options.item_col = "what";
  c.other(kBom);
  c.other("\r\n  \r\n");
  c.other("what,who\r\n");
  const std::vector<std::string> users = {"ann", "bob", "Cid", "dan-1", "eve"};
  for (int k = 0; k < 30; ++k) {
    const std::string item = k == 17 ? std::string(20000, 'z') : "item" + std::to_string(k);
    const std::string& user = users[static_cast<size_t>(k) % users.size()];
    c.data(item + "," + user + (k == 29 ? "" : "\r\n"), {Rec{user, item, 1.f, 0}});
    if (k % 8 == 3) c.other("\r\n");
    if (k == 20) c.other(" \t \n");
  }
  return c;
}

// Tiny files: shards with no lines, and a byte order mark that most ranges cut through.
Case tiny_bom_no_newline() {
  Case c;
  c.name = "tiny-bom";
  c.options.string_ids = true;
  c.other(kBom);
  c.data("a,b", {Rec{"a", "b", 1.f, 0}});
  return c;
}

Case tiny_two_lines() {
  Case c;
  c.name = "tiny";
  c.data("1 2\n", {Rec{"1", "2", 1.f, 0}});
  c.data("3 4", {Rec{"3", "4", 1.f, 0}});
  return c;
}

TEST(LoadShard, ShardsInOrderGiveTheFileInOrderAndEqualLoad) {
  // Reference: the interactions each case wrote, in file order (an independent reading of the
  // file), and `load` on the same file, whose cleaning is a no-op here (no duplicate (user, item)
  // pair, min_weight 0, minimums 1 and every id has an interaction) except that it sorts:
  // load's interactions are compared with the written ones as sorted lists.
  TempDir t;
  for (Case c : {header_named_columns(), tsv_canonical_ids(), adjacency_long_line(),
                 string_ids_bom_crlf(), tiny_bom_no_newline(), tiny_two_lines()}) {
    SCOPED_TRACE(c.name);
    c.options.use_cache = false;
    const std::string path = write_file(t.file(c.name + ".txt"), c.text);
    const uint64_t size = c.text.size();
    const bool strings = c.options.string_ids;
    const bool times = c.options.time_col.has_value();

    const Loaded whole = load({path}, c.options);
    EXPECT_EQ(whole.report.duplicates_combined, 0);
    EXPECT_EQ(whole.report.filtered_interactions, 0);
    std::vector<Rec> sorted_expected = c.expected, from_load = records(whole);
    std::sort(sorted_expected.begin(), sorted_expected.end());
    std::sort(from_load.begin(), from_load.end());
    EXPECT_EQ(from_load, sorted_expected);
    EXPECT_EQ(whole.report.lines, static_cast<int64_t>(c.line_starts.size()));

    for (int n = 1; n <= 6; ++n) {
      SCOPED_TRACE("shards: " + std::to_string(n));
      std::vector<Rec> all;
      int64_t lines = 0;
      for (int i = 0; i < n; ++i) {
        SCOPED_TRACE("shard " + std::to_string(i));
        const Loaded s = load_shard({path}, c.options, Shard{i, n});
        ASSERT_EQ(s.parts.size(), 1u);
        const std::vector<Rec> got = records(s);
        // Exactly the data lines that start in [S·i/n, S·(i+1)/n), whole.
        std::vector<Rec> want;
        for (size_t k = 0; k < c.expected.size(); ++k) {
          const uint64_t at = c.line_starts[c.expected_line[k]];
          if (at >= range_begin(size, i, n) && at < range_begin(size, i + 1, n))
            want.push_back(c.expected[k]);
        }
        EXPECT_EQ(got, want);
        int64_t want_lines = 0;
        for (uint64_t at : c.line_starts)
          want_lines += at >= range_begin(size, i, n) && at < range_begin(size, i + 1, n);
        EXPECT_EQ(s.report.lines, want_lines);
        EXPECT_EQ(s.report.raw_interactions, static_cast<int64_t>(want.size()));
        EXPECT_EQ(s.report.skipped_lines, 0);
        EXPECT_EQ(s.parts[0].has_times(), times && s.parts[0].size() > 0);
        // The shard's own ids, numbered in sorted order (the adjacency user without items is
        // declared in the shard holding its line, as load declares it).
        std::vector<std::string> users = sorted_ids(got, true, strings);
        if (c.options.format == Format::kAdjacency &&
            shard_of(c.line_starts[9], size, n) == i) {  // "9\n", the 10th data line
          users.push_back("9");
          std::sort(users.begin(), users.end(), [](const std::string& a, const std::string& b) {
            return std::stoll(a) < std::stoll(b);
          });
        }
        EXPECT_EQ(s.users.ids(), users);
        EXPECT_EQ(s.items.ids(), sorted_ids(got, false, strings));
        all.insert(all.end(), got.begin(), got.end());
        lines += s.report.lines;
      }
      EXPECT_EQ(all, c.expected);
      EXPECT_EQ(lines, whole.report.lines);  // every line in exactly one shard
    }
  }
}

// 62 lines: line 10 blank, line 41 malformed (an item id that is not an integer).
std::string file_with_bad_line(uint64_t& bad_start) {
  std::string text;
  for (int line = 1; line <= 62; ++line) {
    if (line == 41) bad_start = text.size();
    if (line == 10) text += "\n";
    else if (line == 41) text += "9,x7,1\n";
    else text += fmt::format("{},{},{}\n", line % 6, line, line % 4);
  }
  return text;
}

TEST(LoadShard, MalformedLineNamesItsTrueLineNumberInItsShardOnly) {
  TempDir t;
  uint64_t bad_start = 0;
  const std::string text = file_with_bad_line(bad_start);
  const std::string path = write_file(t.file("f.csv"), text);
  LoadOptions o;
  o.weight_col = "2";
  for (int n = 1; n <= 6; ++n) {
    const int bad_shard = shard_of(bad_start, text.size(), n);
    int64_t lines = 0, skipped = 0;
    for (int i = 0; i < n; ++i) {
      SCOPED_TRACE(fmt::format("shard {} of {}", i, n));
      const std::string msg = shard_error(path, o, Shard{i, n});
      if (i == bad_shard) {
        EXPECT_NE(msg.find("f.csv:41: item id \"x7\" is not an integer"), std::string::npos) << msg;
        EXPECT_EQ(msg.find("data.header"), std::string::npos) << msg;  // only for line 1
      } else {
        EXPECT_EQ(msg, "");
      }
      LoadOptions skip = o;
      skip.skip_errors = true;
      const Loaded s = load_shard({path}, skip, Shard{i, n});
      EXPECT_EQ(s.report.skipped_lines, i == bad_shard ? 1 : 0);
      lines += s.report.lines;
      skipped += s.report.skipped_lines;
    }
    EXPECT_EQ(lines, 61);  // 62 lines less the blank one; the skipped line counts as read
    EXPECT_EQ(skipped, 1);
  }
}

TEST(LoadShard, LineNumbersCountTheWholePrefixOfALargeFile) {
  // About 2.4 MB: the newlines before the last shard are counted over several 1 MiB blocks.
  TempDir t;
  std::string text;
  const int kLines = 300000;
  uint64_t bad_start = 0;
  for (int line = 1; line <= kLines; ++line) {
    if (line == kLines - 3) {
      bad_start = text.size();
      text += "17,\n";
    } else {
      text += fmt::format("{},{}\n", line % 1000, line);
    }
  }
  const std::string path = write_file(t.file("big.csv"), text);
  LoadOptions o;
  const int n = 3;
  ASSERT_EQ(shard_of(bad_start, text.size(), n), 2);
  EXPECT_EQ(shard_error(path, o, Shard{0, n}), "");
  const std::string msg = shard_error(path, o, Shard{2, n});
  EXPECT_NE(msg.find(fmt::format("big.csv:{}: empty item id", kLines - 3)), std::string::npos) << msg;
}

TEST(LoadShard, HeaderHintOnlyForTheFilesFirstLine) {
  // Integer ids and a first line of column names without data.header: the message suggests
  // data.header for line 1 only, also when a later shard's first line is the malformed one.
  TempDir t;
  const std::string text = "user,item\n1,2\n3,4\nx,5\n";
  const std::string path = write_file(t.file("h.csv"), text);
  const uint64_t x_start = text.rfind("x,5");
  for (int n = 1; n <= 6; ++n) {
    const int first = shard_of(0, text.size(), n), last = shard_of(x_start, text.size(), n);
    if (first == last) continue;
    SCOPED_TRACE(fmt::format("{} shards", n));
    const std::string m1 = shard_error(path, LoadOptions(), Shard{first, n});
    EXPECT_NE(m1.find("h.csv:1: user id of 4 bytes is not an integer (set data.id_type: string "
                      "for text ids, or data.header: true)"),
              std::string::npos)
        << m1;
    const std::string m4 = shard_error(path, LoadOptions(), Shard{last, n});
    EXPECT_NE(m4.find("h.csv:4: user id of 1 byte is not an integer (set data.id_type: string "
                      "for text ids)"),
              std::string::npos)
        << m4;
  }
}

TEST(LoadShard, EmptyShardsAndFilesWithoutDataLinesAreNotErrors) {
  TempDir t;
  LoadOptions o;
  o.time_col = "2";
  // More shards than bytes of lines; ranges inside one long line (a 3000-digit item id that is
  // still the integer 5).
  const std::string one = write_file(t.file("one.csv"), "1,2,3\n");
  const std::string long_line =
      write_file(t.file("long.csv"), "1," + std::string(3000, '0') + "5,7\n2,3,4\n");
  for (const std::string& p : {one, long_line}) {
    int64_t lines = 0;
    for (int i = 0; i < 6; ++i) {
      const Loaded s = load_shard({p}, o, Shard{i, 6});
      lines += s.report.lines;
      if (s.report.lines == 0) {
        EXPECT_EQ(s.parts[0].size(), 0);
        EXPECT_EQ(s.users.size(), 0);
        EXPECT_EQ(s.items.size(), 0);
      }
    }
    EXPECT_EQ(lines, p == one ? 1 : 2);
  }
  const Loaded first = load_shard({long_line}, o, Shard{0, 6});
  EXPECT_EQ(records(first), (std::vector<Rec>{Rec{"1", "5", 1.f, 7}}));
  // A header and no data, an empty file, only blank lines: `load` refuses them, shards do not.
  LoadOptions h = o;
  h.header = true;
  h.user_col = "u";
  h.item_col = "i";
  h.time_col = "t";
  const std::string header_only = write_file(t.file("h.csv"), "u,i,t\n");
  const std::string empty = write_file(t.file("e.csv"), "");
  const std::string blank = write_file(t.file("b.csv"), "\n  \r\n\n");
  for (const std::string& p : {header_only, empty, blank}) {
    for (int n = 1; n <= 3; ++n)
      for (int i = 0; i < n; ++i) {
        const Loaded s = load_shard({p}, h, Shard{i, n});
        EXPECT_EQ(s.report.lines, 0);
        EXPECT_EQ(s.parts[0].size(), 0);
      }
  }
  // The header's columns are still checked, in every shard.
  LoadOptions wrong = h;
  wrong.item_col = "item";
  for (int i = 0; i < 3; ++i)
    EXPECT_NE(shard_error(header_only, wrong, Shard{i, 3}).find(
                  "h.csv:1: data.item_col: no column named \"item\" in the header (columns: u, i, t)"),
              std::string::npos);
}

TEST(LoadShard, MissingFileOrDirectoryIsAnError) {
  TempDir t;
  const std::string missing = t.file("none.csv");
  EXPECT_EQ(shard_error(missing, LoadOptions(), Shard{1, 2}), missing + ": data file not found");
  EXPECT_EQ(shard_error(t.str(), LoadOptions(), Shard{0, 2}),
            t.str() + ": is a directory, expected a regular file of interactions");
}

TEST(LoadShard, ExclusionRemovesTheUsersInteractionsInEveryShard) {
  TempDir t;
  std::string text;
  std::vector<Rec> kept;
  int64_t bob = 0;
  for (int k = 0; k < 48; ++k) {
    const std::string user = k % 4 == 1 ? "bob" : k == 30 ? "dan" : "u" + std::to_string(k % 5);
    const std::string item = user == "bob" && k == 9 ? "only-bob" : "i" + std::to_string(k);
    text += user + "," + item + "\n";
    if (user == "bob") ++bob;
    else if (user != "dan") kept.push_back(Rec{user, item, 1.f, 0});
  }
  const std::string path = write_file(t.file("x.csv"), text);
  LoadOptions o;
  o.string_ids = true;
  auto e = std::make_shared<UserExclusion>(UserExclusion::salt_for_sources(source_hashes({path})));
  e->add(UserExclusion::Set::kOptOut, "bob");
  e->add(UserExclusion::Set::kForgotten, "dan");
  o.exclusion = e;
  for (int n = 1; n <= 6; ++n) {
    std::vector<Rec> all;
    int64_t opted_out = 0, forgotten = 0;
    for (int i = 0; i < n; ++i) {
      const Loaded s = load_shard({path}, o, Shard{i, n});
      EXPECT_TRUE(s.report.exclusion_applied);
      EXPECT_FALSE(s.users.find("bob").has_value());
      EXPECT_FALSE(s.users.find("dan").has_value());
      EXPECT_FALSE(s.items.find("only-bob").has_value());
      const std::vector<Rec> got = records(s);
      EXPECT_EQ(s.users.ids(), sorted_ids(got, true, true));
      EXPECT_EQ(s.items.ids(), sorted_ids(got, false, true));
      EXPECT_EQ(s.report.opt_out_users, s.report.opt_out_interactions > 0 ? 1 : 0);
      opted_out += s.report.opt_out_interactions;
      forgotten += s.report.forgotten_interactions;
      all.insert(all.end(), got.begin(), got.end());
    }
    EXPECT_EQ(all, kept);
    EXPECT_EQ(opted_out, bob);
    EXPECT_EQ(forgotten, 1);
  }
}

TEST(LoadShard, GowallaTrainInThreeShardsEqualsLoad) {
  RF_REQUIRE_SHARED(dir, "gowalla");
  LoadOptions o;
  o.format = Format::kAdjacency;
  o.use_cache = false;
  const Loaded whole = load({dir + "/train.txt"}, o);
  ASSERT_EQ(whole.parts[0].size(), 810128);
  // Interactions as (user, item) pairs of integer ids, sorted: load's order after cleaning.
  auto pairs = [](const Loaded& d, std::vector<std::pair<int64_t, int64_t>>& out) {
    const Interactions& x = d.parts[0];
    for (offset_t k = 0; k < x.size(); ++k)
      out.emplace_back(std::stoll(d.users.external(x.users[k])), std::stoll(d.items.external(x.items[k])));
  };
  std::vector<std::pair<int64_t, int64_t>> from_load, from_shards;
  pairs(whole, from_load);
  int64_t lines = 0;
  for (int i = 0; i < 3; ++i) {
    const Loaded s = load_shard({dir + "/train.txt"}, o, Shard{i, 3});
    EXPECT_GT(s.parts[0].size(), 0);
    pairs(s, from_shards);
    lines += s.report.lines;
  }
  EXPECT_EQ(from_shards.size(), 810128u);
  EXPECT_EQ(lines, whole.report.lines);
  std::sort(from_load.begin(), from_load.end());
  std::sort(from_shards.begin(), from_shards.end());
  EXPECT_EQ(from_shards, from_load);
}

}  // namespace
}  // namespace recforge::data
