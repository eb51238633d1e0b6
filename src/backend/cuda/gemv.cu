// Fused one-token GEMV kernels. One to four warps own a pair of output rows (several when the rows are long and
// few, splitting the input between them) and stream both weight rows with several 16-byte loads in flight per
// lane: decode is bound by how fast the weights arrive, and at 0.5B by how many memory round trips lie on the
// critical path, so the weight loads go first and nothing else waits in line before them. The RMSNorm before
// the product is folded in as dot(w, x ⊙ g) · rsqrt(mean(x²) + eps), mean(x²) summed from the same loads of x;
// the epilogue (operands fetched up front) does the bias, RoPE and cache write, SwiGLU or residual add. A pair
// is the two halves (i, i + d/2) of a rotated head, the same row of gate and up, or two neighbouring rows.
//
// LoRA: the first `shrink_blocks` blocks compute t = A·n (rank values per projection) while the others stream W,
// then add scale · B[row]·t. Each t value is published as one 8-byte word together with the step counter
// (epoch) of the run that wrote it, so a reader spins on exactly the values it needs, no fence or flag in
// between, and nothing needs resetting between graph replays. Waiting is safe because blocks are dispatched in
// index order: the shrink blocks run before any block that waits on them. Projections without an adapter (rank
// 0 in the device table, as for every projection when no adapter is in effect) neither compute nor wait.
#include <cuda_bf16.h>

#include <cmath>

#include "backend/cuda/gemv.h"
#include "backend/cuda/reduce.cuh"

namespace wick::cuda {

namespace {

using bf16 = __nv_bfloat16;
using Slot = unsigned long long;  // a published t value: epoch in the high half, the f32 bits in the low
constexpr int kWarps = 4;         // per block
constexpr int kThreads = kWarps * 32;
constexpr int kMaxSegs = 3;
constexpr int kRank = kFusedLoraMaxRank;
static_assert(kMaxSegs * kRank * sizeof(Slot) <= kFusedLoraScratchBytes, "LoRA scratch too small");

enum class Epilogue { attention_inputs, gate_up, residual, f32 };

struct Args {
  const bf16* x = nullptr;
  const bf16* norm = nullptr;
  float eps = 0.0f;
  int k = 0;
  const bf16* w[kMaxSegs] = {};
  const bf16* bias[kMaxSegs] = {};
  int segs = 1;   // projections of this launch (LoRA entries)
  int pairs = 0;  // row pairs
  int rows = 0;   // rows of w[0] (residual and f32: the last pair may have one row)
  int wpp = 1;    // warps per pair (1, 2 or 4); the shrink uses as many
  int heads = 0, kv_heads = 0, d = 0;  // attention inputs
  const int32_t* pos = nullptr;
  double log_theta = 0.0;
  bf16* out = nullptr;  // q, h or the residual stream
  float* out_f32 = nullptr;
  bf16* k_cache = nullptr;
  bf16* v_cache = nullptr;
  const LoraEntry* lora = nullptr;  // [segs], or null
  Slot* t = nullptr;                // [segs][kRank]
  const int32_t* epoch = nullptr;
  int shrink_blocks = 0;
};

struct Pair {
  int seg0 = 0, row0 = 0, seg1 = 0, row1 = 0;
  bool second = true;  // row1 exists
};

__device__ inline void unpack8(const uint4& v, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 p = __bfloat1622float2(h[j]);
    f[2 * j] = p.x;
    f[2 * j + 1] = p.y;
  }
}

__device__ inline float dot8(const uint4& w, const float (&x)[8], float acc) {
  float f[8];
  unpack8(w, f);
#pragma unroll
  for (int j = 0; j < 8; ++j) acc = fmaf(f[j], x[j], acc);
  return acc;
}

// Partial sums of one lane: w0·n, w1·n and Σx² over its chunks, where n = x ⊙ norm (or x).
struct Sums {
  float s0 = 0.0f, s1 = 0.0f, ss = 0.0f;
};

// 16 bytes of a weight row, read once per step: streamed (evict-first in L1 and L2), so that what is read again
// soon (the input rows, a LoRA adapter's factors, the KV cache) stays in L2 across steps.
__device__ inline uint4 load_weights(const uint4* p) { return __ldcs(p); }

// Chunks (8 elements) first, first + step, ... of w0, w1 and x, U chunks of each row in flight. `issued` runs
// once, after the first chunks' loads are on their way (other loads can ride along with them there).
template <bool Norm, int U, class Issued>
__device__ Sums dot2(const bf16* w0, const bf16* w1, const Args& a, int first, int step, Issued issued) {
  const int chunks = a.k / 8;
  const uint4* r0 = reinterpret_cast<const uint4*>(w0);
  const uint4* r1 = reinterpret_cast<const uint4*>(w1);
  const uint4* xs = reinterpret_cast<const uint4*>(a.x);
  const uint4* gs = reinterpret_cast<const uint4*>(a.norm);
  Sums s;
  bool pending = true;
  for (int base = first; base < chunks; base += step * U) {
    uint4 v0[U], v1[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + step * u;
      v0[u] = c < chunks ? load_weights(r0 + c) : make_uint4(0, 0, 0, 0);
      v1[u] = c < chunks ? load_weights(r1 + c) : make_uint4(0, 0, 0, 0);
    }
    if (pending) {
      issued();
      pending = false;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + step * u;
      if (c >= chunks) break;
      float x[8];
      unpack8(__ldg(xs + c), x);
      if constexpr (Norm) {
        float g[8];
        unpack8(__ldg(gs + c), g);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          s.ss = fmaf(x[j], x[j], s.ss);
          x[j] *= g[j];
        }
      }
      s.s0 = dot8(v0[u], x, s.s0);
      s.s1 = dot8(v1[u], x, s.s1);
    }
  }
  if (pending) issued();
  return s;
}

