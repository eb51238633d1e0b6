// The layer steps run by the plain backend ops, over any number of tokens of any number of sequences: the CPU
// reference, prefill on a GPU, and the eager path wherever the fused kernels do not apply.
#pragma once

#include <optional>
#include <vector>

#include "model/forward.h"
#include "model/tensor_parallel.h"

namespace wick {

/// Where the keys and values of a batch over a paged KV cache go and come from: rows of one pool.
struct PagedRows {
  KVBlockPool* pool = nullptr;
  Tensor slots{};  // i32 [T]: the pool row each new token's key and value are written to
  PagedKeys keys{};  // the pool rows each token attends to
};

/// The LoRA of a batch whose rows carry different adapters, as the row-gather kernels read it (Backend::lora_rows).
struct RowAdapters {
  Tensor tables{};       // i32 [T, 2]: each row's LoraSource::device_table address (0: none)
  int32_t max_rank = 0;  // the largest rank among them
};

/// Each row's adapter as the row-gather kernels take it: its LoraSource::device_table address as two i32 words (0:
/// none), and the largest rank.
struct AdapterWords {
  std::vector<int32_t> words;  // [rows, 2]
  int32_t max_rank = 0;
};

/// The adapters of a flattened batch's rows as the row gather takes them; nullopt when no row has one, or the rows
/// cannot take theirs by the gather: on the CPU (segments of rows keep each sequence bit for bit as it is alone), or
/// an adapter's factors not all on the device in its dtype.
std::optional<AdapterWords> adapter_words(Backend& b, const ModelConfig& c, const FlatBatch& flat);

/// The tokens of one forward pass, flattened: ids and positions i32 [T] on the backend, and where each
/// sequence's tokens sit. With `paged`, keys and values are rows of its pool, not the spans' caches. With
/// mixed_lora, each span's own adapter (Span::lora) applies to its rows instead of the one the ops were made with:
/// by segments of rows through linear_segments (the CPU: bit for bit what each sequence gets alone), or, when
/// row_adapters is given, by one row-gather per projection.
struct PlainBatch {
  const std::vector<Span>* spans;
  Tensor ids, positions;
  const PagedRows* paged = nullptr;
  bool mixed_lora = false;
  const RowAdapters* row_adapters = nullptr;
  /// One rank of a model split over several devices: ids are the rank's (shard_ids), caches and pools are read at
  /// its shard, the two projections that end a layer's halves are summed across ranks, and so is the embedding; the
  /// head's vocabulary slices are gathered into rank 0's logits. Null: the model is whole.
  const RankOfMany* tp = nullptr;
};

class PlainOps final : public LayerOps {
 public:
  /// Runs the steps for `batch` with `lora` (nullptr: none), in a's scratch; logits() writes the rows hb asks for.
  PlainOps(Backend& b, const ModelConfig& c, const PlainBatch& batch, const LoraSource* lora, Activations& a,
           HeadBuffers& hb);

  void embed(const Tensor& table, Tensor& x) override;
  void attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v, int64_t layer,
                        Tensor& q_out) override;
  void attention(const Tensor& q, int64_t layer, Tensor& out) override;
  void add_projection(const Tensor& in, const Projection& w, Tensor& x) override;
  void gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) override;
  void logits(const Normed& n, const Tensor& head, Tensor& logits) override;

 private:
  // rmsnorm(n) into `out`, first adding a pending residual into n.x.
  void normalize(const Normed& n, Tensor& out);
  // Adds the pending residual (a_.proj) into its stream, if any.
  void settle_residual();
  // n as the few-row kernels take it (the norm inside them), the pending residual added first.
  FusedInput normed_input(const Normed& n);
  // The LoRA chokepoint with the adapter of each row.
  void project(const Tensor& in, const Projection& w, Tensor& out);

  Backend& b_;
  const ModelConfig& c_;
  PlainBatch batch_;
  const LoraSource* lora_;
  Activations& a_;
  HeadBuffers& hb_;
  // The few-row kernels, for a paged batch, or one sequence's cache, of at most their rows without adapters (a decode
  // step of that many sequences, a short prefill chunk); null: the plain ops.
  FusedRows* rows_ = nullptr;
  int shard_ = 0;  // the KV shard this rank reads and writes (0: a whole model)
  std::vector<LoraSegment> segments_;  // runs of spans sharing an adapter (mixed_lora)
  // The stream add_projection left a_.proj to be added into: the add is folded into the next norm of that stream
  // (Backend::add_rmsnorm, one pass over x instead of two).
  Tensor pending_;
};

}  // namespace wick
