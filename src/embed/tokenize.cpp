#include "embed/tokenize.h"

#include <algorithm>

namespace wick {

// Until Tokenizer::encode(text, EncodeOptions{add_special_tokens, max_length}) lands (issue 24's tokenizer work),
// the post-processor's special tokens are not added: right for the Qwen2 BPE tokenizers wick reads today, whose
// post-processors add none, and the one line to change when it lands.
EmbedTokens embed_tokenize(const Tokenizer& tokenizer, std::string_view text, int64_t max_length) {
  EmbedTokens out{.ids = tokenizer.encode(text)};
  out.full_length = int64_t(out.ids.size());
  out.ids.resize(size_t(std::min<int64_t>(out.full_length, max_length)));
  return out;
}

}  // namespace wick
