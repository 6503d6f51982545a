#include "data/load.h"

#include <thread>
#include <gtest/gtest.h>

#include <algorithm>

#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"
#include "test_util.h"

namespace recforge::data {
namespace {

using test::TempDir;
using test::write_file;

LoadOptions no_cache() {
  LoadOptions o;
  o.use_cache = false;
  return o;
}

// Returns the message of the recforge::Error thrown by load(), or "" when none was thrown.
std::string load_error(const std::vector<std::string>& paths, const LoadOptions& o) {
  try {
    load(paths, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::tuple<std::string, std::string, float>> triples(const Loaded& d, int part = 0) {
  std::vector<std::tuple<std::string, std::string, float>> out;
  const auto& x = d.parts[part];
  for (offset_t k = 0; k < x.size(); ++k)
    out.emplace_back(d.users.external(x.users[k]), d.items.external(x.items[k]), x.weights[k]);
  return out;
}

TEST(Load, CsvWithHeaderNamedColumnsWeightsAndTimes) {
  TempDir t;
  const auto p = write_file(t.file("r.csv"),
                            "userId,movieId,rating,timestamp\n"
                            "10,7,4.0,100\n"
                            "2,7,3.5,200\n"
                            "10,3,5,300\n");
  LoadOptions o = no_cache();
  o.header = true;
  o.user_col = "userId";
  o.item_col = "movieId";
  o.weight_col = "rating";
  o.time_col = "timestamp";
  const Loaded d = load({p}, o);
  // Integer ids are numbered in numeric order: users 2 < 10, items 3 < 7.
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"2", "10"}));
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"3", "7"}));
  using T = std::tuple<std::string, std::string, float>;
  EXPECT_EQ(triples(d), (std::vector<T>{T{"2", "7", 3.5f}, T{"10", "3", 5.f}, T{"10", "7", 4.f}}));
  ASSERT_TRUE(d.parts[0].has_times());
  EXPECT_EQ(d.parts[0].times, (std::vector<int64_t>{200, 300, 100}));
  EXPECT_EQ(d.report.lines, 3);
}

// Integer ids below 2^24 are interned through a direct table, the others (negative, large)
// through a hash map; both share one numbering, so the ids still come out in numeric order and
// every interaction keeps its pair, wherever each id was interned.
TEST(Load, SmallLargeAndNegativeIntegerIdsAreNumberedInNumericOrder) {
  TempDir t;
  const auto p = write_file(t.file("r.csv"),
                            "16777216,5\n"
                            "5,-7\n"
                            "-3,16777215\n"
                            "20000000000,5\n"
                            "16777215,9000000000000000000\n"
                            "5,5\n");
  const Loaded d = load({p}, no_cache());
  EXPECT_EQ(d.users.ids(),
            (std::vector<std::string>{"-3", "5", "16777215", "16777216", "20000000000"}));
  EXPECT_EQ(d.items.ids(),
            (std::vector<std::string>{"-7", "5", "16777215", "9000000000000000000"}));
  using T = std::tuple<std::string, std::string, float>;
  std::vector<T> got = triples(d);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<T>{T{"-3", "16777215", 1.f}, T{"16777215", "9000000000000000000", 1.f},
                                 T{"16777216", "5", 1.f}, T{"20000000000", "5", 1.f},
                                 T{"5", "-7", 1.f}, T{"5", "5", 1.f}}));
}