__device__ inline Sums warp_sums(Sums s) {
  for (int o = 16; o > 0; o >>= 1) {
    s.s0 += __shfl_xor_sync(0xffffffffu, s.s0, o);
    s.s1 += __shfl_xor_sync(0xffffffffu, s.s1, o);
    s.ss += __shfl_xor_sync(0xffffffffu, s.ss, o);
  }
  return s;
}

// w0·n and w1·n (norm applied) and Σx² for the pair owned by warps [warp - part, warp - part + wpp): the lead
// warp (part 0) gets the totals. Every thread of the block calls this (a barrier when wpp > 1).
template <bool Norm, int U, class Issued>
__device__ Sums pair_sums(const bf16* w0, const bf16* w1, const Args& a, bool valid, int warp, int part, int lane,
                          Issued issued) {
  Sums s;
  if (valid) s = warp_sums(dot2<Norm, U>(w0, w1, a, part * 32 + lane, a.wpp * 32, issued));
  if (a.wpp > 1) {
    __shared__ Sums parts[kWarps];
    if (lane == 0) parts[warp] = s;
    __syncthreads();
    if (valid && part == 0)
      for (int w = 1; w < a.wpp; ++w) {
        s.s0 += parts[warp + w].s0;
        s.s1 += parts[warp + w].s1;
        s.ss += parts[warp + w].ss;
      }
    __syncthreads();  // parts[] is read before any warp can call this again and overwrite it
  }
  const float inv = Norm ? rsqrtf(s.ss / float(a.k) + a.eps) : 1.0f;
  s.s0 *= inv;
  s.s1 *= inv;
  return s;
}

// t[seg][j] = A_seg[j]·n for every rank row, a pair of rows per wpp warps, each value published with the epoch.
template <bool Norm, int U>
__device__ void shrink(const Args& a, int warp, int lane) {
  const int per_block = kWarps / a.wpp, part = warp % a.wpp;
  const int32_t epoch = *a.epoch;
  // The shrink blocks cover the segs · kRank / 2 pairs exactly once (one pass). When wpp > 1, pair_sums holds
  // barriers: then per_block is 1 or 2 and divides segs · 32, so every warp of a shrink block has a pair.
  for (int r = (int(blockIdx.x) * per_block + warp / a.wpp) * 2; r < a.segs * kRank;
       r += a.shrink_blocks * per_block * 2) {
    const int seg = r / kRank, j = r % kRank;  // r is even and kRank too: r + 1 is in the same projection
    const LoraEntry e = a.lora[seg];
    const bool valid = j < e.rank, second = j + 1 < e.rank;  // the same for the pair's warps
    if (!valid && a.wpp == 1) continue;
    const bf16* rows = static_cast<const bf16*>(e.a);
    const Sums s = pair_sums<Norm, U>(rows + int64_t(j) * a.k, rows + int64_t(second ? j + 1 : j) * a.k, a, valid,
                                      warp, part, lane, [] {});
    if (valid && part == 0 && lane < 2 && (lane == 0 || second)) {
      const float v = lane == 0 ? s.s0 : s.s1;
      const Slot word = Slot(uint32_t(epoch)) << 32 | __float_as_uint(v);
      *reinterpret_cast<volatile Slot*>(a.t + seg * kRank + j + lane) = word;  // value and epoch in one store
    }
  }
}

