// CUDA backend: bf16 weights and activations, f32 accumulation; cuBLAS for GEMMs, wick's kernels for the rest.
// Every op is queued on the backend's stream; download() is the only synchronisation point.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/attention_backward.h"
#include "backend/cuda/attention_decode.h"
#include "backend/cuda/cublas_api.h"
#include "backend/cuda/lora_rows.h"
#include "backend/cuda/backward.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_allocator.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/encoder_attention.h"
#include "backend/cuda/encoder_pool.h"
#include "backend/cuda/fused_decode.h"
#include "backend/cuda/fused_rows_ops.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/gemv_plain.h"
#include "backend/cuda/norm.h"
#include "backend/cuda/rope.h"
#include "backend/cuda/rows.h"
#include "backend/cuda/summary.h"
#include "wick/logit_summary.h"

namespace wick {

// The checks of summarize_rows' arguments every backend makes (backend.cpp).
void check_summary_rows(const Tensor& logits, std::span<const std::vector<int32_t>> gather);

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

// "name shape dtype" of each tensor, for the shape errors of the training ops.
std::string described(std::initializer_list<std::pair<const char*, const Tensor*>> named) {
  std::string s;
  for (const auto& [name, t] : named)
    s += std::string(s.empty() ? "" : ", ") + name + " " + to_string(t->shape()) + " " +
         std::string(to_string(t->dtype())) + (t->device() == Device::cuda ? "" : " on the CPU");
  return s;
}

// The training ops' storage rule: every tensor on the device, of one dtype, bf16 (the compute dtype) or f32.
bool one_float_dtype(std::initializer_list<const Tensor*> tensors) {
  const DType first = (*tensors.begin())->dtype();
  return (first == DType::bf16 || first == DType::f32) &&
         std::all_of(tensors.begin(), tensors.end(),
                     [&](const Tensor* t) { return t->device() == Device::cuda && t->dtype() == first; });
}

static_assert(sizeof(cuda::CrossEntropyRow) % 4 == 0, "cross_entropy's rows live in an i32 tensor");

// cross_entropy's total over the rows the kernel left, summed in row order; the first bad target is bad input.
double total_loss(const std::vector<cuda::CrossEntropyRow>& rows, int64_t classes) {
  double total = 0.0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].bad)
      fail(ErrorKind::bad_input, "cross_entropy: target " + std::to_string(rows[r].target) + " of row " +
                                     std::to_string(r) + " is outside the classes [0, " + std::to_string(classes) +
                                     ") and is not -100");
    total += rows[r].loss;
  }
  return total;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    case DType::i32: return CUDA_R_32I;
    case DType::q8_0: break;  // the GPU keeps weights in bf16 (LoadOptions::cpu_weights is the CPU's)
  }
  fail(ErrorKind::internal, "cuda: no CUDA data type for " + std::string(to_string(t)));
}

