// parse_int64: the integer parser shared by the CLI's options and the server's query parameters.
#include "core/text.h"

#include <gtest/gtest.h>

namespace recforge {
namespace {

TEST(ParseInt64, AcceptsPlainDecimalsAndRefusesEverythingElse) {
  EXPECT_EQ(parse_int64("0"), 0);
  EXPECT_EQ(parse_int64("20"), 20);
  EXPECT_EQ(parse_int64("+7"), 7);
  EXPECT_EQ(parse_int64("-3"), -3);
  EXPECT_EQ(parse_int64("9223372036854775807"), INT64_MAX);
  for (const char* bad : {"", "+", "++1", " 5", "5 ", "5x", "1.5", "1e3", "0x10",
                          "9223372036854775808", "abc"})
    EXPECT_FALSE(parse_int64(bad).has_value()) << '"' << bad << '"';
}

}  // namespace
}  // namespace recforge
