// The fused one-token GEMV kernel: the device half of gemv.cu, which alone includes it (the launch plans and
// launchers are there). One to four warps own a pair of output rows (several when the rows are long and few,
// splitting the input between them; half a warp when that fits a launch in one wave) and stream both weight rows
// with several 16-byte loads in flight per lane: decode is bound by how fast the weights arrive, and at 0.5B by
// how many memory round trips lie on the critical path, so the weight loads go first and nothing else waits in
// line before them. The RMSNorm before the product is folded in as dot(w, x ⊙ g) · rsqrt(mean(x²) + eps),
// mean(x²) summed from the same loads of x; the epilogue (operands fetched up front) does the bias, RoPE and cache
// write, SwiGLU or residual add. A pair is the two halves (i, i + d/2) of a rotated head, the same row of gate and
// up, or two neighbouring rows.
//
// LoRA: the first `shrink_blocks` blocks compute t = A·n (rank values per projection) while the others stream W,
// then add scale · B[row]·t. Each t value is published as one 8-byte word together with the step counter
// (epoch) of the run that wrote it, so a reader spins on exactly the values it needs, no fence or flag in
// between, and nothing needs resetting between graph replays. One warp per block waits for them and hands them
// to the block's other warps in shared memory: every warp of a launch reading the same few words from the same
// L2 slice made that slice the bottleneck (adapter overhead 25 % → 18 % at 0.5B). Waiting is safe because
// blocks are dispatched in index order: the shrink blocks run before any block that waits on them. Projections
// without an adapter (rank 0 in the device table, as for every projection when no adapter is in effect) neither
// compute nor wait. Nothing else of the adapter is loaded into registers before the product: the table entries
// and the pair's B rows go into shared memory by cp.async (async_copy.cuh) while the weights stream, so they
// neither hold registers through the product nor stall a warp whose build is short of registers.
//
// Every launch runs in thread block clusters (cluster_for in gemv.cu) and is chained (chain.cuh) unless told otherwise:
// the first weight loads are issued before the wait for the kernel ahead, so a kernel's start overlaps that
// kernel's tail; so are the copies of the norm weight and the adapter table entries into shared memory, and the
// shrink blocks' A rows. Right after the wait each block copies the input row into shared memory in one round trip
// (cp.async): read from global memory instead, a lane's input chunks arrived one dependent round trip after
// another, since no build has the registers to hold them all while its weights are in flight (measured on the
// H200: decode 1,492 → 1,589 tok/s at 0.5B and 235.9 → 253.8 at 7B).
//
// Each kernel releases its successor (chain_release) at its start, so that the next kernels' blocks are resident
// and their weight loads in flight early, except the q/k/v kernel with an adapter, whose product blocks release it
// only once their product is done. Released at its start, attention, o_proj and gate/up launched one after another
// while q/k/v still waited for its weights (gate/up's blocks resident 13–17 µs before o_proj's end, all their
// loads in flight), and q/k/v's blocks took 2.5 µs from their staged input to their sums against 0.8 µs with the
// late release (globaltimer stamps per block, H200, 0.5B, r16 adapter); the adapter's overhead went from 18.8 % to
// 10.2 % side by side (docs/BENCHMARKS.md). Without an adapter the same change measured no difference.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/chain.cuh"

