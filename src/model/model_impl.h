// Model::Impl, shared by the forward pass (qwen2.cpp) and the code that changes what the model computes
// with: adapters, merge and export (adapter/model_adapters.cpp, model_export.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/linear.h"
#include "model/weights.h"
#include "wick/model.h"

namespace wick {

// The adapter in effect for new requests. Swapping is a pointer exchange under a mutex held only for that
// copy (tens of ns); the adapter that leaves is released outside the lock. (libstdc++ 12's
// std::atomic<std::shared_ptr> guards itself with a lock bit that ThreadSanitizer does not understand.)
class LoraSlot {
 public:
  std::shared_ptr<const LoraSource> load() const {
    const std::lock_guard lock(mu_);
    return ptr_;
  }
  std::shared_ptr<const LoraSource> exchange(std::shared_ptr<const LoraSource> next) {
    {
      const std::lock_guard lock(mu_);
      ptr_.swap(next);
    }
    return next;  // the previous adapter
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const LoraSource> ptr_;
};

struct Model::Impl {
  ModelConfig config;
  GenerationDefaults generation;
  std::unique_ptr<Backend> backend;
  ModelWeights weights;
  LoraSlot active_lora;

  // Merging swaps weight tensors in `weights`: forward() holds this lock shared, merge/unmerge exclusive.
  mutable std::shared_mutex weights_mutex;
  std::shared_ptr<const LoraSource> merged;          // the adapter folded into `weights`, or null
  std::vector<std::pair<Tensor*, Tensor>> unmerged;  // each replaced slot and the base tensor it held

  // Device backends run one pass at a time on their stream.
  std::mutex device_mutex;
  // One-token decode steps replay a recorded graph per KV cache (CUDA); declared after `backend` so they
  // are destroyed before it. Anything that replaces weight tensors must clear them (they bake in addresses).
  struct DecodeGraph {
    std::pair<const void*, int64_t> key;  // the cache's storage and capacity
    Tensor step;                          // i32 [6]: adapter table address (2), token id, position, epoch, 0
    Tensor source, ids, pos, epoch;       // views of `step`, written before each replay
    Activations acts;
    HeadBuffers head;
    Tensor lora_scratch;  // FusedDecode: kFusedLoraScratchBytes per fused op of each layer
    std::unique_ptr<Graph> graph;       // the base model
    std::unique_ptr<Graph> lora_graph;  // any unmerged adapter (FusedDecode), read from the model's table
  };
  static constexpr size_t kMaxGraphs = 8;
  std::mutex graphs_mutex;
  std::vector<std::unique_ptr<DecodeGraph>> graphs;
  std::atomic<int64_t> graph_captures{0};  // graphs recorded (adapter swaps must add none)

  // Decode steps on a backend with FusedDecode read the adapter in effect from this device table of LoraEntry
  // [layers][kProjKinds] (rank 0: no adapter); each step copies into it the table of the adapter it runs with
  // (LoraSource::fused_device_table, or no_lora), whose address is one of the step's inputs. Graphs bake in the
  // address of lora_table, not of any adapter's.
  bool fused_decode = false;  // the backend has FusedDecode and the model's shapes suit it
  Tensor lora_table, no_lora;
  int32_t decode_epoch = 0;  // tells one step's LoRA shrink results from the last one's

  /// Forgets every recorded graph; call with weights_mutex held exclusively after replacing weight tensors.
  void invalidate_graphs() {
    const std::lock_guard lock(graphs_mutex);
    graphs.clear();
  }
};

}  // namespace wick
