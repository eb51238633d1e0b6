// Unigram tokenizers as sentencepiece models convert (Metaspace, TemplateProcessing <s> $A </s>, the Metaspace
// decoder), on a small vocab whose best segmentations are worked out by hand from the scores.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

json special(int id, const char* content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", false}, {"special", true}};
}

// <s> 0, <pad> 1, </s> 2, <unk> 3, ▁ 4, ▁a 5, b 6, ▁ab 7, c 8, <mask> 9. Min score -3: unk scores -13.
json unigram_json() {
  json vocab = json::array();
  for (const auto& [piece, score] : std::vector<std::pair<std::string, double>>{
           {"<s>", 0.0}, {"<pad>", 0.0}, {"</s>", 0.0}, {"<unk>", 0.0}, {"\xE2\x96\x81", -2.0}, {"\xE2\x96\x81" "a", -1.0},
           {"b", -2.0}, {"\xE2\x96\x81" "ab", -2.5}, {"c", -3.0}, {"<mask>", 0.0}}) {
    vocab.push_back(json::array({piece, score}));
  }
  const json s = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  const json e = {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}};
  const json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const json b = {{"Sequence", {{"id", "B"}, {"type_id", 0}}}};
  return {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", {special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>"), special(9, "<mask>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}}},
      {"post_processor", {{"type", "TemplateProcessing"}, {"single", {s, a, e}}, {"pair", {s, a, e, e, b, e}},
                          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                                              {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}}},
      {"decoder", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}}},
      {"model", {{"type", "Unigram"}, {"unk_id", 3}, {"vocab", vocab}, {"byte_fallback", false}}}};
}

TEST(Unigram, BestTotalScore) {
  const Tokenizer tok = Tokenizer::from_json(unigram_json().dump());
  EXPECT_EQ(tok.encode("ab"), (Ids{7}));         // ▁ab -2.5 beats ▁a b -3
  EXPECT_EQ(tok.encode("abc"), (Ids{7, 8}));     // ▁ab c -5.5 beats ▁a b c -6
  EXPECT_EQ(tok.encode("a"), (Ids{5}));
  EXPECT_EQ(tok.encode("ab", {.add_special_tokens = true}), (Ids{0, 7, 2}));
}

TEST(Unigram, UnknownCharactersAreUnkAndFused) {
  const Tokenizer tok = Tokenizer::from_json(unigram_json().dump());
  EXPECT_EQ(tok.encode("a d"), (Ids{5, 4, 3}));   // "▁a", "▁d": ▁ then unk
  EXPECT_EQ(tok.encode("dd"), (Ids{4, 3}));       // two unknown characters: one unk
  EXPECT_EQ(tok.encode("dcd"), (Ids{4, 3, 8, 3}));
  EXPECT_EQ(tok.encode("é"), (Ids{4, 3}));
}

TEST(Unigram, MetaspaceSplitsBeforeEachReplacement) {
  const Tokenizer tok = Tokenizer::from_json(unigram_json().dump());
  EXPECT_EQ(tok.encode("a  b"), (Ids{5, 4, 4, 6}));  // "▁a", "▁", "▁b"
  EXPECT_EQ(tok.encode(" ab"), (Ids{7}));            // already starts with a space: nothing prepended
  // Added tokens cut the text; "always" prepends to every piece, "first" only to the piece at the start.
  EXPECT_EQ(tok.encode("ab<mask>ab"), (Ids{7, 9, 7}));
  json j = unigram_json();
  j["pre_tokenizer"]["prepend_scheme"] = "first";
  const Tokenizer first = Tokenizer::from_json(j.dump());
  EXPECT_EQ(first.encode("ab<mask>ab"), (Ids{7, 9, 3, 6}));  // "ab" without ▁: unk 'a', then b
  EXPECT_EQ(first.encode("<mask>ab"), (Ids{9, 3, 6}));
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("ab a"), (Ids{3, 6, 5}));
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  j["pre_tokenizer"]["split"] = false;
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("ab ab"), (Ids{7, 7}));  // one word "▁ab▁ab"
}

TEST(Unigram, ByteFallbackSpellsUnknownRunsAsBytes) {
  json j = unigram_json();
  j["model"]["vocab"].push_back(json::array({"<0x64>", 0.0}));  // 'd', id 10
  j["model"]["byte_fallback"] = true;
  const Tokenizer tok = Tokenizer::from_json(j.dump());
  EXPECT_EQ(tok.encode("dd"), (Ids{4, 10, 10}));
  EXPECT_EQ(tok.encode("é"), (Ids{4, 3}));  // <0xC3> <0xA9> missing: unk
}

TEST(Unigram, MetaspaceDecoder) {
  const Tokenizer tok = Tokenizer::from_json(unigram_json().dump());
  EXPECT_EQ(tok.decode(Ids{0, 7, 8, 2}, true), "abc");
  EXPECT_EQ(tok.decode(Ids{5, 4, 4, 6}), "a  b");
  EXPECT_EQ(tok.decode(Ids{7, 7}), "ab ab");
  IncrementalDecoder stream(tok, true);
  std::string text;
  for (int32_t id : Ids{0, 5, 4, 4, 6, 7, 2}) text += stream.push(id);
  text += stream.flush();
  EXPECT_EQ(text, tok.decode(Ids{0, 5, 4, 4, 6, 7, 2}, true));
}

TEST(Unigram, BadFiles) {
  json j = unigram_json();
  j["model"]["unk_id"] = 10;
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "tokenizer.json", "model Unigram",
                    "\"unk_id\" 10", "10 pieces");
  j["model"]["unk_id"] = -1;
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "model Unigram", "\"unk_id\" -1");
  j = unigram_json();
  j["model"]["vocab"][2] = json::array({"</s>"});
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "model Unigram", "vocab[2]");
  j = unigram_json();
  j["model"]["unk_id"] = nullptr;
  const Tokenizer no_unk = Tokenizer::from_json(j.dump());
  EXPECT_EQ(no_unk.encode("ab"), (Ids{7}));
  EXPECT_WICK_ERROR(no_unk.encode("d"), ErrorKind::bad_input, "no unk_id");
}

}  // namespace
}  // namespace wick::test
