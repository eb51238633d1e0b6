// WordPiece tokenizers as BERT ships them (BertNormalizer, BertPreTokenizer, TemplateProcessing / BertProcessing,
// the WordPiece decoder), on a small hand-made vocab whose answers follow from HF's rules by hand.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

json added(int id, const char* content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", false}, {"special", true}};
}

// [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then the words.
json bert_json() {
  const json vocab = {{"[PAD]", 0}, {"[UNK]", 1}, {"[CLS]", 2}, {"[SEP]", 3}, {"[MASK]", 4}, {"hello", 5},
                      {"world", 6}, {"!", 7}, {",", 8}, {"un", 9}, {"##aff", 10}, {"##able", 11}, {"cafe", 12},
                      {"东", 13}, {"##s", 14}, {".", 15}, {"'", 16}, {"s", 17}, {"Cafe", 18}};
  const json cls = {{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}};
  const json sep = {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}};
  const json sep1 = {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 1}}}};
  const json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const json b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  return {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", {added(0, "[PAD]"), added(1, "[UNK]"), added(2, "[CLS]"), added(3, "[SEP]"), added(4, "[MASK]")}},
      {"normalizer", {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                      {"strip_accents", nullptr}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor", {{"type", "TemplateProcessing"}, {"single", {cls, a, sep}}, {"pair", {cls, a, sep, b, sep1}},
                          {"special_tokens", {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
                                              {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                 {"max_input_chars_per_word", 12}, {"vocab", vocab}}}};
}

const Tokenizer& bert() {
  static const Tokenizer tok = Tokenizer::from_json(bert_json().dump());
  return tok;
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  EXPECT_EQ(bert().encode("unaffable"), (Ids{9, 10, 11}));
  EXPECT_EQ(bert().encode("hellos"), (Ids{5, 14}));
  EXPECT_EQ(bert().encode("xyz"), (Ids{1}));            // no piece for 'x': the whole word is unk
  EXPECT_EQ(bert().encode("helloxyz world"), (Ids{1, 6}));  // "hello" then nothing for "##xyz": unk
}

TEST(WordPiece, WordsLongerThanMaxInputCharsAreUnk) {
  EXPECT_EQ(bert().encode("unaffableaff"), (Ids{9, 10, 11, 10}));  // 12 characters: not over the limit
  EXPECT_EQ(bert().encode("hellohelloss"), (Ids{1}));    // 12: "hello", then no "##h..." piece: unk
  EXPECT_EQ(bert().encode("hellossssssss"), (Ids{1}));   // 13 > 12: unk without trying
  EXPECT_EQ(bert().encode("hellosssssss"), (Ids{5, 14, 14, 14, 14, 14, 14, 14}));  // 12: tried
  // Counted in characters, not bytes: "ß" is two bytes.
  json j = bert_json();
  j["normalizer"] = nullptr;
  j["model"]["vocab"]["ß"] = 19;
  j["model"]["vocab"]["##ß"] = 20;
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("ßßßßßßßßßßßß"),
            (Ids{19, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20}));
}

TEST(WordPiece, BertNormalizerAndPreTokenizer) {
  EXPECT_EQ(bert().encode("Hello, World!"), (Ids{5, 8, 6, 7}));
  EXPECT_EQ(bert().encode("Café."), (Ids{12, 15}));       // lowercase, accents stripped (strip_accents null)
  EXPECT_EQ(bert().encode("东京"), (Ids{13, 1}));          // each CJK ideograph is a word
  EXPECT_EQ(bert().encode(std::string("hel\0lo\xE2\x80\x8B", 9)), (Ids{5}));  // NUL and U+200B (Cf) dropped
  EXPECT_EQ(bert().encode("hello\tworld\n"), (Ids{5, 6}));
  EXPECT_EQ(bert().encode("hello!!"), (Ids{5, 7, 7}));    // each punctuation character alone
  EXPECT_EQ(bert().encode("[CLS] hello [MASK]"), (Ids{2, 5, 4}));
}

TEST(WordPiece, CasedAndAccentOptions) {
  json j = bert_json();
  j["normalizer"]["lowercase"] = false;  // strip_accents null: follows lowercase, so off
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("Café hello"), (Ids{1, 5}));
  j["normalizer"]["strip_accents"] = true;
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("Café hello"), (Ids{18, 5}));
}

