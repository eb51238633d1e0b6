// The plain one-row GEMV (gemv_plain.cu): Backend::linear for a single input row, where cuBLAS would leave most of
// the GPU idle.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// out[n] = alpha · W[n, :]·x + beta · out[n] + bias[n] for one input row.
struct GemvParams {
  const void* w = nullptr;     // [rows, k] bf16, 16-byte aligned, k % 8 == 0
  const void* x = nullptr;     // [k] bf16, 16-byte aligned
  const void* bias = nullptr;  // [rows] bf16, or null
  void* out = nullptr;         // [rows], bf16 or f32 (out_f32)
  bool out_f32 = false;
  int64_t rows = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
};

/// A warp per output row, 16-byte loads.
void gemv(const GemvParams& p, cudaStream_t stream);

}  // namespace wick::cuda
