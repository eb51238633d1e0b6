// FusedDecode on CUDA: checks what the kernels assume (bf16, 16-byte aligned rows, matching shapes) and launches
// them (fused_gemv.h; begin_step in rows.h).
#include "backend/cuda/fused_decode.h"

#include <string>
#include <utility>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fused_gemv.h"
#include "backend/cuda/rows.h"

namespace wick {

namespace {

using cuda::fused_gemv::kMaxProjections;
using cuda::fused_gemv::kMaxRank;
using cuda::fused_gemv::kScratchBytes;
using cuda::fused_gemv::Slot;

// Elements of a row the kernels read as whole 16-byte chunks of bf16.
constexpr int64_t kChunkElements = 8;

// Every LoRA launch publishes its t values into one scratch row: room for each projection's rank rows.
static_assert(kMaxProjections * kMaxRank * sizeof(Slot) <= size_t(kScratchBytes), "LoRA scratch row too small");

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cuda fused ") + op + ": " + what);
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; }

// A bf16 device matrix [rows, k] whose rows start on 16-byte boundaries.
void expect_rows(const Tensor& t, int64_t k, const char* op, const char* name) {
  expect(t.device() == Device::cuda && t.dtype() == DType::bf16 && t.rank() == 2 && t.dim(1) == k &&
             k % kChunkElements == 0 && aligned16(t),
         op, std::string(name) + ": expected a 16-byte aligned CUDA bf16 [rows, " + std::to_string(k) + "] with " +
                 std::to_string(k) + " % 8 == 0, found " + to_string(t.shape()));
}

// The kernels' input: x, with the norm weight when `norm` is defined.
cuda::FusedGemvInput input_of(const Tensor& x, const Tensor& norm, float eps, const DecodeLora& lora, const char* op) {
  const int64_t k = x.numel();
  expect(x.device() == Device::cuda && x.dtype() == DType::bf16 && k % kChunkElements == 0 && aligned16(x), op,
         "input: expected one aligned bf16 row with a multiple of 8 elements, found " + to_string(x.shape()));
  if (norm.defined())
    expect(norm.device() == Device::cuda && norm.numel() == k && norm.dtype() == DType::bf16 && aligned16(norm), op,
           "norm weight: expected an aligned CUDA bf16 [" + std::to_string(k) + "], found " + to_string(norm.shape()));
  return {.x = x.raw(), .k = k, .norm = norm.defined() ? norm.raw() : nullptr, .eps = eps, .lora = lora};
}

class CudaFusedDecode final : public FusedDecode {
 public:
  CudaFusedDecode(cudaStream_t stream, std::shared_ptr<cuda::DeviceAllocator> allocator)
      : stream_(stream), allocator_(std::move(allocator)) {}

  // hidden: the input of q/k/v, gate/up and the head; ffn: of the down projection; heads·head_dim: of the output
  // projection — each read in 16-byte chunks. head_dim even: RoPE rotates pairs (i, i + d/2).
  bool supports(const DecodeShape& s) const override {
    return s.hidden % kChunkElements == 0 && s.ffn % kChunkElements == 0 &&
           (s.heads * s.head_dim) % kChunkElements == 0 && s.head_dim % 2 == 0;
  }

  int32_t max_lora_rank() const override { return kMaxRank; }

  // Zeroed on the stream, ordered before any op queued after this call (outside a graph capture, so it runs once).
  Tensor lora_scratch(int64_t calls) override {
    expect(calls >= 0, "lora_scratch", std::to_string(calls) + " calls");
    Tensor scratch = allocator_->allocate({calls, kScratchBytes / int64_t(sizeof(int32_t))}, DType::i32);
    cuda::check(cudaMemsetAsync(scratch.raw(), 0, scratch.nbytes(), stream_), "lora scratch");
    return scratch;
  }

  void begin_step(const Tensor& embed, const Tensor& ids, Tensor& x, const Tensor& source, Tensor& table) override {
    const char* op = "begin_step";
    expect(embed.device() == Device::cuda && embed.dtype() == DType::bf16 && embed.rank() == 2 &&
               x.numel() == embed.dim(1) && x.dtype() == DType::bf16 && ids.dtype() == DType::i32 && ids.numel() == 1,
           op, "embedding " + to_string(embed.shape()) + " into x " + to_string(x.shape()));
    expect(source.nbytes() == 8 && reinterpret_cast<uintptr_t>(source.raw()) % 8 == 0 && table.nbytes() % 8 == 0 &&
               reinterpret_cast<uintptr_t>(table.raw()) % 8 == 0,
           op, "source must hold one aligned 8-byte address and the table a multiple of 8 bytes");
    cuda::begin_step({.embed = embed.raw(), .id = ids.data<int32_t>(), .x = x.raw(), .hidden = embed.dim(1),
                      .source = source.raw(), .table = table.raw(), .table_bytes = int64_t(table.nbytes())},
                     stream_);
    cuda::check_launch(op);
    after_begin_ = true;
  }