// Users and items are numbered with 32-bit indices: a file with more distinct ids than
// LoadOptions::max_ids (kMaxIds outside tests) is refused at the line of the first id beyond,
// whatever data.on_error says, for integer ids (the dense table below 2^24 and the hash map
// above) and text ids; as many as max_ids load.
TEST(Load, MoreDistinctIdsThanIndicesHoldAreRefusedAtTheFirstIdBeyond) {
  TempDir t;
  LoadOptions o = no_cache();
  o.max_ids = 3;
  const auto users = write_file(t.file("users.csv"), "1,1\n20000000000,1\n1,2\n3,2\n4,1\n");
  EXPECT_EQ(load_error({users}, o),
            users + ":5: more than 3 distinct user ids; recforge numbers users and items with "
                    "32-bit integers (at most 2147483647 of each)");
  o.skip_errors = true;
  EXPECT_EQ(load_error({users}, o).substr(0, users.size() + 33),
            users + ":5: more than 3 distinct user ids");
  o.skip_errors = false;
  const auto items = write_file(t.file("items.csv"), "1,7\n1,30000000000\n2,7\n2,9\n1,30000000001\n");
  EXPECT_EQ(load_error({items}, o).substr(0, items.size() + 33),
            items + ":5: more than 3 distinct item ids");
  // Ids seen before the limit was reached are still accepted after it.
  const auto full = write_file(t.file("full.csv"), "1,7\n20000000000,8\n3,9\n1,9\n3,8\n20000000000,7\n");
  const Loaded d = load({full}, o);
  EXPECT_EQ(d.users.size(), 3);
  EXPECT_EQ(d.items.size(), 3);
  EXPECT_EQ(d.parts[0].size(), 6);
  o.string_ids = true;
  const auto text = write_file(t.file("text.csv"), "a,x\nb,x\nc,y\nb,z\nd,x\n");
  EXPECT_EQ(load_error({text}, o).substr(0, text.size() + 33),
            text + ":5: more than 3 distinct user ids");
  // The second file of a load shares the numbering: its ids count towards the same limit.
  const auto second = write_file(t.file("second.csv"), "3,8\n1,w\n");
  EXPECT_EQ(load_error({full, second}, o).substr(0, second.size() + 33),
            second + ":2: more than 3 distinct item ids");
}

TEST(Load, DetectsTabsAndSpacesAndStringIds) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  const Loaded tsv = load({write_file(t.file("a.tsv"), "bob\tx\nann\ty\nbob\ty\n")}, o);
  EXPECT_EQ(tsv.users.ids(), (std::vector<std::string>{"ann", "bob"}));
  EXPECT_EQ(tsv.parts[0].size(), 3);
  const Loaded sp = load({write_file(t.file("a.txt"), "bob   x\n  ann y  \n")}, o);
  EXPECT_EQ(sp.parts[0].size(), 2);
  EXPECT_EQ(sp.items.ids(), (std::vector<std::string>{"x", "y"}));
}

TEST(Load, QuotedFieldsKeepDelimiters) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  const Loaded d = load({write_file(t.file("q.csv"), "\"smith, j\",\"a \"\"b\"\"\"\nann,c\n")}, o);
  EXPECT_TRUE(d.users.find("smith, j").has_value());
  EXPECT_EQ(d.parts[0].size(), 2);
}

TEST(Load, DoubledQuotesInsideQuotedFieldsAreOneQuote) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  const Loaded d =
      load({write_file(t.file("q.csv"), "ann,\"a \"\"b\"\"\"\nann,\"\"\"\"\nbob,\"plain\"\n")}, o);
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"\"", "a \"b\"", "plain"}));
}

TEST(Load, Utf8ByteOrderMarkBeforeTheFirstLineIsStripped) {
  TempDir t;
  LoadOptions o = no_cache();
  o.header = true;
  o.user_col = "userId";
  o.item_col = "itemId";
  const Loaded h =
      load({write_file(t.file("h.csv"), "\xEF\xBB\xBFuserId,itemId\r\n5,7\r\n6,7\r\n")}, o);
  EXPECT_EQ(h.users.ids(), (std::vector<std::string>{"5", "6"}));
  const Loaded n = load({write_file(t.file("n.csv"), "\xEF\xBB\xBF" "5,7\n6,8\n")}, no_cache());
  EXPECT_EQ(n.users.ids(), (std::vector<std::string>{"5", "6"}));
  EXPECT_EQ(n.items.ids(), (std::vector<std::string>{"7", "8"}));
  EXPECT_EQ(load_error({write_file(t.file("b.csv"), "\xEF\xBB\xBF\n")}, no_cache()),
            t.file("b.csv") + ": the file is empty, expected interactions");
}

TEST(Load, CrlfLineEndsAreStrippedFromStringIds) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  const Loaded d = load({write_file(t.file("c.csv"), "ann,x\r\nbob,\"y\"\r\n")}, o);
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"ann", "bob"}));
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"x", "y"}));
  o.format = Format::kAdjacency;
  const Loaded a = load({write_file(t.file("a.txt"), "ann x y\r\nbob y\r\n")}, o);
  EXPECT_EQ(a.items.ids(), (std::vector<std::string>{"x", "y"}));
}

