// The fused one-token GEMV kernel: the device half of fused_gemv.cu, which alone includes it. The design and the
// measurements behind it: docs/ARCHITECTURE.md, "Decode steps on the GPU".
//
// One to four warps own a pair of output rows (several when the rows are long and few, splitting the input between
// them; half a warp when that fits a launch in one wave) and stream both weight rows with several 16-byte loads in
// flight per lane: decode is bound by how fast the weights arrive, so the weight loads go first and nothing else
// waits in line before them. A pair is the two halves (i, i + d/2) of a rotated head, the same row of gate and up,
// or two neighbouring rows. The RMSNorm is folded in as dot(w, x ⊙ g) · rsqrt(mean(x²) + eps), mean(x²) summed
// from the same loads of x; the epilogue does the bias, RoPE and cache write, SwiGLU or residual add.
//
// LoRA (the Lora builds): blocks [0, shrink_blocks) compute t = A·n while the others stream W, then add
// scale · B[row]·t. What makes this safe without flags or resets:
//  - Blocks are dispatched in index order, so the shrink blocks run before any block that waits on them.
//  - Each t value is published as one 8-byte word together with the step's epoch (Slot). The epoch is never 0 and
//    the scratch is zeroed once by its owner, so a zeroed or earlier step's slot is never taken for this step's
//    value, and nothing needs resetting between graph replays.
//  - One warp per block waits for the t values and hands them to the others in shared memory: one reader per
//    block, because thousands of warps polling the same few words saturate the L2 slice that holds them.
//  - Projections without an adapter (rank 0 in the device table) neither compute nor wait.
//
// Chaining (chain.cuh, whose rules every kernel here follows): the first weight loads, the norm weight, the adapter
// table, B rows and A rows are read before chain_wait(); the input row and the epilogue's operands after it. Each
// kernel releases its successor at its start, except the q/k/v kernel with an adapter, whose product blocks release
// it only once their product is done: released early, the kernels after it became resident and drew on memory
// bandwidth while q/k/v still waited for its own weights.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/bf16_vector.cuh"
#include "backend/cuda/chain.cuh"
#include "backend/cuda/fused_gemv.h"

