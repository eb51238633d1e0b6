// Kernels that copy whole rows by index (rows.cu): the embedding gather, the KV-cache scatter, and the first kernel
// of a fused decode step. Pointers are device pointers; indices are read on the device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// out[t, :] = table[ids[t], :].  table [vocab, hidden] bf16; ids i32 [n]; out [n, hidden] bf16.
void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t hidden, cudaStream_t stream);

/// dst[rows[i], :] = src[i, :] for n rows of row_bytes bytes each.
void scatter_rows(const void* src, void* dst, const int32_t* rows, int64_t n, int64_t row_bytes, cudaStream_t stream);

/// FusedDecode::begin_step: x = embed[*id], and table_bytes copied into `table` from the device address stored at
/// `source`, so that choosing another adapter changes one input of a recorded step.
struct BeginStepParams {
  const void* embed = nullptr;   // [vocab, hidden] bf16
  const int32_t* id = nullptr;   // [1]
  void* x = nullptr;             // [hidden] bf16
  int64_t hidden = 0;
  const void* source = nullptr;  // 8 bytes, 8-byte aligned: the address of the table to install
  void* table = nullptr;         // 8-byte aligned
  int64_t table_bytes = 0;       // a multiple of 8 (a LoraEntry table is)
};
void begin_step(const BeginStepParams& p, cudaStream_t stream);

}  // namespace wick::cuda
