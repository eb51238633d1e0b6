// Launchers of the fused one-token GEMV kernels (gemv_kernel.cuh): how each launch covers its rows (warps per
// pair, loads in flight, one wave where possible) and the public entry points of gemv.h.
#include <cmath>

#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemv.h"
#include "backend/cuda/gemv_kernel.cuh"

namespace wick::cuda {

namespace {

using namespace fused_gemv;

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

template <Epilogue E, int U, int L = 32>
auto kernel_for(const Args& a) {
  return a.norm ? (a.lora ? fused_gemv_kernel<E, true, U, true, L> : fused_gemv_kernel<E, true, U, false, L>)
                : (a.lora ? fused_gemv_kernel<E, false, U, true, L> : fused_gemv_kernel<E, false, U, false, L>);
}

int sm_count() {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  return sms;
}

// Shared memory a launch takes for its input row (and norm weight); above 48 KB the kernel must opt in.
size_t input_bytes(const Args& a) { return size_t(a.k) * sizeof(bf16) * (a.norm ? 2 : 1); }

template <class Kernel>
void allow_input_bytes(Kernel kernel, size_t bytes) {
  if (bytes > size_t(48) << 10)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
          "fused gemv shared memory");
}

// Blocks of `kernel` that fit on the GPU at once with `bytes` of dynamic shared memory.
template <class Kernel>
int resident_blocks(Kernel kernel, size_t bytes) {
  allow_input_bytes(kernel, bytes);
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, bytes), "fused gemv occupancy");
  return sm_count() * per_sm;
}

// How a launch covers its pairs: U chunks per row in flight per lane, wpp warps per pair.
struct Plan {
  int u = 4, wpp = 1, shrink_blocks = 0, lanes = 32;  // lanes per pair: 32, or 16 (two pairs per warp, wpp 1)
  unsigned blocks = 0;
};

// Every launch runs in thread block clusters of kCluster blocks, or half as many where cluster_for says (the
// planned grid rounded up with idle blocks); no kernel uses what clusters offer, the launch only changes how the
// blocks are spread over the SMs, and that pays: measured on the H200 side by side with plain launches, decode
// at 0.5B 1,470 → 1,490 tok/s and at 7B 227 → 234 tok/s, and with an r16 all-seven adapter 1,245 → 1,270–1,310
// tok/s. Cluster sizes 4 and 16 measured about the same, 2 like none; 8 is the largest every Hopper GPU takes
// without opting in. GPUs without clusters (before Hopper) launch plainly. (Cluster barriers and distributed
// shared memory for the LoRA t values measured far slower: docs/BENCHMARKS.md.)
constexpr int kCluster = 8;

// Blocks per cluster of the launches, from the first GPU asked.
int cluster_blocks() {
  static const int blocks = [] {
    int device = 0, supported = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&supported, cudaDevAttrClusterLaunch, device), "cluster launch support");
    return supported ? kCluster : 1;
  }();
  return blocks;
}

// Blocks per cluster of a launch of `blocks` blocks of `kernel` (`bytes` of dynamic shared memory each):
// cluster_blocks(), except for a launch that fits the GPU in one wave of blocks but not in one wave of such
// clusters, which takes clusters of half as many. Whole clusters are placed within one GPC, so fewer of them fit
// than blocks do: 0.5B gate/up with an adapter (624 blocks, 5 per SM) is 78 clusters of 8 where 77 fit, and its
// last cluster started only once others had finished (2–4 µs late, per-block timestamps). In clusters of 4 the
// adapter's overhead at 0.5B went from 11.8 / 11.8 % to 8.9 / 8.6 % (H200, one build, the size switched per run;
// 3 measured the same as 4, 2 and 1 worse: 15.5–16.3 and 14.9–15.8 %), and from 11.6 / 11.9 % to 8.8 / 8.6 %
// against the previous build in the same run. The base build's 608 blocks fit as 76 clusters of 8 and stay in
// 8s (in 4s: 1,600–1,605 tok/s against 1,607–1,613); every LoRA launch in 4s measured the same (8.7 / 8.6 %).
template <class Kernel>
unsigned cluster_for(Kernel kernel, unsigned blocks, size_t bytes) {
  const unsigned size = unsigned(cluster_blocks());
  if (size == 1 || blocks > unsigned(resident_blocks(kernel, bytes))) return size;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim = {size, 1, 1};
  cudaLaunchConfig_t config{};
  config.gridDim = dim3((blocks + size - 1) / size * size);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = bytes;
  config.attrs = &attr;
  config.numAttrs = 1;
  int fit = 0;
  check(cudaOccupancyMaxActiveClusters(&fit, kernel, &config), "fused gemv cluster occupancy");
  return (blocks + size - 1) / size > unsigned(fit) ? size / 2 : size;
}

Plan plan_of(const Args& a, int u, int wpp, int lanes = 32) {
  Plan p{.u = u, .wpp = wpp, .lanes = lanes};
  const int per_block = kWarps / wpp, pairs_per_block = per_block * (32 / lanes);
  if (a.lora) p.shrink_blocks = (a.segs * kRank / 2 + per_block - 1) / per_block;
  p.blocks = unsigned(p.shrink_blocks + (a.pairs + pairs_per_block - 1) / pairs_per_block);
  return p;
}

