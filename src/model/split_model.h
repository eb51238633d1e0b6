// The passes of a model (model.cpp) and of a model split over several devices (split_model.cpp): what both see.
#pragma once

#include <filesystem>

#include "model/device_logits.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "model/tensor_parallel.h"
#include "wick/model.h"

namespace wick {

// What plain_pass runs beyond a ForwardOptions: keys and values in a pool's blocks, and each span's own adapter.
struct PlainPassOptions {
  LogitsFor logits = LogitsFor::last_token;
  const LoraSource* lora = nullptr;  // the adapter of every sequence (unless mixed)
  KVBlockPool* pool = nullptr;
  bool mixed_lora = false;
  bool hidden_states = false;  // the final norm's output instead of the head's (every token)
};

/// The forward pass by the plain ops over a flattened batch on one device (a whole model, or one rank of a split one:
/// its config, share of the weights and place among the ranks); the device logits.
Tensor plain_pass(Backend& b, const ModelConfig& c, const ModelWeights& weights, const FlatBatch& flat,
                  const PlainPassOptions& o, const RankOfMany* tp = nullptr);

/// Loads `impl` split over LoadOptions::tensor_parallel devices: its ranks, their shares, their collective.
void load_split(Model::Impl& impl, const TensorStore& store, const std::filesystem::path& dir, const LoadOptions& o);

/// An adapter's share on rank r of a split model (nullptr for none), its shares cut on first use — from the calling
/// thread, never a rank's (the cut runs on every rank's thread).
const LoraSource* rank_lora(const Model::Impl& impl, const LoraSource* lora, int r);

/// plain_pass on every rank of a split model at once (or each rank's recorded decode step): a causal LM's logits as
/// each rank's slice of the vocabulary, a classifier's (or the hidden states) as rank 0's.
DeviceLogits split_pass(const Model::Impl& impl, const FlatBatch& flat, const PlainPassOptions& o);

}  // namespace wick
