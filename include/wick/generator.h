// Text generation on a Model with a KV cache: one decode loop, four ways to receive its tokens.
//
//   GenerateResult r = gen.generate(prompt, params);                     // all at once
//   gen.generate_stream(prompt, params, [](const StreamToken& t) { ...; return true; });  // callback
//   for (const StreamToken& t : gen.stream(prompt, params)) { ... }      // pull iterator
//   AsyncStream s = gen.stream_async(prompt, params);                    // worker thread + channel
//
// Same model, prompt, params and seed ⇒ the same tokens on every path: they all drive one
// DecodeLoop::step() (src/generate/decode_loop.h) and differ only in how a token is handed over.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wick/engine.h"
#include "wick/model.h"
#include "wick/sampler.h"
#include "wick/tokenizer.h"

namespace wick {

enum class FinishReason {
  eos,        ///< an EOS id was sampled (it is the last output id; it adds no text)
  stop,       ///< a stop string completed (the text ends just before it)
  length,     ///< max_tokens reached
  cancelled,  ///< the consumer stopped the generation
};

/// "eos" / "stop" / "length" / "cancelled".
std::string_view to_string(FinishReason reason);

struct GenerateParams {
  int32_t max_tokens = 16;  ///< new tokens at most (≥ 1)
  bool ignore_eos = false;  ///< mask EOS logits to -inf (transformers' min_new_tokens semantics)
  /// Unset: the model's generation_config.json as transformers reads it (greedy when it has no
  /// do_sample: true). SamplingParams::greedy_params() for argmax decoding.
  std::optional<SamplingParams> sampling = {};
  /// Generation stops when the text contains one of these; the text returned ends before it.
  /// Matched across token boundaries: text that could be the start of a stop string is held back
  /// until it is known not to be. Needs a tokenizer.
  std::vector<std::string> stop = {};
  bool skip_special_tokens = true;  ///< special tokens (<|im_end|>, ...) add no text
  /// On a GPU, sample from a summary of each step's logits reduced on the device (greedy, or a top-k of at most
  /// Sampler::kSummaryTopK: the same tokens and scores), so the whole row rarely crosses to the host. false: always
  /// the whole row.
  bool device_summary = true;
};

/// One generated token as it is delivered.
struct StreamToken {
  int32_t id = 0;
  int32_t index = 0;  ///< position among the new tokens, from 0
  /// Text this token releases: may be empty (an incomplete UTF-8 character, a special token, or text
  /// held back as a possible stop-string start) and may carry text held back from earlier tokens.
  /// Concatenating every token's text gives GenerateResult::text.
  std::string text;
  float logprob = 0;      ///< log-probability under the final (processed) distribution
  float probability = 0;  ///< exp(logprob)
  float logit = 0;        ///< the raw model logit of this token
  std::vector<TokenLogprob> top;       ///< SamplingParams::top_logprobs best alternatives, best first
  std::optional<FinishReason> finish;  ///< set on the last token (eos / stop / length)
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  ///< new tokens only (an EOS that ended generation included)
  std::string text;                 ///< decoded new tokens (empty without a tokenizer)
  FinishReason finish = FinishReason::length;
  int64_t cached_tokens = 0;  ///< prompt tokens found in a Session's KV cache and not recomputed
  double prefill_ms = 0;      ///< prompt forward pass up to the first new token's logits
  double decode_ms = 0;       ///< the remaining tokens
  double decode_tokens_per_s() const;
};

/// Called for each token; return false to stop (the result's finish is then `cancelled`).
using TokenCallback = std::function<bool(const StreamToken&)>;

/// One request of a batch (Generator::generate_batch).
struct BatchRequest {
  std::vector<int32_t> prompt{};
  GenerateParams params{};
  /// The adapter this request runs with (nullptr: the base model); the batch may mix any.
  std::shared_ptr<const LoraSource> lora = nullptr;
};

/// Called for each token of request `index` of a batch; return false to stop that request (finish: cancelled).
using BatchTokenCallback = std::function<bool(size_t index, const StreamToken& token)>;

/// What a request submitted to an engine of the caller's (Generator::submit) reports, on the engine's thread.
struct EngineCallbacks {
  /// Each token as it is chosen; false stops the request (finish: cancelled). May be empty.
  TokenCallback on_token = {};
  /// Once, when the request leaves the engine: its result (finish `cancelled` when it was cancelled or failed; then
  /// Engine::error has the failure) and how it ended. May be empty.
  std::function<void(GenerateResult&& result, SequenceEnd end)> on_end = {};
};

class DecodeLoop;

/// A conversation kept across generate calls: the KV cache and the tokens it holds. A call reuses
/// the cache for the longest common prefix of its prompt and these tokens, so a chat that
/// re-renders the whole conversation each turn only computes the new turn. Not thread-safe.
class Session {
 public:
  Session() = default;
  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept = default;

  /// Positions the cache holds at most (prompt + new tokens of a call must fit).
  int64_t capacity() const { return cache_.capacity(); }
  /// Every token of the conversation so far (the last generated one is not in the cache yet).
  const std::vector<int32_t>& tokens() const { return tokens_; }
  /// Forgets the conversation; the cache memory stays allocated.
  void reset() { cache_.clear(), tokens_.clear(); }