// Decode is bound by the loads in flight: the plan that keeps the most of them in flight while every block is
// resident at once (a second, partial wave would leave the GPU mostly idle while it runs). When a pair has several
// warps, each lane still gets at least four chunks of each row. When no plan fits in one wave (the largest
// matrices, which run for many waves), two pairs per warp if that fits in one wave, else one warp per pair unless
// the pairs are too few to keep 2048 warps busy, and eight chunks in flight per lane where rows are long enough.
//
// Except for large launches (kBalancedBytes of weights or more), which are bound by DRAM bandwidth shared evenly
// by the SMs: there a single wave whose blocks do not divide evenly among the SMs ends with the SMs that got one
// block more (7B q/k/v: 576 blocks on 132 SMs, 17.2 µs). Many small blocks, handed out as others finish, even
// the load out instead: four warps per pair (2,304 blocks, 15.1 µs; 7B decode 216 → 231 tok/s in one A/B run).
constexpr int64_t kBalancedBytes = int64_t(16) << 20;

Plan balanced_plan(const Args& a) {
  const int chunks = a.k / 8;
  int wpp = kWarps;
  while (wpp > 1 && chunks / (32 * wpp) < 2) wpp /= 2;  // at least two chunks of each row per lane
  return plan_of(a, chunks / (32 * wpp) >= 8 ? 8 : 4, wpp);
}

template <Epilogue E>
Plan plan_launch(const Args& a) {
  const int chunks = a.k / 8;
  const size_t shared = input_bytes(a);
  const int resident4 = resident_blocks(kernel_for<E, 4>(a), shared),
            resident8 = resident_blocks(kernel_for<E, 8>(a), shared);
  Plan best;
  int64_t best_in_flight = 0;
  for (int wpp = 1; wpp <= kWarps; wpp *= 2) {
    if (wpp > 1 && chunks / (wpp * 2) < 64) break;
    for (int u : {4, 8}) {
      if (u == 8 && chunks / (32 * wpp) < 8) continue;
      const Plan p = plan_of(a, u, wpp);
      const int resident = u == 8 ? resident8 : resident4;
      const int64_t in_flight = int64_t(p.blocks) * kThreads * u;
      if (p.blocks <= unsigned(resident) && in_flight >= best_in_flight) best = p, best_in_flight = in_flight;
    }
  }
  if (best_in_flight > 0) {
    const int sms = sm_count(), per_sm = int((best.blocks + unsigned(sms) - 1) / unsigned(sms));
    const bool uneven = double(per_sm) * sms > 1.1 * double(best.blocks);
    const int64_t bytes = int64_t(a.pairs) * 2 * a.k * int64_t(sizeof(bf16));
    return uneven && bytes >= kBalancedBytes && !a.lora ? balanced_plan(a) : best;
  }
  // Two pairs per warp, sixteen lanes and eight chunks of each row per lane, where that fits in one wave (0.5B
  // gate/up: 608 blocks instead of two waves of 1,216 at 9.5 µs). Measured side by side on the H200: decode of the
  // base model 1,476–1,498 → 1,519–1,532 tok/s in BM_CudaDecodeWithAdapter, 1,485–1,496 → 1,496–1,504 in
  // BM_Decode; with an adapter no change (1,266–1,285 vs 1,278–1,281).
  const Plan halves = plan_of(a, 8, 1, 16);
  if (halves.blocks <= unsigned(resident_blocks(kernel_for<E, 8, 16>(a), shared))) return halves;
  int wpp = 1;
  while (wpp < kWarps && a.pairs * wpp < 2048 && chunks / (wpp * 2) >= 64) wpp *= 2;
  return plan_of(a, chunks / (32 * wpp) >= 8 ? 8 : 4, wpp);
}

template <Epilogue E>
void launch(Args& a, bool chained, cudaStream_t stream) {
  const Plan p = plan_launch<E>(a);
  a.wpp = p.wpp;
  a.shrink_blocks = p.shrink_blocks;
  const auto kernel = p.lanes == 16 ? kernel_for<E, 8, 16>(a) : p.u == 8 ? kernel_for<E, 8>(a) : kernel_for<E, 4>(a);
  const size_t bytes = input_bytes(a);
  allow_input_bytes(kernel, bytes);
  const unsigned cluster = cluster_for(kernel, p.blocks, bytes), blocks = (p.blocks + cluster - 1) / cluster * cluster;
  check(launch_kernel(kernel, blocks, kThreads, bytes, stream, chained, a, int(cluster)), "fused gemv launch");
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
  launch<Epilogue::attention_inputs>(a, in.chained, stream);
}

void gemv_gate_up(const GemvInput& in, const void* w_gate, const void* w_up, int64_t rows, void* h,
                  cudaStream_t stream) {
  Args a = args_of(in, 2);
  a.w[0] = static_cast<const bf16*>(w_gate);
  a.w[1] = static_cast<const bf16*>(w_up);
  a.pairs = a.rows = int(rows);
  a.out = static_cast<bf16*>(h);
  launch<Epilogue::gate_up>(a, in.chained, stream);
}

void gemv_residual(const GemvInput& in, const void* w, int64_t rows, void* x, cudaStream_t stream) {
  Args a = neighbour_pairs(in, w, rows);
  a.out = static_cast<bf16*>(x);
  launch<Epilogue::residual>(a, in.chained, stream);
}

void gemv_f32(const GemvInput& in, const void* w, int64_t rows, float* out, cudaStream_t stream) {
  Args a = neighbour_pairs(in, w, rows);
  a.out_f32 = out;
  launch<Epilogue::f32>(a, in.chained, stream);
}

}  // namespace wick::cuda
