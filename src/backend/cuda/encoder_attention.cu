// Bidirectional flash attention within each sequence of a packed batch, on tensor cores: the tiles, the mma
// fragments and the online softmax of the causal prefill kernel (flash_tile.cuh), with a block per (128-query tile
// of one sequence, head) whose keys are all of that sequence's rows, and MPNet's relative-position bias added to the
// scores from a per-block table of the bias of each distance j − i. Every query tile reads all of its sequence's K
// and V, so tiles of 128 (the causal kernel's are 64) read them from L2 half as often. For head dims up to 64 each of
// the 4 warps takes 32 queries, two mma row groups that share every K and V fragment they load from shared memory
// (on an H100, against 8 warps of 16 queries: 91.6 against 110 µs for MiniLM's 12 heads of 32 at 32 × 512 tokens,
// 143 against 151 µs for BERT-base's 12 of 64); larger head dims (whose accumulators would not fit twice) take 8
// warps of 16.
#include "backend/cuda/encoder_attention.h"

#include <climits>
#include <cmath>
#include <type_traits>

#include "backend/cuda/flash_tile.cuh"

namespace wick::cuda {

namespace {

using namespace attention_kernels;
using namespace flash;

constexpr int kEncoderQueryTile = 128;
// Row groups of 16 a warp takes for head dim D, and the threads of a block whose warps take G groups each.
template <int D>
constexpr int kGroups = D <= 64 ? 2 : 1;
template <int G>
constexpr int kEncoderThreads = 32 * kEncoderQueryTile / (16 * G);

struct EncoderParams {
  const bf16 *q, *k, *v;
  const int32_t* starts;
  bf16* out;
  const bf16* bias;  // [num_buckets, heads] or null
  int64_t rows;
  int max_len;
  int tiles;  // query tiles per sequence (of the longest)
  int heads, kv_heads;
  int num_buckets;
  float scale_log2;
  float log_ratio;  // log(max_distance / max_exact) as transformers computes it: in double, then used as an f32
};

// transformers' MPNet relative_position_bucket of one distance j − i, in its f32 arithmetic, so that the bucket
// edges (where the log lands on an integer) fall where they fall there.
__device__ int relative_bucket(int relative, int num_buckets, float log_ratio) {
  const int half = num_buckets / 2, max_exact = half / 2;
  const int n = relative > 0 ? relative : -relative;
  const int sign = relative > 0 ? half : 0;  // transformers' n = −relative < 0
  if (n < max_exact) return sign + n;
  const float large = logf(float(n) / float(max_exact)) / log_ratio * float(half - max_exact);
  return sign + min(max_exact + int(large), half - 1);
}

// The bias table's floats: one per distance j − i in [−(max_len − 1), max_len − 1], so that a score finds its bias
// at a constant offset from its row's base, with no clamping.
int64_t bias_floats(int64_t max_len) { return 2 * max_len - 1; }

// Grid (sequence · tiles + query tile, head); blocks past their sequence's end return at once. A warp whose rows
// all lie past the end still stages tiles (every thread copies its share) but computes nothing. A sequence longer
// than max_len is cut to it (callers validate; this keeps reads in bounds).
template <int D, bool kBias, int G>
__global__ void __launch_bounds__(kEncoderThreads<G>) encoder_kernel(EncoderParams p) {
  constexpr int kThreadsHere = kEncoderThreads<G>;
  extern __shared__ uint4 shared[];
  bf16* tiles = reinterpret_cast<bf16*>(shared);                         // [stage][K, V][kKeyTile][kRow<D>]
  float* bias = reinterpret_cast<float*>(shared + tile_bytes<D>() / 16);  // [distance j − i + max_len − 1]

  const int64_t seq = blockIdx.x / p.tiles;
  const int tile = blockIdx.x % p.tiles;
  const int64_t start = min(max(int64_t(p.starts[seq]), int64_t(0)), p.rows);  // clamped: reads stay in bounds
  const int len = int(min(min(max(int64_t(p.starts[seq + 1]), start), p.rows) - start, int64_t(p.max_len)));
  if (tile * kEncoderQueryTile >= len) return;

  const int h = blockIdx.y, kvh = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad = lane % 4;
  // Positions within the sequence: group g's rows i0[g] and i0[g] + 8.
  const int warp_first = tile * kEncoderQueryTile + warp * 16 * G;
  int i0[G], i1[G];
#pragma unroll
  for (int g = 0; g < G; ++g) i0[g] = warp_first + g * 16 + lane / 4, i1[g] = i0[g] + 8;
  const bool warp_has = warp_first < len;
  const int key_tiles = int(ceil_div(len, kKeyTile));
  stage_kv<D, kThreadsHere>(tiles, 0, p.k, p.v, start, len, p.kv_heads, kvh);

  if constexpr (kBias) {  // the distances of this sequence, |j − i| < len; read after the first tile's barrier
    for (int r = p.max_len - len + int(threadIdx.x); r < p.max_len + len - 1; r += kThreadsHere)
      bias[r] = __bfloat162float(
                    p.bias[relative_bucket(r - (p.max_len - 1), p.num_buckets, p.log_ratio) * p.heads + h]) *
                kLog2e;
  }

  QueryRows<D, G> rows;
#pragma unroll
  for (int g = 0; g < G; ++g)
    rows.begin(g, p.q, start + i0[g], start + i1[g], i0[g] < len, i1[g] < len, p.heads, h, lane);
  for (int kt = 0; kt < key_tiles; ++kt) {
    const int first_key = kt * kKeyTile;
    if (kt + 1 < key_tiles) {
      stage_kv<D, kThreadsHere>(tiles, (kt + 1) % 2, p.k, p.v, start + first_key + kKeyTile,
                                len - first_key - kKeyTile, p.kv_heads, kvh);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (warp_has) {
      float s[G][kKeyBlocks][4];
      rows.scores(s, key_tile<D>(tiles, kt % 2), lane);
      // Score s[g][nb][c] is key first_key + 2·quad + t (t = nb·8 + c % 2) of row i0[g] (c < 2) or i1[g]: its bias
      // sits at t past the row's base. Rows past the sequence read the last row's (they are never stored), so that
      // every distance stays in the table.
      const int key0 = first_key + 2 * quad;
      // Without a bias the scores go to absorb unscaled (it scales them in the FMA that subtracts the max).
      const auto finish_scores = [&](auto last_tile) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float* base0 = bias + (p.max_len - 1) + key0 - min(i0[g], len - 1);
          const float* base1 = bias + (p.max_len - 1) + key0 - min(i1[g], len - 1);
#pragma unroll
          for (int nb = 0; nb < kKeyBlocks; ++nb)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              const int t = nb * 8 + c % 2;
              if (decltype(last_tile)::value && key0 + t >= len) s[g][nb][c] = -INFINITY;  // past the sequence
              else if constexpr (kBias) s[g][nb][c] = fmaf(s[g][nb][c], p.scale_log2, (c < 2 ? base0 : base1)[t]);
            }
        }
      };
      if (first_key + kKeyTile > len) finish_scores(std::true_type{});
      else if constexpr (kBias) finish_scores(std::false_type{});
      rows.absorb(s, kBias ? 1.0f : p.scale_log2, value_tile<D>(tiles, kt % 2), lane);
    }
    __syncthreads();  // the next iteration stages into this buffer
  }
#pragma unroll
  for (int g = 0; g < G; ++g)
    rows.finish(g, p.out, start + i0[g], start + i1[g], i0[g] < len, i1[g] < len, p.heads, h, lane);
}

