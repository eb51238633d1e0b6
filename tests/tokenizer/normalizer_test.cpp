// Normalizers and pre-tokenizers of the embedding models' tokenizers, component by component, with answers from
// HF's rules; and the Precompiled charsmap on a small double array built here in darts-clone's layout.
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "tokenizer/precompiled.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;

std::string normalize(const json& j, std::string_view text) {
  const tok::Normalizer n = tok::Normalizer::from_json(j, "test");
  std::string out;
  return n.normalize(text, out) ? out : std::string(text);
}

std::vector<std::string> pre_tokenize(const json& j, std::string text) {
  const tok::PreTokenizer p = tok::PreTokenizer::from_json(j, "test");
  tok::Ranges words;
  p.split(text, words);
  std::vector<std::string> out;
  for (const auto& [b, e] : words) out.push_back(text.substr(b, e - b));
  return out;
}

using Words = std::vector<std::string>;

TEST(Normalizers, BertNormalizer) {
  const json bert = {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                     {"strip_accents", nullptr}, {"lowercase", true}};
  // \x01 (Cc) dropped, tab -> space, spaces around the ideograph, accents stripped, lowercase.
  EXPECT_EQ(normalize(bert, "H\xC3\xA9llo\t\xE4\xB8\x9C\x01x"), "hello  \xE4\xB8\x9C x");
  EXPECT_EQ(normalize(bert, "\xEF\xBF\xBD" "a\xC2\xAD" "b"), "ab");              // U+FFFD and soft hyphen (Cf)
  EXPECT_EQ(normalize(bert, "\xEE\x80\x80" "a"), "a");                           // private use (Co)
  EXPECT_EQ(normalize(bert, "\xE3\x80\x80" "a"), " a");                          // ideographic space -> ' '
  EXPECT_EQ(normalize(bert, "\xC4\xB0stanbul"), "istanbul");                     // İ: NFD, no Mn, lowercase
  // Unicode 8.0 categories, as HF's: U+0890 (a Cf of Unicode 14) is kept.
  EXPECT_EQ(normalize(bert, "a\xE0\xA2\x90" "b"), "a\xE0\xA2\x90" "b");
  json cased = bert;
  cased["lowercase"] = false;
  EXPECT_EQ(normalize(cased, "Caf\xC3\xA9"), "Caf\xC3\xA9");
  cased["strip_accents"] = true;
  EXPECT_EQ(normalize(cased, "Caf\xC3\xA9"), "Cafe");
}

TEST(Normalizers, SmallOnes) {
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "HeLLo \xC4\xB0"), "hello i\xCC\x87");  // İ -> i + U+0307 (Rust)
  EXPECT_EQ(normalize({{"type", "StripAccents"}}, "Caf\xC3\xA9"), "Caf\xC3\xA9");  // composed é has no mark
  EXPECT_EQ(normalize({{"type", "Sequence"}, {"normalizers", {{{"type", "NFD"}}, {{"type", "StripAccents"}}}}},
                      "Caf\xC3\xA9"), "Cafe");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\xEF\xAC\x81\xE2\x91\xA0"), "fi1");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, "  hi \t"), "hi");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, "  hi \t"), "  hi");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}}, "a   b  c d"), "a b c d");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "bb"}}, "banana"), "bbbnbbnbb");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"String", ""}}}, {"content", "-"}}, "ab"), "-a-b-");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}, "hi"), "\xE2\x96\x81hi");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}, ""), "");
  EXPECT_WICK_ERROR(tok::Normalizer::from_json({{"type", "Nmt"}}, "tokenizer.json"), ErrorKind::unsupported,
                    "tokenizer.json", "normalizer type 'Nmt'");
}

TEST(PreTokenizers, BertWhitespacePunctuation) {
  const std::string text = "Hello, world!! a.b \xE2\x80\x94x";  // ... U+2014 EM DASH (Pd)
  EXPECT_EQ(pre_tokenize({{"type", "BertPreTokenizer"}}, text),
            (Words{"Hello", ",", "world", "!", "!", "a", ".", "b", "\xE2\x80\x94", "x"}));
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, text),
            (Words{"Hello", ",", "world", "!!", "a", ".", "b", "\xE2\x80\x94", "x"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, text), (Words{"Hello,", "world!!", "a.b", "\xE2\x80\x94x"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}, {"behavior", "Isolated"}}, "a,b c"), (Words{"a", ",", "b c"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}, {"behavior", "MergedWithPrevious"}}, "a,b"), (Words{"a,", "b"}));
  // '$' and '+' are ASCII punctuation for HF although Unicode calls them symbols; '¬' (Sm) is not.
  EXPECT_EQ(pre_tokenize({{"type", "BertPreTokenizer"}}, "a$b+c\xC2\xAC" "d"), (Words{"a", "$", "b", "+", "c\xC2\xAC" "d"}));
  EXPECT_EQ(pre_tokenize({{"type", "Sequence"}, {"pretokenizers", {{{"type", "WhitespaceSplit"}},
                                                                   {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                                                                    {"prepend_scheme", "first"}}}}},
                         " ab cd"),
            (Words{"ab", "cd"}));  // "first": only a word at the very start of the text gets the ▁
  EXPECT_EQ(pre_tokenize({{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}}, "ab cd"),
            (Words{"\xE2\x96\x81" "ab", "\xE2\x96\x81" "cd"}));
}

// ---------------------------------------------------------------------------------------------
// Precompiled: a darts-clone double array for a few keys, built the simple way (each node's children placed at
// the first free base), then base64 with its header and pool, as sentencepiece writes precompiled_charsmap.

