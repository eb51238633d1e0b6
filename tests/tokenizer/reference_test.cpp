// wick's tokenizer against HF tokenizers 0.23: ids of the whole corpus, the 1 MiB mixed text, decode
// of random ids and chat templates, as recorded by scripts/make_tokenizer_fixtures.py.
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

std::string show(const std::string& s) { return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 200); }

// First index where two id lists differ, for readable failures.
::testing::AssertionResult same_ids(const std::vector<int32_t>& want, const std::vector<int32_t>& got) {
  if (want == got) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  auto at = [&](const std::vector<int32_t>& v) { return i < v.size() ? std::to_string(v[i]) : std::string("<end>"); };
  return ::testing::AssertionFailure() << "ids differ at index " << i << " of " << want.size() << ": HF " << at(want)
                                       << ", wick " << at(got) << " (wick has " << got.size() << " ids)";
}

void check_corpus(const Tokenizer& tok, const std::string& ids_file) {
  const auto want = read_jsonl(tok_fixture(ids_file));
  ASSERT_EQ(want.size(), corpus().size()) << ids_file << " does not match corpus.jsonl";
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(same_ids(want[i].get<std::vector<int32_t>>(), tok.encode(corpus()[i])))
        << ids_file << " line " << i + 1 << ": " << show(corpus()[i]);
  }
}

void check_decode(const Tokenizer& tok, const std::string& file) {
  const auto cases = read_jsonl(tok_fixture(file));
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.decode(ids, c["skip_special"].get<bool>()), c["text"].get<std::string>()) << c.dump();
  }
}

TEST(TokenizerReference, QwenCorpusIdsEqualHF) {
  WICK_NEED_QWEN(tok);
  if (!reference_set_present({"qwen.ids.jsonl", "qwen.mixed_1mb.ids.bin", "qwen.decode.jsonl"})) {
    GTEST_SKIP() << "no Qwen reference ids: run scripts/make_tokenizer_fixtures.py reference";
  }
  check_corpus(*tok, "qwen.ids.jsonl");
}

TEST(TokenizerReference, QwenMixed1MbIdsEqualHF) {
  WICK_NEED_QWEN(tok);
  if (!reference_set_present({"qwen.ids.jsonl", "qwen.mixed_1mb.ids.bin", "qwen.decode.jsonl"})) GTEST_SKIP();
  EXPECT_TRUE(same_ids(read_ids_bin(tok_fixture("qwen.mixed_1mb.ids.bin")), tok->encode(mixed_text())));
}

TEST(TokenizerReference, QwenDecodeEqualsHF) {
  WICK_NEED_QWEN(tok);
  if (!reference_set_present({"qwen.ids.jsonl", "qwen.mixed_1mb.ids.bin", "qwen.decode.jsonl"})) GTEST_SKIP();
  check_decode(*tok, "qwen.decode.jsonl");
}

TEST(TokenizerReference, QwenChatTemplateEqualsTransformers) {
  WICK_NEED_QWEN(tok);
  if (!std::filesystem::exists(tok_fixture("qwen.chat.jsonl"))) {
    GTEST_SKIP() << "no qwen.chat.jsonl (written by make_tokenizer_fixtures.py where transformers is installed)";
  }
  for (const auto& c : read_jsonl(tok_fixture("qwen.chat.jsonl"))) {
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) {
      ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
      if (m.contains("reasoning_content")) msg.reasoning_content = m["reasoning_content"].get<std::string>();
      messages.push_back(std::move(msg));
    }
    ChatTemplateOptions options{.add_generation_prompt = c["add_generation_prompt"].get<bool>()};
    if (!c["enable_thinking"].is_null()) options.enable_thinking = c["enable_thinking"].get<bool>();
    EXPECT_EQ(tok->apply_chat_template(messages, options), c["text"].get<std::string>()) << c.dump();
  }
}

const std::vector<std::string> kTrainedSet = {"trained/tokenizer.json", "trained_str/tokenizer.json", "trained.ids.jsonl",
                                              "trained.mixed_64k.ids.bin", "trained_str.ids.jsonl", "trained.decode.jsonl"};

TEST(TokenizerReference, TrainedCorpusIdsEqualHF) {
  if (!reference_set_present(kTrainedSet)) GTEST_SKIP() << "no trained-tokenizer reference: run make_tokenizer_fixtures.py";
  check_corpus(trained_tokenizer(), "trained.ids.jsonl");
  EXPECT_TRUE(same_ids(read_ids_bin(tok_fixture("trained.mixed_64k.ids.bin")), trained_tokenizer().encode(mixed_text(1 << 16))));
}

TEST(TokenizerReference, TrainedStringMergesAndIgnoreMergesEqualHF) {
  if (!reference_set_present(kTrainedSet)) GTEST_SKIP();
  check_corpus(Tokenizer::load(tok_fixture("trained_str")), "trained_str.ids.jsonl");
}

TEST(TokenizerReference, TrainedDecodeEqualsHF) {
  if (!reference_set_present(kTrainedSet)) GTEST_SKIP();
  check_decode(trained_tokenizer(), "trained.decode.jsonl");
}

}  // namespace
}  // namespace wick::test
