// Launch plans and launchers of the fused one-token GEMV kernels (fused_gemv_kernel.cuh): how each launch covers
// its rows (warps per pair, chunks in flight per lane, one wave where possible, thread block clusters), and the
// entry points of fused_gemv.h. Why the plans are shaped so: docs/ARCHITECTURE.md, "Decode steps on the GPU".
#include <cmath>

#include "backend/cuda/chain.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fused_gemv.h"
#include "backend/cuda/fused_gemv_kernel.cuh"

namespace wick::cuda {

namespace {

using namespace fused_gemv;

constexpr size_t kDefaultSharedBytes = size_t(48) << 10;  // dynamic shared memory a kernel has without opting in
// Blocks per thread block cluster of every launch (half as many where cluster_for says): no kernel uses what
// clusters offer, the launch only changes how the blocks are spread over the SMs, which decodes faster
// (docs/BENCHMARKS.md). 8 is the largest size every Hopper GPU takes without opting in.
constexpr int kCluster = 8;
// Launches with this much weight or more are bound by DRAM bandwidth, which the SMs share evenly: a single wave
// that does not divide evenly among the SMs ends with the SMs that got one block more (balanced_plan).
constexpr int64_t kBalancedBytes = int64_t(16) << 20;
constexpr double kUnevenWave = 1.1;  // a wave is uneven when its busiest SMs hold 10 % more blocks than the mean
// Warps that keep the memory system of the GPU busy (about 16 per SM): launches of many waves split pairs over more
// warps only while they have fewer.
constexpr int kBusyWarps = 2048;
// A pair is split over several warps only while each lane keeps at least this many chunks of each row.
constexpr int kSplitChunksPerLane = 4;
constexpr int kBalancedChunksPerLane = 2;  // the same, in balanced_plan

KernelParams params_of(const FusedGemvInput& in, int projections) {
  KernelParams a;
  a.in.x = static_cast<const bf16*>(in.x);
  a.in.norm = static_cast<const bf16*>(in.norm);
  a.in.eps = in.eps;
  a.in.k = int(in.k);
  a.cover.projections = projections;
  if (in.lora.entries) {
    a.lora.entries = in.lora.entries;
    a.lora.t = static_cast<Slot*>(in.lora.scratch);
    a.lora.epoch = in.lora.epoch;
  }
  return a;
}

// The build for `a`'s norm and LoRA, with InFlight of each row in flight per lane (4 or 8) and Lanes per pair.
template <Epilogue E, int InFlight, int Lanes = 32>
auto kernel_for(const KernelParams& a) {
  return a.in.norm ? (a.lora.entries ? fused_gemv_kernel<E, true, InFlight, true, Lanes>
                                     : fused_gemv_kernel<E, true, InFlight, false, Lanes>)
                   : (a.lora.entries ? fused_gemv_kernel<E, false, InFlight, true, Lanes>
                                     : fused_gemv_kernel<E, false, InFlight, false, Lanes>);
}

// Shared memory a launch takes for its input row (and norm weight).
size_t input_bytes(const KernelParams& a) { return size_t(a.in.k) * sizeof(bf16) * (a.in.norm ? 2 : 1); }

template <class Kernel>
void allow_input_bytes(Kernel kernel, size_t bytes) {
  if (bytes > kDefaultSharedBytes)
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

// How a launch covers its pairs.
struct Plan {
  int in_flight = 4;       // chunks of each row in flight per lane: 4 or 8
  int warps_per_pair = 1;  // 1, 2 or 4
  int shrink_blocks = 0;
  int lanes_per_pair = 32;  // or kHalfWarp: two pairs per warp (warps_per_pair 1)
  unsigned blocks = 0;
};

// Blocks per cluster of the launches, from the first GPU asked; GPUs without clusters (before Hopper) launch
// plainly.
int cluster_blocks() {
  static const int blocks = [] {
    int device = 0, supported = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&supported, cudaDevAttrClusterLaunch, device), "cluster launch support");
    return supported ? kCluster : 1;
  }();
  return blocks;
}

// Blocks per cluster of a launch of `blocks` blocks of `kernel` (`bytes` of dynamic shared memory each) — the
// planned grid is rounded up to whole clusters with idle blocks: cluster_blocks(), except for a launch that fits
// the GPU in one wave of blocks but not in one wave of such clusters, which takes clusters of half as many. Whole
// clusters are placed within one GPC, so fewer of them fit than blocks do, and a cluster that does not fit starts
// only once others have finished.
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

Plan plan_of(const KernelParams& a, int in_flight, int warps_per_pair, int lanes_per_pair = 32) {
  Plan p{.in_flight = in_flight, .warps_per_pair = warps_per_pair, .lanes_per_pair = lanes_per_pair};
  const int per_block = kWarps / warps_per_pair, pairs_per_block = per_block * (32 / lanes_per_pair);
  if (a.lora.entries) p.shrink_blocks = (a.cover.projections * kMaxRank / 2 + per_block - 1) / per_block;
  p.blocks = unsigned(p.shrink_blocks + (a.cover.pairs + pairs_per_block - 1) / pairs_per_block);
  return p;
}

// Many small blocks, handed out as others finish, even out a large launch's load over the SMs: four warps per
// pair where rows are long enough.
Plan balanced_plan(const KernelParams& a) {
  const int chunks = a.in.k / 8;
  int warps_per_pair = kWarps;
  while (warps_per_pair > 1 && chunks / (32 * warps_per_pair) < kBalancedChunksPerLane) warps_per_pair /= 2;
  return plan_of(a, chunks / (32 * warps_per_pair) >= 8 ? 8 : 4, warps_per_pair);
}

// Decode is bound by the loads in flight: the plan that keeps the most of them in flight while every block is
// resident at once (a second, partial wave would leave the GPU mostly idle while it runs), unless the launch is
// large and that wave uneven (balanced_plan). When no plan fits in one wave (the largest matrices, which run for
// many waves): two pairs per warp if that fits in one wave, else one warp per pair unless the pairs are too few to
// keep kBusyWarps warps busy, and eight chunks in flight per lane where rows are long enough.
template <Epilogue E>
Plan plan_launch(const KernelParams& a) {
  const int chunks = a.in.k / 8;
  const size_t shared = input_bytes(a);
  const int resident4 = resident_blocks(kernel_for<E, 4>(a), shared),
            resident8 = resident_blocks(kernel_for<E, 8>(a), shared);
  Plan best;
  int64_t best_loads = 0;
  for (int warps_per_pair = 1; warps_per_pair <= kWarps; warps_per_pair *= 2) {
    if (warps_per_pair > 1 && chunks / (32 * warps_per_pair) < kSplitChunksPerLane) break;
    for (int in_flight : {4, 8}) {
      if (in_flight == 8 && chunks / (32 * warps_per_pair) < 8) continue;
      const Plan p = plan_of(a, in_flight, warps_per_pair);
      const int resident = in_flight == 8 ? resident8 : resident4;
      const int64_t loads = int64_t(p.blocks) * kThreads * in_flight;
      if (p.blocks <= unsigned(resident) && loads >= best_loads) best = p, best_loads = loads;
    }
  }
  if (best_loads > 0) {
    const int sms = sm_count(), per_sm = int((best.blocks + unsigned(sms) - 1) / unsigned(sms));
    const bool uneven = double(per_sm) * sms > kUnevenWave * double(best.blocks);
    const int64_t bytes = int64_t(a.cover.pairs) * 2 * a.in.k * int64_t(sizeof(bf16));
    return uneven && bytes >= kBalancedBytes && !a.lora.entries ? balanced_plan(a) : best;
  }
  // Two pairs per warp, sixteen lanes and eight chunks of each row per lane, where that fits in one wave (a gate/up
  // of 4864 × 896: one wave instead of two of twice the blocks).
  const Plan halves = plan_of(a, 8, 1, kHalfWarp);
  if (halves.blocks <= unsigned(resident_blocks(kernel_for<E, 8, kHalfWarp>(a), shared))) return halves;
  int warps_per_pair = 1;
  while (warps_per_pair < kWarps && a.cover.pairs * warps_per_pair < kBusyWarps &&
         chunks / (32 * warps_per_pair) >= kSplitChunksPerLane)
    warps_per_pair *= 2;
  return plan_of(a, chunks / (32 * warps_per_pair) >= 8 ? 8 : 4, warps_per_pair);
}

template <Epilogue E>
void launch(KernelParams& a, bool chained, cudaStream_t stream) {
  const Plan p = plan_launch<E>(a);
  a.cover.warps_per_pair = p.warps_per_pair;
  a.lora.shrink_blocks = p.shrink_blocks;
  const auto kernel = p.lanes_per_pair == kHalfWarp ? kernel_for<E, 8, kHalfWarp>(a)
                      : p.in_flight == 8                ? kernel_for<E, 8>(a)
                                                        : kernel_for<E, 4>(a);
  const size_t bytes = input_bytes(a);
  allow_input_bytes(kernel, bytes);
  const unsigned cluster = cluster_for(kernel, p.blocks, bytes), blocks = (p.blocks + cluster - 1) / cluster * cluster;
  check(launch_kernel(kernel, blocks, kThreads, bytes, stream, chained, a, int(cluster)), "fused gemv launch");
}

// One projection whose rows pair up with their neighbours (the last pair may have one row).
KernelParams neighbour_pairs(const FusedGemvInput& in, const void* w, int64_t rows) {
  KernelParams a = params_of(in, 1);
  a.w[0] = static_cast<const bf16*>(w);
  a.cover.rows = int(rows);
  a.cover.pairs = int((rows + 1) / 2);
  return a;
}

}  // namespace

