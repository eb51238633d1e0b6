// Generator::generate_batch: every request a sequence of one Engine, whose TokenSink is a TokenFollower (the same
// sampling, decoding and stop strings as the single-sequence loop).
#include <chrono>
#include <exception>

#include "generate/token_follower.h"
#include "wick/engine.h"
#include "wick/error.h"
#include "wick/generator.h"

namespace wick {

namespace {

class FollowerSink final : public TokenSink {
 public:
  FollowerSink(const Model& model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
               const BatchRequest& request, EngineCallbacks callbacks)
      : follower_(model, tokenizer, eos, request.prompt, request.params),
        callbacks_(std::move(callbacks)),
        device_summary_(request.params.device_summary && model.device() != Device::cpu) {}

  std::optional<int32_t> next_token(std::span<const float> logits) override {
    return take(follower_.sampler().choose(logits));
  }
  // As the single-sequence loop: on a GPU, a summary of the row when the sampling params allow it
  // (Sampler::summary_request).
  std::optional<SummaryAsk> summary_ask() override {
    if (!device_summary_) return std::nullopt;
    std::optional<Sampler::SummaryRequest> r = follower_.sampler().summary_request();
    if (!r) return std::nullopt;
    return SummaryAsk{.count = r->count, .gather = std::move(r->gather)};
  }
  SummaryAnswer next_token(const LogitSummary& summary) override {
    std::optional<TokenChoice> choice = follower_.sampler().choose(summary);
    if (!choice) return {};
    return {.decided = true, .next = take(std::move(*choice))};
  }
  // Ended without the follower deciding it (cancelled, or the sink or the pass threw): whatever it had is the result.
  void on_end(SequenceEnd end) override {
    follower_.finish(FinishReason::cancelled);
    if (callbacks_.on_end) callbacks_.on_end(std::move(follower_.result()), end);
  }

 private:
  // The chosen token accepted (decoded, matched against the stop strings, streamed); nullopt once finished.
  std::optional<int32_t> take(TokenChoice choice) {
    if (follower_.result().output_ids.empty()) follower_.prefill_done(submitted_);
    StreamToken t;
    follower_.accept(std::move(choice), t);
    if (callbacks_.on_token && !callbacks_.on_token(t)) follower_.finish(FinishReason::cancelled);
    if (follower_.done()) return std::nullopt;
    return t.id;
  }

  TokenFollower follower_;
  EngineCallbacks callbacks_;
  bool device_summary_;
  std::chrono::steady_clock::time_point submitted_ = std::chrono::steady_clock::now();
};

}  // namespace

std::vector<GenerateResult> Generator::generate_batch(std::span<const BatchRequest> requests,
                                                      const BatchTokenCallback& on_token) const {
  if (requests.empty()) return {};
  // Validated whole first: an error names the request.
  constexpr int64_t kBlock = 16;
  int64_t blocks = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    try {
      validated_request(*model_, tokenizer(), nullptr, requests[i].prompt, requests[i].params);
    } catch (const Error& e) {
      fail(e.kind(), "request " + std::to_string(i) + ": " + e.what());
    }
    blocks += (int64_t(requests[i].prompt.size()) + requests[i].params.max_tokens + kBlock - 1) / kBlock;
  }
  // A pool that holds every request at once: nothing waits for room (the contiguous caches would take as much).
  Engine engine(model_, {.block_size = kBlock, .num_blocks = blocks, .max_running = int64_t(requests.size())});
  std::vector<GenerateResult> out(requests.size());
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < requests.size(); ++i) {
    EngineCallbacks callbacks{.on_end = [&out, i](GenerateResult&& r, SequenceEnd) { out[i] = std::move(r); }};
    if (on_token) callbacks.on_token = [&on_token, i](const StreamToken& t) { return on_token(i, t); };
    ids.push_back(engine.submit({.prompt = requests[i].prompt,
                                 .max_new_tokens = requests[i].params.max_tokens,
                                 .lora = requests[i].lora,
                                 .sink = std::make_shared<FollowerSink>(*model_, tokenizer(), eos_, requests[i],
                                                                        std::move(callbacks))}));
  }
  engine.run();
  std::exception_ptr first_error;
  for (uint64_t id : ids)
    if (const std::exception_ptr e = engine.error(id); e && !first_error) first_error = e;
  if (first_error) std::rethrow_exception(first_error);
  return out;
}

uint64_t Generator::submit(Engine& engine, const BatchRequest& request, EngineCallbacks callbacks) const {
  if (&engine.model() != model_.get()) fail(ErrorKind::bad_input, "generate: the engine runs another model");
  validated_request(*model_, tokenizer(), nullptr, request.prompt, request.params);
  return engine.submit({.prompt = request.prompt,
                        .max_new_tokens = request.params.max_tokens,
                        .lora = request.lora,
                        .sink = std::make_shared<FollowerSink>(*model_, tokenizer(), eos_, request, std::move(callbacks))});
}

}  // namespace wick
