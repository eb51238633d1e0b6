// The CUDA backend's encoder ops (cuda_backend.h): bf16 activations, f32 pooled outputs.
#include <cstdint>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/encoder_attention.h"
#include "backend/cuda/encoder_pool.h"
#include "backend/cuda/norm.h"

namespace wick {

using cuda::described;
using cuda::expect;
using cuda::expect_device;
using cuda::row_size;

void CudaBackend::layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                             float eps, Tensor& out) {
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

void CudaBackend::gelu(const Tensor& x, bool tanh, Tensor& out) {
  expect_device(x, DType::bf16, "gelu", "x");
  expect_device(out, DType::bf16, "gelu", "out");
  expect(out.shape() == x.shape(), "gelu", described({{"x", &x}, {"out", &out}}));
  cuda::gelu(x.raw(), tanh, out.raw(), x.numel(), stream_);
  cuda::check_launch("gelu");
}

void CudaBackend::encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                                    const RelativeBias& bias, Tensor& out, const AttentionParams& p) {
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

void CudaBackend::encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out) {
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

}  // namespace wick