TEST(Load, ControlCharactersInStringIdsAreRefusedAtFileLineColumn) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  // A lone \r inside a field (not a CRLF line end) at byte 5 of line 2.
  const auto p = write_file(t.file("c.csv"), "ann,x\r\nbob,y\rz\r\ncid,x\r\n");
  EXPECT_EQ(load_error({p}, o),
            t.file("c.csv") + ":2:6: item id \"y\\rz\" contains the control character 0x0d, "
                              "expected printable text: \"<user id>,y\\rz\" (set data.on_error: skip "
                              "to skip such lines)");
  // A tab inside a quoted field, after a doubled quote: the column is that of the raw byte.
  EXPECT_EQ(load_error({write_file(t.file("q.csv"), "ann,x\n\"b\"\"o\tb\",x\n")}, o),
            t.file("q.csv") + ":2:6: user id of 5 bytes contains the control character 0x09, "
                              "expected printable text: \"\"<user id>\",x\" (set data.on_error: "
                              "skip to skip such lines)");
  o.format = Format::kAdjacency;
  EXPECT_NE(load_error({write_file(t.file("a.txt"), "ann x\nbob y\x01 z\n")}, o)
                .find("a.txt:2:6: item id \"y\\x01\" contains the control character 0x01"),
            std::string::npos);
  o.format = Format::kDelimited;
  o.skip_errors = true;
  const Loaded d = load({p}, o);
  EXPECT_EQ(d.report.skipped_lines, 1);
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"ann", "cid"}));
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"x"}));
}

TEST(Load, EchoedInputIsTruncatedToSixtyBytes) {
  TempDir t;
  LoadOptions o = no_cache();
  o.weight_col = "2";
  const std::string big(1000000, '7');
  const std::string msg = load_error({write_file(t.file("l.csv"), "1,2,1\n1," + big + "x,1\n")}, o);
  const std::string field_shown = std::string(60, '7') + "\xE2\x80\xA6 (1000001 bytes)";
  // The user id is replaced by <user id>; the length is that of the line in the file.
  const std::string line_shown =
      "<user id>," + std::string(50, '7') + "\xE2\x80\xA6 (1000005 bytes)";
  EXPECT_EQ(msg, t.file("l.csv") + ":2: item id \"" + field_shown +
                     "\" is not an integer (set data.id_type: string for text ids): \"" +
                     line_shown + "\" (set data.on_error: skip to skip such lines)");
  // Weights, and a cut that would split a UTF-8 character (é is 2 bytes) keeps it whole.
  std::string w = "x";
  for (int k = 0; k < 40; ++k) w += "\xC3\xA9";
  const std::string wmsg = load_error({write_file(t.file("w.csv"), "1,2," + w + "\n")}, o);
  std::string w_shown = "x";
  for (int k = 0; k < 29; ++k) w_shown += "\xC3\xA9";
  EXPECT_NE(wmsg.find("weight \"" + w_shown + "\xE2\x80\xA6 (81 bytes)\" is not a finite number"),
            std::string::npos)
      << wmsg;
}

TEST(Load, NonRegularFilesAreRefusedNotRead) {
  TempDir t;
  LoadOptions o;
  o.cache_dir = t.file("cache");  // the cache key hashes the file: /dev/zero would never end
  EXPECT_EQ(load_error({"/dev/zero"}, o),
            "/dev/zero: is a character device, expected a regular file of interactions");
  EXPECT_EQ(load_error({t.str()}, o),
            t.str() + ": is a directory, expected a regular file of interactions");
  const std::string fifo = t.file("pipe");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(load_error({fifo}, no_cache()),
            fifo + ": is a FIFO (named pipe), expected a regular file of interactions");
  // As the test file of a given split, too; a symbolic link to a regular file is fine.
  const auto train = write_file(t.file("train.csv"), "1,2\n");
  EXPECT_EQ(load_error({train, fifo}, o),
            fifo + ": is a FIFO (named pipe), expected a regular file of interactions");
  std::filesystem::create_symlink(train, t.file("link.csv"));
  EXPECT_EQ(load({t.file("link.csv")}, o).parts[0].size(), 1);
}

TEST(Load, AdjacencyListsWithUsersWithoutItems) {
  TempDir t;
  LoadOptions o = no_cache();
  o.format = Format::kAdjacency;
  const Loaded d = load({write_file(t.file("adj.txt"), "0 5 6 7\n1 5\n2\n")}, o);
  // User 2 has no interactions and is dropped by the minimum of one interaction.
  EXPECT_EQ(d.users.size(), 2);
  EXPECT_EQ(d.items.size(), 3);
  EXPECT_EQ(d.parts[0].size(), 4);
  EXPECT_EQ(d.report.filtered_users, 1);
}

