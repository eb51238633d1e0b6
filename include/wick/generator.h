// Text generation on a Model with a KV cache.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "wick/model.h"

namespace wick {

enum class FinishReason { eos, length };

/// "eos" / "length".
std::string_view to_string(FinishReason reason);

struct GenerateParams {
  int32_t max_tokens = 16;   ///< new tokens at most (≥ 1)
  bool ignore_eos = false;   ///< mask EOS logits to -inf (transformers' min_new_tokens semantics)
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  ///< new tokens only
  FinishReason finish = FinishReason::length;
  double prefill_ms = 0;  ///< prompt forward pass up to the first new token
  double decode_ms = 0;   ///< the remaining tokens
  double decode_tokens_per_s() const;
};

/// Greedy decoding with a KV cache: one prefill of the prompt, then one forward step per token.
/// Stops at an EOS id (from generation_config.json, else config.json) or after max_tokens.
/// Sampling strategies come with the sampler.
class Generator {
 public:
  explicit Generator(std::shared_ptr<const Model> model);
  /// Fails with bad_input when the prompt is empty, max_tokens < 1, or prompt + max_tokens exceeds
  /// the model's context (max_position_embeddings).
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateParams& params) const;

 private:
  std::shared_ptr<const Model> model_;
};

}  // namespace wick
