// Tiled flash attention on tensor cores (mma.sync m16n8k16, bf16 in, f32 accumulate) for many queries: a block
// owns 64 queries of one head and walks 64-key tiles, double-buffered in shared memory by cp.async, with an online
// softmax (flash_tile.cuh). Causal: query i sees keys [0, positions[i]].
#include "backend/cuda/attention_prefill.h"

#include <climits>
#include <cmath>

#include "backend/cuda/flash_tile.cuh"

namespace wick::cuda {

namespace {

using namespace attention_kernels;
using namespace flash;

struct PrefillParams {
  const bf16 *q, *k, *v;
  const int32_t* positions;
  bf16* out;
  int64_t queries, capacity;
  int heads, kv_heads;
  float scale_log2;
};

// Grid (query tile, head).
template <int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillParams p) {
  extern __shared__ uint4 shared[];
  bf16* tiles = reinterpret_cast<bf16*>(shared);  // [stage][K, V][kKeyTile][kRow<D>]
  __shared__ int warp_last[kWarps];

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest (latest) query tiles start first
  const int h = blockIdx.y, kvh = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad = lane % 4;
  const int64_t row0 = int64_t(tile) * kQueryTile + warp * 16 + lane / 4, row1 = row0 + 8;
  const bool has0 = row0 < p.queries, has1 = row1 < p.queries;
  const int pos0 = has0 ? p.positions[row0] : -1, pos1 = has1 ? p.positions[row1] : -1;
  // Keys some row of this warp sees, and keys every row sees (no mask needed below it).
  const int warp_max = __reduce_max_sync(0xffffffffu, max(pos0, pos1));
  const int warp_min = __reduce_min_sync(0xffffffffu, min(has0 ? pos0 : INT_MAX, has1 ? pos1 : INT_MAX));
  if (lane == 0) warp_last[warp] = warp_max;
  __syncthreads();
  int block_last = warp_last[0];
  for (int w = 1; w < kWarps; ++w) block_last = max(block_last, warp_last[w]);
  const int64_t keys = min(int64_t(block_last) + 1, p.capacity);
  const auto stage_tile = [&](int64_t kt, int stage) {
    stage_kv<D>(tiles, stage, p.k, p.v, kt * kKeyTile, keys - kt * kKeyTile, p.kv_heads, kvh);
  };

  QueryRows<D> rows;
  rows.begin(0, p.q, row0, row1, has0, has1, p.heads, h, lane);
  const int64_t key_tiles = ceil_div(keys, kKeyTile);
  if (key_tiles > 0) stage_tile(0, 0);
  for (int64_t kt = 0; kt < key_tiles; ++kt) {
    if (kt + 1 < key_tiles) {
      stage_tile(kt + 1, (kt + 1) % 2);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int64_t first_key = kt * kKeyTile;
    if (first_key <= warp_max) {
      float s[1][kKeyBlocks][4];
      rows.scores(s, key_tile<D>(tiles, kt % 2), lane);
      const bool mask = first_key + kKeyTile - 1 > warp_min;
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int64_t key = first_key + nb * 8 + 2 * quad + c % 2;
          const bool seen = !mask || key <= (c < 2 ? pos0 : pos1);
          if (!seen) s[0][nb][c] = -INFINITY;
        }
      rows.absorb(s, p.scale_log2, value_tile<D>(tiles, kt % 2), lane);
    }
    __syncthreads();  // the next iteration stages into this buffer
  }
  rows.finish(0, p.out, row0, row1, has0, has1, p.heads, h, lane);
}

template <int D>
void launch_prefill(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                    const AttentionShape& s, cudaStream_t stream) {
  constexpr size_t bytes = tile_bytes<D>();
  allow_shared_bytes<prefill_kernel<D>>(bytes);
  const PrefillParams p{.q = static_cast<const bf16*>(q), .k = static_cast<const bf16*>(k),
                        .v = static_cast<const bf16*>(v), .positions = positions, .out = static_cast<bf16*>(out),
                        .queries = s.queries, .capacity = s.capacity, .heads = int(s.heads),
                        .kv_heads = int(s.kv_heads), .scale_log2 = s.scale * kLog2e};
  const dim3 grid(unsigned(ceil_div(s.queries, kQueryTile)), unsigned(s.heads));
  prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
}

}  // namespace

bool attention_prefill(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                       const AttentionShape& s, cudaStream_t stream) {
  if (s.head_dim > kPrefillMaxHeadDim) return false;
  return with_head_dim(s.head_dim, [&](auto d) {
    if constexpr (d.value <= kPrefillMaxHeadDim) launch_prefill<d.value>(q, k, v, positions, out, s, stream);
  });
}

}  // namespace wick::cuda
