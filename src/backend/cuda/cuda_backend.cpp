// CUDA backend: bf16 weights and activations, f32 accumulation; cuBLAS for GEMMs, wick's kernels for the rest.
// Every op is queued on the backend's stream; download() is the only synchronisation point.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "backend/backend.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_allocator.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/fused_decode.h"
#include "backend/cuda/gemv_plain.h"
#include "backend/cuda/norm.h"
#include "backend/cuda/rope.h"
#include "backend/cuda/rows.h"
#include "backend/cuda/summary.h"
#include "wick/logit_summary.h"

namespace wick {

namespace {

using cuda::check;

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cuda ") + op + ": " + what);
}

int64_t row_size(const Tensor& t) { return t.rank() == 0 || t.dim(0) == 0 ? 0 : t.numel() / t.dim(0); }

void expect_device(const Tensor& t, DType dtype, const char* op, const char* name) {
  expect(t.device() == Device::cuda && t.dtype() == dtype, op,
         std::string(name) + " must be a CUDA " + std::string(to_string(dtype)) + " tensor, found " +
             (t.device() == Device::cuda ? "CUDA " : "CPU ") + std::string(to_string(t.dtype())));
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    case DType::i32: return CUDA_R_32I;
  }
  return CUDA_R_32F;
}

class CudaGraph final : public Graph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  void replay() override { check(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch"); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() : allocator_(std::make_shared<cuda::DeviceAllocator>()) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      fail(ErrorKind::unsupported, "--device cuda: no CUDA device is available on this machine");
    }
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, stream_), "cublasSetStream");
    check(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    // A fixed workspace: cuBLAS must not allocate while a graph is being captured.
    workspace_ = alloc({kWorkspaceBytes / 2}, DType::bf16);
    check(cublasSetWorkspace(blas_, workspace_.raw(), kWorkspaceBytes), "cublasSetWorkspace");
    attention_workspace_ = alloc({kAttentionWorkspaceBytes / 4}, DType::f32);
    // Zeroed once: the split-K attention kernel's tickets start at zero and are returned to zero by it.
    check(cudaMemsetAsync(attention_workspace_.raw(), 0, kAttentionWorkspaceBytes, stream_), "attention workspace");
    fused_ = make_cuda_fused_decode(stream_, allocator_);
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::cuda; }
  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  FusedDecode* fused_decode() override { return fused_.get(); }

  Tensor alloc(const Shape& shape, DType dtype) override { return allocator_->allocate(shape, dtype); }

  Tensor upload(const Tensor& host, DType dtype) override {
    expect(host.device() == Device::cpu, "upload", "source must be a CPU tensor");
    const Tensor src = host.dtype() == dtype ? host : host.to(dtype);
    Tensor dst = alloc(host.shape(), dtype);
    // Pageable source: the copy is complete for the host when this returns, so `src` may die afterwards.
    check(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, stream_), "upload");
    check(cudaStreamSynchronize(stream_), "upload sync");
    return dst;
  }

  Tensor download(const Tensor& t) override {
    expect(t.device() == Device::cuda, "download", "source must be a CUDA tensor");
    Tensor host = Tensor::empty(t.shape(), t.dtype());
    check(cudaMemcpyAsync(host.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, stream_), "download");
    check(cudaStreamSynchronize(stream_), "download sync");
    return host.dtype() == DType::f32 ? host : host.to(DType::f32);
  }

  void write(Tensor& dst, const void* host, size_t bytes) override {
    expect(dst.device() == Device::cuda && bytes <= dst.nbytes(), "write",
           std::to_string(bytes) + " bytes into " + to_string(dst.shape()));
    check(cudaMemcpyAsync(dst.raw(), host, bytes, cudaMemcpyHostToDevice, stream_), "write");
  }

  LogitSummary summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) override {
    const char* op = "summarize";
    expect_device(logits, DType::f32, op, "logits");
    const int64_t n = logits.numel();
    for (int32_t id : gather)
      expect(id >= 0 && id < n, op, "gathered id " + std::to_string(id) + " outside a row of " + std::to_string(n));
    const int c = int(std::clamp<int64_t>(count, 1, n));
    const int64_t work_bytes = cuda::summary_workspace_bytes(n, c);
    if (work_bytes < 0) return Backend::summarize(logits, count, gather);  // too long a row: on the host
    const int64_t gathered = int64_t(gather.size());
    Tensor work = alloc({(work_bytes + 3) / 4}, DType::i32);
    Tensor ids = alloc({std::max<int64_t>(gathered, 1)}, DType::i32);
    if (gathered) write(ids, gather.data(), gather.size() * sizeof(int32_t));
    Tensor out = alloc({2 + 2 * int64_t(c) + gathered}, DType::f32);
    cuda::summarize({.logits = logits.data<float>(), .n = n, .count = c, .gather = ids.data<int32_t>(),
                     .gathered = gathered, .out = out.data<float>(), .workspace = work.raw()},
                    stream_);
    cuda::check_launch(op);
    const Tensor host = download(out);
    const float* o = host.data<float>();
    LogitSummary s;
    s.vocab = n;
    s.max = o[0];
    s.sum_exp = o[1];
    for (int i = 0; i < c; ++i) s.ids.push_back(int32_t(o[2 + i]));
    s.values.assign(o + 2 + c, o + 2 + 2 * c);
    s.gathered_ids.assign(gather.begin(), gather.end());
    s.gathered.assign(o + 2 + 2 * c, o + 2 + 2 * c + gathered);
    return s;
  }

  std::unique_ptr<Graph> capture(const std::function<void()>& body) override {
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      body();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream_, &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(err, "cudaGraphInstantiate");
    return std::make_unique<CudaGraph>(exec, stream_);
  }

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override {
    expect_device(table, DType::bf16, "embedding", "table");
    expect_device(ids, DType::i32, "embedding", "ids");
    expect(out.dim(0) == ids.numel() && out.dim(1) == table.dim(1), "embedding",
           "output shape " + to_string(out.shape()));
    cuda::embedding(table.raw(), ids.data<int32_t>(), out.raw(), ids.numel(), table.dim(1), stream_);
    cuda::check_launch("embedding");
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    expect_device(x, DType::bf16, "rmsnorm", "x");
    const int64_t n = row_size(x);
    expect(weight.numel() == n && out.numel() == x.numel(), "rmsnorm", "shape mismatch");
    cuda::rmsnorm(x.raw(), weight.raw(), out.raw(), x.dim(0), n, eps, stream_);
    cuda::check_launch("rmsnorm");
  }

  void add_rmsnorm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps, Tensor& normed) override {
    expect_device(x, DType::bf16, "add_rmsnorm", "x");
    const int64_t n = row_size(x);
    expect(delta.numel() == x.numel() && weight.numel() == n && normed.numel() == x.numel(), "add_rmsnorm",
           "shape mismatch");
    cuda::add_rmsnorm({.x = x.raw(), .delta = delta.raw(), .weight = weight.raw(), .normed = normed.raw(),
                       .rows = x.dim(0), .n = n, .eps = eps},
                      stream_);
    cuda::check_launch("add_rmsnorm");
  }

  void rope_kv(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions, double theta, Tensor& k_cache,
               Tensor& v_cache) override {
    expect_device(q, DType::bf16, "rope_kv", "q");
    expect_device(positions, DType::i32, "rope_kv", "positions");
    const int64_t n = q.dim(0), d = q.dim(2), kvh = k.dim(1);
    expect(k.dim(0) == n && v.numel() == k.numel() && positions.numel() == n && k.dim(2) == d &&
               row_size(k_cache) == kvh * d && k_cache.shape() == v_cache.shape(),
           "rope_kv",
           "q " + to_string(q.shape()) + " k " + to_string(k.shape()) + " cache " + to_string(k_cache.shape()));
    cuda::rope_kv({.q = q.raw(), .k = k.raw(), .v = v.raw(), .positions = positions.data<int32_t>(),
                   .k_cache = k_cache.raw(), .v_cache = v_cache.raw(), .tokens = n, .heads = q.dim(1),
                   .kv_heads = kvh, .head_dim = d, .theta = theta},
                  stream_);
    cuda::check_launch("rope_kv");
  }

  void zero(Tensor& t) override { check(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream_), "zero"); }

  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p) override {
    expect_device(x, DType::bf16, "linear", "x");
    expect_device(w, DType::bf16, "linear", "w");
    const int64_t rows = x.dim(0), in = row_size(x), outs = w.dim(0);
    expect(w.dim(1) == in, "linear", "x " + to_string(x.shape()) + " vs w " + to_string(w.shape()));
    expect(out.dim(0) == rows && row_size(out) == outs, "linear", "output shape " + to_string(out.shape()));
    if (rows == 0) return;
    if (rows == 1 && in % 8 == 0 && reinterpret_cast<uintptr_t>(x.raw()) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(w.raw()) % 16 == 0) {
      // Decode: one bandwidth-bound pass over W with the bias fused.
      if (bias.defined()) expect(bias.numel() == outs, "linear", "bias shape " + to_string(bias.shape()));
      cuda::gemv({.w = w.raw(), .x = x.raw(), .bias = bias.defined() ? bias.raw() : nullptr, .out = out.raw(),
                  .out_f32 = out.dtype() == DType::f32, .rows = outs, .k = in, .alpha = p.alpha, .beta = p.beta},
                 stream_);
      cuda::check_launch("gemv");
      return;
    }
    // Row-major out[rows, outs] = x[rows, in] · w[outs, in]ᵀ is column-major outᵀ = w · xᵀ.
    check(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(outs), int(rows), int(in), &p.alpha, w.raw(), CUDA_R_16BF,
                       int(in), x.raw(), CUDA_R_16BF, int(in), &p.beta, out.raw(), cuda_type(out.dtype()), int(outs),
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
    if (bias.defined()) {
      expect(bias.numel() == outs, "linear", "bias shape " + to_string(bias.shape()));
      cuda::add_bias(out.raw(), out.dtype() == DType::f32, bias.raw(), rows, outs, stream_);
      cuda::check_launch("add_bias");
    }
  }

  void rope(Tensor& x, const Tensor& positions, double theta) override {
    expect_device(x, DType::bf16, "rope", "x");
    expect_device(positions, DType::i32, "rope", "positions");
    expect(positions.numel() == x.dim(0), "rope", "positions do not match tokens");
    cuda::rope(x.raw(), positions.data<int32_t>(), x.dim(0), x.dim(1), x.dim(2), theta, stream_);
    cuda::check_launch("rope");
  }

  void copy_rows(const Tensor& src, Tensor& dst, int64_t row0) override {
    const int64_t n = src.dim(0), row = row_size(src);
    expect(src.dtype() == dst.dtype() && row == row_size(dst) && row0 >= 0 && row0 + n <= dst.dim(0), "copy_rows",
           "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()) + " at row " + std::to_string(row0));
    const size_t bytes = size_t(n * row) * dtype_size(src.dtype());
    check(cudaMemcpyAsync(static_cast<std::byte*>(dst.raw()) + size_t(row0 * row) * dtype_size(dst.dtype()), src.raw(),
                          bytes, cudaMemcpyDeviceToDevice, stream_),
          "copy_rows");
  }

  void scatter_rows(const Tensor& src, Tensor& dst, const Tensor& rows) override {
    expect_device(rows, DType::i32, "scatter_rows", "rows");
    const int64_t n = src.dim(0), row = row_size(src);
    expect(src.dtype() == dst.dtype() && row == row_size(dst) && rows.numel() == n, "scatter_rows",
           "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()));
    cuda::scatter_rows(src.raw(), dst.raw(), rows.data<int32_t>(), n, row * int64_t(dtype_size(src.dtype())), stream_);
    cuda::check_launch("scatter_rows");
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions, Tensor& out,
                 const AttentionParams& p) override {
    expect_device(q, DType::bf16, "attention", "q");
    expect_device(positions, DType::i32, "attention", "positions");
    const int64_t n = q.dim(0);
    expect(q.numel() == n * p.num_heads * p.head_dim && positions.numel() == n &&
               row_size(k) == p.num_kv_heads * p.head_dim && out.numel() == q.numel(),
           "attention", "shapes q " + to_string(q.shape()) + " k " + to_string(k.shape()));
    const cuda::AttentionShape s{.queries = n, .heads = p.num_heads, .kv_heads = p.num_kv_heads,
                                 .head_dim = p.head_dim, .capacity = k.dim(0), .scale = p.scale,
                                 .workspace = attention_workspace_.raw(),
                                 .workspace_bytes = size_t(kAttentionWorkspaceBytes)};
    if (!cuda::attention(q.raw(), k.raw(), v.raw(), positions.data<int32_t>(), out.raw(), s, stream_))
      fail(ErrorKind::unsupported, "cuda attention: head_dim " + std::to_string(p.head_dim) +
                                       " (built for 16, 32, 64, 80, 96, 128, 256)");
    cuda::check_launch("attention");
  }

  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    expect(up.numel() == gate.numel() && out.numel() == gate.numel(), "swiglu", "shape mismatch");
    cuda::swiglu(gate.raw(), up.raw(), out.raw(), gate.numel(), stream_);
    cuda::check_launch("swiglu");
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    expect(b.numel() == a.numel() && out.numel() == a.numel(), "add", "shape mismatch");
    cuda::add(a.raw(), b.raw(), out.raw(), a.numel(), stream_);
    cuda::check_launch("add");
  }

 private:
  // cuBLAS's workspace, fixed so that it never allocates during a graph capture; 32 MB is what cuBLAS recommends
  // for Hopper.
  static constexpr int64_t kWorkspaceBytes = int64_t(32) << 20;
  // Split-K attention's tickets and partials: the most splits (64) of four decode queries of up to 120 heads of
  // head_dim 128; larger shapes take fewer splits.
  static constexpr int64_t kAttentionWorkspaceBytes = int64_t(16) << 20;
  std::shared_ptr<cuda::DeviceAllocator> allocator_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  Tensor workspace_;
  Tensor attention_workspace_;  // split-K attention partials (fixed: graphs bake in its address)
  std::unique_ptr<FusedDecode> fused_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace wick