std::string base64(const std::string& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) v |= uint8_t(bytes[i + 2]);
    out += abc[v >> 18];
    out += abc[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? abc[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? abc[v & 63] : '=';
  }
  return out;
}

struct TrieNode {
  std::map<uint8_t, TrieNode> children;
  int32_t value = -1;  // offset into the pool
};

// Places `node`'s children (and its value unit) and writes the unit at `pos`. Every node gets a base of its own
// (darts-clone's rule): two nodes sharing a base would let a search step into the other's children.
void place(const TrieNode& node, size_t pos, uint8_t label, std::vector<uint32_t>& units, std::vector<bool>& used,
           std::set<size_t>& bases) {
  size_t base = 1;
  auto fits = [&](size_t b) {
    if (bases.count(b)) return false;
    if (node.value >= 0 && b < used.size() && used[b]) return false;
    for (const auto& [c, child] : node.children) {
      if ((b ^ c) < used.size() && used[b ^ c]) return false;
    }
    return true;
  };
  while (!fits(base)) ++base;
  const size_t need = std::max<size_t>(base | 0xFF, pos) + 1;
  if (units.size() < need) {
    units.resize(need, 0);
    used.resize(need, false);
  }
  bases.insert(base);
  const size_t offset = base ^ pos;
  units[pos] = uint32_t(offset << 10) | (node.value >= 0 ? 1u << 8 : 0) | label;
  if (node.value >= 0) {
    units[base] = (1u << 31) | uint32_t(node.value);
    used[base] = true;
  }
  for (const auto& [c, child] : node.children) used[base ^ c] = true;
  for (const auto& [c, child] : node.children) place(child, base ^ c, c, units, used, bases);
}

std::string charsmap(const std::map<std::string, std::string>& rules) {
  TrieNode root;
  std::string pool;
  for (const auto& [from, to] : rules) {
    TrieNode* n = &root;
    for (unsigned char c : from) n = &n->children[c];
    n->value = int32_t(pool.size());
    pool += to;
    pool += '\0';
  }
  std::vector<uint32_t> units(1, 0);
  std::vector<bool> used(1, true);
  std::set<size_t> bases;
  place(root, 0, 0, units, used, bases);
  std::string blob(4, '\0');
  const uint32_t size = uint32_t(units.size() * 4);
  std::memcpy(blob.data(), &size, 4);
  blob.append(reinterpret_cast<const char*>(units.data()), units.size() * 4);
  return base64(blob + pool);
}

TEST(Precompiled, ShortestPrefixOfAWholeGraphemeThenCharacters) {
  const std::string fi = "\xEF\xAC\x81", acute = "\xCC\x81";
  const std::string map = charsmap({{fi, "fi"},                 // ligature -> two letters
                                    {"e" + acute, "\xC3\xA9"},  // a decomposed é -> composed
                                    {"o", "0"},
                                    {"o\xCC\x88", "\xC3\xB6"},  // never reached: "o" is the shorter prefix
                                    {"x", ""},                  // deleted
                                    {"\r", " "}});
  const json j = {{"type", "Precompiled"}, {"precompiled_charsmap", map}};
  EXPECT_EQ(normalize(j, "e" + acute), "\xC3\xA9");
  EXPECT_EQ(normalize(j, "o\xCC\x88"), "0");                 // the whole grapheme goes, as in spm_precompiled
  EXPECT_EQ(normalize(j, fi + acute), "fi");                 // 5 bytes: looked up whole; "ﬁ" is a prefix
  EXPECT_EQ(normalize(j, fi + acute + acute), "fi" + acute + acute);  // 7 bytes: character by character
  EXPECT_EQ(normalize(j, "xax box"), "a b0");
  EXPECT_EQ(normalize(j, "abc"), "abc");
  EXPECT_EQ(normalize(j, "a\r\nb\rc"), "a b c");  // CR LF is one grapheme: its prefix "\r" replaces it whole
  const tok::PrecompiledCharsmap cm = tok::PrecompiledCharsmap::from_base64(map, "test");
  EXPECT_EQ(cm.transform("ob"), std::optional<std::string_view>("0"));
  EXPECT_EQ(cm.transform("b"), std::nullopt);
}

TEST(Precompiled, MalformedCharsmapsAreCorrupt) {
  auto load = [](const std::string& b64) {
    return Tokenizer::from_json(json{{"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", b64}}},
                                     {"model", {{"type", "WordPiece"}, {"vocab", {{"[UNK]", 0}}}}}}.dump());
  };
  EXPECT_WICK_ERROR(load("not base64!"), ErrorKind::corrupt, "tokenizer.json", "normalizer Precompiled",
                    "precompiled_charsmap", "not valid base64");
  EXPECT_WICK_ERROR(load("QUJD="), ErrorKind::corrupt, "precompiled_charsmap", "base64");
  EXPECT_WICK_ERROR(load(""), ErrorKind::corrupt, "precompiled_charsmap", "too short");
  EXPECT_WICK_ERROR(load(base64(std::string("\x40\0\0\0", 4) + "abcd")), ErrorKind::corrupt, "precompiled_charsmap",
                    "does not fit");
  EXPECT_WICK_ERROR(load(base64(std::string("\x04\0\0\0\0\0\0\0\xff", 9))), ErrorKind::corrupt, "not UTF-8");
  EXPECT_WICK_ERROR(Tokenizer::from_json(json{{"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", 5}}},
                                              {"model", {{"type", "WordPiece"}, {"vocab", {{"[UNK]", 0}}}}}}.dump()),
                    ErrorKind::corrupt, "precompiled_charsmap");
}

}  // namespace
}  // namespace wick::test