class CudaGraph final : public Graph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {
    cuda::check(cudaGetDevice(&device_), "cudaGetDevice");
  }
  ~CudaGraph() override {
    const cuda::DeviceGuard guard(device_);  // destroyed from any thread: the graph belongs to its GPU
    cudaGraphExecDestroy(exec_);
  }
  void replay() override { check(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch"); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
  int device_ = 0;
};

// The summaries of `rows` rows of n f32 logits on the device, gathered ids already checked: two launches and one
// download for all the rows; nullopt where the rows are too long for the device (summary_workspace_bytes).
std::optional<std::vector<LogitSummary>> summaries(Backend& b, cudaStream_t stream, const char* op,
                                                   const Tensor& logits, int64_t rows, int64_t n, int32_t count,
                                                   std::span<const std::vector<int32_t>> gather) {
  const int c = int(std::clamp<int64_t>(count, 1, std::max<int64_t>(n, 1)));  // the kernels keep one id at least
  const int64_t work_bytes = cuda::summary_workspace_bytes(rows, n, c);
  if (work_bytes < 0) return std::nullopt;
  // The gather lists flattened: rows + 1 starts, then every row's ids.
  std::vector<int32_t> lists(size_t(rows) + 1, 0);
  for (size_t r = 0; r < size_t(rows); ++r) lists[r + 1] = lists[r] + (gather.empty() ? 0 : int32_t(gather[r].size()));
  for (const std::vector<int32_t>& ids : gather) lists.insert(lists.end(), ids.begin(), ids.end());
  const int32_t* starts = lists.data();
  const int32_t* ids = starts + rows + 1;
  // One allocation: the output [rows · (2 + 2·c) + gathered], the workspace (8-byte keys: the output is padded to
  // an even count of floats), then the lists.
  const int64_t stride = 2 + 2 * int64_t(c), out_floats = rows * stride + starts[rows];
  const int64_t work_at = (out_floats + 1) / 2 * 2, lists_at = work_at + work_bytes / 4;
  Tensor buffer = b.alloc({lists_at + int64_t(lists.size())}, DType::f32);
  Tensor lists_on_device = buffer.rows(lists_at, buffer.numel());
  b.write(lists_on_device, lists.data(), lists.size() * sizeof(int32_t));
  const auto* device_starts = static_cast<const int32_t*>(lists_on_device.raw());
  cuda::summarize({.logits = logits.data<float>(), .rows = rows, .n = n, .count = c,
                   .gather = device_starts + rows + 1, .gather_starts = device_starts, .out = buffer.data<float>(),
                   .workspace = buffer.data<float>() + work_at},
                  stream);
  cuda::check_launch(op);
  const Tensor host = b.download(buffer.rows(0, out_floats));
  const int kept = int(std::clamp<int64_t>(count, 0, n));  // as summarize_logits: no ids for a count of 0
  std::vector<LogitSummary> out(static_cast<size_t>(rows));
  for (size_t r = 0; r < size_t(rows); ++r) {
    const float* o = host.data<float>() + int64_t(r) * stride + starts[r];
    const int32_t gathered = starts[r + 1] - starts[r];
    LogitSummary& s = out[r];
    s.vocab = n;
    s.max = o[0];
    s.sum_exp = o[1];
    for (int i = 0; i < kept; ++i) s.ids.push_back(int32_t(o[2 + i]));
    s.values.assign(o + 2 + c, o + 2 + c + kept);
    s.gathered_ids.assign(ids + starts[r], ids + starts[r + 1]);
    s.gathered.assign(o + 2 + 2 * c, o + 2 + 2 * c + gathered);
  }
  return out;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      fail(ErrorKind::unsupported, "--device cuda: no CUDA device is available on this machine");
    }
    if (index < 0) {
      check(cudaGetDevice(&index_), "cudaGetDevice");
    } else if (index >= count) {
      fail(ErrorKind::unsupported, "--device cuda: GPU " + std::to_string(index) + " does not exist (this machine has " +
                                       std::to_string(count) + ")");
    } else {
      check(cudaSetDevice(index), "cudaSetDevice");
    }
    allocator_ = std::make_shared<cuda::DeviceAllocator>(index_);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cuda::cublas().create(&blas_), "cublasCreate");
    check(cuda::cublas().set_stream(blas_, stream_), "cublasSetStream");
    check(cuda::cublas().set_math_mode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    // A fixed workspace: cuBLAS must not allocate while a graph is being captured.
    workspace_ = alloc({kWorkspaceBytes / 2}, DType::bf16);
    check(cuda::cublas().set_workspace(blas_, workspace_.raw(), kWorkspaceBytes), "cublasSetWorkspace");
    lt_ = std::make_unique<cuda::LtGemm>(workspace_.raw(), size_t(kWorkspaceBytes));  // same stream: shared
    attention_workspace_ = alloc({kAttentionWorkspaceBytes / 4}, DType::f32);
    // Zeroed once: the split-K attention kernel's tickets start at zero and are returned to zero by it.
    check(cudaMemsetAsync(attention_workspace_.raw(), 0, kAttentionWorkspaceBytes, stream_), "attention workspace");
    lora_low_ = alloc({kLoraLowFloats}, DType::f32);
    fused_ = make_cuda_fused_decode(stream_, allocator_);
    fused_rows_ = make_cuda_fused_rows(stream_);
  }
  ~CudaBackend() override {
    const cuda::DeviceGuard guard(index_);  // destroyed from any thread: its handles belong to its GPU
    cudaStreamSynchronize(stream_);
    fused_rows_.reset();  // what holds handles of its own, gone under the guard too
    fused_.reset();
    lt_.reset();
    cuda::cublas().destroy(blas_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::cuda; }
  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  FusedDecode* fused_decode() override { return fused_.get(); }
  FusedRows* fused_rows() override { return fused_rows_.get(); }

  Tensor alloc(const Shape& shape, DType dtype) override { return allocator_->allocate(shape, dtype); }
  int64_t peak_memory_bytes() const override { return int64_t(allocator_->peak_in_use_bytes()); }
  void bind_thread() override { check(cudaSetDevice(index_), "cudaSetDevice"); }
  void* native_stream() override { return stream_; }

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
    std::optional<std::vector<LogitSummary>> on_device =
        summaries(*this, stream_, op, logits, 1, n, count, {&gather, 1});
    return on_device ? std::move(on_device->front()) : Backend::summarize(logits, count, gather);
  }

  std::vector<LogitSummary> summarize_rows(const Tensor& logits, int32_t count,
                                           const std::vector<std::vector<int32_t>>& gather) override {
    const char* op = "summarize_rows";
    check_summary_rows(logits, gather);
    expect_device(logits, DType::f32, op, "logits");
    std::optional<std::vector<LogitSummary>> on_device =
        summaries(*this, stream_, op, logits, logits.dim(0), logits.dim(1), count, gather);
    return on_device ? std::move(*on_device) : Backend::summarize_rows(logits, count, gather);
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
               Tensor& v_cache, const Tensor& rows, const QkvBias& bias) override {
    expect_device(q, DType::bf16, "rope_kv", "q");
    expect_device(positions, DType::i32, "rope_kv", "positions");
    if (rows.defined()) expect_device(rows, DType::i32, "rope_kv", "rows");
    const int64_t n = q.dim(0), d = q.dim(2), kvh = k.dim(1);
    expect(k.dim(0) == n && v.numel() == k.numel() && positions.numel() == n && k.dim(2) == d &&
               row_size(k_cache) == kvh * d && k_cache.shape() == v_cache.shape() &&
               (!rows.defined() || rows.numel() == n),
           "rope_kv",
           "q " + to_string(q.shape()) + " k " + to_string(k.shape()) + " cache " + to_string(k_cache.shape()));
    if (bias.defined()) {
      for (const Tensor* b : {&bias.q, &bias.k, &bias.v}) expect_device(*b, DType::bf16, "rope_kv", "bias");
      expect(bias.q.numel() == q.dim(1) * d && bias.k.numel() == kvh * d && bias.v.numel() == kvh * d, "rope_kv",
             "bias shapes " + to_string(bias.q.shape()) + " " + to_string(bias.k.shape()) + " " +
                 to_string(bias.v.shape()));
    }
    cuda::rope_kv({.q = q.raw(), .k = k.raw(), .v = v.raw(), .positions = positions.data<int32_t>(),
                   .rows = rows.defined() ? rows.data<int32_t>() : nullptr,
                   .q_bias = bias.defined() ? bias.q.raw() : nullptr,
                   .k_bias = bias.defined() ? bias.k.raw() : nullptr,
                   .v_bias = bias.defined() ? bias.v.raw() : nullptr, .k_cache = k_cache.raw(),
                   .v_cache = v_cache.raw(), .tokens = n, .heads = q.dim(1), .kv_heads = kvh, .head_dim = d,
                   .theta = theta},
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
    // With a bias into a bf16 output: cuBLASLt, the bias in the GEMM's epilogue.
    if (bias.defined() && p.alpha == 1.0f && p.beta == 0.0f && out.dtype() == DType::bf16) {
      expect(bias.numel() == outs, "linear", "bias shape " + to_string(bias.shape()));
      expect_device(bias, DType::bf16, "linear", "bias");
      if (lt_linear({.x = x.raw(), .w = w.raw(), .bias = bias.raw(), .out = out.raw(), .rows = rows, .in = in,
                     .outs = outs}))
        return;
    }
    // Row-major out[rows, outs] = x[rows, in] · w[outs, in]ᵀ is column-major outᵀ = w · xᵀ.
    check(cuda::cublas().gemm_ex(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(outs), int(rows), int(in), &p.alpha, w.raw(),
                                 CUDA_R_16BF, int(in), x.raw(), CUDA_R_16BF, int(in), &p.beta, out.raw(),
                                 cuda_type(out.dtype()), int(outs), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
    if (bias.defined()) {
      expect(bias.numel() == outs, "linear", "bias shape " + to_string(bias.shape()));
      cuda::add_bias(out.raw(), out.dtype() == DType::f32, bias.raw(), rows, outs, stream_);
      cuda::check_launch("add_bias");
    }
  }

  void linear_stack(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out) override {
    expect_device(x, DType::bf16, "linear_stack", "x");
    expect_device(w, DType::bf16, "linear_stack", "w");
    expect_device(out, DType::bf16, "linear_stack", "out");
    const int64_t rows = x.rank() == 0 ? 0 : x.dim(0), in = row_size(x);
    const int64_t groups = rows == 0 ? 0 : out.dim(0) / rows, outs = groups == 0 ? 0 : w.dim(0) / groups;
    if (groups > 1 && rows > 1 && groups * rows == out.dim(0) && groups * outs == w.dim(0) && w.dim(1) == in &&
        row_size(out) == outs && (!bias.defined() || (bias.numel() == groups * outs && bias.dtype() == DType::bf16))) {
      if (lt_linear({.x = x.raw(), .w = w.raw(), .bias = bias.defined() ? bias.raw() : nullptr, .out = out.raw(),
                     .rows = rows, .in = in, .outs = outs, .groups = groups}))
        return;
    }
    Backend::linear_stack(x, w, bias, out);  // one linear() a group (and its shape checks)
  }

  void linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool tanh, Tensor& out) override {
    const int64_t rows = x.rank() == 0 ? 0 : x.dim(0), in = row_size(x), outs = w.rank() == 2 ? w.dim(0) : 0;
    if (rows > 1 && x.device() == Device::cuda && x.dtype() == DType::bf16 && w.device() == Device::cuda &&
        w.dtype() == DType::bf16 && w.dim(1) == in && out.device() == Device::cuda && out.dtype() == DType::bf16 &&
        out.dim(0) == rows && row_size(out) == outs &&
        (!bias.defined() || (bias.dtype() == DType::bf16 && bias.numel() == outs)) &&
        lt_linear({.x = x.raw(), .w = w.raw(), .bias = bias.defined() ? bias.raw() : nullptr, .out = out.raw(),
                   .rows = rows, .in = in, .outs = outs, .gelu_tanh = true}))
      return;
    Backend::linear_gelu(x, w, bias, tanh, out);  // linear() then gelu(), with their checks
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

  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const PagedKeys& keys, Tensor& out,
                       const AttentionParams& p) override {
    const char* op = "paged_attention";
    expect_device(q, DType::bf16, op, "q");
    for (const Tensor* t : {&keys.tables, &keys.starts, &keys.positions}) expect_device(*t, DType::i32, op, "block tables");
    const int64_t n = q.dim(0);
    expect(q.numel() == n * p.num_heads * p.head_dim && keys.positions.numel() == n && keys.starts.numel() == n &&
               row_size(k) == p.num_kv_heads * p.head_dim && v.shape() == k.shape() && out.numel() == q.numel() &&
               keys.max_visible >= 1 && keys.block_size >= 1,
           op, "shapes q " + to_string(q.shape()) + " k " + to_string(k.shape()));
    const cuda::AttentionShape s{.queries = n, .heads = p.num_heads, .kv_heads = p.num_kv_heads,
                                 .head_dim = p.head_dim, .capacity = keys.max_visible,
                                 .tables = keys.tables.data<int32_t>(), .starts = keys.starts.data<int32_t>(),
                                 .block_size = int(keys.block_size),
                                 .scale = p.scale, .workspace = attention_workspace_.raw(),
                                 .workspace_bytes = size_t(kAttentionWorkspaceBytes)};
    if (!cuda::attention_decode(q.raw(), k.raw(), v.raw(), keys.positions.data<int32_t>(), out.raw(), s, stream_))
      fail(ErrorKind::unsupported, "cuda paged_attention: head_dim " + std::to_string(p.head_dim) +
                                       " (built for 16, 32, 64, 80, 96, 128, 256)");
    cuda::check_launch(op);
  }

  void lora_rows(const Tensor& x, const Tensor& row_tables, int64_t slot, int32_t max_rank, Tensor& out) override {
    const char* op = "lora_rows";
    expect_device(x, DType::bf16, op, "x");
    expect_device(out, DType::bf16, op, "out");
    expect_device(row_tables, DType::i32, op, "row_tables");
    const int64_t n = x.dim(0);
    expect(out.dim(0) == n && row_tables.numel() == 2 * n && slot >= 0 && max_rank >= 0 &&
               max_rank <= kLoraLowFloats,
           op, "x " + to_string(x.shape()) + " out " + to_string(out.shape()) + " tables " +
                   to_string(row_tables.shape()) + " max_rank " + std::to_string(max_rank));
    if (max_rank == 0) return;
    const int64_t chunk = kLoraLowFloats / max_rank;  // rows whose low-rank products fit the scratch
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
      const int64_t rows = std::min(chunk, n - t0);
      cuda::lora_rows({.x = x.rows(t0, t0 + rows).raw(),
                       .tables = reinterpret_cast<const unsigned long long*>(row_tables.data<int32_t>()) + t0,
                       .slot = slot, .out = out.rows(t0, t0 + rows).raw(), .low = lora_low_.data<float>(),
                       .n = rows, .in = x.dim(1), .outs = out.dim(1), .max_rank = max_rank},
                      stream_);
    }
    cuda::check_launch(op);
  }

  // --- Encoder ops: bf16 activations, f32 pooled outputs ---

  void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override {
    const char* op = "layer_norm";
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"x", &x}, {"weight", &weight}, {"bias", &bias},
                                  {"out", &out}})
      expect_device(*t, DType::bf16, op, name);
    if (residual.defined()) expect_device(residual, DType::bf16, op, "residual");
    const int64_t n = row_size(x);
    expect(x.rank() == 2 && out.shape() == x.shape() && (!residual.defined() || residual.shape() == x.shape()) &&
               weight.numel() == n && bias.numel() == n,
           op,
           described({{"x", &x}, {"weight", &weight}, {"bias", &bias}, {"out", &out}}) +
               (residual.defined() ? ", residual " + to_string(residual.shape()) : std::string()));
    cuda::layer_norm({.x = x.raw(), .residual = residual.defined() ? residual.raw() : nullptr, .weight = weight.raw(),
                      .bias = bias.raw(), .out = out.raw(), .rows = x.dim(0), .n = n, .eps = eps},
                     stream_);
    cuda::check_launch(op);
  }

  void gelu(const Tensor& x, bool tanh, Tensor& out) override {
    expect_device(x, DType::bf16, "gelu", "x");
    expect_device(out, DType::bf16, "gelu", "out");
    expect(out.shape() == x.shape(), "gelu", described({{"x", &x}, {"out", &out}}));
    cuda::gelu(x.raw(), tanh, out.raw(), x.numel(), stream_);
    cuda::check_launch("gelu");
  }

  void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                         const RelativeBias& bias, Tensor& out, const AttentionParams& p) override {
    const char* op = "encoder_attention";
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}})
      expect_device(*t, DType::bf16, op, name);
    expect_device(spans.starts, DType::i32, op, "spans.starts");
    if (bias.defined()) expect_device(bias.table, DType::bf16, op, "bias.table");
    const int64_t rows = q.rank() == 0 ? 0 : q.dim(0), kv_row = p.num_kv_heads * p.head_dim;
    const bool heads = p.num_heads > 0 && p.num_kv_heads > 0 && p.head_dim > 0 && p.num_heads % p.num_kv_heads == 0;
    const auto kv_like = [&](const Tensor& t) { return t.rank() > 0 && t.dim(0) == rows && row_size(t) == kv_row; };
    expect(heads && q.numel() == rows * p.num_heads * p.head_dim && kv_like(k) && kv_like(v) &&
               out.numel() == q.numel() && out.rank() > 0 && out.dim(0) == rows && spans.starts.numel() >= 1 &&
               spans.max_len >= 0 && spans.max_len <= rows,
           op,
           "heads " + std::to_string(p.num_heads) + "/" + std::to_string(p.num_kv_heads) + " head_dim " +
               std::to_string(p.head_dim) + " max_len " + std::to_string(spans.max_len) + ", shapes " +
               described({{"q", &q}, {"k", &k}, {"v", &v}, {"starts", &spans.starts}, {"out", &out}}));
    if (bias.defined())
      expect(bias.table.rank() == 2 && bias.table.dim(0) == bias.num_buckets && bias.table.dim(1) == p.num_heads &&
                 bias.num_buckets >= 4 && bias.max_distance > bias.num_buckets / 4,
             op,
             "relative bias table " + to_string(bias.table.shape()) + " for " + std::to_string(bias.num_buckets) +
                 " buckets (at least 4), " + std::to_string(p.num_heads) + " heads, max_distance " +
                 std::to_string(bias.max_distance) + " (above a quarter of the buckets)");
    const cuda::EncoderAttentionParams a{
        .q = q.raw(), .k = k.raw(), .v = v.raw(), .starts = spans.starts.data<int32_t>(), .out = out.raw(),
        .rows = rows, .sequences = spans.starts.numel() - 1, .max_len = spans.max_len, .heads = p.num_heads,
        .kv_heads = p.num_kv_heads, .head_dim = p.head_dim, .scale = p.scale,
        .bias = bias.defined() ? bias.table.raw() : nullptr, .num_buckets = bias.num_buckets,
        .max_distance = bias.max_distance};
    if (!cuda::encoder_attention_supports(a))
      fail(ErrorKind::unsupported,
           "cuda encoder_attention: head_dim " + std::to_string(p.head_dim) +
               " (built for multiples of 16 up to 128), or a relative bias over sequences of " +
               std::to_string(spans.max_len) + " tokens (at most " + std::to_string(cuda::kEncoderMaxBiasLen) + ")");
    expect(reinterpret_cast<uintptr_t>(k.raw()) % 16 == 0 && reinterpret_cast<uintptr_t>(v.raw()) % 16 == 0, op,
           "k and v must be 16-byte aligned");
    cuda::encoder_attention(a, stream_);
    cuda::check_launch(op);
  }

  void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out) override {
    const char* op = "encoder_pool";
    expect_device(x, DType::bf16, op, "x");
    expect_device(spans, DType::i32, op, "spans");
    expect_device(out, DType::f32, op, "out");
    const int64_t sequences = out.rank() == 2 ? out.dim(0) : -1;
    expect(x.rank() == 2 && out.rank() == 2 && out.dim(1) == x.dim(1) && spans.numel() == 2 * sequences, op,
           described({{"x", &x}, {"spans", &spans}, {"out", &out}}));
    cuda::encoder_pool({.x = x.raw(), .spans = spans.data<int32_t>(), .out = out.data<float>(), .rows = x.dim(0),
                        .sequences = sequences, .n = x.dim(1), .mode = mode, .normalize = normalize},
                       stream_);
    cuda::check_launch(op);
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

  // --- Backward twins (training): bf16 activations and gradients, f32 LoRA parameter gradients ---

  void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) override {
    const bool ranks = a.rank() == 2 && b.rank() == 2 && out.rank() == 2;
    const int64_t m = ranks ? a.dim(p.transpose_a ? 1 : 0) : 0, k = ranks ? a.dim(p.transpose_a ? 0 : 1) : 0;
    const int64_t kb = ranks ? b.dim(p.transpose_b ? 1 : 0) : 0, n = ranks ? b.dim(p.transpose_b ? 0 : 1) : 0;
    const bool out_type = out.device() == Device::cuda && (out.dtype() == DType::f32 || out.dtype() == a.dtype());
    expect(ranks && one_float_dtype({&a, &b}) && out_type && k == kb && out.dim(0) == m && out.dim(1) == n, "matmul",
           described({{"a", &a}, {"b", &b}, {"out", &out}}) + (p.transpose_a ? " (a transposed)" : "") +
               (p.transpose_b ? " (b transposed)" : ""));
    if (m == 0 || n == 0) return;
    // Row-major out [m, n] is column-major outᵀ = op(b)ᵀ·op(a)ᵀ, and a row-major t is column-major tᵀ: so the
    // operands swap places and each keeps its own flag. Leading dimensions must be ≥ 1 even for an empty k.
    const int ldb = int(std::max<int64_t>(1, b.dim(1))), lda = int(std::max<int64_t>(1, a.dim(1)));
    check(cuda::cublas().gemm_ex(blas_, p.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 p.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &p.alpha, b.raw(),
                                 cuda_type(b.dtype()), ldb, a.raw(), cuda_type(a.dtype()), lda, &p.beta, out.raw(),
                                 cuda_type(out.dtype()), int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (matmul)");
  }

  void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx) override {
    const int64_t n = row_size(x);
    expect(one_float_dtype({&x, &weight, &d_out, &dx}) && weight.numel() == n && d_out.shape() == x.shape() &&
               dx.shape() == x.shape(),
           "rmsnorm_backward", described({{"x", &x}, {"weight", &weight}, {"d_out", &d_out}, {"dx", &dx}}));
    cuda::rmsnorm_backward({.x = x.raw(), .weight = weight.raw(), .d_out = d_out.raw(), .dx = dx.raw(),
                            .rows = x.rank() == 0 ? 0 : x.dim(0), .n = n, .eps = eps,
                            .f32 = x.dtype() == DType::f32},
                           stream_);
    cuda::check_launch("rmsnorm_backward");
  }

  void rope_backward(Tensor& dx, const Tensor& positions, double theta) override {
    expect_device(positions, DType::i32, "rope_backward", "positions");
    expect(one_float_dtype({&dx}) && dx.rank() == 3 && positions.numel() == dx.dim(0), "rope_backward",
           described({{"dx", &dx}, {"positions", &positions}}));
    cuda::rope_backward({.dx = dx.raw(), .positions = positions.data<int32_t>(), .tokens = dx.dim(0),
                         .heads = dx.dim(1), .head_dim = dx.dim(2), .theta = theta, .f32 = dx.dtype() == DType::f32},
                        stream_);
    cuda::check_launch("rope_backward");
  }

  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                       Tensor& d_up) override {
    const int64_t n = gate.numel();
    expect(one_float_dtype({&gate, &up, &d_out, &d_gate, &d_up}) && up.numel() == n && d_out.numel() == n &&
               d_gate.numel() == n && d_up.numel() == n,
           "swiglu_backward",
           described({{"gate", &gate}, {"up", &up}, {"d_out", &d_out}, {"d_gate", &d_gate}, {"d_up", &d_up}}));
    cuda::swiglu_backward({.gate = gate.raw(), .up = up.raw(), .d_out = d_out.raw(), .d_gate = d_gate.raw(),
                           .d_up = d_up.raw(), .n = n, .f32 = gate.dtype() == DType::f32},
                          stream_);
    cuda::check_launch("swiglu_backward");
  }

  void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out) override {
    expect(one_float_dtype({&x, &out}) && x.numel() == out.numel() && p >= 0.0f && p < 1.0f, "dropout",
           described({{"x", &x}, {"out", &out}}) + " p " + std::to_string(p));
    cuda::dropout({.x = x.raw(), .out = out.raw(), .n = x.numel(), .p = p, .seed = seed, .f32 = x.dtype() == DType::f32},
                  stream_);
    cuda::check_launch("dropout");
  }

  void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads g,
                          const AttentionParams& p) override {
    const char* op = "attention_backward";
    expect_device(in.positions, DType::i32, op, "positions");
    const int64_t n = in.q.rank() == 0 ? 0 : in.q.dim(0), qsize = n * p.num_heads * p.head_dim;
    const int64_t cap = in.k.rank() == 0 ? 0 : in.k.dim(0), kv_row = p.num_kv_heads * p.head_dim;
    const auto cache_like = [&](const Tensor& t) { return t.rank() > 0 && t.dim(0) == cap && row_size(t) == kv_row; };
    expect(one_float_dtype({&in.q, &in.k, &in.v, &d_out, &g.dq, &g.dk, &g.dv}) && p.num_kv_heads > 0 &&
               p.num_heads % p.num_kv_heads == 0 && in.q.numel() == qsize && d_out.numel() == qsize &&
               g.dq.numel() == qsize && in.positions.numel() == n && cache_like(in.k) && cache_like(in.v) &&
               cache_like(g.dk) && cache_like(g.dv),
           op,
           "heads " + std::to_string(p.num_heads) + "/" + std::to_string(p.num_kv_heads) + " head_dim " +
               std::to_string(p.head_dim) + ", shapes " +
               described({{"q", &in.q}, {"k", &in.k}, {"v", &in.v}, {"positions", &in.positions},
                          {"d_out", &d_out}, {"dq", &g.dq}, {"dk", &g.dk}, {"dv", &g.dv}}));
    // Freed on return, before the kernels run: whoever gets it next queues behind them on the one stream.
    Tensor stats = alloc({2 * n * p.num_heads}, DType::f32);
    const bool built = cuda::attention_backward(
        {.q = in.q.raw(), .k = in.k.raw(), .v = in.v.raw(), .d_out = d_out.raw(),
         .positions = in.positions.data<int32_t>(), .dq = g.dq.raw(), .dk = g.dk.raw(), .dv = g.dv.raw(),
         .stats = stats.data<float>(), .queries = n, .heads = p.num_heads, .kv_heads = p.num_kv_heads,
         .head_dim = p.head_dim, .capacity = cap, .scale = p.scale, .f32 = in.q.dtype() == DType::f32},
        stream_);
    if (!built)
      fail(ErrorKind::unsupported, "cuda attention_backward: head_dim " + std::to_string(p.head_dim) + " (at most " +
                                       std::to_string(cuda::kMaxBackwardHeadDim) + ")");
    cuda::check_launch(op);
  }

  double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits) override {
    const char* op = "cross_entropy";
    const int64_t rows = logits.rank() == 2 ? logits.dim(0) : 0, classes = logits.rank() == 2 ? logits.dim(1) : 0;
    expect_device(logits, DType::f32, op, "logits");
    expect_device(targets, DType::i32, op, "targets");
    expect(logits.rank() == 2 && one_float_dtype({&d_logits}) && targets.numel() == rows &&
               d_logits.shape() == logits.shape(),
           op, described({{"logits", &logits}, {"targets", &targets}, {"d_logits", &d_logits}}));
    if (rows == 0) return 0.0;
    std::vector<cuda::CrossEntropyRow> host(static_cast<size_t>(rows));
    Tensor per_row = alloc({rows * int64_t(sizeof(cuda::CrossEntropyRow) / 4)}, DType::i32);
    cuda::cross_entropy({.logits = logits.data<float>(), .targets = targets.data<int32_t>(), .d_logits = d_logits.raw(),
                         .rows_out = static_cast<cuda::CrossEntropyRow*>(per_row.raw()), .rows = rows,
                         .classes = classes, .scale = scale, .d_f32 = d_logits.dtype() == DType::f32},
                        stream_);
    cuda::check_launch(op);
    check(cudaMemcpyAsync(host.data(), per_row.raw(), per_row.nbytes(), cudaMemcpyDeviceToHost, stream_),
          "cross_entropy losses");
    check(cudaStreamSynchronize(stream_), "cross_entropy sync");
    return total_loss(host, classes);
  }

  void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table) override {
    const char* op = "embedding_backward";
    expect_device(ids, DType::i32, op, "ids");
    expect_device(d_table, DType::f32, op, "d_table");
    const int64_t tokens = ids.numel(), vocab = d_table.rank() == 0 ? 0 : d_table.dim(0), hidden = row_size(d_table);
    expect(one_float_dtype({&d_out}) && d_out.rank() >= 1 && d_out.dim(0) == tokens && row_size(d_out) == hidden, op,
           described({{"ids", &ids}, {"d_out", &d_out}, {"d_table", &d_table}}));
    cuda::embedding_backward({.ids = ids.data<int32_t>(), .d_out = d_out.raw(), .d_table = d_table.data<float>(),
                              .tokens = tokens, .vocab = vocab, .hidden = hidden,
                              .d_out_f32 = d_out.dtype() == DType::f32},
                             stream_);
    cuda::check_launch(op);
  }

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

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int index) { return std::make_unique<CudaBackend>(index); }

}  // namespace wick