namespace wick::cuda::fused_gemv {

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

// The input row and the norm weight as 16-byte chunks in shared memory.
struct Input {
  const uint4* x = nullptr;
  const uint4* g = nullptr;
};

// The input row and norm weight of a block in its dynamic shared memory (k / 8 chunks of x, then of the norm
// weight), copied by the whole block: read from global memory, each lane's chunks came one dependent round trip
// after another (no build has the registers to hold them all while its weights are in flight).
__device__ inline Input shared_input(const Args& a, uint4* chunks) { return {chunks, chunks + a.k / 8}; }

// The norm weight's copy (before the wait for the kernel ahead: no kernel of the step writes it).
template <bool Norm>
__device__ inline void stage_norm(const Args& a, uint4* chunks) {
  if constexpr (Norm)
    for (int c = int(threadIdx.x); c < a.k / 8; c += kThreads)
      cp_async_ca<16>(chunks + a.k / 8 + c, reinterpret_cast<const uint4*>(a.norm) + c);
}

// The input row's copy, after the wait; returns once the block's copies (these and any earlier) have arrived and
// are visible to all its threads. Every thread of the block calls it once.
__device__ inline void stage_input(const Args& a, uint4* chunks) {
  for (int c = int(threadIdx.x); c < a.k / 8; c += kThreads)
    cp_async_ca<16>(chunks + c, reinterpret_cast<const uint4*>(a.x) + c);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
}

// Chunks (8 elements) first, first + step, ... of w0, w1 and x, U chunks of each row in flight. `issued` runs
// once, after the first chunks' loads are on their way (other loads can ride along with them there), at the same
// point for every thread, also for those with no chunks (first ≥ k / 8).
template <bool Norm, int U, class Issued>
__device__ Sums dot2(const bf16* w0, const bf16* w1, const Args& a, const Input& in, int first, int step,
                     Issued issued) {
  const int chunks = a.k / 8;
  const uint4* r0 = reinterpret_cast<const uint4*>(w0);
  const uint4* r1 = reinterpret_cast<const uint4*>(w1);
  Sums s;
  uint4 v0[U], v1[U];
  const auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + step * u;
      v0[u] = c < chunks ? load_weights(r0 + c) : make_uint4(0, 0, 0, 0);
      v1[u] = c < chunks ? load_weights(r1 + c) : make_uint4(0, 0, 0, 0);
    }
  };
  load(first);
  issued();
  for (int base = first; base < chunks; base += step * U) {
    if (base != first) load(base);
#pragma unroll
    for (int u = 0; u < U; ++u) {
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

// Sums over the L lanes of each pair (the whole warp, or each half).
template <int L = 32>
__device__ inline Sums warp_sums(Sums s) {
  for (int o = L / 2; o > 0; o >>= 1) {
    s.s0 += __shfl_xor_sync(0xffffffffu, s.s0, o);
    s.s1 += __shfl_xor_sync(0xffffffffu, s.s1, o);
    s.ss += __shfl_xor_sync(0xffffffffu, s.ss, o);
  }
  return s;
}

// w0·n and w1·n (norm applied) and Σx² for the pair owned by warps [warp - part, warp - part + wpp): the lead
// warp (part 0) gets the totals. Every thread of the block calls this (a barrier when wpp > 1). With L = 16
// (wpp 1), each half of the warp owns a pair, and every lane of the warp calls this.
template <bool Norm, int U, int L = 32, class Issued>
__device__ Sums pair_sums(const bf16* w0, const bf16* w1, const Args& a, const Input& in, bool valid, int warp,
                          int part, int lane, Issued issued) {
  // Every lane: those without a pair run no chunks but still call `issued`.
  const int first = valid ? (L == 32 ? part * 32 + lane : lane % L) : a.k / 8;
  Sums s = warp_sums<L>(dot2<Norm, U>(w0, w1, a, in, first, L == 32 ? a.wpp * 32 : L, issued));
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
// of registers (gate/up's half-warp build, q/k/v's warp 0), and the spill store waited for the load, holding the
// warp's weight loads back by a round trip (measured on the H200: r16 adapter overhead 19.1 → 16.8 %).
struct Staged {
  unsigned long long words[kMaxSegs * 3];  // the LoraEntry of each projection, as load_entry reads it
  int32_t epoch;
};

__device__ inline void stage(const Args& a, Staged& st, int lane) {
  if (lane < a.segs * 3) cp_async_ca<8>(&st.words[lane], reinterpret_cast<const unsigned long long*>(a.lora) + lane);
  if (lane == 31) cp_async_ca<4>(&st.epoch, a.epoch);
  cp_async_commit();
}

// Entry `seg` of a slot the warp staged, once its copies are waited for and visible to the warp.
__device__ inline LoraEntry staged_entry(const Staged& st, int seg) {
  return entry_of(st.words[seg * 3], st.words[seg * 3 + 1], st.words[seg * 3 + 2]);
}

// t[seg][j] = A_seg[j]·n for every rank row, a pair of rows per wpp warps, each value published with the epoch.
template <bool Norm, int U>
__device__ void shrink(const Args& a, int warp, int lane) {
  const int per_block = kWarps / a.wpp, part = warp % a.wpp;
  const int32_t epoch = __ldcg(a.epoch);
  extern __shared__ uint4 input_chunks[];
  stage_norm<Norm>(a, input_chunks);
  // The shrink blocks cover the segs · kRank / 2 row pairs exactly once: per_block (1, 2 or 4) divides segs · 32,
  // so every warp has exactly one pair slot r, with rank rows or not, and calls pair_sums once (its barriers).
  const int r = (int(blockIdx.x) * per_block + warp / a.wpp) * 2;
  const int seg = r / kRank, j = r % kRank;  // r is even and kRank too: r + 1 is in the same projection
  const LoraEntry e = load_entry(a.lora + seg);
  const bool valid = j < e.rank, second = j + 1 < e.rank;  // the same for the pair's warps
  const bf16* rows = valid ? static_cast<const bf16*>(e.a) + int64_t(j) * a.k : nullptr;
  const Sums s = pair_sums<Norm, U>(rows, rows && second ? rows + a.k : rows, a, shared_input(a, input_chunks), valid,
                                    warp, part, lane, [&] {
                                      chain_wait();
                                      stage_input(a, input_chunks);
                                    });
  if (valid && part == 0 && lane < 2 && (lane == 0 || second)) {
    const float v = lane == 0 ? s.s0 : s.s1;
    const Slot word = Slot(uint32_t(epoch)) << 32 | __float_as_uint(v);
    *reinterpret_cast<volatile Slot*>(a.t + seg * kRank + j + lane) = word;  // value and epoch in one store
  }
}

// B[row][j] of projection `e` (rank ≤ 64) for the lane's j = lane % L + L·i, 0 past its rank.
template <int L = 32>
struct BRow {
  float v[kRank / L] = {};
};

template <int L = 32>
__device__ inline BRow<L> b_row(const bf16* b, int rank, int lane) {
  BRow<L> r;
#pragma unroll
  for (int i = 0; i < kRank / L; ++i)
    if (lane % L + L * i < rank) r.v[i] = __bfloat162float(b[lane % L + L * i]);
  return r;
}

// Row `row` of B of projection `e` in global memory.
__device__ inline const bf16* b_row_address(const LoraEntry& e, int row) {
  return static_cast<const bf16*>(e.b) + int64_t(row) * e.rank;
}

// The B rows of a pair, copied into shared memory by cp.async once the weight loads are on their way, where the
// rank allows 16-byte copies (a multiple of 8; other ranks read B after the product). Measured on the H200 side by
// side with B read after the product (one build, four alternations): a constant r16 adapter decodes a little
// slower (1,271–1,295 vs 1,290–1,303 tok/s), but when adapters are swapped between steps, the B rows of the one
// just chosen, cold in L2, no longer add a DRAM round trip after the product: swap +11…+17 → −0…+7 µs per step.
struct PairB {
  __align__(16) bf16 rows[2][kRank];
};

// The lane's share of the pair's B rows (16 bytes of either row) on its way into shared memory.
template <int L>
__device__ inline void prefetch_b(const Pair& pr, const LoraEntry& e0, const LoraEntry& e1, PairB& dst, int lane) {
  const int l = lane % L;
  const int c0 = e0.rank % 8 == 0 ? e0.rank / 8 : 0, c1 = pr.second && e1.rank % 8 == 0 ? e1.rank / 8 : 0;
  if (l < c0)
    cp_async16(&dst.rows[0][8 * l], b_row_address(e0, pr.row0) + 8 * l, true);
  else if (l < c0 + c1)
    cp_async16(&dst.rows[1][8 * (l - c0)], b_row_address(e1, pr.row1) + 8 * (l - c0), true);
}

// This step's t values of every projection of the launch, into ts[seg][j]. One warp per block waits for them
// (spinning on exactly the words it needs, lanes j and j + 32 of each projection with an adapter), so the L2
// slices holding the t values see one reader per block, not one per warp. The whole warp calls this, with the
// ranks and epoch its slot staged.
__device__ void gather_t(const Args& a, const int (&ranks)[kMaxSegs], int32_t epoch, float (&ts)[kMaxSegs][kRank],
                         int lane) {
  bool need[kMaxSegs][2];
  Slot word[kMaxSegs][2] = {};
#pragma unroll
  for (int seg = 0; seg < kMaxSegs; ++seg) {
    need[seg][0] = lane < ranks[seg];
    need[seg][1] = lane + 32 < ranks[seg];
  }
  for (;;) {
    bool ready = true;
#pragma unroll
    for (int seg = 0; seg < kMaxSegs; ++seg)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (need[seg][h]) word[seg][h] = *reinterpret_cast<const volatile Slot*>(a.t + seg * kRank + lane + 32 * h);
#pragma unroll
    for (int seg = 0; seg < kMaxSegs; ++seg)
#pragma unroll
      for (int h = 0; h < 2; ++h) ready &= !need[seg][h] || int32_t(word[seg][h] >> 32) == epoch;
    if (ready) break;
    __nanosleep(20);
  }
#pragma unroll
  for (int seg = 0; seg < kMaxSegs; ++seg)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (need[seg][h]) ts[seg][lane + 32 * h] = __uint_as_float(uint32_t(word[seg][h]));
}

// scale · B[row]·t for both rows of the pair (0 where a projection has no adapter), both sums in one reduction
// over the pair's L lanes. The whole warp calls this.
template <int L = 32>
__device__ float2 lora_deltas(const Pair& pr, const LoraEntry& e0, const LoraEntry& e1, const BRow<L>& b0,
                              const BRow<L>& b1, const float (&ts)[kMaxSegs][kRank], int lane) {
  const float* t0 = ts[pr.seg0];
  const float* t1 = ts[pr.seg1];
  float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
  for (int i = 0; i < kRank / L; ++i) {
    const int j = lane % L + L * i;
    if (j < e0.rank) d0 = fmaf(b0.v[i], t0[j], d0);
    if (pr.second && j < e1.rank) d1 = fmaf(b1.v[i], t1[j], d1);
  }
  for (int o = L / 2; o > 0; o >>= 1) {
    d0 += __shfl_xor_sync(0xffffffffu, d0, o);
    d1 += __shfl_xor_sync(0xffffffffu, d1, o);
  }
  return make_float2(e0.rank ? d0 * e0.scale : 0.0f, e1.rank && pr.second ? d1 * e1.scale : 0.0f);
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
// Register budgets (minimum blocks per SM) that keep the plain builds at 7 blocks (4 chunks per lane) or 5 (8)
// with no or a few bytes spilled, and the LoRA builds one block lower without spills in their hot loops, except
// gate/up's four-chunk LoRA build, which fits 7 blocks without spilling (where it runs in two waves, each
// resident block counts), and the half-warp LoRA builds, kept at 5 like the plain ones so that 0.5B gate/up fits
// one wave either way (ptxas reports 28–136 bytes spilled for them); the launch plan (plan_launch) reads the
// resulting occupancy.
constexpr int min_blocks(Epilogue e, int u, bool lora, int lanes) {
  if (u == 4) return lora && e != Epilogue::gate_up ? 6 : 7;
  return lora && lanes == 32 ? 4 : 5;
}

template <Epilogue E, bool Norm, int U, bool Lora, int L = 32>
__global__ void __launch_bounds__(kThreads, min_blocks(E, U, Lora, L)) fused_gemv_kernel(const Args a) {
  constexpr bool kLateRelease = Lora && E == Epilogue::attention_inputs;  // see the top of this file
  if (!kLateRelease || int(blockIdx.x) < a.shrink_blocks) chain_release();
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (Lora && int(blockIdx.x) < a.shrink_blocks) {
    shrink<Norm, U>(a, warp, lane);
    return;
  }
  constexpr int kHalves = 32 / L;  // pairs per warp (L = 16: wpp is 1)
  const int p = ((int(blockIdx.x) - a.shrink_blocks) * (kWarps / a.wpp) + warp / a.wpp) * kHalves + lane / L,
            part = warp % a.wpp;
  const bool valid = p < a.pairs, lead = valid && part == 0;
  const bool warp_valid = p - lane / L < a.pairs;  // the warp's first pair exists
  const Pair pr = valid ? pair_of<E>(a, p) : Pair{};
  __shared__ Staged staged[kWarps];
  __shared__ PairB pair_b[kWarps][32 / L];  // the B rows of each pair of each warp
  PairB& my_b = pair_b[warp][lane / L];
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
        const LoraEntry e0 = staged_entry(staged[warp], pr.seg0);
        prefetch_b<L>(pr, e0, pr.seg1 == pr.seg0 ? e0 : staged_entry(staged[warp], pr.seg1), my_b, lane);
      }
      cp_async_commit();
    }
    chain_wait();
    if (lead && lane % L == 0) o = operands_of<E>(a, pr);
    stage_input(a, input_chunks);  // every thread of the block calls `issued` once, at the same point (dot2)
  };
  Sums s = pair_sums<Norm, U, L>(a.w[pr.seg0] + int64_t(pr.row0) * a.k, a.w[pr.seg1] + int64_t(pr.row1) * a.k, a,
                                 shared_input(a, input_chunks), valid, warp, part, lane, issued);
  if constexpr (kLateRelease) chain_release();
  if constexpr (Lora) {
    // The table and B rows are in shared memory, visible to the whole block since `issued`'s barrier (ranks not a
    // multiple of 8 read B now, while warp 0 waits for this step's t values). Every thread of the block reaches
    // the barrier below (pair_sums holds barriers too, so the block is here whole).
    const Staged& st = staged[warp];
    LoraEntry e0, e1;
    if (lead) {
      e0 = staged_entry(st, pr.seg0);
      e1 = pr.seg1 == pr.seg0 ? e0 : staged_entry(st, pr.seg1);
    }
    __shared__ float ts[kMaxSegs][kRank];
    BRow<L> b0, b1;
    if (lead && e0.rank)
      b0 = b_row<L>(e0.rank % 8 == 0 ? my_b.rows[0] : b_row_address(e0, pr.row0), e0.rank, lane);
    if (lead && e1.rank && pr.second)
      b1 = b_row<L>(e1.rank % 8 == 0 ? my_b.rows[1] : b_row_address(e1, pr.row1), e1.rank, lane);
    if (warp == 0 && warp_valid) {
      int ranks[kMaxSegs] = {};
#pragma unroll
      for (int seg = 0; seg < kMaxSegs; ++seg)
        if (seg < a.segs) ranks[seg] = staged_entry(st, seg).rank;
      gather_t(a, ranks, st.epoch, ts, lane);
    }
    __syncthreads();
    if constexpr (L == 32) {
      if (lead && (e0.rank || e1.rank)) {
        const float2 d = lora_deltas(pr, e0, e1, b0, b1, ts, lane);
        s.s0 += d.x;
        s.s1 += d.y;
      }
    } else {  // every lane (the reduction shuffles); 0 where there is no pair or adapter
      const float2 d = lora_deltas<L>(pr, e0, e1, b0, b1, ts, lane);
      if (lead) {
        s.s0 += d.x;
        s.s1 += d.y;
      }
    }
  }
  if (lead && lane % L == 0) finish<E>(a, pr, o, s.s0, s.s1);
}

}  // namespace wick::cuda::fused_gemv
