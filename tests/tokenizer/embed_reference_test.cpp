// The embedding models' tokenizers against HF tokenizers: scripts/make_embed_fixtures.py (on the GPU machine,
// tokenizers 0.23) trained them and wrote, for every corpus text, the ids of `tokenizer(text)` ("ids", with the
// specials) and of `tokenizer(text, add_special_tokens=False)` ("plain").
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

class EmbedTokenizerReference : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbedTokenizerReference, EveryTextWithAndWithoutSpecials) {
  const std::filesystem::path dir = fixture("embed/tokenizers");
  const std::filesystem::path json_path = dir / GetParam() / "tokenizer.json";
  const std::filesystem::path ids_path = dir / (GetParam() + ".ids.jsonl");
  if (!std::filesystem::exists(json_path) || !std::filesystem::exists(ids_path)) {
    GTEST_SKIP() << json_path << " or " << ids_path << " is absent (scripts/make_embed_fixtures.py writes them)";
  }
  const Tokenizer tok = Tokenizer::load(json_path);
  const auto lines = read_jsonl(ids_path);
  ASSERT_GT(lines.size(), 50u);
  size_t mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string text = lines[i]["text"].get<std::string>();
    const auto want_plain = lines[i]["plain"].get<std::vector<int32_t>>();
    const auto want_ids = lines[i]["ids"].get<std::vector<int32_t>>();
    const auto plain = tok.encode(text);
    const auto ids = tok.encode(text, {.add_special_tokens = true});
    EXPECT_EQ(plain, want_plain) << GetParam() << " line " << i + 1 << ": " << text;
    EXPECT_EQ(ids, want_ids) << GetParam() << " line " << i + 1 << ": " << text;
    mismatches += (plain != want_plain) + (ids != want_ids);
    // Truncated as transformers' truncation=True, max_length=L: the first L - 1 ids, then the last special.
    if (want_ids.size() > 8) {
      auto cut = std::vector<int32_t>(want_ids.begin(), want_ids.begin() + 7);
      cut.push_back(want_ids.back());
      EXPECT_EQ(tok.encode(text, {.add_special_tokens = true, .max_length = 8}), cut) << GetParam() << " line " << i + 1;
    }
  }
  EXPECT_EQ(mismatches, 0u) << GetParam() << ": " << lines.size() << " texts";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EmbedTokenizerReference,
                         ::testing::Values("wordpiece-uncased", "wordpiece-cased", "wordpiece-mpnet", "unigram"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace wick::test