// B[row][lane] and B[row][lane + 32] of projection `e` (rank ≤ 64), 0 past its rank.
struct BRow {
  float lo = 0.0f, hi = 0.0f;
};

__device__ inline BRow b_row(const LoraEntry& e, int row, int lane) {
  BRow r;
  const bf16* b = static_cast<const bf16*>(e.b) + int64_t(row) * e.rank;
  if (lane < e.rank) r.lo = __bfloat162float(b[lane]);
  if (lane + 32 < e.rank) r.hi = __bfloat162float(b[lane + 32]);
  return r;
}

// This step's t[seg][j], once its shrink block has published it.
__device__ inline float await_t(const Args& a, int seg, int j, int32_t epoch) {
  const volatile Slot* slot = a.t + seg * kRank + j;
  Slot word = *slot;
  while (int32_t(word >> 32) != epoch) {
    __nanosleep(20);
    word = *slot;
  }
  return __uint_as_float(uint32_t(word));
}

// scale · B[row]·t of projection `e` for this step (0 without an adapter); the whole warp calls this.
__device__ float lora_delta(const Args& a, const LoraEntry& e, const BRow& b, int seg, int lane, int32_t epoch) {
  if (e.rank == 0) return 0.0f;
  float s = 0.0f;
  if (lane < e.rank) s = b.lo * await_t(a, seg, lane, epoch);
  if (lane + 32 < e.rank) s = fmaf(b.hi, await_t(a, seg, lane + 32, epoch), s);
  return warp_sum(s) * e.scale;
}

template <Epilogue E>
__device__ Pair pair_of(const Args& a, int p) {
  Pair pr;
  if constexpr (E == Epilogue::attention_inputs) {
    const int half = a.d / 2, head = p / half, i = p % half;
    pr.seg0 = head < a.heads ? 0 : head < a.heads + a.kv_heads ? 1 : 2;
    const int local = head - (pr.seg0 == 0 ? 0 : pr.seg0 == 1 ? a.heads : a.heads + a.kv_heads);
    pr.seg1 = pr.seg0;
    pr.row0 = local * a.d + i;
    pr.row1 = pr.row0 + half;
  } else if constexpr (E == Epilogue::gate_up) {
    pr.seg1 = 1;
    pr.row0 = pr.row1 = p;
  } else {
    pr.row0 = 2 * p;
    pr.second = 2 * p + 1 < a.rows;
    pr.row1 = pr.second ? 2 * p + 1 : 2 * p;
  }
  return pr;
}

__device__ inline float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

// Epilogue operands, loaded at the start so that their round trips overlap the weight loads.
struct Operands {
  float b0 = 0.0f, b1 = 0.0f;  // bias (attention inputs) or the residual stream's values (residual)
  int pos = 0;
};

template <Epilogue E>
__device__ Operands operands_of(const Args& a, const Pair& pr) {
  Operands o;
  if constexpr (E == Epilogue::attention_inputs) {
    o.pos = *a.pos;
    if (a.bias[pr.seg0]) {
      o.b0 = __bfloat162float(a.bias[pr.seg0][pr.row0]);
      o.b1 = __bfloat162float(a.bias[pr.seg0][pr.row1]);
    }
  } else if constexpr (E == Epilogue::residual) {
    o.b0 = __bfloat162float(a.out[pr.row0]);
    o.b1 = __bfloat162float(a.out[pr.row1]);
  }
  return o;
}

