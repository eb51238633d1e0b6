// The CUDA backend (cuda_backend.h): the device, its memory and stream, transfers, graphs, logit summaries, and the
// decoder's ops.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <optional>
#include <span>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_decode.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/fused_decode.h"
#include "backend/cuda/fused_rows_ops.h"
#include "backend/cuda/gemv_plain.h"
#include "backend/cuda/lora_rows.h"
#include "backend/cuda/norm.h"
#include "backend/cuda/rope.h"
#include "backend/cuda/rows.h"
#include "backend/cuda/summary.h"
#include "wick/logit_summary.h"

namespace wick {

// The checks of summarize_rows' arguments every backend makes (backend.cpp).
void check_summary_rows(const Tensor& logits, std::span<const std::vector<int32_t>> gather);

using cuda::check;
using cuda::cuda_type;
using cuda::expect;
using cuda::expect_device;
using cuda::row_size;

namespace {

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

}  // namespace

CudaBackend::CudaBackend(int index) : index_(index) {
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

CudaBackend::~CudaBackend() {
  const cuda::DeviceGuard guard(index_);  // destroyed from any thread: its handles belong to its GPU
  cudaStreamSynchronize(stream_);
  fused_rows_.reset();  // what holds handles of its own, gone under the guard too
  fused_.reset();
  lt_.reset();
  cuda::cublas().destroy(blas_);
  cudaStreamDestroy(stream_);
}

Tensor CudaBackend::upload(const Tensor& host, DType dtype) {
  expect(host.device() == Device::cpu, "upload", "source must be a CPU tensor");
  const Tensor src = host.dtype() == dtype ? host : host.to(dtype);
  Tensor dst = alloc(host.shape(), dtype);
  // Pageable source: the copy is complete for the host when this returns, so `src` may die afterwards.
  check(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaStreamSynchronize(stream_), "upload sync");
  return dst;
}

Tensor CudaBackend::download(const Tensor& t) {
  expect(t.device() == Device::cuda, "download", "source must be a CUDA tensor");
  Tensor host = Tensor::empty(t.shape(), t.dtype());
  check(cudaMemcpyAsync(host.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, stream_), "download");
  check(cudaStreamSynchronize(stream_), "download sync");
  return host.dtype() == DType::f32 ? host : host.to(DType::f32);
}

void CudaBackend::write(Tensor& dst, const void* host, size_t bytes) {
  expect(dst.device() == Device::cuda && bytes <= dst.nbytes(), "write",
         std::to_string(bytes) + " bytes into " + to_string(dst.shape()));
  check(cudaMemcpyAsync(dst.raw(), host, bytes, cudaMemcpyHostToDevice, stream_), "write");
}

LogitSummary CudaBackend::summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) {
  const char* op = "summarize";
  expect_device(logits, DType::f32, op, "logits");
  const int64_t n = logits.numel();
  for (int32_t id : gather)
    expect(id >= 0 && id < n, op, "gathered id " + std::to_string(id) + " outside a row of " + std::to_string(n));
  std::optional<std::vector<LogitSummary>> on_device =
      summaries(*this, stream_, op, logits, 1, n, count, {&gather, 1});
  return on_device ? std::move(on_device->front()) : Backend::summarize(logits, count, gather);
}

std::vector<LogitSummary> CudaBackend::summarize_rows(const Tensor& logits, int32_t count,
                                                      const std::vector<std::vector<int32_t>>& gather) {
  const char* op = "summarize_rows";
  check_summary_rows(logits, gather);
  expect_device(logits, DType::f32, op, "logits");
  std::optional<std::vector<LogitSummary>> on_device =
      summaries(*this, stream_, op, logits, logits.dim(0), logits.dim(1), count, gather);
  return on_device ? std::move(*on_device) : Backend::summarize_rows(logits, count, gather);
}

std::unique_ptr<Graph> CudaBackend::capture(const std::function<void()>& body) {
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

void CudaBackend::embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  expect_device(table, DType::bf16, "embedding", "table");
  expect_device(ids, DType::i32, "embedding", "ids");
  expect(out.dim(0) == ids.numel() && out.dim(1) == table.dim(1), "embedding",
         "output shape " + to_string(out.shape()));
  cuda::embedding(table.raw(), ids.data<int32_t>(), out.raw(), ids.numel(), table.dim(1), stream_);
  cuda::check_launch("embedding");
}

void CudaBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  expect_device(x, DType::bf16, "rmsnorm", "x");
  const int64_t n = row_size(x);
  expect(weight.numel() == n && out.numel() == x.numel(), "rmsnorm", "shape mismatch");
  cuda::rmsnorm(x.raw(), weight.raw(), out.raw(), x.dim(0), n, eps, stream_);
  cuda::check_launch("rmsnorm");
}

