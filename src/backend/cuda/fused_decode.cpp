// FusedDecode on CUDA: checks what the kernels assume (bf16, 16-byte rows, matching shapes) and launches them.
#include <string>
#include <utility>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemv.h"
#include "backend/cuda/kernels.h"

namespace wick {

namespace {

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cuda fused ") + op + ": " + what);
}

// A bf16 device matrix [rows, k] whose rows start on 16-byte boundaries.
void expect_rows(const Tensor& t, int64_t k, const char* op, const char* name) {
  expect(t.device() == Device::cuda && t.dtype() == DType::bf16 && t.rank() == 2 && t.dim(1) == k && k % 8 == 0 &&
             reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0,
         op, std::string(name) + ": expected a 16-byte aligned CUDA bf16 [rows, " + std::to_string(k) + "] with " +
                 std::to_string(k) + " % 8 == 0, found " + to_string(t.shape()));
}

cuda::GemvInput input_of(const Tensor& x, const Tensor* norm, float eps, const DecodeLora& lora, const char* op) {
  const int64_t k = x.numel();
  expect(x.device() == Device::cuda && x.dtype() == DType::bf16 && k % 8 == 0 &&
             reinterpret_cast<uintptr_t>(x.raw()) % 16 == 0,
         op, "input: expected one aligned bf16 row with a multiple of 8 elements, found " + to_string(x.shape()));
  if (norm) expect(norm->numel() == k && norm->dtype() == DType::bf16, op, "norm weight " + to_string(norm->shape()));
  return {.x = x.raw(), .k = k, .norm = norm ? norm->raw() : nullptr, .eps = eps, .lora = lora};
}

class CudaFusedDecode final : public FusedDecode {
 public:
  explicit CudaFusedDecode(cudaStream_t stream) : stream_(stream) {}

  void begin_step(const Tensor& embed, const Tensor& ids, Tensor& x, const Tensor& source, Tensor& table) override {
    const char* op = "begin_step";
    expect(embed.device() == Device::cuda && embed.dtype() == DType::bf16 && embed.rank() == 2 &&
               x.numel() == embed.dim(1) && x.dtype() == DType::bf16 && ids.dtype() == DType::i32 && ids.numel() == 1,
           op, "embedding " + to_string(embed.shape()) + " into x " + to_string(x.shape()));
    expect(source.nbytes() == 8 && reinterpret_cast<uintptr_t>(source.raw()) % 8 == 0 && table.nbytes() % 8 == 0 &&
               reinterpret_cast<uintptr_t>(table.raw()) % 8 == 0,
           op, "source must hold one aligned 8-byte address and the table a multiple of 8 bytes");
    cuda::begin_step(embed.raw(), ids.data<int32_t>(), x.raw(), embed.dim(1), source.raw(), table.raw(),
                     int64_t(table.nbytes()), stream_);
    cuda::check_launch(op);
    after_begin_ = true;
  }

  void attention_inputs(const Tensor& x, const Tensor& norm, float eps, const Tensor (&w)[3], const Tensor (&bias)[3],
                        const Tensor& pos, double theta, int64_t head_dim, Tensor& q, Tensor& k_cache, Tensor& v_cache,
                        const DecodeLora& lora) override {
    const char* op = "attention_inputs";
    cuda::GemvInput in = input_of(x, &norm, eps, lora, op);
    in.chained = !std::exchange(after_begin_, false);
    const int64_t d = head_dim, kv_dim = w[1].dim(0);
    const char* names[3] = {"q weight", "k weight", "v weight"};
    for (int s = 0; s < 3; ++s) {
      expect_rows(w[s], in.k, op, names[s]);
      if (bias[s].defined()) expect(bias[s].numel() == w[s].dim(0), op, std::string(names[s]) + " bias");
    }
    expect(d % 2 == 0 && w[0].dim(0) % d == 0 && kv_dim % d == 0 && w[2].dim(0) == kv_dim && q.numel() == w[0].dim(0) &&
               k_cache.numel() % kv_dim == 0 && k_cache.shape() == v_cache.shape() && pos.dtype() == DType::i32,
           op, "q " + to_string(w[0].shape()) + " k " + to_string(w[1].shape()) + " cache " + to_string(k_cache.shape()));
    const void* const ws[3] = {w[0].raw(), w[1].raw(), w[2].raw()};
    const void* const bs[3] = {bias[0].defined() ? bias[0].raw() : nullptr, bias[1].defined() ? bias[1].raw() : nullptr,
                               bias[2].defined() ? bias[2].raw() : nullptr};
    cuda::gemv_attention_inputs(in, ws, bs, w[0].dim(0) / d, kv_dim / d, d, pos.data<int32_t>(), theta, q.raw(),
                                k_cache.raw(), v_cache.raw(), stream_);
    cuda::check_launch(op);
  }

  void residual_linear(const Tensor& in_row, const Tensor& w, Tensor& x, const DecodeLora& lora) override {
    const char* op = "residual_linear";
    cuda::GemvInput in = input_of(in_row, nullptr, 0.0f, lora, op);
    in.chained = !std::exchange(after_begin_, false);
    expect_rows(w, in.k, op, "weight");
    expect(x.numel() == w.dim(0) && x.dtype() == DType::bf16, op, "residual " + to_string(x.shape()));
    cuda::gemv_residual(in, w.raw(), w.dim(0), x.raw(), stream_);
    cuda::check_launch(op);
  }

  void gate_up(const Tensor& x, const Tensor& norm, float eps, const Tensor& w_gate, const Tensor& w_up, Tensor& h,
               const DecodeLora& lora) override {
    const char* op = "gate_up";
    cuda::GemvInput in = input_of(x, &norm, eps, lora, op);
    in.chained = !std::exchange(after_begin_, false);
    expect_rows(w_gate, in.k, op, "gate weight");
    expect_rows(w_up, in.k, op, "up weight");
    expect(w_up.dim(0) == w_gate.dim(0) && h.numel() == w_gate.dim(0) && h.dtype() == DType::bf16, op,
           "h " + to_string(h.shape()));
    cuda::gemv_gate_up(in, w_gate.raw(), w_up.raw(), w_gate.dim(0), h.raw(), stream_);
    cuda::check_launch(op);
  }

  void norm_linear(const Tensor& x, const Tensor& norm, float eps, const Tensor& w, Tensor& logits) override {
    const char* op = "norm_linear";
    cuda::GemvInput in = input_of(x, &norm, eps, {}, op);
    in.chained = !std::exchange(after_begin_, false);
    expect_rows(w, in.k, op, "weight");
    expect(logits.numel() == w.dim(0) && logits.dtype() == DType::f32, op, "logits " + to_string(logits.shape()));
    cuda::gemv_f32(in, w.raw(), w.dim(0), logits.data<float>(), stream_);
    cuda::check_launch(op);
  }

 private:
  cudaStream_t stream_;
  bool after_begin_ = false;  // the next launch follows begin_step: unchained (gemv.h's GemvInput::chained)
};

}  // namespace

std::unique_ptr<FusedDecode> make_cuda_fused_decode(cudaStream_t stream) {
  return std::make_unique<CudaFusedDecode>(stream);
}

}  // namespace wick
