// The one place the embedder calls the tokenizer, so that a change of the tokenizer's API touches one function.
// Private to src/embed/.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "wick/tokenizer.h"

namespace wick {

struct EmbedTokens {
  std::vector<int32_t> ids;  // with the special tokens, at most max_length of them
  int64_t full_length = 0;   // the count before truncation
};

/// transformers' tokenizer(text, truncation="longest_first", max_length=max_length)["input_ids"]: the text's tokens
/// with the special tokens the tokenizer's post-processor adds, the text's tokens cut so that the whole fits
/// max_length (the specials counted inside).
EmbedTokens embed_tokenize(const Tokenizer& tokenizer, std::string_view text, int64_t max_length);

}  // namespace wick
