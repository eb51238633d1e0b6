// Bad input: invalid UTF-8, NUL bytes, a 10 MB single word, and malformed tokenizer.json files.
#include <chrono>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

using nlohmann::json;

TEST(TokenizerBadInput, InvalidUtf8IsAnErrorNamingTheOffset) {
  const Tokenizer& tok = trained_tokenizer();
  EXPECT_WICK_ERROR(tok.encode("abc\xff"), ErrorKind::bad_input, "not valid UTF-8", "byte 3");
  EXPECT_WICK_ERROR(tok.encode("\xc0\xaf"), ErrorKind::bad_input, "byte 0");                // overlong '/'
  EXPECT_WICK_ERROR(tok.encode("ok \xed\xa0\x80"), ErrorKind::bad_input, "byte 3");         // surrogate
  EXPECT_WICK_ERROR(tok.encode("truncated \xe4\xb8"), ErrorKind::bad_input, "byte 10");
  EXPECT_WICK_ERROR(tok.encode("\xf4\x90\x80\x80"), ErrorKind::bad_input, "byte 0");        // > U+10FFFF
}

TEST(TokenizerBadInput, NulBytesAreOrdinaryCharacters) {
  WICK_NEED_QWEN(tok);
  const std::string s("a\0b\0\0c", 6);
  const auto ids = tok->encode(s);
  EXPECT_EQ(tok->decode(ids), s);
  // U+0000 is byte-level 'Ā' (U+0100), a vocab entry of its own.
  EXPECT_EQ(tok->encode(std::string(1, '\0')), std::vector<int32_t>{*tok->token_id("Ā")});
}

// A quadratic BPE would not finish within ctest's timeout; the time is printed, not asserted (shared machines).
TEST(TokenizerBadInput, TenMegabyteWordIsNotQuadratic) {
  WICK_NEED_QWEN(tok);
  const std::string word(10u << 20, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(word);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ info ] 10 MiB single word: %.2f s (HF tokenizers 0.23: 22 s on the dev machine)\n", s);
  // HF: 1,310,720 ids, each "aaaaaaaa".
  ASSERT_EQ(ids.size(), 1310720u);
  EXPECT_EQ(tok->token_text(ids.front()), "aaaaaaaa");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), ids.front()), std::ptrdiff_t(ids.size()));
}

TEST(TokenizerBadInput, UnknownIdsAreSkippedByDecodeAndRejectedByTokenText) {
  const Tokenizer& tok = trained_tokenizer();
  const auto hi = tok.encode("hi");
  std::vector<int32_t> ids = {-5, 1 << 30};
  ids.insert(ids.begin() + 1, hi.begin(), hi.end());
  EXPECT_EQ(tok.decode(ids), tok.decode(hi));
  EXPECT_WICK_ERROR(tok.token_text(1 << 30), ErrorKind::bad_input, "no token with id");
  EXPECT_EQ(tok.token_bytes(-1), "");
}

// A valid small tokenizer.json to break in the tests below.
json small_tokenizer() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\s+|\\w+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
    "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": [["a", "b"]]}
  })");
}

TEST(TokenizerMalformed, TheSmallTokenizerItselfLoads) {
  const Tokenizer tok = Tokenizer::from_json(small_tokenizer().dump());
  EXPECT_EQ(tok.encode("ab a"), (std::vector<int32_t>{2, 3, 0}));
}

