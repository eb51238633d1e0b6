// The CUDA backend: bf16 weights and activations, f32 accumulation; cuBLAS for GEMMs, wick's kernels for the rest.
// Every op is queued on the backend's stream; download() is the only synchronisation point. Private to
// src/backend/cuda: cuda_backend.cpp has the device, memory, transfers, graphs, summaries and the decoder's ops,
// cuda_backend_encoder.cpp the encoder's, cuda_backend_train.cpp the backward twins.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cublas_api.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_allocator.h"
#include "backend/cuda/gemm_lt.h"
#include "wick/error.h"

namespace wick {

namespace cuda {

// The backend's argument checks: an internal error naming the op.
inline void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cuda ") + op + ": " + what);
}

inline int64_t row_size(const Tensor& t) { return t.rank() == 0 || t.dim(0) == 0 ? 0 : t.numel() / t.dim(0); }

inline void expect_device(const Tensor& t, DType dtype, const char* op, const char* name) {
  expect(t.device() == Device::cuda && t.dtype() == dtype, op,
         std::string(name) + " must be a CUDA " + std::string(to_string(dtype)) + " tensor, found " +
             (t.device() == Device::cuda ? "CUDA " : "CPU ") + std::string(to_string(t.dtype())));
}

// "name shape dtype" of each tensor, for the shape errors of the training ops.
inline std::string described(std::initializer_list<std::pair<const char*, const Tensor*>> named) {
  std::string s;
  for (const auto& [name, t] : named)
    s += std::string(s.empty() ? "" : ", ") + name + " " + to_string(t->shape()) + " " +
         std::string(to_string(t->dtype())) + (t->device() == Device::cuda ? "" : " on the CPU");
  return s;
}

inline cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    case DType::i32: return CUDA_R_32I;
    case DType::q8_0: break;  // the GPU keeps weights in bf16 (LoadOptions::cpu_weights is the CPU's)
  }
  fail(ErrorKind::internal, "cuda: no CUDA data type for " + std::string(to_string(t)));
}

}  // namespace cuda

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda; }
  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  FusedDecode* fused_decode() override { return fused_.get(); }
  FusedRows* fused_rows() override { return fused_rows_.get(); }
  Tensor alloc(const Shape& shape, DType dtype) override { return allocator_->allocate(shape, dtype); }
  int64_t peak_memory_bytes() const override { return int64_t(allocator_->peak_in_use_bytes()); }
  void bind_thread() override { cuda::check(cudaSetDevice(index_), "cudaSetDevice"); }
  void* native_stream() override { return stream_; }

  Tensor upload(const Tensor& host, DType dtype) override;
  Tensor download(const Tensor& t) override;
  void write(Tensor& dst, const void* host, size_t bytes) override;
  LogitSummary summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) override;
  std::vector<LogitSummary> summarize_rows(const Tensor& logits, int32_t count,
                                           const std::vector<std::vector<int32_t>>& gather) override;
  std::unique_ptr<Graph> capture(const std::function<void()>& body) override;

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void add_rmsnorm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps, Tensor& normed) override;
  void rope_kv(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions, double theta, Tensor& k_cache,
               Tensor& v_cache, const Tensor& rows, const QkvBias& bias) override;
  void zero(Tensor& t) override { cuda::check(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream_), "zero"); }
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p) override;
  void linear_stack(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out) override;
  void linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool tanh, Tensor& out) override;
  void rope(Tensor& x, const Tensor& positions, double theta) override;
  void copy_rows(const Tensor& src, Tensor& dst, int64_t row0) override;
  void scatter_rows(const Tensor& src, Tensor& dst, const Tensor& rows) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions, Tensor& out,
                 const AttentionParams& p) override;
  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const PagedKeys& keys, Tensor& out,
                       const AttentionParams& p) override;
  void lora_rows(const Tensor& x, const Tensor& row_tables, int64_t slot, int32_t max_rank, Tensor& out) override;
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;

  // --- Encoder ops: bf16 activations, f32 pooled outputs ---
  void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override;
  void gelu(const Tensor& x, bool tanh, Tensor& out) override;
  void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                         const RelativeBias& bias, Tensor& out, const AttentionParams& p) override;
  void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out) override;

  // --- Backward twins (training): bf16 activations and gradients, f32 LoRA parameter gradients ---
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) override;
  void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx) override;
  void rope_backward(Tensor& dx, const Tensor& positions, double theta) override;
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                       Tensor& d_up) override;
  void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out) override;
  void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads g,
                          const AttentionParams& p) override;
  double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits) override;
  void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table) override;

 private:
  // The cuBLASLt path of linear() and linear_stack(); false where it has no algorithm for the shape.
  bool lt_linear(const cuda::LtLinear& p) { return lt_->run(p, stream_); }

  // cuBLAS's workspace, fixed so that it never allocates during a graph capture; 32 MB is what cuBLAS recommends
  // for Hopper.
  static constexpr int64_t kWorkspaceBytes = int64_t(32) << 20;
  // Split-K attention's tickets and partials: the most splits (64) of four decode queries of up to 120 heads of
  // head_dim 128; larger shapes take fewer splits.
  static constexpr int64_t kAttentionWorkspaceBytes = int64_t(16) << 20;
  static constexpr int64_t kLoraLowFloats = int64_t(1) << 18;  // lora_rows' low-rank products: 1 MB
  int index_ = 0;  // which GPU
  std::shared_ptr<cuda::DeviceAllocator> allocator_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  Tensor workspace_;
  std::unique_ptr<cuda::LtGemm> lt_;  // uses workspace_
  Tensor attention_workspace_;  // split-K attention partials (fixed: graphs bake in its address)
  Tensor lora_low_;             // lora_rows' scratch [kLoraLowFloats] f32 (fixed, as attention_workspace_)
  std::unique_ptr<FusedDecode> fused_;
  std::unique_ptr<FusedRows> fused_rows_;
};

}  // namespace wick
