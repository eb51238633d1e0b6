// Stop strings: the matcher on text pieces, then end to end with a crafted vocabulary whose tokens
// are one or two letters, so a stop string can be put across any token boundary.
#include <gtest/gtest.h>

#include "generate/stop_matcher.h"
#include "generate_test_util.h"
#include "test_util.h"
#include "wick/generator.h"

namespace wick::test {
namespace {

// Feeds pieces one by one; returns what was released per piece and whether it stopped.
std::vector<std::string> feed(StopMatcher& m, const std::vector<std::string>& pieces, bool* stopped = nullptr) {
  std::vector<std::string> out;
  for (const auto& p : pieces) {
    const auto o = m.push(p);
    out.push_back(o.text);
    if (o.stopped) {
      if (stopped) *stopped = true;
      break;
    }
  }
  return out;
}

TEST(StopMatcher, MatchAcrossPiecesHoldsThePartialMatch) {
  StopMatcher m({"END"});
  bool stopped = false;
  const auto out = feed(m, {"abc E", "N", "D tail"}, &stopped);
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, (std::vector<std::string>{"abc ", "", ""}));  // "E", "EN" held, never shown
}

TEST(StopMatcher, FalseStartIsReleasedWhenItStopsMatching) {
  StopMatcher m({"END"});
  bool stopped = false;
  const auto out = feed(m, {"xE", "N", "O", "y"}, &stopped);
  EXPECT_FALSE(stopped);
  EXPECT_EQ(out, (std::vector<std::string>{"x", "", "ENO", "y"}));
}

TEST(StopMatcher, EarliestOfSeveralStopsWinsAndOverlapsAreFound) {
  StopMatcher m({"bcd", "ab", "xyz"});
  bool stopped = false;
  EXPECT_EQ(feed(m, {"zza", "bcd"}, &stopped), (std::vector<std::string>{"zz", ""}));  // "ab" at 0 beats "bcd" at 1
  EXPECT_TRUE(stopped);
  // "aab" against "ab": the tail "a" is held, then "aa" releases one "a" and keeps the other.
  StopMatcher n({"ab"});
  EXPECT_EQ(feed(n, {"a", "a", "b"}, &stopped), (std::vector<std::string>{"", "a", ""}));
}

TEST(StopMatcher, StopInsideOnePieceAndFlushAtTheEnd) {
  StopMatcher m({"\n\n"});
  const auto o = m.push("line one\n\nline two");
  EXPECT_TRUE(o.stopped);
  EXPECT_EQ(o.text, "line one");
  StopMatcher k({"</s>"});
  EXPECT_EQ(k.push("done </").text, "done ");
  EXPECT_EQ(k.held(), 2u);
  EXPECT_EQ(k.flush(), "</");  // generation ended for another reason: the held text is real text
}

TEST(StopMatcher, MultiByteCharactersAreNeverSplit) {
  StopMatcher m({"éclair"});
  EXPECT_EQ(m.push("un é").text, "un ");  // "é" (2 bytes) held whole
  EXPECT_EQ(m.push("t").text, "ét");
}

class StopEndToEnd : public ::testing::Test {
 protected:
  Generator gen{Model::load(fixture("models/tiny-tied")), tiny_tokenizer()};
  GenerateParams params{.max_tokens = 40, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  std::vector<int32_t> prompt{5, 60, 70, 80};
};

// For stop strings put across one, two and three token boundaries of the unstopped output: the text
// ends right before the first occurrence, the last token is the one completing it, no streamed piece
// ever shows stop-string text, and all paths agree.
TEST_F(StopEndToEnd, StopStringsAcrossTokenBoundaries) {
  std::vector<std::string> pieces;
  const GenerateResult free_run = gen.generate_stream(prompt, params, [&](const StreamToken& t) {
    pieces.push_back(t.text);
    return true;
  });
  ASSERT_EQ(free_run.text.size(), [&] { size_t n = 0; for (auto& p : pieces) n += p.size(); return n; }());
  int tested = 0;
  size_t offset = 0;
  for (size_t i = 0; i + 3 < pieces.size() && tested < 6; offset += pieces[i].size(), ++i) {
    if (pieces[i].empty() || pieces[i + 1].empty()) continue;
    for (size_t span : {1u, 2u, 3u}) {
      // From the last letter of piece i through the first letter of piece i + span.
      size_t end = offset + pieces[i].size();
      for (size_t k = 1; k < span; ++k) end += pieces[i + k].size();
      if (pieces[i + span].empty()) continue;
      const std::string stop = free_run.text.substr(offset + pieces[i].size() - 1, end + 1 - (offset + pieces[i].size() - 1));
      SCOPED_TRACE("stop '" + stop + "'");
      GenerateParams p = params;
      p.stop = {stop, "no such text at all"};
      const size_t at = free_run.text.find(stop);
      // The token completing the first occurrence.
      size_t last = 0, upto = 0;
      while (upto + pieces[last].size() < at + stop.size()) upto += pieces[last++].size();
      std::string streamed;
      const GenerateResult r = gen.generate_stream(prompt, p, [&](const StreamToken& t) {
        streamed += t.text;
        EXPECT_EQ(streamed.find(stop), std::string::npos);
        EXPECT_EQ(free_run.text.compare(0, streamed.size(), streamed), 0) << "emitted text was not final";
        return true;
      });
      EXPECT_EQ(r.finish, FinishReason::stop);
      EXPECT_EQ(r.text, free_run.text.substr(0, at));
      EXPECT_EQ(streamed, r.text);
      EXPECT_EQ(r.output_ids, std::vector<int32_t>(free_run.output_ids.begin(), free_run.output_ids.begin() + long(last) + 1));
      std::string iterated;
      for (const StreamToken& t : gen.stream(prompt, p)) iterated += t.text;
      EXPECT_EQ(iterated, r.text);
      AsyncStream a = gen.stream_async(prompt, p);
      std::string async_text;
      while (auto t = a.next()) async_text += t->text;
      EXPECT_EQ(async_text, r.text);
      ++tested;
    }
  }
  EXPECT_GE(tested, 6);
}

// A partial match pending when max_tokens is reached is real text: it is released with the last token.
TEST_F(StopEndToEnd, HeldTextIsReleasedAtLength) {
  const GenerateResult free_run = gen.generate(prompt, params);
  GenerateParams p = params;
  p.stop = {free_run.text.substr(free_run.text.size() - 1) + "#"};  // its first letter ends the text
  std::vector<StreamToken> tokens;
  const GenerateResult r = gen.generate_stream(prompt, p, [&](const StreamToken& t) {
    tokens.push_back(t);
    return true;
  });
  EXPECT_EQ(r.finish, FinishReason::length);
  EXPECT_EQ(r.text, free_run.text);
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens.back().finish, FinishReason::length);
}

TEST_F(StopEndToEnd, EmptyStopStringIsRejected) {
  GenerateParams p = params;
  p.stop = {""};
  EXPECT_WICK_ERROR(gen.generate(prompt, p), ErrorKind::bad_input, "--stop");
}

}  // namespace
}  // namespace wick::test
