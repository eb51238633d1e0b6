// The one decode loop behind generate, generate_stream, stream and stream_async.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "generate/token_follower.h"
#include "wick/generator.h"

namespace wick {

/// One request's state: KV cache (its own or a Session's) and what follows its tokens (sampler, detokenizer, stop
/// matcher, the result so far). step() is the loop body; callers only decide what to do with each token.
class DecodeLoop {
 public:
  /// Validates everything (see Generator) before allocating the cache. `session` may be null.
  DecodeLoop(std::shared_ptr<const Model> model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
             Session* session, std::span<const int32_t> prompt, const GenerateParams& params);
  DecodeLoop(const DecodeLoop&) = delete;
  DecodeLoop& operator=(const DecodeLoop&) = delete;

  /// The prefill on the first call, then one forward step; writes the new token to `out`.
  /// Returns false (and leaves `out` alone) once generation has ended.
  bool step(StreamToken& out);
  /// Ends generation here with finish = cancelled (no-op once ended).
  void cancel();
  /// Takes back the last token step() produced, for a consumer that never received it.
  void retract(const StreamToken& token);
  bool done() const { return follower_.done(); }
  GenerateResult& result() { return follower_.result(); }

 private:
  using clock = std::chrono::steady_clock;

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const LoraSource> lora_;  // the adapter in effect when the request started
  int64_t vocab_;
  GenerateParams params_;
  Session own_;        // the cache when no Session was given
  Session* session_;   // the cache in use: &own_ or the caller's
  std::vector<int32_t> pending_;  // tokens to run through the model at the next step
  TokenFollower follower_;
};

}  // namespace wick
