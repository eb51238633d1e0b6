// The streaming reader of tokenizer.json (tokenizer_json.h) against nlohmann's own parser: the same tree less the two
// lists, the lists in file order, keys in any order, repeated keys, and malformed entries as the models report them.
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_json.h"
#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using Form = tok::VocabAndMerges::Merge::Form;

// Slow twin: the lists as a walk over nlohmann's tree gives them (its vocab object sorted by key, so compared as maps).
void expect_same_as_tree(const std::string& text) {
  const tok::TokenizerJson got = tok::read_tokenizer_json(text, "test");
  const json tree = json::parse(text);
  const json& model = tree["model"];

  ASSERT_TRUE(got.lists.vocab.has_value());
  std::map<std::string, int64_t, std::less<>> vocab;
  for (const auto& t : *got.lists.vocab) {
    ASSERT_TRUE(t.is_integer);
    vocab.emplace(got.lists.slice(t.begin, t.end), t.id);
  }
  ASSERT_EQ(vocab.size(), got.lists.vocab->size());
  ASSERT_EQ(vocab.size(), model["vocab"].size());
  for (const auto& [token, id] : model["vocab"].items()) {
    const auto it = vocab.find(token);
    ASSERT_NE(it, vocab.end()) << token;
    ASSERT_EQ(it->second, id.get<int64_t>()) << token;
  }

  ASSERT_TRUE(got.lists.merges.has_value());
  const auto& merges = *got.lists.merges;
  ASSERT_EQ(merges.size(), model["merges"].size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = model["merges"][i];
    const auto& m = merges[i];
    if (e.is_string()) {
      ASSERT_EQ(m.form, Form::line) << i;
      ASSERT_EQ(got.lists.slice(m.begin, m.end), e.get<std::string>()) << i;
    } else {
      ASSERT_EQ(m.form, Form::pair) << i;
      ASSERT_EQ(got.lists.slice(m.begin, m.split), e[0].get<std::string>()) << i;
      ASSERT_EQ(got.lists.slice(m.split, m.end), e[1].get<std::string>()) << i;
    }
  }

  json rest = tree;
  rest["model"].erase("vocab");
  rest["model"].erase("merges");
  EXPECT_EQ(got.tree, rest);
}

TEST(TokenizerJson, ListsAndTreeEqualNlohmannsOnFixtures) {
  expect_same_as_tree(read_file(tok_fixture("trained/tokenizer.json")));      // merges as pairs
  expect_same_as_tree(read_file(tok_fixture("trained_str/tokenizer.json")));  // merges as "a b"
  if (!std::filesystem::exists(tok_fixture("qwen/tokenizer.json"))) {
    GTEST_SKIP() << "tests/fixtures/tokenizer/qwen/tokenizer.json is absent: run scripts/fetch_tokenizer.sh";
  }
  expect_same_as_tree(read_file(tok_fixture("qwen/tokenizer.json")));
}

// The vocab in file order (an error names the earlier of two tokens given one id), as nlohmann's ordered tree has it.
TEST(TokenizerJson, VocabInFileOrder) {
  const std::string text = read_file(tok_fixture("trained/tokenizer.json"));
  const tok::TokenizerJson got = tok::read_tokenizer_json(text, "test");
  const ordered_json ordered = ordered_json::parse(text);
  size_t i = 0;
  for (const auto& [token, id] : ordered["model"]["vocab"].items()) {
    ASSERT_LT(i, got.lists.vocab->size());
    const auto& t = (*got.lists.vocab)[i++];
    ASSERT_EQ(got.lists.slice(t.begin, t.end), token);
    ASSERT_EQ(t.id, id.get<int64_t>());
  }
  EXPECT_EQ(i, got.lists.vocab->size());
}

// The small byte-level BPE of robustness_test.cpp, with its keys in the order given.
ordered_json small_bpe(const std::vector<std::string>& top_order, const std::vector<std::string>& model_order) {
  const ordered_json model = ordered_json::parse(R"({
    "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
    "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
    "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "<x>": 4}, "merges": [["a", "b"]]})");
  const ordered_json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                                   {"use_regex", false}};
  const ordered_json top = {
      {"version", "1.0"},
      {"added_tokens", ordered_json::array({{{"id", 4}, {"content", "<x>"}, {"special", true}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", ordered_json::array({
          {{"type", "Split"}, {"pattern", {{"Regex", "\\s+|\\w+"}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model", model}};
  auto reorder = [](const ordered_json& from, const std::vector<std::string>& first) {
    ordered_json to = ordered_json::object();
    for (const auto& k : first) to[k] = from[k];
    for (const auto& [k, v] : from.items()) {
      if (!to.contains(k)) to[k] = v;
    }
    return to;
  };
  ordered_json j = reorder(top, top_order);
  j["model"] = reorder(model, model_order);
  return j;
}

TEST(TokenizerJson, KeysInAnyOrderLoadTheSameTokenizer) {
  const std::vector<int32_t> want = {2, 3, 0, 4, 1};  // "ab", "Ġ", "a", "<x>", "b"
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> orders = {
      {{}, {}},
      {{"model"}, {"vocab", "merges", "type"}},                  // "model" before "added_tokens"; "type" last
      {{"model", "added_tokens"}, {"merges", "vocab"}},          // "merges" before "vocab"
      {{"decoder", "model", "pre_tokenizer"}, {"merges", "ignore_merges", "vocab", "type", "dropout"}},
  };
  for (const auto& [top, model] : orders) {
    const std::string text = small_bpe(top, model).dump();
    const Tokenizer tok = Tokenizer::from_json(text);
    EXPECT_EQ(tok.encode("ab a<x>b"), want) << text;
    EXPECT_EQ(tok.vocab_size(), 5) << text;
  }
}

TEST(TokenizerJson, WordPieceTypeAfterItsVocab) {
  const std::string text = R"({"model": {"vocab": {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3},
                                         "unk_token": "[UNK]", "type": "WordPiece"},
                               "pre_tokenizer": {"type": "Whitespace"}})";
  EXPECT_EQ(Tokenizer::from_json(text).encode("unaffable"), (std::vector<int32_t>{1, 2, 3}));
}

TEST(TokenizerJson, ErrorsDoNotDependOnKeyOrder) {
  ordered_json j = small_bpe({"model"}, {"merges", "vocab", "type"});
  j["model"]["merges"].push_back({"a", "zz"});
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "merges[1]", "'zz'", "not in the vocab");
  j = small_bpe({"model"}, {"vocab", "merges", "type"});
  j["model"]["type"] = "WordLevel";
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::unsupported, "model type 'WordLevel'");
  // A vocab object under a Unigram model is not its [piece, score] array.
  j["model"]["type"] = "Unigram";
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "model Unigram", "missing \"vocab\" array");
  j = small_bpe({}, {});
  j["model"]["vocab"] = ordered_json::array();
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "model BPE", "missing \"vocab\" object");
  j = small_bpe({}, {});
  j["model"]["merges"] = {{"a", "b"}};
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "\"merges\" must be an array");
  // A syntax error after a bad entry is still reported as not valid JSON: nothing is checked while reading.
  j = small_bpe({}, {"merges"});
  j["model"]["merges"].push_back({"a", "zz"});
  const std::string text = j.dump();
  EXPECT_WICK_ERROR(Tokenizer::from_json(text.substr(0, text.size() - 2)), ErrorKind::corrupt, "not valid JSON");
}