// The products s0, s1 (normed, LoRA added) of the pair become outputs.
template <Epilogue E>
__device__ void finish(const Args& a, const Pair& pr, const Operands& o, float s0, float s1) {
  if constexpr (E == Epilogue::attention_inputs) {
    const int seg = pr.seg0;
    const float v0 = round_bf16(s0 + o.b0), v1 = round_bf16(s1 + o.b1);  // the projection's output, as stored
    const int64_t cache_row = int64_t(o.pos) * a.kv_heads * a.d;
    if (seg == 2) {
      a.v_cache[cache_row + pr.row0] = __float2bfloat16(v0);
      a.v_cache[cache_row + pr.row1] = __float2bfloat16(v1);
      return;
    }
    const int i = pr.row0 % a.d;
    const float inv_freq = float(exp(-a.log_theta * double(2 * i) / double(a.d)));  // f32, as transformers
    float sn, cs;
    sincosf(float(o.pos) * inv_freq, &sn, &cs);
    bf16* dst = seg == 0 ? a.out : a.k_cache + cache_row;
    dst[pr.row0] = __float2bfloat16(v0 * cs - v1 * sn);
    dst[pr.row1] = __float2bfloat16(v1 * cs + v0 * sn);
  } else if constexpr (E == Epilogue::gate_up) {
    const float g = round_bf16(s0), u = round_bf16(s1);
    a.out[pr.row0] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
  } else if constexpr (E == Epilogue::residual) {
    a.out[pr.row0] = __float2bfloat16(o.b0 + round_bf16(s0));
    if (pr.second) a.out[pr.row1] = __float2bfloat16(o.b1 + round_bf16(s1));
  } else {
    a.out_f32[pr.row0] = s0;
    if (pr.second) a.out_f32[pr.row1] = s1;
  }
}

// Blocks [0, shrink_blocks) compute the LoRA shrink; each later block owns kWarps / wpp pairs. Launches without
// a LoRA table take the Lora = false build, which carries none of its registers or loads.
template <Epilogue E, bool Norm, int U, bool Lora>
__global__ void __launch_bounds__(kThreads) fused_gemv_kernel(const Args a) {
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (Lora && int(blockIdx.x) < a.shrink_blocks) {
    shrink<Norm, U>(a, warp, lane);
    return;
  }
  const int p = (int(blockIdx.x) - a.shrink_blocks) * (kWarps / a.wpp) + warp / a.wpp, part = warp % a.wpp;
  const bool valid = p < a.pairs, lead = valid && part == 0;
  const Pair pr = valid ? pair_of<E>(a, p) : Pair{};
  // Loaded now, used at the end: their round trips overlap the weight loads.
  Operands o;
  if (lead && lane == 0) o = operands_of<E>(a, pr);
  LoraEntry e0, e1;
  int32_t epoch = 0;
  if (Lora && lead) {
    e0 = a.lora[pr.seg0];
    e1 = a.lora[pr.seg1];
    epoch = *a.epoch;
  }
  BRow b0, b1;  // fetched once the first weight loads are in flight (they need e0 and e1 first)
  const auto fetch_b = [&] {
    if (!Lora) return;
    if (e0.rank) b0 = b_row(e0, pr.row0, lane);
    if (e1.rank && pr.second) b1 = b_row(e1, pr.row1, lane);
  };
  Sums s = pair_sums<Norm, U>(a.w[pr.seg0] + int64_t(pr.row0) * a.k, a.w[pr.seg1] + int64_t(pr.row1) * a.k, a, valid,
                              warp, part, lane, fetch_b);
  if (!lead) return;
  if (Lora) {
    s.s0 += lora_delta(a, e0, b0, pr.seg0, lane, epoch);
    if (pr.second) s.s1 += lora_delta(a, e1, b1, pr.seg1, lane, epoch);
  }
  if (lane == 0) finish<E>(a, pr, o, s.s0, s.s1);
}

Args args_of(const GemvInput& in, int segs) {
  Args a;
  a.x = static_cast<const bf16*>(in.x);
  a.norm = static_cast<const bf16*>(in.norm);
  a.eps = in.eps;
  a.k = int(in.k);
  a.segs = segs;
  if (in.lora.entries) {
    a.lora = in.lora.entries;
    a.t = static_cast<Slot*>(in.lora.scratch);
    a.epoch = in.lora.epoch;
  }
  return a;
}

