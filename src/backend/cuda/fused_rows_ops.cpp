// FusedRows on CUDA: checks what the kernels assume (bf16, 16-byte aligned rows, k a multiple of 32, matching
// shapes) and launches them (fused_rows.h).
#include "backend/cuda/fused_rows_ops.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fused_rows.h"

namespace wick {

namespace {

using cuda::fused_rows::kBlockK;
using cuda::fused_rows::kMaxRows;

// The most rows a model's steps take through these kernels: all the ops take (kMaxRows). On H100s with the 0.5B shape
// (2026-12-06) an engine decode step of 32 sequences took 1.32 ms through them and 1.69 through the plain ops' cuBLAS
// GEMMs, one of 8 sequences 0.93 ms and 1.47. WICK_FUSED_ROWS_MAX at build time lowers it, to measure the crossover
// again (.ci and the docs build without it).
#ifndef WICK_FUSED_ROWS_MAX
#define WICK_FUSED_ROWS_MAX 32
#endif
constexpr int64_t kStepRows = WICK_FUSED_ROWS_MAX;
// The head (151,936 × 896 for the 0.5B shape) through linear_f32 up to this many rows; past them cuBLAS streams it
// faster (32 rows on an H100, timed by ncu: 106 µs against 156; the step 1–2 % faster).
constexpr int64_t kHeadRows = std::min<int64_t>(8, kStepRows);

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cuda fused rows ") + op + ": " + what);
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; }

bool bf16_on_device(const Tensor& t) { return t.device() == Device::cuda && t.dtype() == DType::bf16; }

// The input rows [rows, k]: 1 to kMaxRows of them, k a multiple of kBlockK, 16-byte aligned; the norm weight [k].
cuda::FusedRowsInput input_of(const FusedInput& f, const char* op) {
  const Tensor& in = f.x;
  expect(bf16_on_device(in) && in.rank() == 2 && in.dim(0) >= 1 && in.dim(0) <= kMaxRows && in.dim(1) % kBlockK == 0 &&
             aligned16(in),
         op, "input: expected an aligned CUDA bf16 [1.." + std::to_string(kMaxRows) + ", k] with k % " +
                 std::to_string(kBlockK) + " == 0, found " + to_string(in.shape()));
  if (f.norm.defined())
    expect(bf16_on_device(f.norm) && f.norm.numel() == in.dim(1) && aligned16(f.norm), op,
           "norm weight: expected an aligned CUDA bf16 [" + std::to_string(in.dim(1)) + "], found " +
               to_string(f.norm.shape()));
  return {.x = in.raw(), .norm = f.norm.defined() ? f.norm.raw() : nullptr, .eps = f.eps, .rows = in.dim(0),
          .k = in.dim(1)};
}

// A weight matrix [rows, k] on the device, rows 16-byte aligned.
void expect_weight(const Tensor& w, int64_t k, const char* op, const char* name) {
  expect(bf16_on_device(w) && w.rank() == 2 && w.dim(1) == k && aligned16(w), op,
         std::string(name) + ": expected an aligned CUDA bf16 [rows, " + std::to_string(k) + "], found " +
             to_string(w.shape()));
}

class CudaFusedRows final : public FusedRows {
 public:
  explicit CudaFusedRows(cudaStream_t stream) : stream_(stream) {}

  int64_t max_rows() const override { return kMaxRows; }
  int64_t step_rows() const override { return kStepRows; }
  int64_t head_rows() const override { return kHeadRows; }

  bool supports(const DecodeShape& s) const override {
    return s.hidden % kBlockK == 0 && s.ffn % kBlockK == 0 && (s.heads * s.head_dim) % kBlockK == 0 &&
           s.head_dim % 16 == 0;
  }