TEST(TokenizerJson, MalformedVocabEntriesAndMerges) {
  for (const char* id : {"\"1\"", "1.0", "null", "true", "[1]", "{\"id\": 1}"}) {
    ordered_json j = small_bpe({}, {});
    std::string text = j.dump();
    const std::string entry = "\"b\":1";
    text.replace(text.find(entry), entry.size(), std::string("\"b\":") + id);
    EXPECT_WICK_ERROR(Tokenizer::from_json(text), ErrorKind::corrupt, "model BPE", "vocab entry 'b' is not an integer id");
  }
  for (const char* id : {"-1", "18446744073709551615"}) {
    std::string text = small_bpe({}, {}).dump();
    const std::string entry = "\"b\":1";
    text.replace(text.find(entry), entry.size(), std::string("\"b\":") + id);
    EXPECT_WICK_ERROR(Tokenizer::from_json(text), ErrorKind::corrupt, "model BPE", "out of range");
  }
  ordered_json j = small_bpe({}, {});
  j["model"]["vocab"]["Ġ"] = 1;
  EXPECT_WICK_ERROR(Tokenizer::from_json(j.dump()), ErrorKind::corrupt, "vocab id 1 given to both 'b' and 'Ġ'");
  for (const char* merge : {"[\"a\"]", "[\"a\",\"b\",\"ab\"]", "[\"a\",[\"b\"]]", "[1,\"b\"]", "[\"a\",{}]",
                            "{\"a\":\"b\"}", "3", "null", "[]"}) {
    std::string text = small_bpe({}, {}).dump();
    const std::string merges = "\"merges\":[[\"a\",\"b\"]]";
    text.replace(text.find(merges), merges.size(), std::string("\"merges\":[[\"a\",\"b\"],") + merge + "]");
    EXPECT_WICK_ERROR(Tokenizer::from_json(text), ErrorKind::corrupt, "merges[1] must be \"a b\" or [\"a\", \"b\"]");
  }
}

// A key written twice keeps its last value, as nlohmann's tree (and HF's serde maps) keep it.
TEST(TokenizerJson, RepeatedKeysKeepTheLastValue) {
  const std::string base = small_bpe({}, {}).dump();
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string text = base;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  // A token written twice: its last id; the id it gave up is a hole, and the table ends at the last id kept.
  Tokenizer tok = Tokenizer::from_json(edit("\"<x>\":4", "\"<x>\":4,\"a\":7"));
  EXPECT_EQ(tok.token_id("a"), 7);
  EXPECT_WICK_ERROR(tok.token_text(0), ErrorKind::bad_input, "no token with id 0 (vocab size 8)");
  tok = Tokenizer::from_json(edit("\"a\":0", "\"a\":9,\"a\":0"));
  EXPECT_EQ(tok.vocab_size(), 5);
  EXPECT_EQ(tok.encode("ab a<x>b"), (std::vector<int32_t>{2, 3, 0, 4, 1}));
  // "vocab" and "merges" written twice, each time in both forms.
  tok = Tokenizer::from_json(edit("\"vocab\":", "\"vocab\":[],\"vocab\":{\"zz\":0},\"vocab\":"));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_WICK_ERROR(Tokenizer::from_json(edit("\"merges\":[[\"a\",\"b\"]]", "\"merges\":[[\"a\",\"b\"]],\"merges\":3")),
                    ErrorKind::corrupt, "\"merges\" must be an array");
  tok = Tokenizer::from_json(edit("\"merges\":[[\"a\",\"b\"]]", "\"merges\":3,\"merges\":[],\"merges\":[[\"a\",\"b\"]]"));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{2}));
  // "model" written twice: only the last one's lists count.
  const std::string model = "\"model\":";
  tok = Tokenizer::from_json(edit(model, "\"model\":{\"vocab\":{\"q\":0},\"merges\":[\"q q\"]}," + model));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace wick::test
