// The CPU kernels (src/backend/cpu/cpu_kernels.h) at Qwen2.5-0.5B's projection shapes — 896→4864 (gate/up),
// 4864→896 (down), 896→151936 (lm_head) — as the decode GEMV (1 row) and the prefill GEMM (512 rows), each path on
// bf16, q8_0 and f32 weights beside OpenBLAS's sgemv/sgemm on the same weights in f32, in the same run. Counters:
// weight bytes streamed per second (what bounds the GEMV) and FLOP per second (2 · rows · in · outs; what bounds the
// GEMM).
//   wick-bench --benchmark_filter='CpuKernel|MemoryBandwidth'
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "wick/dtype.h"
#include "wick/quant.h"

namespace wick::bench {
namespace {

using cpu::Isa;

// Inputs of one shape, made on first use and kept for the run. The weights repeat in `copies` copies of ≥ 256 MB in
// all, taken in turn, so every call reads them from memory as decode does (a 0.5B model's weights are ~1 GB; the
// lm_head alone is 272 MB bf16 + 544 MB f32): a kernel timed on weights left in cache would look faster than it is.
struct Operands {
  std::vector<float> x, wf, out;
  std::vector<uint16_t> wb;
  std::vector<Q8Block> wq;  // wf quantised, ⌈in / 32⌉ blocks a row
  int64_t copies = 1;
};

enum class Weights { bf16, q8, f32 };

// Bytes a weight takes as held.
double weight_bytes(Weights w) { return w == Weights::bf16 ? 2.0 : w == Weights::f32 ? 4.0 : 34.0 / 32.0; }

constexpr int64_t kColdBytes = int64_t(256) << 20;

const Operands& operands(int64_t rows, int64_t in, int64_t outs) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, Operands> cache;
  Operands& o = cache[{rows, in, outs}];
  if (o.x.empty()) {
    uint64_t state = 0x9e3779b97f4a7c15ull;
    const auto next = [&] {  // xorshift: uniform in [-1, 1), fast enough for 10⁸ weights
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      return float(int64_t(state >> 40) - (int64_t(1) << 23)) / float(1 << 23);
    };
    o.x.resize(size_t(rows * in));
    for (float& v : o.x) v = next();
    o.copies = (kColdBytes + outs * in * 2 - 1) / (outs * in * 2);
    o.wf.resize(size_t(o.copies * outs * in));
    o.wb.resize(o.wf.size());
    for (size_t i = 0; i < o.wf.size(); ++i) o.wf[i] = 0.05f * next(), o.wb[i] = f32_to_bf16(o.wf[i]);
    const int64_t blocks = q8_blocks(in);
    o.wq.resize(size_t(o.copies * outs * blocks));
    for (int64_t r = 0; r < o.copies * outs; ++r) quantize_q8_0(o.wf.data() + r * in, o.wq.data() + r * blocks, in);
    o.out.assign(size_t(rows * outs), 0.0f);
  }
  return o;
}

void set_counters(benchmark::State& state, int64_t rows, int64_t in, int64_t outs, double weight_bytes) {
  const double n = double(state.iterations());
  state.counters["weight_B/s"] = benchmark::Counter(n * double(outs * in) * weight_bytes, benchmark::Counter::kIsRate);
  state.counters["FLOP/s"] = benchmark::Counter(n * 2.0 * double(rows * in * outs), benchmark::Counter::kIsRate);
}

// wick's kernel on path `isa`, with bf16, q8_0 or f32 weights.
void BM_CpuKernel(benchmark::State& state, Isa isa, Weights weights, int64_t rows, int64_t in, int64_t outs) {
  if (!cpu::isa_supported(isa, cpu::detect_cpu_features())) {
    state.SkipWithError("this CPU lacks the path");
    return;
  }
  const Operands& o = operands(rows, in, outs);
  std::vector<float> out = o.out;
  cpu::force_isa(isa);
  int64_t copy = 0;
  for (auto _ : state) {
    const int64_t c = copy++ % o.copies, at = c * outs * in;
    switch (weights) {
      case Weights::bf16: cpu::gemm_bf16(o.x.data(), o.wb.data() + at, out.data(), {rows, in, outs}); break;
      case Weights::q8:
        cpu::gemm_q8(o.x.data(), o.wq.data() + c * outs * q8_blocks(in), out.data(), {rows, in, outs});
        break;
      case Weights::f32: cpu::gemm_f32(o.x.data(), o.wf.data() + at, out.data(), {rows, in, outs}); break;
    }
    benchmark::ClobberMemory();
  }
  cpu::reset_isa();
  set_counters(state, rows, in, outs, weight_bytes(weights));
}

// OpenBLAS (the CPU backend's GEMM today) on f32 weights, as CpuBackend::linear calls it.
void BM_CpuKernelOpenBlas(benchmark::State& state, int64_t rows, int64_t in, int64_t outs) {
  const Operands& o = operands(rows, in, outs);
  std::vector<float> out = o.out;
  int64_t copy = 0;
  for (auto _ : state) {
    const float* w = o.wf.data() + (copy++ % o.copies) * outs * in;
    if (rows == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(outs), int(in), 1.0f, w, int(in), o.x.data(), 1, 0.0f, out.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(outs), int(in), 1.0f, o.x.data(), int(in), w,
                  int(in), 0.0f, out.data(), int(outs));
    }
    benchmark::ClobberMemory();
  }
  set_counters(state, rows, in, outs, 4.0);
}

// Per shape: every path on bf16, q8_0 and f32 weights, then OpenBLAS. The scalar path runs only the GEMV (its 512-row
// GEMMs take minutes); avx512bf16 runs avx512's kernels on q8_0 and f32 weights, so only bf16 shows it.
const bool registered = [] {
  const int64_t shapes[][2] = {{896, 4864}, {4864, 896}, {896, 151936}};
  for (int64_t rows : {1, 8, 32, 512})
    for (const auto& [in, outs] : shapes) {
      const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(outs);
      for (Weights weights : {Weights::bf16, Weights::q8, Weights::f32})
        for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512bf16}) {
          if (rows > 1 && isa == Isa::scalar) continue;
          if (weights != Weights::bf16 && isa == Isa::avx512bf16) continue;  // avx512's kernels there
          const char* kind = weights == Weights::bf16 ? "bf16/" : weights == Weights::q8 ? "q8_0/" : "f32/";
          const std::string name = "BM_CpuKernel/" + shape + "/" + kind + std::string(cpu::isa_name(isa));
          benchmark::RegisterBenchmark(name.c_str(), BM_CpuKernel, isa, weights, rows, in, outs)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      benchmark::RegisterBenchmark(("BM_CpuKernel/" + shape + "/f32/openblas").c_str(), BM_CpuKernelOpenBlas, rows,
                                   in, outs)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  return true;
}();

}  // namespace
}  // namespace wick::bench
