#include "wick/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "wick/error.h"

namespace wick {

std::string_view to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::eos: return "eos";
    case FinishReason::length: return "length";
  }
  return "?";
}

double GenerateResult::decode_tokens_per_s() const {
  const size_t steps = output_ids.size() > 1 ? output_ids.size() - 1 : 0;
  return decode_ms > 0 ? double(steps) / (decode_ms / 1000.0) : 0.0;
}

Generator::Generator(std::shared_ptr<const Model> model) : model_(std::move(model)) {
  if (!model_) fail(ErrorKind::bad_input, "Generator: no model");
  if (model_->config().head != ModelHead::causal_lm)
    fail(ErrorKind::bad_input, "Generator: a sequence-classification model cannot generate text");
}

namespace {
int32_t argmax(const float* logits, int64_t n, std::span<const int32_t> masked) {
  int32_t best = -1;
  float best_v = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    if (std::find(masked.begin(), masked.end(), int32_t(i)) != masked.end()) continue;
    if (best < 0 || logits[i] > best_v) best = int32_t(i), best_v = logits[i];  // first max wins, as torch.argmax
  }
  return best;
}
}  // namespace

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateParams& params) const {
  const ModelConfig& c = model_->config();
  if (prompt.empty()) fail(ErrorKind::bad_input, "generate: the prompt is empty");
  if (params.max_tokens < 1)
    fail(ErrorKind::bad_input, "--max-tokens: expected at least 1, found " + std::to_string(params.max_tokens));
  const int64_t needed = int64_t(prompt.size()) + params.max_tokens;
  if (needed > c.max_position_embeddings)
    fail(ErrorKind::bad_input, "generate: prompt of " + std::to_string(prompt.size()) + " tokens + --max-tokens " +
                                   std::to_string(params.max_tokens) + " exceeds the model's context of " +
                                   std::to_string(c.max_position_embeddings) + " (max_position_embeddings)");
  const auto& eos = model_->generation_defaults().eos_token_ids;
  const std::span<const int32_t> masked = params.ignore_eos ? std::span<const int32_t>(eos) : std::span<const int32_t>();

  // The adapter in effect when the request starts stays with it, whatever is swapped meanwhile.
  const std::shared_ptr<const LoraSource> lora = model_->active_lora();
  const ForwardOptions opts{.logits = LogitsFor::last_token, .lora = lora.get()};
  GenerateResult r;
  r.prompt_ids.assign(prompt.begin(), prompt.end());
  KVCache cache = model_->make_cache(needed);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  Tensor logits = model_->forward(std::vector<SequenceInput>{{prompt, &cache}}, opts);
  auto t1 = clock::now();
  r.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  for (;;) {
    const int32_t next = argmax(logits.data<float>(), c.vocab_size, masked);
    r.output_ids.push_back(next);
    if (!params.ignore_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
      r.finish = FinishReason::eos;
      break;
    }
    if (int32_t(r.output_ids.size()) >= params.max_tokens) {
      r.finish = FinishReason::length;
      break;
    }
    const int32_t step[] = {next};
    logits = model_->forward(std::vector<SequenceInput>{{step, &cache}}, opts);
  }
  r.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
  return r;
}

}  // namespace wick