TEST(TokenizerMalformed, ErrorsNameTheComponent) {
  auto broken = [](auto edit) {
    json j = small_tokenizer();
    edit(j);
    return j.dump();
  };
  EXPECT_WICK_ERROR(Tokenizer::from_json("{not json"), ErrorKind::corrupt, "tokenizer.json", "not valid JSON");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j.erase("model"); })), ErrorKind::corrupt, "missing \"model\"");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["merges"].push_back({"a", "zz"}); })),
                    ErrorKind::corrupt, "merges[1]", "'zz'", "not in the vocab");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["merges"].push_back("b a"); })),
                    ErrorKind::corrupt, "merges[1]", "makes 'ba'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["merges"].push_back("a b c"); })),
                    ErrorKind::corrupt, "merges[1]");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
                    })),
                    ErrorKind::corrupt, "pre_tokenizer Split", "regex does not compile", "(unclosed");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
                    })),
                    ErrorKind::unsupported, "pre_tokenizer type 'UnicodeScripts'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["type"] = "WordLevel"; })),
                    ErrorKind::unsupported, "model type 'WordLevel'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["normalizer"] = {{"type", "Nmt"}}; })),
                    ErrorKind::unsupported, "normalizer type 'Nmt'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["decoder"] = {{"type", "CTC"}}; })),
                    ErrorKind::unsupported, "decoder type 'CTC'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["post_processor"] = {{"type", "Mystery"}}; })),
                    ErrorKind::unsupported, "post_processor type 'Mystery'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["dropout"] = 0.1; })),
                    ErrorKind::unsupported, "dropout");
  // A truncation or padding left in the file is ignored, as transformers ignores it (EncodeOptions decides).
  EXPECT_EQ(Tokenizer::from_json(broken([](json& j) { j["truncation"] = {{"max_length", 1}}; })).encode("ab a"),
            (std::vector<int32_t>{2, 3, 0}));
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["padding"] = 3; })), ErrorKind::corrupt, "\"padding\"");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) { j["model"]["unk_token"] = "<unk>"; })),
                    ErrorKind::corrupt, "unk_token '<unk>'");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["added_tokens"].push_back({{"id", 2}, {"content", "<x>"}, {"special", true}});
                    })),
                    ErrorKind::corrupt, "added token '<x>' has id 2");
  // Added tokens name one id per string: the vocab's own, and the same on every entry that adds it.
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["added_tokens"].push_back({{"id", 4}, {"content", "ab"}, {"special", true}});
                    })),
                    ErrorKind::corrupt, "added token 'ab' has id 4", "the vocab has it as 2");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["added_tokens"].push_back({{"id", 4}, {"content", "<y>"}, {"special", true}});
                      j["added_tokens"].push_back({{"id", 5}, {"content", "<y>"}, {"special", true}});
                    })),
                    ErrorKind::corrupt, "added token '<y>' has id 5", "also added as 4");
  EXPECT_WICK_ERROR(Tokenizer::from_json(broken([](json& j) {
                      j["pre_tokenizer"]["pretokenizers"].push_back({{"type", "Split"}, {"pattern", {{"String", " "}}}});
                    })),
                    ErrorKind::unsupported, "after ByteLevel");
  EXPECT_WICK_ERROR(Tokenizer::load(temp_dir("empty")), ErrorKind::not_found, "tokenizer.json");
}

// Found while fuzzing (docs/FUZZING.md): per-id tables are dense, so one huge id in a hostile file asked for tens of
// GB (ASan: out of memory, not a wick::Error); and a number past a double's range escaped as nlohmann's out_of_range.
TEST(TokenizerMalformed, HugeIdsAndNumbersAreCorruptNotCrashes) {
  auto with = [](auto edit) {
    json j = small_tokenizer();
    edit(j);
    return j.dump();
  };
  EXPECT_WICK_ERROR(Tokenizer::from_json(with([](json& j) { j["model"]["vocab"]["ab"] = 2147483000; })),
                    ErrorKind::corrupt, "tokenizer.json", "vocab id 2147483000 out of range", "ids 0 to 4194303");
  EXPECT_WICK_ERROR(Tokenizer::from_json(with([](json& j) {
                      j["added_tokens"].push_back({{"id", 2147483647}, {"content", "<x>"}});
                    })),
                    ErrorKind::corrupt, "added_tokens[0]: id 2147483647 out of range");
  EXPECT_WICK_ERROR(Tokenizer::from_json(R"({"model": 1e999})"), ErrorKind::corrupt, "tokenizer.json",
                    "does not fit a double");
  EXPECT_WICK_ERROR(Tokenizer::from_json(small_tokenizer().dump(), R"({"eos_token": 1e999})"), ErrorKind::corrupt,
                    "tokenizer_config.json", "does not fit a double");
}

}  // namespace
}  // namespace wick::test
