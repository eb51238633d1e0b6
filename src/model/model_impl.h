// Model::Impl: what a loaded model holds. Private to src/model (the model's API, its merge and export).
#pragma once

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/collective.h"
#include "core/rank_threads.h"
#include "model/decode_step.h"
#include "model/paged_step.h"
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

// A model split over several devices (LoadOptions::tensor_parallel): each rank's backend, share of the weights and
// thread, and the collective that joins them.
struct TensorParallel {
  ModelConfig config;                            // a rank's (shard_config)
  std::vector<std::unique_ptr<Backend>> owned;   // the backends of ranks 1 …; rank 0's is Model::Impl::backend
  std::vector<Backend*> backends;                // rank r's
  std::vector<ModelWeights> weights;             // rank r's share
  std::unique_ptr<RankThreads> threads;
  std::unique_ptr<Collective> collective;        // after the backends: gone before them
  std::vector<RankOfMany> rank_of;               // rank r's place among the ranks, as its plain ops take it
  // Rank r's recorded decode steps of paged batches, the collectives inside the graphs (a capturable collective
  // only: NCCL's); empty on the CPU. Last: gone before the collective and the backends.
  std::vector<std::unique_ptr<PagedSteps>> paged_steps;
  // Rank r's one-token steps of one sequence (in its own cache or a pool's rows): recorded over NCCL, eager
  // otherwise (the CPU too).
  std::vector<std::unique_ptr<DecodeSteps>> decode_steps;

  int ranks() const { return int(backends.size()); }
};

struct Model::Impl {
  ModelConfig config;
  GenerationDefaults generation;
  // Split over several devices: rank 0's backend and share of the weights.
  std::unique_ptr<Backend> backend;
  ModelWeights weights;
  std::unique_ptr<TensorParallel> tp;  // null: the model is whole on `backend`
  LoraSlot active_lora;

  // Merging swaps weight tensors in `weights`: forward() holds this lock shared, merge/unmerge exclusive.
  mutable std::shared_mutex weights_mutex;
  std::shared_ptr<const LoraSource> merged;          // the adapter folded into `weights`, or null
  std::vector<std::pair<Tensor*, Tensor>> unmerged;  // each replaced slot and the base tensor it held

  // Device backends run one pass at a time on their stream.
  std::mutex device_mutex;
  // Recorded one-token steps (device backends only); declared after `backend` and `weights`, so destroyed before
  // them. Whatever replaces weight tensors calls decode_steps->forget_graphs().
  std::unique_ptr<DecodeSteps> decode_steps;
  // Recorded decode steps of paged batches (device backends only); the same rules as decode_steps.
  std::unique_ptr<PagedSteps> paged_steps;
};

/// unsupported naming `what` when the model is split over several devices (what cannot run on a split model yet).
void require_whole(const Model::Impl& impl, const char* what);

}  // namespace wick