namespace wick::cuda::fused_gemv {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 4;  // per block
constexpr int kThreads = kWarps * 32;
constexpr int kHalfWarp = 16;  // lanes per pair when each half of a warp owns a pair
constexpr unsigned kPollPauseNs = 20;  // between polls of the t values: short, the shrink blocks are already running

enum class Epilogue { attention_inputs, gate_up, residual, f32 };

// The kernel's one argument, passed by value; fused_gemv.cu fills it per launch.
struct KernelParams {
  struct Input {
    const bf16* x = nullptr;     // [k]
    const bf16* norm = nullptr;  // [k] RMSNorm weight, or null
    float eps = 0.0f;
    int k = 0;  // a multiple of 8
  } in;
  const bf16* w[kMaxProjections] = {};     // [rows, k] each
  const bf16* bias[kMaxProjections] = {};  // attention inputs: [rows] or null
  struct Coverage {
    int projections = 1;     // of this launch (LoRA entries)
    int pairs = 0;           // row pairs
    int rows = 0;            // rows of w[0] (residual and f32: the last pair may have one row)
    int warps_per_pair = 1;  // 1, 2 or 4; the shrink uses as many
  } cover;
  struct Rope {  // attention inputs only
    int heads = 0, kv_heads = 0, head_dim = 0;
    const int32_t* position = nullptr;  // [1]
    const int32_t* slot = nullptr;      // [1]: the cache row k and v go to
    double log_theta = 0.0;
  } rope;
  struct Outputs {
    bf16* row = nullptr;  // q, h or the residual stream
    float* f32 = nullptr;
    bf16* k_cache = nullptr;
    bf16* v_cache = nullptr;
  } out;
  struct Lora {
    const LoraEntry* entries = nullptr;  // [projections], or null
    Slot* t = nullptr;                   // [projections][kMaxRank]
    const int32_t* epoch = nullptr;      // the step's, never 0
    int shrink_blocks = 0;
  } lora;
};

struct Pair {
  int proj0 = 0, row0 = 0, proj1 = 0, row1 = 0;
  bool second = true;  // row1 exists
};

__device__ inline float dot8(const uint4& w, const float (&x)[8], float acc) {
  float f[8];
  unpack8(w, f);
#pragma unroll
  for (int j = 0; j < 8; ++j) acc = fmaf(f[j], x[j], acc);
  return acc;
}

// Partial sums of one lane: w0·n, w1·n and Σx² over its chunks, where n = x ⊙ norm (or x).
struct PairSums {
  float s0 = 0.0f, s1 = 0.0f, ss = 0.0f;
};

// 16 bytes of a weight row, read once per step: streamed (evict-first in L1 and L2), so that what is read again
// soon (the input rows, a LoRA adapter's factors, the KV cache) stays in L2 across steps.
__device__ inline uint4 load_weights(const uint4* p) { return __ldcs(p); }

// The input row and the norm weight as 16-byte chunks in shared memory.
struct SharedRow {
  const uint4* x = nullptr;
  const uint4* g = nullptr;
};

// The input row and norm weight of a block in its dynamic shared memory (k / 8 chunks of x, then of the norm
// weight), copied by the whole block: read from global memory, each lane's chunks came one dependent round trip
// after another (no build has the registers to hold them all while its weights are in flight).
__device__ inline SharedRow shared_input(const KernelParams& a, uint4* chunks) { return {chunks, chunks + a.in.k / 8}; }

// The norm weight's copy (before the wait for the kernel ahead: no kernel of the step writes it).
template <bool Norm>
__device__ inline void stage_norm(const KernelParams& a, uint4* chunks) {
  if constexpr (Norm)
    for (int c = int(threadIdx.x); c < a.in.k / 8; c += kThreads)
      cp_async_ca<16>(chunks + a.in.k / 8 + c, reinterpret_cast<const uint4*>(a.in.norm) + c);
}

// The input row's copy, after the wait; returns once the block's copies (these and any earlier) have arrived and
// are visible to all its threads. Every thread of the block calls it once.
__device__ inline void stage_input(const KernelParams& a, uint4* chunks) {
  for (int c = int(threadIdx.x); c < a.in.k / 8; c += kThreads)
    cp_async_ca<16>(chunks + c, reinterpret_cast<const uint4*>(a.in.x) + c);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
}

// InFlight (8 elements) first, first + step, ... of w0, w1 and x, InFlight of each row in flight. `issued` runs once,
// after the first chunks' loads are on their way (other loads can ride along with them there), at the same point
// for every thread, also for those with no chunks (first ≥ k / 8).
template <bool Norm, int InFlight, class Issued>
__device__ PairSums dot2(const bf16* w0, const bf16* w1, const KernelParams& a, const SharedRow& in, int first,
                         int step, Issued issued) {
  const int chunks = a.in.k / 8;
  const uint4* r0 = reinterpret_cast<const uint4*>(w0);
  const uint4* r1 = reinterpret_cast<const uint4*>(w1);
  PairSums s;
  uint4 v0[InFlight], v1[InFlight];
  const auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < InFlight; ++u) {
      const int c = base + step * u;
      v0[u] = c < chunks ? load_weights(r0 + c) : make_uint4(0, 0, 0, 0);
      v1[u] = c < chunks ? load_weights(r1 + c) : make_uint4(0, 0, 0, 0);
    }
  };
  load(first);
  issued();
  for (int base = first; base < chunks; base += step * InFlight) {
    if (base != first) load(base);
#pragma unroll
    for (int u = 0; u < InFlight; ++u) {
      const int c = base + step * u;
      if (c >= chunks) break;
      float x[8];
      unpack8(in.x[c], x);
      if constexpr (Norm) {
        float g[8];
        unpack8(in.g[c], g);
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
  return s;
}

// Sums over the Lanes lanes of each pair (the whole warp, or each half).
template <int Lanes = 32>
__device__ inline PairSums warp_sums(PairSums s) {
  for (int o = Lanes / 2; o > 0; o >>= 1) {
    s.s0 += __shfl_xor_sync(0xffffffffu, s.s0, o);
    s.s1 += __shfl_xor_sync(0xffffffffu, s.s1, o);
    s.ss += __shfl_xor_sync(0xffffffffu, s.ss, o);
  }
  return s;
}

// w0·n and w1·n (norm applied) and Σx² for the pair owned by warps [warp - part, warp - part + warps_per_pair):
// the lead warp (part 0) gets the totals. Every thread of the block calls this (a barrier when warps_per_pair > 1).
// With Lanes = 16 (one warp per pair), each half of the warp owns a pair, and every lane of the warp calls this.
template <bool Norm, int InFlight, int Lanes = 32, class Issued>
__device__ PairSums pair_sums(const bf16* w0, const bf16* w1, const KernelParams& a, const SharedRow& in, bool valid,
                              int warp, int part, int lane, Issued issued) {
  // Every lane: those without a pair run no chunks but still call `issued`.
  const int first = valid ? (Lanes == 32 ? part * 32 + lane : lane % Lanes) : a.in.k / 8;
  PairSums s = warp_sums<Lanes>(
      dot2<Norm, InFlight>(w0, w1, a, in, first, Lanes == 32 ? a.cover.warps_per_pair * 32 : Lanes, issued));
  if (a.cover.warps_per_pair > 1) {
    __shared__ PairSums parts[kWarps];
    if (lane == 0) parts[warp] = s;
    __syncthreads();
    if (valid && part == 0)
      for (int w = 1; w < a.cover.warps_per_pair; ++w) {
        s.s0 += parts[warp + w].s0;
        s.s1 += parts[warp + w].s1;
        s.ss += parts[warp + w].ss;
      }
    __syncthreads();  // parts[] is read before any warp can call this again and overwrite it
  }
  const float inv = Norm ? rsqrtf(s.ss / float(a.in.k) + a.in.eps) : 1.0f;
  s.s0 *= inv;
  s.s1 *= inv;
  return s;
}

// A LoraEntry from its three 8-byte words: A, B, then scale (low half) and rank (high half).
__device__ inline LoraEntry entry_of(unsigned long long a, unsigned long long b, unsigned long long scale_rank) {
  static_assert(sizeof(LoraEntry) == 24 && alignof(LoraEntry) == 8, "LoraEntry layout");
  LoraEntry r;
  r.a = reinterpret_cast<const void*>(a);
  r.b = reinterpret_cast<const void*>(b);
  r.scale = __uint_as_float(uint32_t(scale_rank));
  r.rank = int32_t(scale_rank >> 32);
  return r;
}

// An entry of the adapter table. The step's first kernel writes the table, and every chained kernel starts after
// that kernel has completed (chain.cuh), so the table may be read through L1 before chain_wait(): the warps of an
// SM then share one copy instead of each asking the L2 for the same few bytes.
__device__ inline LoraEntry load_entry(const LoraEntry* e) {
  const auto* words = reinterpret_cast<const unsigned long long*>(e);
  return entry_of(__ldg(words), __ldg(words + 1), __ldg(words + 2));
}

// The launch's adapter table entries and the step's epoch: each warp copies them into its own slot in shared
// memory with cp.async before its weight loads. Held in registers instead, they were spilled by the builds short
// of registers, and the spill store waited for the load, holding the warp's weight loads back by a round trip.
struct Staged {
  unsigned long long words[kMaxProjections * 3];  // the LoraEntry of each projection, as load_entry reads it
  int32_t epoch;
};

__device__ inline void stage(const KernelParams& a, Staged& st, int lane) {
  if (lane < a.cover.projections * 3)
    cp_async_ca<8>(&st.words[lane], reinterpret_cast<const unsigned long long*>(a.lora.entries) + lane);
  if (lane == 31) cp_async_ca<4>(&st.epoch, a.lora.epoch);
  cp_async_commit();
}

// Entry `proj` of a slot the warp staged, once its copies are waited for and visible to the warp.
__device__ inline LoraEntry staged_entry(const Staged& st, int proj) {
  return entry_of(st.words[proj * 3], st.words[proj * 3 + 1], st.words[proj * 3 + 2]);
}

// t[proj][j] = A_proj[j]·n for every rank row, a pair of rows per warps_per_pair warps, each value published with
// the epoch.
template <bool Norm, int InFlight>
__device__ void shrink(const KernelParams& a, int warp, int lane) {
  const int per_block = kWarps / a.cover.warps_per_pair, part = warp % a.cover.warps_per_pair;
  const int32_t epoch = __ldcg(a.lora.epoch);
  extern __shared__ uint4 input_chunks[];
  stage_norm<Norm>(a, input_chunks);
  // The shrink blocks cover the projections · kMaxRank / 2 row pairs exactly once: per_block (1, 2 or 4) divides
  // projections · 32, so every warp has exactly one pair slot r, with rank rows or not, and calls pair_sums once
  // (its barriers).
  const int r = (int(blockIdx.x) * per_block + warp / a.cover.warps_per_pair) * 2;
  const int proj = r / kMaxRank, j = r % kMaxRank;  // r is even and kMaxRank too: r + 1 is in the same projection
  const LoraEntry e = load_entry(a.lora.entries + proj);
  const bool valid = j < e.rank, second = j + 1 < e.rank;  // the same for the pair's warps
  const bf16* rows = valid ? static_cast<const bf16*>(e.a) + int64_t(j) * a.in.k : nullptr;
  const PairSums s = pair_sums<Norm, InFlight>(rows, rows && second ? rows + a.in.k : rows, a,
                                             shared_input(a, input_chunks), valid, warp, part, lane, [&] {
                                               chain_wait();
                                               stage_input(a, input_chunks);
                                             });
  if (valid && part == 0 && lane < 2 && (lane == 0 || second)) {
    const float v = lane == 0 ? s.s0 : s.s1;
    const Slot word = Slot(uint32_t(epoch)) << 32 | __float_as_uint(v);
    *reinterpret_cast<volatile Slot*>(a.lora.t + proj * kMaxRank + j + lane) = word;  // value and epoch in one store
  }
}

// B[row][j] of projection `e` (rank ≤ kMaxRank) for the lane's j = lane % Lanes + Lanes·i, 0 past its rank.
template <int Lanes = 32>
struct BRow {
  float v[kMaxRank / Lanes] = {};
};

template <int Lanes = 32>
__device__ inline BRow<Lanes> b_row(const bf16* b, int rank, int lane) {
  BRow<Lanes> r;
#pragma unroll
  for (int i = 0; i < kMaxRank / Lanes; ++i)
    if (lane % Lanes + Lanes * i < rank) r.v[i] = __bfloat162float(b[lane % Lanes + Lanes * i]);
  return r;
}

// Row `row` of B of projection `e` in global memory.
__device__ inline const bf16* b_row_address(const LoraEntry& e, int row) {
  return static_cast<const bf16*>(e.b) + int64_t(row) * e.rank;
}

// The B rows of a pair, copied into shared memory by cp.async once the weight loads are on their way, where the
// rank allows 16-byte copies (a multiple of 8; other ranks read B after the product): the B rows of an adapter
// just swapped in are cold in L2, and read after the product they would add a DRAM round trip to the step.
struct PairB {
  __align__(16) bf16 rows[2][kMaxRank];
};

// The lane's share of the pair's B rows (16 bytes of either row) on its way into shared memory.
template <int Lanes>
__device__ inline void prefetch_b(const Pair& pr, const LoraEntry& e0, const LoraEntry& e1, PairB& dst, int lane) {
  const int l = lane % Lanes;
  const int c0 = e0.rank % 8 == 0 ? e0.rank / 8 : 0, c1 = pr.second && e1.rank % 8 == 0 ? e1.rank / 8 : 0;
  if (l < c0)
    cp_async16(&dst.rows[0][8 * l], b_row_address(e0, pr.row0) + 8 * l, true);
  else if (l < c0 + c1)
    cp_async16(&dst.rows[1][8 * (l - c0)], b_row_address(e1, pr.row1) + 8 * (l - c0), true);
}

// This step's t values of every projection of the launch, into ts[proj][j]. One warp per block waits for them
// (spinning on exactly the words it needs, lanes j and j + 32 of each projection with an adapter), so the L2
// slices holding the t values see one reader per block, not one per warp. The whole warp calls this, with the
// ranks and epoch its slot staged.
__device__ void gather_t(const KernelParams& a, const int (&ranks)[kMaxProjections], int32_t epoch,
                         float (&ts)[kMaxProjections][kMaxRank], int lane) {
  bool need[kMaxProjections][2];
  Slot word[kMaxProjections][2] = {};
#pragma unroll
  for (int proj = 0; proj < kMaxProjections; ++proj) {
    need[proj][0] = lane < ranks[proj];
    need[proj][1] = lane + 32 < ranks[proj];
  }
  for (;;) {
    bool ready = true;
#pragma unroll
    for (int proj = 0; proj < kMaxProjections; ++proj)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (need[proj][h])
          word[proj][h] = *reinterpret_cast<const volatile Slot*>(a.lora.t + proj * kMaxRank + lane + 32 * h);
#pragma unroll
    for (int proj = 0; proj < kMaxProjections; ++proj)
#pragma unroll
      for (int h = 0; h < 2; ++h) ready &= !need[proj][h] || int32_t(word[proj][h] >> 32) == epoch;
    if (ready) break;
    __nanosleep(kPollPauseNs);
  }
#pragma unroll
  for (int proj = 0; proj < kMaxProjections; ++proj)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (need[proj][h]) ts[proj][lane + 32 * h] = __uint_as_float(uint32_t(word[proj][h]));
}

// scale · B[row]·t for both rows of the pair (0 where a projection has no adapter), both sums in one reduction
// over the pair's Lanes lanes. The whole warp calls this.
template <int Lanes = 32>
__device__ float2 lora_deltas(const Pair& pr, const LoraEntry& e0, const LoraEntry& e1, const BRow<Lanes>& b0,
                              const BRow<Lanes>& b1, const float (&ts)[kMaxProjections][kMaxRank], int lane) {
  const float* t0 = ts[pr.proj0];
  const float* t1 = ts[pr.proj1];
  float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxRank / Lanes; ++i) {
    const int j = lane % Lanes + Lanes * i;
    if (j < e0.rank) d0 = fmaf(b0.v[i], t0[j], d0);
    if (pr.second && j < e1.rank) d1 = fmaf(b1.v[i], t1[j], d1);
  }
  for (int o = Lanes / 2; o > 0; o >>= 1) {
    d0 += __shfl_xor_sync(0xffffffffu, d0, o);
    d1 += __shfl_xor_sync(0xffffffffu, d1, o);
  }
  return make_float2(e0.rank ? d0 * e0.scale : 0.0f, e1.rank && pr.second ? d1 * e1.scale : 0.0f);
}

template <Epilogue E>
__device__ Pair pair_of(const KernelParams& a, int p) {
  Pair pr;
  if constexpr (E == Epilogue::attention_inputs) {
    const int half = a.rope.head_dim / 2, head = p / half, i = p % half;
    pr.proj0 = head < a.rope.heads ? 0 : head < a.rope.heads + a.rope.kv_heads ? 1 : 2;
    const int local = head - (pr.proj0 == 0 ? 0 : pr.proj0 == 1 ? a.rope.heads : a.rope.heads + a.rope.kv_heads);
    pr.proj1 = pr.proj0;
    pr.row0 = local * a.rope.head_dim + i;
    pr.row1 = pr.row0 + half;
  } else if constexpr (E == Epilogue::gate_up) {
    pr.proj1 = 1;
    pr.row0 = pr.row1 = p;
  } else {
    pr.row0 = 2 * p;
    pr.second = 2 * p + 1 < a.cover.rows;
    pr.row1 = pr.second ? 2 * p + 1 : 2 * p;
  }
  return pr;
}

__device__ inline float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

// Epilogue operands, loaded at the start so that their round trips overlap the weight loads.
struct Operands {
  float b0 = 0.0f, b1 = 0.0f;  // bias (attention inputs) or the residual stream's values (residual)
  int pos = 0, slot = 0;
};

template <Epilogue E>
__device__ Operands operands_of(const KernelParams& a, const Pair& pr) {
  Operands o;
  if constexpr (E == Epilogue::attention_inputs) {
    o.pos = *a.rope.position;
    o.slot = *a.rope.slot;
    if (a.bias[pr.proj0]) {
      o.b0 = __bfloat162float(a.bias[pr.proj0][pr.row0]);
      o.b1 = __bfloat162float(a.bias[pr.proj0][pr.row1]);
    }
  } else if constexpr (E == Epilogue::residual) {
    o.b0 = __bfloat162float(a.out.row[pr.row0]);
    o.b1 = __bfloat162float(a.out.row[pr.row1]);
  }
  return o;
}

// The products s0, s1 (normed, LoRA added) of the pair become outputs.
template <Epilogue E>
__device__ void finish(const KernelParams& a, const Pair& pr, const Operands& o, float s0, float s1) {
  if constexpr (E == Epilogue::attention_inputs) {
    const int proj = pr.proj0;
    const float v0 = round_bf16(s0 + o.b0), v1 = round_bf16(s1 + o.b1);  // the projection's output, as stored
    const int64_t cache_row = int64_t(o.slot) * a.rope.kv_heads * a.rope.head_dim;
    if (proj == 2) {
      a.out.v_cache[cache_row + pr.row0] = __float2bfloat16(v0);
      a.out.v_cache[cache_row + pr.row1] = __float2bfloat16(v1);
      return;
    }
    const int i = pr.row0 % a.rope.head_dim;
    // f32, as transformers computes it
    const float inv_freq = float(exp(-a.rope.log_theta * double(2 * i) / double(a.rope.head_dim)));
    float sn, cs;
    sincosf(float(o.pos) * inv_freq, &sn, &cs);
    bf16* dst = proj == 0 ? a.out.row : a.out.k_cache + cache_row;
    dst[pr.row0] = __float2bfloat16(v0 * cs - v1 * sn);
    dst[pr.row1] = __float2bfloat16(v1 * cs + v0 * sn);
  } else if constexpr (E == Epilogue::gate_up) {
    const float g = round_bf16(s0), u = round_bf16(s1);
    a.out.row[pr.row0] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
  } else if constexpr (E == Epilogue::residual) {
    a.out.row[pr.row0] = __float2bfloat16(o.b0 + round_bf16(s0));
    if (pr.second) a.out.row[pr.row1] = __float2bfloat16(o.b1 + round_bf16(s1));
  } else {
    a.out.f32[pr.row0] = s0;
    if (pr.second) a.out.f32[pr.row1] = s1;
  }
}

// Register budgets, as the blocks per SM each build is compiled to fit (65,536 registers / (kThreads · blocks) per
// thread); the launch plan (plan_launch) reads the resulting occupancy.
constexpr int kPlainBlocks4 = 7;  // four chunks in flight, no LoRA: no or a few bytes spilled
constexpr int kLoraBlocks4 = 6;   // four chunks with LoRA: one block lower, no spills in the hot loops
constexpr int kPlainBlocks8 = 5;  // eight chunks, no LoRA: no or a few bytes spilled
constexpr int kLoraBlocks8 = 4;   // eight chunks with LoRA, a warp per pair: one block lower
// The exceptions: gate/up's four-chunk LoRA build fits kPlainBlocks4 without spilling (where it runs in two waves,
// every resident block counts), and the half-warp LoRA builds stay at kPlainBlocks8 (spilling a little), so that a
// launch that fits one wave only with half-warp pairs (a gate/up of 4864 × 896) does so with an adapter too.
constexpr int min_blocks(Epilogue e, int in_flight, bool lora, int lanes) {
  if (in_flight == 4) return lora && e != Epilogue::gate_up ? kLoraBlocks4 : kPlainBlocks4;
  return lora && lanes == 32 ? kLoraBlocks8 : kPlainBlocks8;
}

// Blocks [0, shrink_blocks) compute the LoRA shrink; each later block owns kWarps / warps_per_pair pairs (twice as
// many with Lanes = 16). Launches without a LoRA table take the Lora = false build, which carries none of its
// registers or loads.
template <Epilogue E, bool Norm, int InFlight, bool Lora, int Lanes = 32>
__global__ void __launch_bounds__(kThreads, min_blocks(E, InFlight, Lora, Lanes))
    fused_gemv_kernel(const KernelParams a) {
  constexpr bool kLateRelease = Lora && E == Epilogue::attention_inputs;  // see the top of this file
  if (!kLateRelease || int(blockIdx.x) < a.lora.shrink_blocks) chain_release();
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (Lora && int(blockIdx.x) < a.lora.shrink_blocks) {
    shrink<Norm, InFlight>(a, warp, lane);
    return;
  }
  constexpr int kPairsPerWarp = 32 / Lanes;
  const int p = ((int(blockIdx.x) - a.lora.shrink_blocks) * (kWarps / a.cover.warps_per_pair) +
                 warp / a.cover.warps_per_pair) * kPairsPerWarp + lane / Lanes,
            part = warp % a.cover.warps_per_pair;
  const bool valid = p < a.cover.pairs, lead = valid && part == 0;
  const bool warp_valid = p - lane / Lanes < a.cover.pairs;  // the warp's first pair exists
  const Pair pr = valid ? pair_of<E>(a, p) : Pair{};
  __shared__ Staged staged[kWarps];
  __shared__ PairB pair_b[kWarps][32 / Lanes];  // the B rows of each pair of each warp
  PairB& my_b = pair_b[warp][lane / Lanes];
  extern __shared__ uint4 input_chunks[];  // shared_input
  stage_norm<Norm>(a, input_chunks);
  if (Lora) stage(a, staged[warp], lane);
  // Once the first weight loads are in flight: the B rows on their way, the wait for the kernel before, the
  // epilogue's operands (the residual stream is that kernel's output; used at the end) and the input row.
  Operands o;
  const auto issued = [&] {
    if (Lora) {
      cp_async_wait<0>();
      __syncwarp();
      if (lead) {
        const LoraEntry e0 = staged_entry(staged[warp], pr.proj0);
        prefetch_b<Lanes>(pr, e0, pr.proj1 == pr.proj0 ? e0 : staged_entry(staged[warp], pr.proj1), my_b, lane);
      }
      cp_async_commit();
    }
    chain_wait();
    if (lead && lane % Lanes == 0) o = operands_of<E>(a, pr);
    stage_input(a, input_chunks);  // every thread of the block calls `issued` once, at the same point (dot2)
  };
  PairSums s = pair_sums<Norm, InFlight, Lanes>(a.w[pr.proj0] + int64_t(pr.row0) * a.in.k,
                                              a.w[pr.proj1] + int64_t(pr.row1) * a.in.k, a,
                                              shared_input(a, input_chunks), valid, warp, part, lane, issued);
  if constexpr (kLateRelease) chain_release();
  if constexpr (Lora) {
    // The table and B rows are in shared memory, visible to the whole block since `issued`'s barrier (ranks not a
    // multiple of 8 read B now, while warp 0 waits for this step's t values). Every thread of the block reaches
    // the barrier below (pair_sums holds barriers too, so the block is here whole).
    const Staged& st = staged[warp];
    LoraEntry e0, e1;
    if (lead) {
      e0 = staged_entry(st, pr.proj0);
      e1 = pr.proj1 == pr.proj0 ? e0 : staged_entry(st, pr.proj1);
    }
    __shared__ float ts[kMaxProjections][kMaxRank];
    BRow<Lanes> b0, b1;
    if (lead && e0.rank)
      b0 = b_row<Lanes>(e0.rank % 8 == 0 ? my_b.rows[0] : b_row_address(e0, pr.row0), e0.rank, lane);
    if (lead && e1.rank && pr.second)
      b1 = b_row<Lanes>(e1.rank % 8 == 0 ? my_b.rows[1] : b_row_address(e1, pr.row1), e1.rank, lane);
    if (warp == 0 && warp_valid) {
      int ranks[kMaxProjections] = {};
#pragma unroll
      for (int proj = 0; proj < kMaxProjections; ++proj)
        if (proj < a.cover.projections) ranks[proj] = staged_entry(st, proj).rank;
      gather_t(a, ranks, st.epoch, ts, lane);
    }
    __syncthreads();
    if constexpr (Lanes == 32) {
      if (lead && (e0.rank || e1.rank)) {
        const float2 d = lora_deltas(pr, e0, e1, b0, b1, ts, lane);
        s.s0 += d.x;
        s.s1 += d.y;
      }
    } else {  // every lane (the reduction shuffles); 0 where there is no pair or adapter
      const float2 d = lora_deltas<Lanes>(pr, e0, e1, b0, b1, ts, lane);
      if (lead) {
        s.s0 += d.x;
        s.s1 += d.y;
      }
    }
  }
  if (lead && lane % Lanes == 0) finish<E>(a, pr, o, s.s0, s.s1);
}

}  // namespace wick::cuda::fused_gemv