TEST(Load, DuplicatesCombinedBySumMaxLast) {
  TempDir t;
  const auto p = write_file(t.file("d.csv"), "1,1,2,10\n1,1,5,30\n1,1,3,20\n2,1,1,5\n");
  LoadOptions o = no_cache();
  o.weight_col = "2";
  o.time_col = "3";
  o.duplicates = Duplicates::kSum;
  Loaded d = load({p}, o);
  EXPECT_EQ(d.parts[0].size(), 2);
  EXPECT_FLOAT_EQ(d.parts[0].weights[0], 10.f);
  EXPECT_EQ(d.parts[0].times[0], 30);  // combined pairs keep the latest time
  EXPECT_EQ(d.report.duplicates_combined, 2);
  o.duplicates = Duplicates::kMax;
  EXPECT_FLOAT_EQ(load({p}, o).parts[0].weights[0], 5.f);
  o.duplicates = Duplicates::kLast;  // latest timestamp wins (30 → weight 5), not file order
  EXPECT_FLOAT_EQ(load({p}, o).parts[0].weights[0], 5.f);
  o.time_col.reset();  // without timestamps, the last line wins
  EXPECT_FLOAT_EQ(load({p}, o).parts[0].weights[0], 3.f);
}

TEST(Load, MinWeightAndIterativeMinimumsUntilStable) {
  TempDir t;
  // Users a,b,c each with items; item z is rare. After dropping z, user c has 1 item left and
  // is dropped in the second round, which in turn makes item y rare.
  const auto p = write_file(t.file("f.csv"),
                            "a,x,1\na,y,1\na,w,1\n"
                            "b,x,1\nb,w,1\nb,v,0.1\n"
                            "c,y,1\nc,z,1\n"
                            "d,x,1\nd,w,1\n");
  LoadOptions o = no_cache();
  o.string_ids = true;
  o.weight_col = "2";
  o.min_weight = 0.5;
  o.min_user_interactions = 2;
  o.min_item_interactions = 2;
  const Loaded d = load({p}, o);
  EXPECT_EQ(d.report.below_min_weight, 1);  // b,v
  EXPECT_EQ(d.users.ids(), (std::vector<std::string>{"a", "b", "d"}));
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"w", "x"}));
  EXPECT_EQ(d.parts[0].size(), 6);
  EXPECT_GE(d.report.filter_rounds, 3);
}

TEST(Load, TwoFilesShareIdMapsAndFiltersFollowTheFirst) {
  TempDir t;
  const auto train = write_file(t.file("train.txt"), "0 1 2\n1 2 3\n");
  const auto test = write_file(t.file("test.txt"), "0 3\n1 1\n7 1\n0 9\n");
  LoadOptions o = no_cache();
  o.format = Format::kAdjacency;
  const Loaded d = load({train, test}, o);
  ASSERT_EQ(d.parts.size(), 2u);
  EXPECT_EQ(d.users.size(), 2);  // user 7 has no training data
  EXPECT_EQ(d.items.size(), 3);  // item 9 has no training data
  EXPECT_EQ(d.parts[1].size(), 2);
}

TEST(Load, TestRowsOfUnknownUsersAndItemsAreCounted) {
  TempDir t;
  // User 2 has one training interaction and is removed by min_user_interactions 2; user 7 and
  // item 9 are not in the training file at all.
  const auto train = write_file(t.file("train.csv"), "0,1\n0,2\n1,1\n1,2\n2,1\n");
  const auto test = write_file(t.file("test.csv"), "0,2\n7,1\n2,2\n0,9\n7,9\n1,1\n");
  LoadOptions o = no_cache();
  o.min_user_interactions = 2;
  const Loaded d = load({train, test}, o);
  EXPECT_EQ(d.parts[1].size(), 2);
  EXPECT_EQ(d.report.test_unknown_user_interactions, 3);  // 7,1  2,2  7,9
  EXPECT_EQ(d.report.test_unknown_item_interactions, 1);  // 0,9
  EXPECT_EQ(d.report.filtered_interactions, 1);           // 2,1 in the training file
}

