// What a request does with each new position: the sampler chooses a token, the detokenizer turns it into text, the
// stop matcher holds back and ends, the result grows. The single-sequence decode loop (decode_loop.h) and the
// engine's sequences (batch.cpp) both feed it; it never runs the model.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <vector>

#include "generate/stop_matcher.h"
#include "wick/generator.h"

namespace wick {

/// Every problem with a request, in one bad_input error naming the flags ("generate: ..."), before anything is
/// allocated; its context is the session's capacity, or max_position_embeddings without one. Returns params.
const GenerateParams& validated_request(const Model& model, const Tokenizer* tokenizer, const Session* session,
                                        std::span<const int32_t> prompt, const GenerateParams& params);

/// The sampling params a request runs with: its own, else the model's generation_config.json.
SamplingParams sampling_of(const Model& model, const GenerateParams& params);

class TokenFollower {
 public:
  /// params must have passed validated_request.
  TokenFollower(const Model& model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
                std::span<const int32_t> prompt, const GenerateParams& params);

  Sampler& sampler() { return sampler_; }
  /// Marks the end of the prefill (the first token's logits are in): timings start here.
  void prefill_done(std::chrono::steady_clock::time_point started);
  /// Takes the chosen token: accepted by the sampler, decoded, matched against the stop strings; `out` is the
  /// token as delivered (text, scores, finish on the last one).
  void accept(TokenChoice choice, StreamToken& out);
  bool done() const { return done_; }
  /// Ends generation here with `reason` (no-op once ended).
  void finish(FinishReason reason);
  /// Takes back the last token accept() produced, for a consumer that never received it (finish: cancelled).
  void retract(const StreamToken& token);
  GenerateResult& result() { return result_; }

 private:
  using clock = std::chrono::steady_clock;
  std::vector<int32_t> eos_;
  GenerateParams params_;
  Sampler sampler_;
  std::optional<IncrementalDecoder> decoder_;
  std::optional<StopMatcher> stops_;
  GenerateResult result_;
  bool done_ = false;
  clock::time_point decode_start_;
};

}  // namespace wick
