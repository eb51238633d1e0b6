// UTF-8 helpers: validation, U+FFFD substitution of maximal subparts (as Rust's from_utf8_lossy),
// and the GPT-2 byte-level alphabet.
#include <set>

#include <gtest/gtest.h>

#include "tokenizer/unicode.h"

namespace wick::tok {
namespace {

std::string lossy(std::string_view s) {
  std::string out;
  append_lossy_utf8(out, s);
  return out;
}

TEST(Unicode, LossyReplacesMaximalSubparts) {
  // The Unicode Standard's example (ch. 3, "U+FFFD Substitution of Maximal Subparts").
  EXPECT_EQ(lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(lossy("\xE2\x82"), "\uFFFD");            // incomplete at the end: one U+FFFD
  EXPECT_EQ(lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate: each byte
  EXPECT_EQ(lossy("\xC0\xAF"), "\uFFFD\uFFFD");      // overlong
  EXPECT_EQ(lossy("ok €"), "ok €");
}

TEST(Unicode, Validation) {
  EXPECT_EQ(find_invalid_utf8("plain ascii and ünïcödé 😀"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8(std::string_view("nul\0ok", 6)), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("12345678901234567\x80"), 17u);
  EXPECT_EQ(find_invalid_utf8("\xF4\x8F\xBF\xBF"), std::string_view::npos);  // U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);
}

TEST(Unicode, ByteLevelAlphabetIsABijection) {
  std::set<uint16_t> seen(byte_to_code_point().begin(), byte_to_code_point().end());
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(byte_level_encode(" \n\t!"), "ĠĊĉ!");
  std::string bytes;
  ASSERT_TRUE(byte_level_decode("ĠworldĊ", bytes));
  EXPECT_EQ(bytes, " world\n");
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  bytes.clear();
  ASSERT_TRUE(byte_level_decode(byte_level_encode(all), bytes));
  EXPECT_EQ(bytes, all);
  EXPECT_FALSE(byte_level_decode("a b", bytes));  // ' ' is not in the alphabet
}

}  // namespace
}  // namespace wick::tok