void gemv_attention_inputs(const FusedGemvInput& in, const QkvGemv& p, cudaStream_t stream) {
  KernelParams a = params_of(in, kMaxProjections);
  for (int s = 0; s < kMaxProjections; ++s) {
    a.w[s] = static_cast<const bf16*>(p.w[s]);
    a.bias[s] = static_cast<const bf16*>(p.bias[s]);
  }
  a.rope.heads = int(p.heads);
  a.rope.kv_heads = int(p.kv_heads);
  a.rope.head_dim = int(p.head_dim);
  a.cover.pairs = int((p.heads + 2 * p.kv_heads) * (p.head_dim / 2));
  a.rope.position = p.position;
  a.rope.slot = p.slot ? p.slot : p.position;
  a.rope.log_theta = std::log(p.theta);
  a.out.row = static_cast<bf16*>(p.q);
  a.out.k_cache = static_cast<bf16*>(p.k_cache);
  a.out.v_cache = static_cast<bf16*>(p.v_cache);
  launch<Epilogue::attention_inputs>(a, in.chained, stream);
}

void gemv_gate_up(const FusedGemvInput& in, const void* w_gate, const void* w_up, int64_t rows, void* h,
                  cudaStream_t stream) {
  KernelParams a = params_of(in, 2);
  a.w[0] = static_cast<const bf16*>(w_gate);
  a.w[1] = static_cast<const bf16*>(w_up);
  a.cover.pairs = a.cover.rows = int(rows);
  a.out.row = static_cast<bf16*>(h);
  launch<Epilogue::gate_up>(a, in.chained, stream);
}

void gemv_residual(const FusedGemvInput& in, const void* w, int64_t rows, void* x, cudaStream_t stream) {
  KernelParams a = neighbour_pairs(in, w, rows);
  a.out.row = static_cast<bf16*>(x);
  launch<Epilogue::residual>(a, in.chained, stream);
}

void gemv_f32(const FusedGemvInput& in, const void* w, int64_t rows, float* out, cudaStream_t stream) {
  KernelParams a = neighbour_pairs(in, w, rows);
  a.out.f32 = out;
  launch<Epilogue::f32>(a, in.chained, stream);
}

}  // namespace wick::cuda