 private:
  friend class Generator;
  friend class DecodeLoop;
  explicit Session(KVCache cache) : cache_(std::move(cache)) {}
  KVCache cache_;
  std::vector<int32_t> tokens_;
};

/// The pull iterator: `for (const StreamToken& t : generator.stream(prompt, params))`. Each ++ runs
/// one decode step. Leaving the loop early (break) and destroying the stream releases the KV cache.
class TokenStream {
 public:
  class iterator {
   public:
    using value_type = StreamToken;
    using difference_type = std::ptrdiff_t;
    const StreamToken& operator*() const { return stream_->current_; }
    const StreamToken* operator->() const { return &stream_->current_; }
    iterator& operator++() {
      stream_->advance();
      return *this;
    }
    void operator++(int) { stream_->advance(); }
    bool operator==(std::default_sentinel_t) const { return !stream_->has_current_; }

   private:
    friend class TokenStream;
    explicit iterator(TokenStream* s) : stream_(s) {}
    TokenStream* stream_;
  };

  TokenStream(TokenStream&&) noexcept;
  TokenStream& operator=(TokenStream&&) noexcept;
  ~TokenStream();

  /// Runs the prefill and the first step (once; a second begin() continues where the stream is).
  iterator begin();
  std::default_sentinel_t end() const { return {}; }
  /// Stops here: finish becomes `cancelled` unless the stream already ended.
  void cancel();
  /// The tokens so far; complete once the iterator reached end().
  const GenerateResult& result() const;

 private:
  friend class Generator;
  explicit TokenStream(std::unique_ptr<DecodeLoop> loop);
  void advance();
  std::unique_ptr<DecodeLoop> loop_;
  StreamToken current_;
  bool has_current_ = false;
  bool started_ = false;
};

/// Generation on a worker thread, tokens handed over through a bounded channel. Cancelling or
/// destroying the stream stops the worker within one decode step and frees its KV cache before
/// returning. Methods are for one consumer thread.
class AsyncStream {
 public:
  enum class Status { token, finished, timeout };

  AsyncStream(AsyncStream&&) noexcept;
  AsyncStream& operator=(AsyncStream&&) noexcept;
  ~AsyncStream();  ///< cancel()

  /// The next token, waiting as long as needed; nullopt once generation ended (rethrows its error).
  std::optional<StreamToken> next();
  /// Waits at most `timeout`: `token` (written to `out`), `finished` (no more tokens; rethrows the
  /// worker's error) or `timeout`.
  Status next(StreamToken& out, std::chrono::milliseconds timeout);
  /// Ready once the worker ended (finished, cancelled or failed). With a bounded channel the worker
  /// waits for the consumer, so take the tokens (next) or cancel() before waiting on it.
  std::shared_future<GenerateResult> result() const;
  /// Stops the worker (within one decode step) and waits for it; tokens already in the channel stay
  /// readable. The result's finish is `cancelled` unless generation had already ended.
  void cancel();

 private:
  friend class Generator;
  struct State;
  explicit AsyncStream(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

/// Decoding with a KV cache: one prefill of the prompt, then one forward step per token. Stops at an
/// EOS id (generation_config.json, else config.json), a stop string, or max_tokens. Const methods
/// may run on several threads at once (each call has its own cache and sampler).
class Generator {
 public:
  /// The tokenizer gives StreamToken text and stop strings; without one, text stays empty.
  explicit Generator(std::shared_ptr<const Model> model, std::optional<Tokenizer> tokenizer = std::nullopt);

  const Model& model() const { return *model_; }
  const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }
  /// The EOS ids generation stops at.
  const std::vector<int32_t>& eos_ids() const { return eos_; }

  /// All four paths fail with bad_input before computing anything when the prompt is empty,
  /// max_tokens < 1, prompt + max_tokens exceeds the context (max_position_embeddings, or the
  /// Session's capacity), a sampling parameter is invalid (named by its CLI flag), or stop strings
  /// are given without a tokenizer.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateParams& params) const;
  GenerateResult generate_stream(std::span<const int32_t> prompt, const GenerateParams& params,
                                 const TokenCallback& on_token) const;
  TokenStream stream(std::span<const int32_t> prompt, const GenerateParams& params) const;
  /// `capacity`: tokens the channel holds before the worker waits for the consumer (0 = unbounded).
  AsyncStream stream_async(std::span<const int32_t> prompt, const GenerateParams& params, size_t capacity = 16) const;

  /// A conversation's cache for up to `capacity` positions (≤ max_position_embeddings).
  Session make_session(int64_t capacity) const;

  /// Generates every request together (continuous batching through an Engine over a paged KV cache; each request
  /// with its own adapter, params, sampler and stop strings) and returns the results in request order. Each
  /// request's tokens equal what generate() gives it alone with that adapter in effect (on the CPU; on a GPU
  /// within bf16 rounding of the logits). Every request is validated first (one bad_input naming its index);
  /// on_token, if given, sees every token as it is chosen, from the calling thread. An exception from on_token
  /// ends its request and is rethrown once the others have finished.
  std::vector<GenerateResult> generate_batch(std::span<const BatchRequest> requests,
                                             const BatchTokenCallback& on_token = {}) const;
  /// Queues `request` on `engine` — an engine over this generator's model whose steps the caller runs (a server's,
  /// with Engine::start) — with the same sampling, decoding and stop strings as generate(). Validates first
  /// (bad_input as generate(), nothing queued); returns the engine's id of the request (for Engine::cancel).
  uint64_t submit(Engine& engine, const BatchRequest& request, EngineCallbacks callbacks) const;
  /// Generates after `prompt` (the whole conversation so far), reusing the session's cache.
  GenerateResult generate_stream(Session& session, std::span<const int32_t> prompt, const GenerateParams& params,
                                 const TokenCallback& on_token) const;

 private:
  std::shared_ptr<const Model> model_;
  std::optional<Tokenizer> tokenizer_;
  std::vector<int32_t> eos_;
};

}  // namespace wick
