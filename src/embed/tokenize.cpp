#include "embed/tokenize.h"

namespace wick {

// The whole text first (its length is what a refusal without truncation names); cut again with max_length only when
// it is over, so that the post-processor's specials stay inside the limit as transformers keeps them.
EmbedTokens embed_tokenize(const Tokenizer& tokenizer, std::string_view text, int64_t max_length) {
  EmbedTokens out{.ids = tokenizer.encode(text, EncodeOptions{.add_special_tokens = true})};
  out.full_length = int64_t(out.ids.size());
  if (out.full_length > max_length)
    out.ids = tokenizer.encode(text, EncodeOptions{.add_special_tokens = true, .max_length = max_length});
  return out;
}

}  // namespace wick