  void attention_inputs(const FusedInput& in, const QkvProjections& p, Tensor& q, Tensor& k_cache, Tensor& v_cache,
                        const DecodeLora& lora) override {
    const char* op = "attention_inputs";
    cuda::FusedGemvInput input = input_of(in.x, in.norm, in.eps, lora, op);
    input.chained = !std::exchange(after_begin_, false);
    const char* names[3] = {"q weight", "k weight", "v weight"};
    for (int s = 0; s < 3; ++s) {
      expect_rows(p.weight[s], input.k, op, names[s]);
      if (p.bias[s].defined())
        expect(p.bias[s].numel() == p.weight[s].dim(0) && p.bias[s].dtype() == DType::bf16, op,
               std::string(names[s]) + " bias " + to_string(p.bias[s].shape()));
    }
    const int64_t d = p.head_dim, q_dim = p.weight[0].dim(0), kv_dim = p.weight[1].dim(0);
    expect(d > 0 && d % 2 == 0 && q_dim % d == 0 && kv_dim % d == 0 && p.weight[2].dim(0) == kv_dim &&
               q.numel() == q_dim && q.dtype() == DType::bf16 && k_cache.dtype() == DType::bf16 &&
               k_cache.numel() % kv_dim == 0 && k_cache.shape() == v_cache.shape() &&
               v_cache.dtype() == DType::bf16 && p.positions.dtype() == DType::i32 && p.positions.numel() == 1 &&
               (!p.slots.defined() || (p.slots.dtype() == DType::i32 && p.slots.numel() == 1)),
           op, "q " + to_string(p.weight[0].shape()) + " k " + to_string(p.weight[1].shape()) + " cache " +
                   to_string(k_cache.shape()) + " head_dim " + std::to_string(d));
    cuda::QkvGemv g{.heads = q_dim / d, .kv_heads = kv_dim / d, .head_dim = d,
                    .position = p.positions.data<int32_t>(),
                    .slot = p.slots.defined() ? p.slots.data<int32_t>() : nullptr, .theta = p.rope_theta, .q = q.raw(),
                    .k_cache = k_cache.raw(), .v_cache = v_cache.raw()};
    for (int s = 0; s < 3; ++s) {
      g.w[s] = p.weight[s].raw();
      g.bias[s] = p.bias[s].defined() ? p.bias[s].raw() : nullptr;
    }
    cuda::gemv_attention_inputs(input, g, stream_);
    cuda::check_launch(op);
  }

  void residual_linear(const Tensor& in_row, const Tensor& w, Tensor& x, const DecodeLora& lora) override {
    const char* op = "residual_linear";
    cuda::FusedGemvInput in = input_of(in_row, Tensor(), 0.0f, lora, op);
    in.chained = !std::exchange(after_begin_, false);
    expect_rows(w, in.k, op, "weight");
    expect(x.numel() == w.dim(0) && x.dtype() == DType::bf16, op, "residual " + to_string(x.shape()));
    cuda::gemv_residual(in, w.raw(), w.dim(0), x.raw(), stream_);
    cuda::check_launch(op);
  }

  void gate_up(const FusedInput& in, const Tensor& w_gate, const Tensor& w_up, Tensor& h,
               const DecodeLora& lora) override {
    const char* op = "gate_up";
    cuda::FusedGemvInput input = input_of(in.x, in.norm, in.eps, lora, op);
    input.chained = !std::exchange(after_begin_, false);
    expect_rows(w_gate, input.k, op, "gate weight");
    expect_rows(w_up, input.k, op, "up weight");
    expect(w_up.dim(0) == w_gate.dim(0) && h.numel() == w_gate.dim(0) && h.dtype() == DType::bf16, op,
           "h " + to_string(h.shape()));
    cuda::gemv_gate_up(input, w_gate.raw(), w_up.raw(), w_gate.dim(0), h.raw(), stream_);
    cuda::check_launch(op);
  }

  void norm_linear(const FusedInput& in, const Tensor& w, Tensor& logits) override {
    const char* op = "norm_linear";
    cuda::FusedGemvInput input = input_of(in.x, in.norm, in.eps, {}, op);
    input.chained = !std::exchange(after_begin_, false);
    expect_rows(w, input.k, op, "weight");
    expect(logits.numel() == w.dim(0) && logits.dtype() == DType::f32, op, "logits " + to_string(logits.shape()));
    cuda::gemv_f32(input, w.raw(), w.dim(0), logits.data<float>(), stream_);
    cuda::check_launch(op);
  }

 private:
  cudaStream_t stream_;
  std::shared_ptr<cuda::DeviceAllocator> allocator_;
  bool after_begin_ = false;  // the next launch follows begin_step: unchained (FusedGemvInput::chained)
};

}  // namespace

std::unique_ptr<FusedDecode> make_cuda_fused_decode(cudaStream_t stream,
                                                     std::shared_ptr<cuda::DeviceAllocator> allocator) {
  return std::make_unique<CudaFusedDecode>(stream, std::move(allocator));
}

}  // namespace wick