template <int D, bool kBias, int G = kGroups<D>>
void launch(const EncoderAttentionParams& a, cudaStream_t stream) {
  constexpr auto kernel = encoder_kernel<D, kBias, G>;
  // The limit is raised once, for the largest table a launch may ask for.
  allow_shared_bytes<kernel>(tile_bytes<D>() + sizeof(float) * bias_floats(kEncoderMaxBiasLen));
  const size_t bytes = tile_bytes<D>() + (kBias ? sizeof(float) * bias_floats(a.max_len) : 0);
  const int tiles = int(ceil_div(a.max_len, kEncoderQueryTile));
  const int half = int(a.num_buckets / 2);
  const EncoderParams p{
      .q = static_cast<const bf16*>(a.q), .k = static_cast<const bf16*>(a.k), .v = static_cast<const bf16*>(a.v),
      .starts = a.starts, .out = static_cast<bf16*>(a.out), .bias = static_cast<const bf16*>(a.bias),
      .rows = a.rows, .max_len = int(a.max_len), .tiles = tiles, .heads = int(a.heads), .kv_heads = int(a.kv_heads),
      .num_buckets = int(a.num_buckets), .scale_log2 = a.scale * kLog2e,
      .log_ratio = kBias ? float(std::log(double(a.max_distance) / double(half / 2))) : 0.0f};
  const dim3 grid(unsigned(a.sequences * tiles), unsigned(a.heads));
  kernel<<<grid, kEncoderThreads<G>, bytes, stream>>>(p);
}

// Calls f(std::integral_constant<int, D>{}) for D = head_dim, a multiple of 16 up to 128; false for any other.
template <class F>
bool with_encoder_head_dim(int64_t head_dim, F&& f) {
  switch (head_dim) {
    case 16: f(std::integral_constant<int, 16>{}); return true;
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 48: f(std::integral_constant<int, 48>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 80: f(std::integral_constant<int, 80>{}); return true;
    case 96: f(std::integral_constant<int, 96>{}); return true;
    case 112: f(std::integral_constant<int, 112>{}); return true;
    case 128: f(std::integral_constant<int, 128>{}); return true;
    default: return false;
  }
}

}  // namespace

bool encoder_attention_supports(const EncoderAttentionParams& p) {
  const bool dims = with_encoder_head_dim(p.head_dim, [](auto) {});
  return dims && (!p.bias || p.max_len <= kEncoderMaxBiasLen) && p.max_len <= INT_MAX / 2;
}

bool encoder_attention(const EncoderAttentionParams& p, cudaStream_t stream) {
  if (!encoder_attention_supports(p)) return false;
  if (p.rows == 0 || p.sequences == 0 || p.max_len == 0) return true;
  return with_encoder_head_dim(p.head_dim, [&](auto d) {
    if (p.bias) launch<d.value, true>(p, stream);
    else launch<d.value, false>(p, stream);
  });
}

}  // namespace wick::cuda
