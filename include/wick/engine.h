// The engine: many sequences decoded together (continuous batching) over a paged KV cache, each with its own
// adapter. Requests join and leave at every step; prompts are prefilled in chunks mixed with other sequences'
// decode steps under a per-step token budget; sequences with a common prompt prefix under the same adapter version
// share the blocks that hold it — computed once even when they arrive together (a sequence waits for a block another
// is computing); when the pool runs out, the newest sequences are preempted and recomputed later.
//
//   Engine engine(model, {.num_blocks = 512});
//   engine.submit({.prompt = ids, .max_new_tokens = 64, .lora = adapter, .sink = my_sink});
//   while (engine.step()) {}
//
// The engine decides nothing about tokens: each sequence's TokenSink picks the next one from its logits (the
// generate layer's samplers and stop strings), or ends the sequence.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "wick/device_turns.h"
#include "wick/logit_summary.h"
#include "wick/model.h"

namespace wick {

/// How a sequence left the engine.
enum class SequenceEnd {
  finished,   ///< its sink returned nullopt
  cancelled,  ///< Engine::cancel, or the engine was destroyed first
  failed,     ///< its sink or the forward pass threw (Engine::error has the exception)
};

/// What a TokenSink may choose from instead of a whole row of logits: the `count` best ids and the logits of `gather`
/// (wick/logit_summary.h), reduced on the device together with the other sequences' rows.
struct SummaryAsk {
  int32_t count = 1;
  std::vector<int32_t> gather = {};
};

/// A TokenSink's answer to a summary: decided (next: the token, or nullopt when the sequence is finished), or not
/// (the whole row follows, to next_token(logits)).
struct SummaryAnswer {
  bool decided = false;
  std::optional<int32_t> next = std::nullopt;
};

/// What chooses a sequence's tokens: called once per new position, with that position's logits (or their summary), on
/// the thread that runs the engine's steps.
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  /// `logits` [vocab] of the sequence's newest token (CPU f32). Returns the next token, or nullopt when the
  /// sequence is finished (its blocks are released at once). An exception ends this sequence only: it is stored
  /// for the submitter (Engine::error) and the engine goes on with the others.
  virtual std::optional<int32_t> next_token(std::span<const float> logits) = 0;
  /// Asked before each position: a summary the sink could choose from instead of the row (on a GPU only summaries
  /// then cross to the host). nullopt (the default): the whole row, always.
  virtual std::optional<SummaryAsk> summary_ask() { return std::nullopt; }
  /// The next token from the summary it asked for (exceptions as next_token). Called while the step's logits are on
  /// the device; when not decided, next_token(logits) follows with the whole row.
  virtual SummaryAnswer next_token(const LogitSummary& summary) {
    (void)summary;
    return {};
  }
  /// Called once when the sequence leaves the engine, after its blocks went back to the pool.
  virtual void on_end(SequenceEnd) {}
};

struct EngineOptions {
  int64_t block_size = 16;        ///< positions per KV block
  int64_t num_blocks = 256;       ///< blocks in the pool (all layers): num_blocks · block_size positions in all
  int64_t max_step_tokens = 512;  ///< tokens one step runs at most: decodes first, then prefill chunks
  int64_t max_running = 64;       ///< sequences in flight at most (the rest wait)
  bool share_prefixes = true;     ///< reuse cached blocks of an equal prompt prefix (same adapter version)
  /// Shared with other work on the model's device (a training job): each step's forward pass, and the recording of
  /// the decode steps at construction, run in a turn of it. Null: the engine has the device to itself.
  std::shared_ptr<DeviceTurns> turns = nullptr;
};

/// One request as the engine runs it.
struct EngineRequest {
  std::vector<int32_t> prompt;
  /// New tokens at most: the engine refuses a request that could not fit the pool or the model's context; the sink
  /// ends the sequence (it is not told this number).
  int64_t max_new_tokens = 16;
  /// The adapter version this sequence runs with (null: the base model), held until it ends. A prefix computed
  /// under one version is never reused under another.
  std::shared_ptr<const LoraSource> lora = nullptr;
  std::shared_ptr<TokenSink> sink = nullptr;
};

/// Counters of an engine's work so far (and of its pool now).
struct EngineStats {
  int64_t steps = 0;
  int64_t tokens_computed = 0;     ///< positions run through the model (prefill and decode, recomputation included)
  int64_t prefix_hit_tokens = 0;   ///< prompt positions taken from cached blocks instead of computed
  int64_t prefix_waits = 0;        ///< steps a waiting sequence sat out for a block of its prefix another was computing
  int64_t preemptions = 0;         ///< sequences sent back to wait (their blocks freed; recomputed later)
  int64_t waiting = 0, running = 0;
  int64_t finished = 0;            ///< sequences that left the engine (finished, cancelled or failed)
  int64_t blocks_total = 0, blocks_held = 0, blocks_cached = 0;
};

/// submit(), cancel(), error() and stats() may be called from any thread. The steps run either on the caller's
/// thread (step(), run()) or on the engine's own (start()), never both.
class Engine {
 public:
  /// An engine over `model` with a pool of options.num_blocks blocks (bad_input for sizes < 1).
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options = {});
  /// Stops the engine's thread (if started); every sequence still waiting or running ends as cancelled.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues a request; returns its id. bad_input (nothing queued) for an empty prompt, a token outside the
  /// vocabulary, no sink, max_new_tokens < 1, or prompt + max_new_tokens beyond the model's context or the whole
  /// pool ("needs N blocks of B positions; the pool has M").
  uint64_t submit(EngineRequest request);
  /// Ends a waiting or running request at the next step boundary; its blocks return to the pool. Unknown or
  /// finished ids are ignored.
  void cancel(uint64_t id);
  /// One step: retire cancelled sequences, schedule (decodes, then new prefill chunks, preempting the newest
  /// sequences if the pool runs out), one forward pass over the batch, and each sequence at the end of its known
  /// tokens asks its sink for the next. Returns false when nothing is waiting or running.
  bool step();
  /// Steps until nothing is waiting or running.
  void run();
  /// Runs the steps on a thread of the engine's own from now on: it sleeps while there is nothing to do and wakes
  /// for every submit() and cancel(). Sinks are called on that thread.
  void start();
  /// The exception a request's sink threw (it ended the request), or null.
  std::exception_ptr error(uint64_t id) const;
  /// The counters as of the last step (plus requests submitted since, as waiting).
  EngineStats stats() const;
  const Model& model() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wick