TEST(Load, MalformedLinesFailWithFileLineAndText) {
  TempDir t;
  const auto p = write_file(t.file("bad.csv"), "1,2,1\n3,4,1\n5\n6,7,1\n");
  LoadOptions o = no_cache();
  o.weight_col = "2";
  const std::string msg = load_error({p}, o);
  EXPECT_NE(msg.find("bad.csv:3: expected at least 3 fields separated by \",\", got 1: \"<user id>\""),
            std::string::npos)
      << msg;
  o.skip_errors = true;
  const Loaded d = load({p}, o);
  EXPECT_EQ(d.report.skipped_lines, 1);
  EXPECT_EQ(d.parts[0].size(), 3);
}

TEST(Load, EveryLineHasTheFirstLinesNumberOfFields) {
  // A file of one user and their items per line (Gowalla's split) read as delimited took the
  // first two fields of each line and trained on a few percent of the data; now the second
  // line's other count of fields is malformed, and says which format reads it.
  TempDir t;
  LoadOptions o = no_cache();
  o.delimiter = ' ';
  const auto adj = write_file(t.file("adj.txt"), "0 1 2 3 4\n1 2 3\n2 4 5 6 7 8\n");
  EXPECT_EQ(load_error({adj}, o),
            adj + ":2: expected 5 fields separated by spaces, as the first line has, got 3 (for "
                  "one user and all their items on a line, set data.format: adjacency): "
                  "\"<user id> 2 3\" (set data.on_error: skip to skip such lines)");
  o.skip_errors = true;
  const Loaded skipped = load({adj}, o);
  EXPECT_EQ(skipped.report.skipped_lines, 2);  // 1 2 3 and 2 4 5 6 7 8
  EXPECT_EQ(skipped.parts[0].size(), 1);
  // With another delimiter, the hint when a line has two or more fields more.
  o.skip_errors = false;
  const auto wide = write_file(t.file("wide.csv"), "u,i,w\n1,2,1\n3,4,1,9,9\n5,6,1,\n");
  o.delimiter = ',';
  o.header = true;
  o.user_col = "u";
  o.item_col = "i";
  EXPECT_EQ(load_error({wide}, o),
            wide + ":3: expected 3 fields separated by \",\", as the first line has, got 5 (for "
                   "one user and all their items on a line, set data.format: adjacency): "
                   "\"<user id>,4,1,9,9\" (set data.on_error: skip to skip such lines)");
  // A trailing delimiter is one more (empty) field; quoted delimiters are not fields.
  const auto trailing = write_file(t.file("trailing.csv"), "u,i,w\n1,2,1\n5,6,1,\n");
  EXPECT_NE(load_error({trailing}, o).find(":3: expected 3 fields separated by \",\", as the "
                                           "first line has, got 4: "),
            std::string::npos);
  o.string_ids = true;
  const auto quoted = write_file(t.file("quoted.csv"), "u,i,w\n\"a,b\",x,1\nc,\"y,z\",2\n");
  const Loaded q = load({quoted}, o);
  EXPECT_EQ(q.parts[0].size(), 2);
}

TEST(Load, BadValuesAreNamed) {
  TempDir t;
  LoadOptions o = no_cache();
  o.weight_col = "2";
  EXPECT_NE(load_error({write_file(t.file("n.csv"), "1,2,1\n1,3,-2\n")}, o)
                .find("n.csv:2: weight -2 is negative, expected a weight >= 0: \"<user id>,3,-2\""),
            std::string::npos);
  EXPECT_NE(load_error({write_file(t.file("w.csv"), "1,2,abc\n")}, o)
                .find("w.csv:1: weight \"abc\" is not a finite number"),
            std::string::npos);
  EXPECT_NE(load_error({write_file(t.file("i.csv"), "1,2,1\nx,2,1\n")}, o)
                .find("i.csv:2: user id of 1 byte is not an integer (set data.id_type: string"),
            std::string::npos);
  EXPECT_NE(load_error({write_file(t.file("h.csv"), "user,item,w\n1,2,1\n")}, o)
                .find("h.csv:1: user id of 4 bytes is not an integer (set data.id_type: string for "
                      "text ids, or data.header: true)"),
            std::string::npos);
  o.time_col = "3";
  EXPECT_NE(load_error({write_file(t.file("t.csv"), "1,2,1,2020-01-01\n")}, o)
                .find("t.csv:1: timestamp \"2020-01-01\" is not an integer"),
            std::string::npos);
}

