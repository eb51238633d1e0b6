// The one PCRE2 wrapper: Python's re.fullmatch and re.search semantics, UTF-8, and errors.
#include <gtest/gtest.h>

#include <string>

#include "core/regex.h"

namespace wick::test {
namespace {

Regex must_compile(std::string_view pattern, RegexOptions options = {}) {
  std::string error;
  std::optional<Regex> r = Regex::compile(pattern, options, error);
  EXPECT_TRUE(r.has_value()) << error;
  return std::move(*r);
}

TEST(Regex, FullMatchIsPythonsFullmatch) {
  const Regex r = must_compile(R"(.*\.(q_proj|v_proj))", {.full_match = true});
  EXPECT_TRUE(r.matches("model.layers.0.self_attn.q_proj"));
  EXPECT_FALSE(r.matches("model.layers.0.self_attn.q_proj.lora_A"));  // must end at the end
  EXPECT_FALSE(r.matches("q_proj"));
  const Regex alt = must_compile("a|ab", {.full_match = true});  // the alternation is grouped before \z
  EXPECT_TRUE(alt.matches("ab"));
}

TEST(Regex, FindSearchesFromAStartWithTheWholeSubjectAsContext) {
  const Regex r = must_compile(R"(\bword\b)");
  const auto m = r.find("a word, swords, word", 3);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->begin, 16u);
  EXPECT_EQ(m->end, 20u);
  EXPECT_FALSE(r.find("swordsman").has_value());
}

TEST(Regex, UnicodeClassesWithUtf) {
  const Regex r = must_compile(R"(\p{L}+)", {.utf = true});
  const auto m = r.find("12 héllo");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(std::string("12 héllo").substr(m->begin, m->end - m->begin), "héllo");
}

TEST(Regex, SyntaxErrorGivesPcresMessage) {
  std::string error;
  EXPECT_FALSE(Regex::compile("(unclosed", {}, error).has_value());
  EXPECT_NE(error.find("missing closing parenthesis"), std::string::npos) << error;
}

}  // namespace
}  // namespace wick::test
