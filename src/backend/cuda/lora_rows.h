// The LoRA path of a batch whose rows carry different adapters (lora_rows.cu; Backend::lora_rows): a gather per row
// (Punica's BGMV), so that a batch of 8 adapters costs what a batch of one does.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

struct LoraRowsParams {
  const void* x = nullptr;                   // [n, in] bf16
  const unsigned long long* tables = nullptr;  // [n] device addresses of LoraEntry tables (0: no adapter)
  int64_t slot = 0;                          // the projection's entry in each table
  void* out = nullptr;                       // [n, out] bf16, accumulated into
  float* low = nullptr;                      // [n, max_rank] f32 scratch
  int64_t n = 0, in = 0, outs = 0;
  int32_t max_rank = 0;                      // every rank in the tables is at most this
};

/// out[t] += scale · B·(A·x[t]) with (A [rank, in], B [outs, rank], scale, rank) the entry `slot` of row t's table;
/// rows without a table or with rank 0 are left alone. Two kernels: the shrink into `low`, then the expand.
void lora_rows(const LoraRowsParams& p, cudaStream_t stream);

}  // namespace wick::cuda
