// Row copies by index: the embedding gather, the KV-cache scatter and a fused decode step's first kernel.
#include "backend/cuda/rows.h"

#include <cuda_bf16.h>

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kEmbeddingThreads = 256;  // per row: a few elements each for hidden sizes in the thousands
constexpr int kScatterThreads = 128;    // per row of a KV cache: a 16-byte word or a few each
// One block: a step's embedding row and adapter table are a few KB, and the kernels after it wait for all of it.
constexpr int kBeginStepThreads = 512;

__global__ void embedding_kernel(const bf16* table, const int32_t* ids, bf16* out, int64_t hidden) {
  const int64_t t = blockIdx.x;
  const bf16* src = table + int64_t(ids[t]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[t * hidden + i] = src[i];
}

// One block per row; 16-byte words when the row allows, else 2-byte ones.
template <class Word>
__global__ void scatter_rows_kernel(const Word* src, Word* dst, const int32_t* rows, int64_t words) {
  const Word* s = src + int64_t(blockIdx.x) * words;
  Word* d = dst + int64_t(rows[blockIdx.x]) * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) d[i] = s[i];
}

// x = embed[id]; table = the source table, 8 bytes at a time (a LoraEntry table is a multiple of 8 bytes).
__global__ void begin_step_kernel(const bf16* embed, const int32_t* id, bf16* x, int64_t hidden,
                                  const uint2* const* source, uint2* table, int64_t words) {
  const bf16* row = embed + int64_t(*id) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) x[i] = row[i];
  const uint2* src = *source;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) table[i] = src[i];
}

}  // namespace

void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t hidden, cudaStream_t stream) {
  if (n == 0) return;
  embedding_kernel<<<unsigned(n), kEmbeddingThreads, 0, stream>>>(static_cast<const bf16*>(table), ids,
                                                                   static_cast<bf16*>(out), hidden);
}

void scatter_rows(const void* src, void* dst, const int32_t* rows, int64_t n, int64_t row_bytes, cudaStream_t stream) {
  if (n == 0) return;
  const bool wide = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  if (wide)
    scatter_rows_kernel<uint4><<<unsigned(n), kScatterThreads, 0, stream>>>(
        static_cast<const uint4*>(src), static_cast<uint4*>(dst), rows, row_bytes / 16);
  else
    scatter_rows_kernel<uint16_t><<<unsigned(n), kScatterThreads, 0, stream>>>(
        static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), rows, row_bytes / 2);
}

void begin_step(const BeginStepParams& p, cudaStream_t stream) {
  begin_step_kernel<<<1, kBeginStepThreads, 0, stream>>>(
      static_cast<const bf16*>(p.embed), p.id, static_cast<bf16*>(p.x), p.hidden,
      static_cast<const uint2* const*>(p.source), static_cast<uint2*>(p.table), p.table_bytes / 8);
}

}  // namespace wick::cuda
