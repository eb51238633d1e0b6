// RMSNorm and LayerNorm kernels (norm.cu): bf16 in memory, f32 sums.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// Per row: out = x / sqrt(mean(x²) + eps) * weight.  x, out [rows, n] bf16; weight [n] bf16.
void rmsnorm(const void* x, const void* weight, void* out, int64_t rows, int64_t n, float eps, cudaStream_t stream);

/// The residual add folded into the next norm.
struct AddRmsNormParams {
  void* x = nullptr;             // [rows, n] bf16: x += delta, rounded as add() does
  const void* delta = nullptr;   // [rows, n] bf16
  const void* weight = nullptr;  // [n] bf16
  void* normed = nullptr;        // [rows, n] bf16: rmsnorm of the updated x
  int64_t rows = 0, n = 0;
  float eps = 0.0f;
};
void add_rmsnorm(const AddRmsNormParams& p, cudaStream_t stream);

/// LayerNorm of the residual add (BERT's post-norm): out = layernorm(x + residual) · weight + bias per row, the
/// biased variance, x + residual kept in f32. out may alias x or residual.
struct LayerNormParams {
  const void* x = nullptr;         // [rows, n] bf16
  const void* residual = nullptr;  // [rows, n] bf16, or null: layernorm(x)
  const void* weight = nullptr;    // [n] bf16
  const void* bias = nullptr;      // [n] bf16
  void* out = nullptr;             // [rows, n] bf16
  int64_t rows = 0, n = 0;
  float eps = 0.0f;
};
void layer_norm(const LayerNormParams& p, cudaStream_t stream);

}  // namespace wick::cuda