void CudaBackend::add_rmsnorm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps, Tensor& normed) {
  expect_device(x, DType::bf16, "add_rmsnorm", "x");
  const int64_t n = row_size(x);
  expect(delta.numel() == x.numel() && weight.numel() == n && normed.numel() == x.numel(), "add_rmsnorm",
         "shape mismatch");
  cuda::add_rmsnorm({.x = x.raw(), .delta = delta.raw(), .weight = weight.raw(), .normed = normed.raw(),
                     .rows = x.dim(0), .n = n, .eps = eps},
                    stream_);
  cuda::check_launch("add_rmsnorm");
}

void CudaBackend::rope_kv(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions, double theta, Tensor& k_cache,
                          Tensor& v_cache, const Tensor& rows, const QkvBias& bias) {
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

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p) {
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

void CudaBackend::linear_stack(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out) {
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

void CudaBackend::linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool tanh, Tensor& out) {
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

void CudaBackend::rope(Tensor& x, const Tensor& positions, double theta) {
  expect_device(x, DType::bf16, "rope", "x");
  expect_device(positions, DType::i32, "rope", "positions");
  expect(positions.numel() == x.dim(0), "rope", "positions do not match tokens");
  cuda::rope(x.raw(), positions.data<int32_t>(), x.dim(0), x.dim(1), x.dim(2), theta, stream_);
  cuda::check_launch("rope");
}

void CudaBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t row0) {
  const int64_t n = src.dim(0), row = row_size(src);
  expect(src.dtype() == dst.dtype() && row == row_size(dst) && row0 >= 0 && row0 + n <= dst.dim(0), "copy_rows",
         "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()) + " at row " + std::to_string(row0));
  const size_t bytes = size_t(n * row) * dtype_size(src.dtype());
  check(cudaMemcpyAsync(static_cast<std::byte*>(dst.raw()) + size_t(row0 * row) * dtype_size(dst.dtype()), src.raw(),
                        bytes, cudaMemcpyDeviceToDevice, stream_),
        "copy_rows");
}

void CudaBackend::scatter_rows(const Tensor& src, Tensor& dst, const Tensor& rows) {
  expect_device(rows, DType::i32, "scatter_rows", "rows");
  const int64_t n = src.dim(0), row = row_size(src);
  expect(src.dtype() == dst.dtype() && row == row_size(dst) && rows.numel() == n, "scatter_rows",
         "src " + to_string(src.shape()) + " into dst " + to_string(dst.shape()));
  cuda::scatter_rows(src.raw(), dst.raw(), rows.data<int32_t>(), n, row * int64_t(dtype_size(src.dtype())), stream_);
  cuda::check_launch("scatter_rows");
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions, Tensor& out,
                            const AttentionParams& p) {
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

void CudaBackend::paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const PagedKeys& keys, Tensor& out,
                                  const AttentionParams& p) {
  const char* op = "paged_attention";
  expect_device(q, DType::bf16, op, "q");
  for (const Tensor* t : {&keys.tables, &keys.starts, &keys.positions})
    expect_device(*t, DType::i32, op, "block tables");
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

void CudaBackend::lora_rows(const Tensor& x, const Tensor& row_tables, int64_t slot, int32_t max_rank, Tensor& out) {
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

void CudaBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  expect(up.numel() == gate.numel() && out.numel() == gate.numel(), "swiglu", "shape mismatch");
  cuda::swiglu(gate.raw(), up.raw(), out.raw(), gate.numel(), stream_);
  cuda::check_launch("swiglu");
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  expect(b.numel() == a.numel() && out.numel() == a.numel(), "add", "shape mismatch");
  cuda::add(a.raw(), b.raw(), out.raw(), a.numel(), stream_);
  cuda::check_launch("add");
}

std::unique_ptr<Backend> make_cuda_backend(int index) { return std::make_unique<CudaBackend>(index); }

}  // namespace wick
