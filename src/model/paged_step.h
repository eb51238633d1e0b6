// Decode steps of a paged batch (every sequence one new token), recorded as graphs and replayed: the plain ops of a
// whole step — some thirty launches a layer — become one launch. A graph serves any batch of up to `rows` sequences
// (the rest padded), any contexts up to `context` positions, and any mix of adapters (the row gather reads each
// row's adapter from device memory), so a serving loop records a handful and replays them for every step.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

#include "model/forward.h"
#include "model/tensor_parallel.h"
#include "model/weights.h"
#include "wick/kv_cache.h"

namespace wick {

/// The context a recorded paged step is recorded for, for steps whose longest context is `visible`: the split-K
/// attention spreads a query's keys over blocks by it (a graph bakes in the grid), so contexts go by powers of two
/// from 64.
int64_t paged_context_bucket(int64_t visible);

class PagedSteps {
 public:
  /// The most sequences and the largest adapter rank a recorded step takes; larger batches and adapters run eagerly.
  static constexpr int64_t kMaxRows = 256;
  static constexpr int32_t kMaxRank = 64;

  /// `tp`: the steps of one rank of a split model (its backend and config), whose collective must be capturable;
  /// every rank records and replays its own graphs, the collectives inside them, in the same order.
  PagedSteps(Backend& backend, const ModelConfig& config, const RankOfMany* tp = nullptr);
  ~PagedSteps();

  /// Whether a step of `flat` over `pool` is replayed: a device backend with graphs, every sequence one token, at
  /// most kMaxRows of them, every adapter's rank at most kMaxRank, none replacing the head or embedding.
  bool takes(const FlatBatch& flat) const;
  /// The step of `flat` by graph replay (recorded on first use of its shape); the logits on the device, [rows,
  /// vocab] f32, valid until the next step. Callers hold the model's device lock and its weights lock (shared).
  Tensor run(const ModelWeights& weights, const FlatBatch& flat, KVBlockPool& pool);
  /// Records the steps of `rows` sequences (each a power of two up to kMaxRows, with and without adapters) of
  /// contexts up to `context` over `pool`, ahead of the first request (warm-up).
  void record(const ModelWeights& weights, KVBlockPool& pool, int64_t rows, int64_t context);
  /// Forgets every recorded graph: call after replacing weight tensors (graphs bake in their addresses).
  void forget_graphs();
  int64_t graphs_recorded() const { return captures_; }

  struct Buffers;  // one batch size's activations and inputs (paged_step.cpp)

 private:
  // The fixed buffers of `rows`-row steps over `pool` (made, or remade larger, as needed).
  Buffers& buffers_for(int64_t rows, const ModelWeights& weights, const KVBlockPool& pool);
  // Forgets the graphs of another pool.
  void use_pool(const KVBlockPool& pool);
  // The graph of `buffers`' step for contexts up to `context`, with or without the row gather of adapters;
  // recorded on first use.
  Graph* graph_for(const ModelWeights& weights, KVBlockPool& pool, Buffers& buffers, int64_t context, bool lora);

  Backend& backend_;
  const ModelConfig& config_;
  std::optional<RankOfMany> tp_;
  bool graphs_ = false;
  std::mutex mutex_;
  const void* pool_storage_ = nullptr;  // the pool the graphs write to; another pool forgets them
  std::map<int64_t, std::unique_ptr<Buffers>> buffers_;  // by batch size
  int64_t captures_ = 0;
};

}  // namespace wick
