// The single chokepoint every projection goes through: base weight, bias, and the LoRA adapter in effect.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace wick {

/// The seven LoRA targets of a Qwen2 decoder layer.
enum class ProjKind : uint8_t { q, k, v, o, gate, up, down };
constexpr int kProjKinds = 7;

/// A linear layer of the base model.
struct Projection {
  Tensor weight;  // [out, in], compute dtype
  Tensor bias;    // [out] or undefined
  int layer = 0;
  ProjKind kind = ProjKind::q;
};

/// Low-rank factors of one projection: ΔW = scale · B·A.
struct LoraFactors {
  Tensor a;  // [rank, in]
  Tensor b;  // [out, rank]
  float scale = 1.0f;
};

/// The module path of a projection inside a decoder layer, as Hugging Face names it ("self_attn.q_proj").
constexpr const char* proj_path(ProjKind k) {
  constexpr const char* paths[kProjKinds] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                             "mlp.down_proj"};
  return paths[static_cast<int>(k)];
}

/// Whatever supplies LoRA factors for (layer, projection): an adapter, or none.
class LoraSource {
 public:
  virtual ~LoraSource() = default;
  /// nullptr when the adapter leaves this projection alone.
  virtual const LoraFactors* factors(int layer, ProjKind kind) const = 0;
  /// A full replacement of the output head (PEFT modules_to_save: `score` or `lm_head`), or nullptr.
  virtual const Tensor* head() const { return nullptr; }
  /// A full replacement of the embedding table (modules_to_save: `embed_tokens`), or nullptr.
  virtual const Tensor* embedding() const { return nullptr; }

  /// The factors of a model with `layers` layers as a table of LoraEntry [layers][kProjKinds] (lora_slot's order;
  /// rank 0 where the adapter leaves a projection alone): the same factors() in the form the fused decode kernels
  /// read. Built on first use: the factors never change.
  struct Table {
    std::vector<LoraEntry> entries;
    int32_t max_rank = 0;
    Device device = Device::cpu;  // where every factor lives, in `dtype`, when `uniform`
    DType dtype = DType::f32;
    bool uniform = true;
  };
  const Table& table(int64_t layers) const;
  /// table(layers).entries in device memory (i32), uploaded through `backend` on first use; thread-safe, since
  /// models of the same shape may share an adapter.
  const Tensor& device_table(int64_t layers, Backend& backend) const;

  /// This adapter's share for every rank of a model split `ranks` ways (tensor_parallel.h), made by `make` on first
  /// use and kept with the adapter (an adapter serves the one model it was made for). Thread-safe.
  using Shards = std::vector<std::unique_ptr<LoraSource>>;
  const Shards& rank_shards(int ranks, const std::function<Shards()>& make) const;

 private:
  mutable std::mutex shards_mu_;
  mutable Shards shards_;
  mutable std::once_flag table_once_, device_once_;
  mutable Table table_;
  mutable Tensor device_table_;
};

/// The index of (layer, kind) in a LoraSource::Table.
constexpr int64_t lora_slot(int64_t layer, ProjKind kind) { return layer * kProjKinds + int64_t(kind); }

/// PEFT's lora_dropout on one projection call: the LoRA path reads dropout(x) (Backend::dropout with this seed),
/// the frozen weight reads x. p 0: none.
struct LoraDropout {
  float p = 0.0f;
  uint64_t seed = 0;
};

/// The LoRA chokepoint: out = x·Wᵀ + bias + scale · (x'·Aᵀ)·Bᵀ with the factors `lora` holds for proj's (layer,
/// kind), or none; x' = dropout(x) when training with LoRA dropout, else x.  x [rows, in]; out [rows, out].
void linear(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora, Tensor& out,
            const LoraDropout& dropout = {});

/// Consecutive rows of a batch that share an adapter (nullptr: none).
struct LoraSegment {
  int64_t begin, count;
  const LoraSource* lora;
};

/// The chokepoint for a batch whose rows carry different adapters: out = x·Wᵀ + bias on every row, then each
/// segment's rows get scale · (x·Aᵀ)·Bᵀ with its adapter's factors for proj. Segments cover rows in order.
void linear_segments(Backend& backend, const Tensor& x, const Projection& proj, std::span<const LoraSegment> segments,
                     Tensor& out);

/// The chokepoint for a batch whose rows carry different adapters, by the row gather: out = x·Wᵀ + bias, then
/// Backend::lora_rows adds each row's own adapter's term for proj (row_tables: each row's LoraSource::device_table
/// address, i32 [rows, 2]; ranks ≤ max_rank). One launch pair whatever the mix of adapters.
void linear_rows(Backend& backend, const Tensor& x, const Projection& proj, const Tensor& row_tables, int32_t max_rank,
                 Tensor& out);

/// Gradients of one projection's LoRA factors, shaped as the factors (PEFT's lora_A [rank, in], lora_B
/// [out, rank]); the backward accumulates into them.
struct LoraGrads {
  Tensor a;
  Tensor b;
};

struct LinearBackwardOptions {
  bool accumulate_dx = false;  // add to dx instead of writing it (projections sharing an input: q, k, v; gate, up)
  LoraDropout dropout{};       // the forward's dropout (same seed: the same mask)
};

/// The chokepoint's backward, for out = linear(x, proj, lora, dropout) and the gradient d_out of out (base weight
/// and bias frozen, as in LoRA training), with x' = dropout(x) (x without dropout):
///   dx = d_out·W + dropout(scale·(d_out·B)·A)                   written (or added), when dx is given
///   grads->b += scale·d_outᵀ·(x'·Aᵀ),  grads->a += scale·(d_out·B)ᵀ·x'    when lora has factors for proj
/// x [rows, in]; d_out [rows, out]; dx [rows, in]. Either of dx and grads may be null (the first layer's input
/// needs no gradient; a projection the adapter leaves alone has no factors to train).
void linear_backward(Backend& backend, const Tensor& x, const Projection& proj, const LoraSource* lora,
                     const Tensor& d_out, Tensor* dx, LoraGrads* grads, const LinearBackwardOptions& options = {});

}  // namespace wick