  void attention_inputs(const FusedInput& in, const QkvProjections& p, Tensor& q, Tensor& k_pool, Tensor& v_pool) override {
    const char* op = "attention_inputs";
    const cuda::FusedRowsInput input = input_of(in, op);
    const char* names[3] = {"q weight", "k weight", "v weight"};
    const bool biased = p.bias[0].defined();
    for (int s = 0; s < 3; ++s) {
      expect_weight(p.weight[s], input.k, op, names[s]);
      expect(p.bias[s].defined() == biased &&
                 (!biased || (bf16_on_device(p.bias[s]) && p.bias[s].numel() == p.weight[s].dim(0))),
             op, std::string(names[s]) + " bias: all three or none, bf16 [rows of the weight]");
    }
    const int64_t d = p.head_dim, rows = input.rows, q_dim = p.weight[0].dim(0), kv_dim = p.weight[1].dim(0);
    expect(d > 0 && d % 16 == 0 && q_dim % d == 0 && kv_dim % d == 0 && p.weight[2].dim(0) == kv_dim &&
               bf16_on_device(q) && q.numel() == rows * q_dim && bf16_on_device(k_pool) &&
               k_pool.numel() % kv_dim == 0 && k_pool.shape() == v_pool.shape() && bf16_on_device(v_pool) &&
               p.positions.dtype() == DType::i32 && p.positions.numel() == rows && p.slots.defined() &&
               p.slots.dtype() == DType::i32 && p.slots.numel() == rows,
           op, "q " + to_string(p.weight[0].shape()) + " k " + to_string(p.weight[1].shape()) + " pool " +
                   to_string(k_pool.shape()) + " head_dim " + std::to_string(d) + " rows " + std::to_string(rows));
    cuda::RowsQkv g{.heads = q_dim / d, .kv_heads = kv_dim / d, .head_dim = d,
                    .positions = p.positions.data<int32_t>(), .slots = p.slots.data<int32_t>(),
                    .theta = p.rope_theta, .q = q.raw(), .k_pool = k_pool.raw(), .v_pool = v_pool.raw()};
    for (int s = 0; s < 3; ++s) {
      g.w[s] = p.weight[s].raw();
      g.bias[s] = biased ? p.bias[s].raw() : nullptr;
    }
    cuda::fused_rows_attention_inputs(input, g, stream_);
    cuda::check_launch(op);
  }

  void residual_linear(const Tensor& in, const Tensor& w, Tensor& x) override {
    const char* op = "residual_linear";
    const cuda::FusedRowsInput input = input_of({.x = in}, op);
    expect_weight(w, input.k, op, "weight");
    expect(bf16_on_device(x) && x.numel() == input.rows * w.dim(0), op,
           "residual " + to_string(x.shape()) + " for " + std::to_string(input.rows) + " rows of " +
               std::to_string(w.dim(0)));
    cuda::fused_rows_residual(input, w.raw(), w.dim(0), x.raw(), stream_);
    cuda::check_launch(op);
  }

  void gate_up(const FusedInput& in, const Tensor& w_gate, const Tensor& w_up, Tensor& h) override {
    const char* op = "gate_up";
    const cuda::FusedRowsInput input = input_of(in, op);
    expect_weight(w_gate, input.k, op, "gate weight");
    expect_weight(w_up, input.k, op, "up weight");
    expect(w_up.dim(0) == w_gate.dim(0) && bf16_on_device(h) && h.numel() == input.rows * w_gate.dim(0), op,
           "h " + to_string(h.shape()));
    cuda::fused_rows_gate_up(input, w_gate.raw(), w_up.raw(), w_gate.dim(0), h.raw(), stream_);
    cuda::check_launch(op);
  }

  void linear_f32(const FusedInput& in, const Tensor& w, Tensor& out) override {
    const char* op = "linear_f32";
    const cuda::FusedRowsInput input = input_of(in, op);
    expect_weight(w, input.k, op, "weight");
    expect(out.device() == Device::cuda && out.dtype() == DType::f32 && out.numel() == input.rows * w.dim(0), op,
           "out " + to_string(out.shape()));
    cuda::fused_rows_f32(input, w.raw(), w.dim(0), out.data<float>(), stream_);
    cuda::check_launch(op);
  }

 private:
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<FusedRows> make_cuda_fused_rows(cudaStream_t stream) {
  return std::make_unique<CudaFusedRows>(stream);
}

}  // namespace wick