TEST(Load, MalformedLinesAreQuotedWithTheirUserIdReplaced) {
  // User ids stay out of logs and errors: the user field of a quoted line reads <user id>, a
  // user id itself is named by its length, and a line not split as far as its user field is
  // not quoted at all. Everything else (file:line:column, the other fields) is shown.
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  o.delimiter = ',';
  o.weight_col = "2";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"hygiene-user-0001,item1,abc\n",
       ":1: weight \"abc\" is not a finite number in float32's range (at most 3.4e38): "
       "\"<user id>,item1,abc\""},
      {"hygiene-user-0002\n",
       ":1: expected at least 3 fields separated by \",\", got 1: \"<user id>\""},
      // (A first line whose quoting is broken is refused on its own: TEST below.)
      {"u,i,1\nhygiene-user-0003,\"item1,1\n",
       ":2: unterminated quoted field: \"<user id>,\"item1,1\""},
      {"u,i,1\n\"hygiene-user-0004,item1,1\n",
       ":2: unterminated quoted field: (the line's 26 bytes are not shown: it may hold a user id)"},
      {"u,i,1\nhygiene-user-0008,\"item\"1,1\n",
       ":2: text after the closing quote of a quoted field (a '\"' inside a quoted field is "
       "written as two): \"<user id>,\"item\"1,1\""},
      {"hygiene\x02user-0005,item1,1\n",
       ":1:8: user id of 17 bytes contains the control character 0x02, expected printable text: "
       "\"<user id>,item1,1\""},
  };
  int k = 0;
  for (const auto& [text, expected] : cases) {
    const std::string p = write_file(t.file(fmt::format("m{}.csv", k++)), text);
    const std::string msg = load_error({p}, o);
    EXPECT_EQ(msg.find("hygiene"), std::string::npos) << msg;
    EXPECT_EQ(msg, p + expected + " (set data.on_error: skip to skip such lines)");
  }
  // The user in another column; adjacency lists (the user first).
  o.user_col = "1";
  o.item_col = "0";
  const std::string c = write_file(t.file("c.csv"), "item1,hygiene-user-0006,x\n");
  EXPECT_EQ(load_error({c}, o), c + ":1: weight \"x\" is not a finite number in float32's range "
                                    "(at most 3.4e38): \"item1,<user id>,x\" (set data.on_error: "
                                    "skip to skip such lines)");
  LoadOptions a = no_cache();
  a.string_ids = true;
  a.format = Format::kAdjacency;
  const std::string adj = write_file(t.file("a.txt"), "hygiene-user-0007 item1 it\x01zz\n");
  EXPECT_EQ(load_error({adj}, a),
            adj + ":1:27: item id \"it\\x01zz\" contains the control character 0x01, expected "
                  "printable text: \"<user id> item1 it\\x01zz\" (set data.on_error: skip to "
                  "skip such lines)");
}

TEST(Load, AFirstLineWithBrokenQuotingIsRefusedEvenWhenSkippingBadLines) {
  // The first line gives the number of fields every line must have: skipped, it left that
  // check off for the whole file (and a header of no columns).
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  o.delimiter = ',';
  o.skip_errors = true;
  const std::string p = write_file(t.file("q.csv"), "\"someone,item1\nu1,i1\nu2,i2,3,4\n");
  EXPECT_EQ(load_error({p}, o),
            p + ":1: the first line has broken quoting: unterminated quoted field; every line "
                "must have the first line's number of fields, so it cannot be skipped, even with "
                "data.on_error: skip; fix that line");
  o.header = true;
  o.user_col = "user";
  o.item_col = "item";
  const std::string h = write_file(t.file("h.csv"), "user,\"item\"x\nu1,i1\n");
  EXPECT_EQ(load_error({h}, o),
            h + ":1: the first line (the header) has broken quoting: text after the closing "
                "quote of a quoted field (a '\"' inside a quoted field is written as two); every "
                "line must have the first line's number of fields, so it cannot be skipped, even "
                "with data.on_error: skip; fix that line");
  // A name the header gives twice is ambiguous (it took the first column, silently).
  const std::string d = write_file(t.file("d.csv"), "user,item,score,item\nu1,i1,1,i2\n");
  EXPECT_EQ(load_error({d}, o),
            d + ":1: data.item_col: the header names two columns \"item\" (0-based columns 1 "
                "and 3); give the column's 0-based index instead");
}

