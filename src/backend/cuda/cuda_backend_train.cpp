// The CUDA backend's backward twins (cuda_backend.h), for training: bf16 activations and gradients, f32 LoRA parameter
// gradients.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/attention_backward.h"
#include "backend/cuda/backward.h"
#include "backend/cuda/cuda_backend.h"

namespace wick {

using cuda::check;
using cuda::cuda_type;
using cuda::described;
using cuda::expect;
using cuda::expect_device;
using cuda::row_size;

namespace {

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

}  // namespace

void CudaBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) {
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

void CudaBackend::rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx) {
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

void CudaBackend::rope_backward(Tensor& dx, const Tensor& positions, double theta) {
  expect_device(positions, DType::i32, "rope_backward", "positions");
  expect(one_float_dtype({&dx}) && dx.rank() == 3 && positions.numel() == dx.dim(0), "rope_backward",
         described({{"dx", &dx}, {"positions", &positions}}));
  cuda::rope_backward({.dx = dx.raw(), .positions = positions.data<int32_t>(), .tokens = dx.dim(0),
                       .heads = dx.dim(1), .head_dim = dx.dim(2), .theta = theta, .f32 = dx.dtype() == DType::f32},
                      stream_);
  cuda::check_launch("rope_backward");
}

void CudaBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                                  Tensor& d_up) {
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

void CudaBackend::dropout(const Tensor& x, float p, uint64_t seed, Tensor& out) {
  expect(one_float_dtype({&x, &out}) && x.numel() == out.numel() && p >= 0.0f && p < 1.0f, "dropout",
         described({{"x", &x}, {"out", &out}}) + " p " + std::to_string(p));
  cuda::dropout({.x = x.raw(), .out = out.raw(), .n = x.numel(), .p = p, .seed = seed, .f32 = x.dtype() == DType::f32},
                stream_);
  cuda::check_launch("dropout");
}

void CudaBackend::attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads g,
                                     const AttentionParams& p) {
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

double CudaBackend::cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits) {
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

void CudaBackend::embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table) {
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

}  // namespace wick