// Warps per pair: more when the pairs alone leave the GPU short of loads in flight, while each warp keeps at
// least two chunks per lane.
int warps_per_pair(int pairs, int k) {
  int wpp = 1;
  while (wpp < kWarps && pairs * wpp < 2048 && k / 8 / (wpp * 2) >= 64) wpp *= 2;
  return wpp;
}

template <Epilogue E, int U>
void launch_unrolled(const Args& a, unsigned blocks, cudaStream_t stream) {
  if (a.norm && a.lora) fused_gemv_kernel<E, true, U, true><<<blocks, kThreads, 0, stream>>>(a);
  else if (a.norm) fused_gemv_kernel<E, true, U, false><<<blocks, kThreads, 0, stream>>>(a);
  else if (a.lora) fused_gemv_kernel<E, false, U, true><<<blocks, kThreads, 0, stream>>>(a);
  else fused_gemv_kernel<E, false, U, false><<<blocks, kThreads, 0, stream>>>(a);
}

template <Epilogue E>
void launch(Args& a, cudaStream_t stream) {
  a.wpp = warps_per_pair(a.pairs, a.k);
  const int per_block = kWarps / a.wpp;
  if (a.lora) a.shrink_blocks = (a.segs * kRank / 2 + per_block - 1) / per_block;
  const unsigned blocks = unsigned(a.shrink_blocks + (a.pairs + per_block - 1) / per_block);
  // Long rows: eight chunks of each row in flight per lane (bandwidth-bound shapes such as 7B's).
  if (a.k / 8 / (32 * a.wpp) >= 8) launch_unrolled<E, 8>(a, blocks, stream);
  else launch_unrolled<E, 4>(a, blocks, stream);
}

// One projection whose rows pair up with their neighbours (the last pair may have one row).
Args neighbour_pairs(const GemvInput& in, const void* w, int64_t rows) {
  Args a = args_of(in, 1);
  a.w[0] = static_cast<const bf16*>(w);
  a.rows = int(rows);
  a.pairs = int((rows + 1) / 2);
  return a;
}

}  // namespace

void gemv_attention_inputs(const GemvInput& in, const void* const (&w)[3], const void* const (&bias)[3], int64_t heads,
                           int64_t kv_heads, int64_t d, const int32_t* pos, double theta, void* q_out, void* k_cache,
                           void* v_cache, cudaStream_t stream) {
  Args a = args_of(in, 3);
  for (int s = 0; s < 3; ++s) {
    a.w[s] = static_cast<const bf16*>(w[s]);
    a.bias[s] = static_cast<const bf16*>(bias[s]);
  }
  a.heads = int(heads);
  a.kv_heads = int(kv_heads);
  a.d = int(d);
  a.pairs = int((heads + 2 * kv_heads) * (d / 2));
  a.pos = pos;
  a.log_theta = std::log(theta);
  a.out = static_cast<bf16*>(q_out);
  a.k_cache = static_cast<bf16*>(k_cache);
  a.v_cache = static_cast<bf16*>(v_cache);
  launch<Epilogue::attention_inputs>(a, stream);
}

void gemv_gate_up(const GemvInput& in, const void* w_gate, const void* w_up, int64_t rows, void* h,
                  cudaStream_t stream) {
  Args a = args_of(in, 2);
  a.w[0] = static_cast<const bf16*>(w_gate);
  a.w[1] = static_cast<const bf16*>(w_up);
  a.pairs = a.rows = int(rows);
  a.out = static_cast<bf16*>(h);
  launch<Epilogue::gate_up>(a, stream);
}

void gemv_residual(const GemvInput& in, const void* w, int64_t rows, void* x, cudaStream_t stream) {
  Args a = neighbour_pairs(in, w, rows);
  a.out = static_cast<bf16*>(x);
  launch<Epilogue::residual>(a, stream);
}

void gemv_f32(const GemvInput& in, const void* w, int64_t rows, float* out, cudaStream_t stream) {
  Args a = neighbour_pairs(in, w, rows);
  a.out_f32 = out;
  launch<Epilogue::f32>(a, stream);
}

}  // namespace wick::cuda