TEST(Load, MissingEmptyAndHeaderOnlyFiles) {
  TempDir t;
  LoadOptions o = no_cache();
  EXPECT_EQ(load_error({t.file("nope.csv")}, o), t.file("nope.csv") + ": data file not found");
  EXPECT_EQ(load_error({write_file(t.file("e.csv"), "")}, o),
            t.file("e.csv") + ": the file is empty, expected interactions");
  EXPECT_EQ(load_error({write_file(t.file("blank.csv"), "\n  \n")}, o),
            t.file("blank.csv") + ": the file is empty, expected interactions");
  o.header = true;
  EXPECT_EQ(load_error({write_file(t.file("ho.csv"), "u,i\n")}, o),
            t.file("ho.csv") + ": no data lines after the header, expected interactions");
}

TEST(Load, UnknownColumnNameListsTheHeader) {
  TempDir t;
  LoadOptions o = no_cache();
  o.header = true;
  o.user_col = "user";
  const std::string msg = load_error({write_file(t.file("c.csv"), "uid,iid\n1,2\n")}, o);
  EXPECT_NE(msg.find("c.csv:1: data.user_col: no column named \"user\" in the header (columns: "
                     "uid, iid)"),
            std::string::npos)
      << msg;
}

TEST(Load, EverythingFilteredIsAnError) {
  TempDir t;
  LoadOptions o = no_cache();
  o.min_user_interactions = 5;
  const std::string msg = load_error({write_file(t.file("s.csv"), "1,2\n1,3\n")}, o);
  EXPECT_NE(msg.find("no interactions left after filtering"), std::string::npos) << msg;
}

TEST(Load, GowallaLightGcnSplitCounts) {
  RF_REQUIRE_SHARED(dir, "gowalla");
  TempDir t;
  LoadOptions o;
  o.format = Format::kAdjacency;
  o.cache_dir = t.str();
  const Loaded d = load({dir + "/train.txt", dir + "/test.txt"}, o);
  EXPECT_EQ(d.users.size(), 29858);
  EXPECT_EQ(d.items.size(), 40981);
  EXPECT_EQ(d.parts[0].size(), 810128);
  EXPECT_EQ(d.parts[1].size(), 217242);
  EXPECT_EQ(d.report.duplicates_combined, 0);
  // Ids 0..n-1 map to themselves.
  EXPECT_EQ(d.users.external(12345), "12345");
  EXPECT_EQ(d.items.external(40980), "40980");
  EXPECT_FALSE(d.report.from_cache);
  const Loaded again = load({dir + "/train.txt", dir + "/test.txt"}, o);
  EXPECT_TRUE(again.report.from_cache);
  EXPECT_EQ(again.parts[1].items, d.parts[1].items);
}

TEST(Load, MovieLensRatingsWithHeader) {
  RF_REQUIRE_SHARED(dir, "ml-latest-small");
  LoadOptions o = no_cache();
  o.header = true;
  o.user_col = "userId";
  o.item_col = "movieId";
  o.weight_col = "rating";
  o.time_col = "timestamp";
  const Loaded d = load({dir + "/ratings.csv"}, o);
  EXPECT_EQ(d.users.size(), 610);
  EXPECT_EQ(d.items.size(), 9724);
  EXPECT_EQ(d.parts[0].size(), 100836);
}

}  // namespace
}  // namespace recforge::data

namespace recforge::data {
namespace {

// A copy of an IdMap used to share the original's lookup table, whose keys point into the
// original's strings: after the original was gone, find() on the copy read freed memory (ASan's
// heap-use-after-free). The table was also built lazily without a lock, so two threads calling
// find() first raced; the recommend library worked around it by calling find() before sharing.
TEST(IdMapLookup, ACopyOutlivesItsOriginalAndManyThreadsFindAtOnce) {
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i) ids.push_back("long-external-id-" + std::to_string(i));
  std::optional<IdMap> original(IdMap{ids});
  ASSERT_EQ(original->find("long-external-id-7"), 7);  // builds the original's table
  IdMap copy = *original;
  IdMap assigned;
  assigned = *original;
  original.reset();
  EXPECT_EQ(copy.find("long-external-id-1999"), 1999);
  EXPECT_EQ(assigned.find("long-external-id-3"), 3);
  EXPECT_FALSE(copy.find("long-external-id-2000"));

