// Tensor parallelism (Megatron's split of a decoder layer over several devices of a host): what each rank holds and
// how its share is cut from the full tensors. q/k/v and gate/up are split by their output rows (whole heads), o_proj
// and down_proj by their input columns, so that a layer needs one sum across ranks after each of the two (the
// all-reduce PlainOps::add_projection runs); the embedding and a causal LM's head are split over the vocabulary; the
// norms are whole on every rank. LoRA follows the base split: A whole and B by rows for the column-split
// projections, A by columns and B whole for the row-split ones, so the low-rank term is added before the same sum.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "model/linear.h"
#include "wick/config.h"

namespace wick {

class Collective;

/// One rank of `ranks`.
struct Shard {
  int rank = 0, ranks = 1;
};

/// The config one rank computes with: heads, KV heads and the MLP width divided by the ranks. bad_input naming
/// --tensor-parallel and the config.json field when a count does not divide.
ModelConfig shard_config(const ModelConfig& full, int ranks);

/// A rank's rows of the vocabulary: [begin, begin + count) of every rank's `per_rank` (the last rank's count may be
/// short; its embedding is padded with zero rows to per_rank).
struct VocabSlice {
  int64_t begin = 0, count = 0, per_rank = 0;
};
VocabSlice vocab_slice(int64_t vocab, Shard s);

/// Whether projection `kind` is split by its output rows (q, k, v, gate, up); else by its input columns.
constexpr bool column_parallel(ProjKind kind) { return kind != ProjKind::o && kind != ProjKind::down; }

/// The rank's share of a projection's weight [out, in] (or of its bias [out]), a CPU tensor of its dtype.
Tensor shard_projection(const Tensor& full, ProjKind kind, Shard s);
/// The rank's rows of an embedding table [vocab, hidden]: its slice, zero rows up to per_rank, then one more zero
/// row (the row a token outside the slice is looked up as: local id per_rank).
Tensor shard_embedding(const Tensor& full, Shard s);
/// The rank's rows of a causal LM's head [vocab, hidden]: its slice [count, hidden], whose logits are the rank's
/// columns of the vocabulary's.
Tensor shard_head(const Tensor& full, Shard s);

/// The inverse of shard_projection: every rank's share of a projection's weight or bias (CPU tensors, rank order)
/// joined into the whole tensor — rows stacked for a column-split projection, columns side by side for a row-split
/// one (whose bias is rank 0's: pass that alone).
Tensor join_projection(std::span<const Tensor> shares, ProjKind kind);
/// CPU matrices of the same rows and dtype side by side: [rows, Σ their widths].
Tensor join_columns(std::span<const Tensor> parts);
/// The inverse of shard_embedding and shard_head: each rank's vocabulary slice (its padding and zero row dropped)
/// stacked into [vocab, hidden].
Tensor join_vocabulary(std::span<const Tensor> shares, int64_t vocab);

/// A rank's view of a batch's token ids: id − begin inside its vocabulary slice, else per_rank (the zero row).
void shard_ids(std::span<const int32_t> ids, Shard s, int64_t vocab, std::span<int32_t> out);

/// CPU f32 copies of an adapter's factors (downloaded through `from` where they are on a device): what shard_lora
/// cuts from.
std::unique_ptr<LoraSource> host_lora_copy(const LoraSource& lora, int64_t layers, Backend& from);

/// The factors of `full` cut for a rank (host copies of them: CPU tensors, f32), uploaded through `backend`:
/// what the rank's chokepoint reads for the same adapter.
std::unique_ptr<LoraSource> shard_lora(const LoraSource& host_full, const ModelConfig& full_config, Shard s,
                                       Backend& backend);

/// What a rank's plain ops need to take part: the collective, the rank, and how its head is split.
struct RankOfMany {
  Collective* collective = nullptr;
  Shard shard;
  bool split_head = false;  // the head's rows are this rank's vocabulary slice (a classifier's is whole)
};

}  // namespace wick
