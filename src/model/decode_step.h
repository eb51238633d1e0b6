// One-token decode steps, recorded once per KV cache as a graph and replayed (the backend's Graph: CUDA graphs).
// This module owns what a recorded step needs: the graphs, the fixed buffers they bake in, the step's inputs, and
// the adapter table through which one recorded step serves every adapter. The step itself is forward_pass, run by
// the fused one-token kernels where the backend has them (FusedDecode), else by the plain ops.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "model/forward.h"
#include "model/tensor_parallel.h"

namespace wick {

/// The inputs of one recorded step, written to the device in one copy before each replay.
struct StepInputs {
  const void* lora_table = nullptr;  // device address of the LoraEntry table the step runs with (no adapter: all
                                     // rank 0); the step's first kernel copies it into the table the graph reads
  int32_t token = 0;
  int32_t position = 0;  // the cache's length before the step
  int32_t epoch = 0;     // the step counter, never 0: LoRA values a step publishes carry it (their scratch starts
                         // zeroed), so a kernel never mistakes the last step's for this one's
  int32_t slot = 0;      // the cache row the token's key and value go to: the position, or a paged pool's row
};
static_assert(sizeof(StepInputs) == 24 && offsetof(StepInputs, token) == 8, "StepInputs layout");

class DecodeSteps {
 public:
  /// For a model on `backend` whose weights are shaped as `weights` (fused kernels only where `fused`, the backend
  /// has them and they take the model's shapes). `tp`: the steps of one rank of a split model (its backend, config
  /// and share of the weights), the collectives inside the graphs; every rank records and replays its own, in the
  /// same order, so all ranks must take the same kernels (pass `fused` = whether every rank's share takes them). Under
  /// a collective that cannot be recorded (the host's, the staged one's) the steps run eagerly, recording nothing.
  DecodeSteps(Backend& backend, const ModelConfig& config, const ModelWeights& weights,
              const RankOfMany* tp = nullptr, bool fused = true);
  /// Whether the fused one-token kernels of `backend` compute a model of `config` with `weights` (shapes they take,
  /// no bias where they add none).
  static bool fused_takes(Backend& backend, const ModelConfig& config, const ModelWeights& weights);
  ~DecodeSteps();

  /// Whether a step with `lora` (nullptr: none) is recorded: always without an adapter; with one only through the
  /// fused kernels, and only an adapter they take (rank, device, no replaced head or embedding).
  bool takes(const LoraSource* lora) const;
  /// The one-token step of `span` (one new token, `token`) with `lora`, by graph replay; records the graph on
  /// first use. Returns the logits on the device, [1, vocab] f32, valid until the next step on this cache.
  /// Callers hold the model's device lock and its weights lock (shared).
  Tensor run(const ModelWeights& weights, const Span& span, int32_t token, const LoraSource* lora);
  /// The one-token step of the one sequence of `flat` over `pool` (its keys and values in the pool's rows, named by
  /// its block table) with `lora`: the same fused kernels, the same recorded replay, attention over the block table.
  /// Graphs are recorded per context bucket (powers of two from 64 up to flat.max_visible). Returns the logits on
  /// the device, [1, vocab] f32, valid until the next step. Callers hold the model's device and weights locks.
  Tensor run_paged(const ModelWeights& weights, const FlatBatch& flat, KVBlockPool& pool, const LoraSource* lora);
  /// Records the paged steps (with and without an adapter) of contexts up to `context` over `pool` ahead of the
  /// first request (warm-up); nothing where the fused kernels do not take the model.
  void record_paged(const ModelWeights& weights, KVBlockPool& pool, int64_t context);
  /// Whether paged steps run the fused kernels (run_paged is then the one-sequence step of choice).
  bool fused() const { return fused_ != nullptr; }
  /// Forgets every recorded graph: call after replacing weight tensors (graphs bake in their addresses).
  void forget_graphs();
  /// Graphs recorded so far (adapter swaps must add none).
  int64_t graphs_recorded() const { return captures_.load(); }

  struct Recorded;  // one cache's graphs and the buffers they bake in (decode_step.cpp)

 private:
  Recorded& recorded_for(const KVCache& cache, const Tensor& head);
  Recorded& recorded_for(const KVBlockPool& pool, const Tensor& head);
  // Writes the step's inputs (and the block table after them, if any) for `lora`, bumping the epoch.
  void write_inputs(Recorded& r, StepInputs in, const LoraSource* lora, const std::vector<int32_t>& table);
  // The graph of r's step with or without an adapter, for contexts up to `context` (paged; 0 for a cache),
  // recorded on first use.
  Graph* graph_for(const ModelWeights& weights, Recorded& r, KVCache* cache, KVBlockPool* pool, int64_t context,
                   bool lora);
  const void* table_address(const LoraSource* lora);

  Backend& backend_;
  const ModelConfig& config_;
  FusedDecode* fused_ = nullptr;  // the fused kernels, when they take this model
  std::optional<RankOfMany> tp_;
  std::mutex mutex_;              // guards graphs_
  std::vector<std::unique_ptr<Recorded>> graphs_;  // a few caches' steps; the oldest goes first
  std::atomic<int64_t> captures_{0};
  // The adapter table every fused step reads, LoraEntry [layers][kProjKinds] at a fixed address, filled by the
  // step's first kernel from StepInputs::lora_table (an adapter's LoraSource::device_table, or no_lora_).
  Tensor lora_table_, no_lora_;
  int32_t epoch_ = 0;
};

}  // namespace wick