  const IdMap fresh{ids};  // table not built yet: the threads race to build it
  std::vector<int> wrong(8, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i)
        if (fresh.find(ids[static_cast<size_t>(i)]) != i) ++wrong[static_cast<size_t>(t)];
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(wrong[static_cast<size_t>(t)], 0) << "thread " << t;
}

// Ids go into JSON and the export's id files: bytes of another encoding (Latin-1 "caf\xe9") are
// refused where they are read, not by every JSON output later.
TEST(Load, StringIdsThatAreNotUtf8AreRefusedAtFileLineColumn) {
  TempDir t;
  LoadOptions o = no_cache();
  o.string_ids = true;
  EXPECT_EQ(load_error({write_file(t.file("l.csv"), "ann,caf\xC3\xA9\nbob,caf\xE9\n")}, o),
            t.file("l.csv") + ":2:8: item id \"caf\\xe9\" holds byte 0xE9, which is not UTF-8; "
                              "expected UTF-8 text (convert the file, e.g. with iconv): "
                              "\"<user id>,caf\\xe9\" (set data.on_error: skip to skip such lines)");
  // A user id is not shown, nor its bytes in the line.
  const std::string user = load_error({write_file(t.file("u.csv"), "ann,x\nQ\xF0\x9FRS,x\n")}, o);
  EXPECT_NE(user.find(t.file("u.csv") + ":2:2: user id of 5 bytes holds byte 0xF0, which is not "
                                        "UTF-8"),
            std::string::npos)
      << user;
  EXPECT_EQ(user.find("RS"), std::string::npos) << user;
  // UTF-8 of every length is read as it is.
  const Loaded d = load({write_file(t.file("ok.csv"), "\xC3\xA9,\xE2\x82\xAC\n\xF0\x9F\x98\x80,x\n")}, o);
  EXPECT_EQ(d.items.ids(), (std::vector<std::string>{"x", "\xE2\x82\xAC"}));
  o.skip_errors = true;
  const Loaded skipped = load({write_file(t.file("s.csv"), "ann,x\nbob,\xFF\ncid,y\n")}, o);
  EXPECT_EQ(skipped.report.skipped_lines, 1);
  EXPECT_EQ(skipped.users.ids(), (std::vector<std::string>{"ann", "cid"}));
}

// data.header: true on a file without a header line: its first line is data, and listing its
// "column names" would quote a user id.
TEST(Load, AFirstLineOfDataTakenForTheHeaderIsNotListed) {
  TempDir t;
  LoadOptions o = no_cache();
  o.header = true;
  o.user_col = "userId";
  o.string_ids = true;
  const std::string msg = load_error(
      {write_file(t.file("h.csv"), "secretuser42,item9,3,1600000000\nann,item2,1,1600000001\n")}, o);
  EXPECT_EQ(msg, t.file("h.csv") + ":1: data.user_col: no column named \"userId\" in the header, "
                                   "and the first line looks like data rather than column names "
                                   "(it holds numbers; its 4 fields are not shown, as one may be "
                                   "a user id); set data.header: false and give 0-based column "
                                   "indexes, or add a header line");
  EXPECT_EQ(msg.find("secretuser42"), std::string::npos);
}

// A sum of duplicates past float32 is refused where the duplicates are combined, in every part
// (the test file's too), before a cache entry is written.
TEST(Load, DuplicatesThatSumPastFloat32AreRefusedBeforeTheCacheEntry) {
  TempDir t;
  LoadOptions o;
  o.cache_dir = t.file("cache");
  o.weight_col = "2";
  const auto train = write_file(t.file("train.csv"), "1,10,1\n1,11,1\n2,10,1\n2,11,1\n");
  const auto test = write_file(t.file("test.csv"), "1,10,3e38\n1,10,3e38\n");
  EXPECT_EQ(load_error({train, test}, o),
            test + ": the weights of a user (an id of 1 byte) and item \"10\" sum to inf, past "
                   "float32's largest value 3.4e38 (data.duplicates: sum adds the weights of "
                   "repeated pairs); lower the weights or set data.duplicates: max");
  std::error_code ec;
  EXPECT_TRUE(!std::filesystem::exists(t.file("cache"), ec) ||
              std::filesystem::is_empty(t.file("cache"), ec));
  o.duplicates = Duplicates::kMax;
  EXPECT_EQ(load({train, test}, o).parts[1].weights, std::vector<float>{3e38f});
}

}  // namespace
}  // namespace recforge::data
