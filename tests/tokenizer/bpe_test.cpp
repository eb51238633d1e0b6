// BPE model, pre-tokenizer and added-token rules on small hand-made tokenizers whose answers can be
// worked out by hand, plus the quadratic merge loop as the slow twin of the heap merge.
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;

// A character-level BPE (no pre-tokenizer: the whole text is one word) over the given vocab / merges.
Tokenizer char_bpe(json vocab, json merges, json extra = json::object()) {
  json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  model.update(extra);
  return Tokenizer::from_json(json{{"model", model}, {"decoder", nullptr}}.dump());
}

using Ids = std::vector<int32_t>;

TEST(Bpe, LowestRankMergesFirst) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  EXPECT_EQ(char_bpe(vocab, {"a b", "ab c"}).encode("abc"), (Ids{5}));
  EXPECT_EQ(char_bpe(vocab, {"b c", "a b", "ab c"}).encode("abc"), (Ids{0, 4}));  // "b c" wins, no "a bc"
  EXPECT_EQ(char_bpe(vocab, json::array({json::array({"b", "c"}), json::array({"a", "bc"})})).encode("abc"), (Ids{5}));
}

TEST(Bpe, LeftmostOnEqualRank) {
  const json vocab = {{"a", 0}, {"aa", 1}};
  EXPECT_EQ(char_bpe(vocab, {"a a"}).encode("aaa"), (Ids{1, 0}));
  EXPECT_EQ(char_bpe(vocab, {"a a"}).encode("aaaaa"), (Ids{1, 1, 0}));
}

TEST(Bpe, IgnoreMergesTakesWholeWordsFromTheVocab) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}};
  EXPECT_EQ(char_bpe(vocab, {"a b"}).encode("abc"), (Ids{3, 2}));
  EXPECT_EQ(char_bpe(vocab, {"a b"}, {{"ignore_merges", true}}).encode("abc"), (Ids{4}));
}

TEST(Bpe, UnknownCharactersUnkFuseUnkByteFallback) {
  const json vocab = {{"a", 0}, {"<unk>", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
  EXPECT_EQ(char_bpe(vocab, json::array()).encode("aéa"), (Ids{0, 0}));  // dropped without unk_token, as HF
  EXPECT_EQ(char_bpe(vocab, json::array(), {{"unk_token", "<unk>"}}).encode("aééa"), (Ids{0, 1, 1, 0}));
  EXPECT_EQ(char_bpe(vocab, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}}).encode("aééa"), (Ids{0, 1, 0}));
  EXPECT_EQ(char_bpe(vocab, json::array(), {{"byte_fallback", true}, {"unk_token", "<unk>"}}).encode("éx"), (Ids{2, 3, 1}));
}

TEST(Bpe, ContinuingSubwordPrefixAndSuffix) {
  const json vocab = {{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"a##b", 3}, {"ab", 4}};
  const Tokenizer tok = char_bpe(vocab, {"a ##b"}, {{"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}});
  EXPECT_EQ(tok.encode("abc"), (Ids{4, 2}));
}

TEST(Bpe, HeapMergeEqualsSimpleMergeOnRandomWords) {
  // Slow twin: the quadratic loop (short words) against the heap (long words) on the same inputs.
  const auto j = tok::read_tokenizer_json(read_file(tok_fixture("trained/tokenizer.json")), "trained");
  const auto model = tok::BpeModel::from_json(j.tree["model"], j.lists, true, "trained");
  std::mt19937 rng(7);
  const std::string alphabet = "aeiou tnsrhldcmTHE,.'\n";
  for (int round = 0; round < 300; ++round) {
    std::string word;
    const size_t n = 1 + rng() % 300;
    for (size_t k = 0; k < n; ++k) word += alphabet[rng() % alphabet.size()];
    Ids heap, simple, cached;
    model->encode_word_heap(word, heap);
    model->encode_word_simple(word, simple);
    model->encode_word(word, cached);
    ASSERT_EQ(heap, simple) << word;
    ASSERT_EQ(cached, simple) << word;
  }
}

std::vector<std::string> split_words(const json& pre_tokenizer, std::string text) {
  const auto pt = tok::PreTokenizer::from_json(pre_tokenizer, "test");
  tok::Ranges ranges;
  pt.split(text, ranges);
  std::vector<std::string> words;
  for (auto [b, e] : ranges) words.push_back(text.substr(b, e - b));
  return words;
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, SplitBehavioursAsHFDocumentsThem) {
  auto split = [](const char* behavior, bool invert = false) {
    return split_words({{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}},
                       "the-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (Words{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (Words{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Words{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (Words{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Words{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split("Removed", true), (Words{"-", "-", "-"}));
}

TEST(PreTokenizer, RegexUsesOnigurumaWhiteSpace) {
  // U+180E is not White_Space (Oniguruma, Rust) although PCRE2's own \s matches it.
  const json ws = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Removed"}};
  EXPECT_EQ(split_words(ws, "a\u180Eb c\u00A0d\u3000e\u0085f"), (Words{"a\u180Eb", "c", "d", "e", "f"}));
  const json not_ws = {{"type", "Split"}, {"pattern", {{"Regex", "[^\\s]+"}}}, {"behavior", "Removed"}};
  EXPECT_EQ(split_words(not_ws, "a\u180Eb c"), (Words{" "}));
}

TEST(PreTokenizer, ByteLevelPrefixSpaceAndGpt2Regex) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(split_words(bl, "Hello world's  end"), (Words{" Hello", " world", "'s", " ", " end"}));
  EXPECT_EQ(split_words(bl, " x"), (Words{" x"}));
}

TEST(AddedTokens, StripAndSingleWordRules) {
  json j = json::parse(read_file(tok_fixture("trained/tokenizer.json")));
  const Tokenizer tok = Tokenizer::from_json(j.dump());
  const int32_t mask = *tok.token_id("<mask>"), sep = *tok.token_id("[SEP]"), w = *tok.token_id("<w>");
  // lstrip: the spaces before <mask> belong to it.
  EXPECT_EQ(tok.encode("   <mask>"), (Ids{mask}));
  // rstrip: the whitespace after [SEP] belongs to it.
  EXPECT_EQ(tok.encode("[SEP] \n\t "), (Ids{sep}));
  // single_word: only between non-word characters.
  EXPECT_EQ(tok.encode("<w>"), (Ids{w}));
  const auto inside = tok.encode("x<w>y");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), w), 0);
  // normalized: "café" matches the NFD spelling after NFC.
  EXPECT_EQ(tok.encode("cafe\u0301"), (Ids{*tok.token_id("café")}));
  // A non-alphabet added token ("New York") decodes to its own text.
  EXPECT_EQ(tok.decode(tok.encode("New York")), "New York");
}

}  // namespace
}  // namespace wick::test