TEST(WordPiece, SpecialTokensAndTruncation) {
  const Tokenizer& tok = bert();
  EXPECT_EQ(tok.encode("Hello, World!", {.add_special_tokens = true}), (Ids{2, 5, 8, 6, 7, 3}));
  EXPECT_EQ(tok.encode("Hello, World!", {}), (Ids{5, 8, 6, 7}));
  EXPECT_EQ(tok.encode("", {.add_special_tokens = true}), (Ids{2, 3}));
  // max_length counts the specials: the text's ids are cut to L - 2.
  EXPECT_EQ(tok.encode("hello world hello world", {.add_special_tokens = true, .max_length = 4}), (Ids{2, 5, 6, 3}));
  EXPECT_EQ(tok.encode("hello world hello world", {.add_special_tokens = false, .max_length = 3}), (Ids{5, 6, 5}));
  EXPECT_EQ(tok.encode("hello world", {.add_special_tokens = true, .max_length = 100}), (Ids{2, 5, 6, 3}));
  EXPECT_EQ(tok.encode("hello world", {.add_special_tokens = true, .max_length = 1}), (Ids{2, 3}));
  EXPECT_WICK_ERROR(tok.encode("hello", {.max_length = -1}), ErrorKind::bad_input, "max_length");

  json j = bert_json();
  j["post_processor"] = {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("hello", {.add_special_tokens = true}), (Ids{2, 5, 3}));
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", "[CLS] $A [SEP]"}, {"pair", "[CLS] $A [SEP] $B:1 [SEP]:1"},
                         {"special_tokens", bert_json()["post_processor"]["special_tokens"]}};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("hello", {.add_special_tokens = true}), (Ids{2, 5, 3}));
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, bert_json()["post_processor"]}}};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("hello", {.add_special_tokens = true}), (Ids{2, 5, 3}));
}

TEST(WordPiece, DecoderJoinsContinuationsAndCleansUp) {
  const Tokenizer& tok = bert();
  EXPECT_EQ(tok.decode(Ids{2, 5, 8, 6, 7, 3}, true), "hello, world!");
  EXPECT_EQ(tok.decode(Ids{2, 5, 8, 6, 7, 3}), "[CLS] hello, world! [SEP]");
  EXPECT_EQ(tok.decode(Ids{9, 10, 11}), "unaffable");
  EXPECT_EQ(tok.decode(Ids{5, 16, 17}), "hello ' s");  // HF cleans up each token alone, not the joined text
  IncrementalDecoder stream(tok, true);
  std::string text;
  for (int32_t id : Ids{2, 5, 8, 6, 7, 9, 10, 11, 3}) text += stream.push(id);
  text += stream.flush();
  EXPECT_EQ(text, tok.decode(Ids{2, 5, 8, 6, 7, 9, 10, 11, 3}, true));
}

TEST(WordPiece, BadFiles) {
  json j = bert_json();
  j["model"]["unk_token"] = "<unk>";
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "tokenizer.json", "model WordPiece",
                    "unk_token '<unk>' is not in the vocab");
  j = bert_json();
  j["post_processor"]["special_tokens"].erase("[SEP]");
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "post_processor TemplateProcessing", "'[SEP]'");
  j = bert_json();
  j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::unsupported, "pre_tokenizer type 'UnicodeScripts'");
  j = bert_json();
  j["decoder"] = {{"type", "CTC"}};
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::unsupported, "decoder type 'CTC'");
}

}  // namespace
}  // namespace wick::test
