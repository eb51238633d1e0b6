// decode(encode(s)) == s, streaming decode == whole decode with no split UTF-8, and one Tokenizer
// shared by many threads.
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

std::string nfc(const std::string& s) {
  static const tok::Normalizer n = tok::Normalizer::from_json({{"type", "NFC"}}, "test");
  std::string out;
  return n.normalize(s, out) ? out : s;
}

TEST(TokenizerRoundTrip, DecodeOfEncodeIsTheNfcText) {
  WICK_NEED_QWEN(tok);
  for (const std::string& s : corpus()) EXPECT_EQ(tok->decode(tok->encode(s)), nfc(s)) << s.substr(0, 80);
  const std::string mixed = mixed_text();
  EXPECT_EQ(tok->decode(tok->encode(mixed)), nfc(mixed));
}

TEST(TokenizerRoundTrip, SkipSpecialDropsOnlySpecialTokens) {
  WICK_NEED_QWEN(tok);
  const auto ids = tok->encode("<|im_start|>user\nHi<think>x</think><|im_end|>");
  EXPECT_EQ(ids.front(), *tok->token_id("<|im_start|>"));
  EXPECT_TRUE(tok->is_special(ids.front()));
  EXPECT_FALSE(tok->is_special(*tok->token_id("<think>")));  // added, but not special
  EXPECT_TRUE(tok->is_added(*tok->token_id("<think>")));
  EXPECT_EQ(tok->decode(ids, true), "user\nHi<think>x</think>");
}

// Feeds ids one at a time; checks every piece is valid UTF-8 and the pieces add up to decode().
void check_incremental(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDecoder stream(tok, skip_special);
  std::string joined;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    ASSERT_EQ(tok::find_invalid_utf8(piece), std::string::npos) << "piece splits a character";
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, tok.decode(ids, skip_special));
}

TEST(TokenizerIncremental, PiecesConcatenateToTheFullDecode) {
  WICK_NEED_QWEN(tok);
  for (const std::string& s : corpus()) check_incremental(*tok, tok->encode(s), false);
  check_incremental(*tok, tok->encode(mixed_text(1 << 16)), false);
}

TEST(TokenizerIncremental, RandomIdsWithInvalidUtf8) {
  WICK_NEED_QWEN(tok);
  // Byte tokens of a 3-byte character, one by one: nothing until the last byte.
  IncrementalDecoder stream(*tok);
  const auto ids = tok->encode("€");  // E2 82 AC
  std::vector<int32_t> bytes;
  for (unsigned char b : std::string("€")) bytes.push_back(*tok->token_id(tok::byte_level_encode(std::string(1, char(b)))));
  EXPECT_EQ(stream.push(bytes[0]), "");
  EXPECT_EQ(stream.push(bytes[1]), "");
  EXPECT_EQ(stream.push(bytes[2]), "€");
  // An incomplete character followed by ASCII becomes U+FFFD, then the ASCII.
  EXPECT_EQ(stream.push(bytes[0]), "");
  EXPECT_EQ(stream.push(*tok->token_id("a")), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(stream.push(bytes[0]), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  // Random sequences of the HF decode fixture, when present; else a fixed pseudo-random walk.
  if (std::filesystem::exists(tok_fixture("qwen.decode.jsonl"))) {
    for (const auto& c : read_jsonl(tok_fixture("qwen.decode.jsonl"))) {
      check_incremental(*tok, c["ids"].get<std::vector<int32_t>>(), c["skip_special"].get<bool>());
    }
  }
  uint32_t x = 12345;
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> random;
    for (int k = 0; k < 16; ++k) {
      x = x * 1664525u + 1013904223u;
      random.push_back(int32_t(x % uint32_t(tok->vocab_size() + 50)));
    }
    check_incremental(*tok, random, round % 2 == 1);
  }
}

TEST(TokenizerThreads, SharedTokenizerEncodesTheSameInParallel) {
  WICK_NEED_QWEN(tok);
  const Tokenizer copy = *tok;  // copies share one state
  const std::string mixed = mixed_text(1 << 18);
  std::vector<std::string> chunks;
  for (size_t at = 0; at < mixed.size(); at += 4096) {
    size_t end = std::min(mixed.size(), at + 4096);
    while (end < mixed.size() && (static_cast<unsigned char>(mixed[end]) & 0xC0) == 0x80) ++end;
    chunks.push_back(mixed.substr(at, end - at));
    at = end - 4096;
  }
  std::vector<std::vector<int32_t>> serial;
  for (const auto& c : chunks) serial.push_back(copy.encode(c));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 2; ++rep) {
        for (size_t i = size_t(t); i < chunks.size(); i += (rep == 0 ? 1 : 3)) {
          if (copy.encode(chunks[i]) != serial[i]) ++mismatches[size_t(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace wick::test
