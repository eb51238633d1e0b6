// The kernels' dispatcher (which path runs, from cpuid and the OS's saved register state), their split over the
// thread pool, and the scalar path, which is also the twin the vector paths are tested against. Compiled with the
// build's portable flags: nothing here may execute an instruction the CPU lacks.
#include "backend/cpu/cpu_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "backend/cpu/cpu_kernels_impl.h"
#include "core/thread_pool.h"
#include "wick/dtype.h"
#include "wick/error.h"

namespace wick::cpu {

namespace {

constexpr Isa kIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512bf16};

// Work split (see gemm_block in cpu_gemm_tile_impl.h for the tiles inside a block):
constexpr int64_t kGemvBlockOuts = 8;   // w rows of one GEMV work item: one register tile
constexpr int64_t kGemmBlockRows = 64;  // x rows × w rows (kGemmBlockOuts) of one GEMM work item; the w rows' k block
                                        // stays in L2 while the x rows stream past them
constexpr int64_t kMinTaskWork = int64_t(1) << 16;  // multiply-adds below which another thread costs more than it saves

// The path's kernels, or all null for scalar (and for a path this build could not compile): assembled once, since
// attention calls this per query and head.
const IsaKernels& kernels_for(Isa isa) {
  static const IsaKernels none{}, avx512bf16 = [] {
    if (!kAvx512Bf16Kernels.gemm_bf16 || !kAvx512Kernels.gemv_bf16w) return IsaKernels{};
    IsaKernels k = kAvx512Kernels;  // avx512's kernels, with the bf16-activation products in place of its own
    k.gemv_bf16 = kAvx512Bf16Kernels.gemv_bf16;
    k.gemm_bf16 = kAvx512Bf16Kernels.gemm_bf16;
    k.to_bf16 = kAvx512Bf16Kernels.to_bf16;
    return k;
  }();
  switch (isa) {
    case Isa::scalar:
      return none;
    case Isa::avx2:
      return kAvx2Kernels;
    case Isa::avx512:
      return kAvx512Kernels;
    case Isa::avx512bf16:
      return avx512bf16;
  }
  return none;
}

bool compiled(Isa isa) { return isa == Isa::scalar || kernels_for(isa).gemv_bf16w != nullptr; }

// The features `isa` needs that `f` lacks, by their cpuid names ("" when none).
std::string missing_features(Isa isa, const CpuFeatures& f) {
  std::string out;
  const auto need = [&](bool have, const char* name) {
    if (!have) out += (out.empty() ? "" : ", ") + std::string(name);
  };
  if (isa >= Isa::avx2) {
    need(f.avx2, "AVX2");
    need(f.fma, "FMA");
    need(f.f16c, "F16C");
    need(f.os_saves_ymm, "OS-saved ymm state (XCR0)");
  }
  if (isa >= Isa::avx512) {
    need(f.avx512f, "AVX512F");
    need(f.avx512bw, "AVX512BW");
    need(f.avx512vl, "AVX512VL");
    need(f.avx512dq, "AVX512DQ");
    need(f.os_saves_zmm, "OS-saved zmm state (XCR0)");
  }
  if (isa >= Isa::avx512bf16) need(f.avx512bf16, "AVX512_BF16");
  return out;
}

const CpuFeatures& this_cpu() {
  static const CpuFeatures f = detect_cpu_features();
  return f;
}

// Throws Error(unsupported) unless a CPU with features `f` (and this build) runs `isa`; `asked` says who asked.
void require(Isa isa, const CpuFeatures& f, const std::string& asked) {
  const std::string missing = missing_features(isa, f);
  if (missing.empty() && compiled(isa)) return;
  std::string runs;
  for (Isa i : kIsas)
    if (isa_supported(i, f)) runs += (runs.empty() ? "" : ", ") + std::string(isa_name(i));
  fail(ErrorKind::unsupported,
       "cpu kernels: " + asked + " asks for the " + std::string(isa_name(isa)) + " path, but " +
           (missing.empty() ? std::string("this build has no code for it (compiler or target)")
                            : "this CPU lacks " + missing) +
           "; this CPU runs: " + runs);
}

std::atomic<int> forced_isa{-1};  // an Isa, or -1: none forced

// Σ_i x[i] · w[i] over one row of n, summed in order in f32: w in f32, bf16 or f16 bits (widened exactly) or q8_0
// blocks (each weight q · scale, exact in f32).
float dot_f32(const float* x, const float* w, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += x[i] * w[i];
  return acc;
}
template <float (*widen)(uint16_t)>
float dot_half(const float* x, const uint16_t* w, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += x[i] * widen(w[i]);
  return acc;
}
float dot_q8(const float* x, const Q8Block* w, int64_t n) {
  float acc = 0.0f;
  for (int64_t i0 = 0; i0 < n; i0 += kQ8Group) {
    const Q8Block& b = w[i0 / kQ8Group];
    const float scale = f16_to_f32(b.scale);
    for (int64_t i = i0; i < std::min(n, i0 + kQ8Group); ++i) acc += x[i] * (float(b.q[i - i0]) * scale);
  }
  return acc;
}

// The scalar path and twin: one dot product per output (`dot`, one of the above), summed in order in f32.
template <auto dot, class W>
void scalar_gemm(const float* x, const W* w, float* out, GemmShape s, LinearParams p) {
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, s.rows * s.in));
  const int64_t row = std::is_same_v<W, Q8Block> ? q8_blocks(s.in) : s.in;  // W units a w row
  parallel_for(s.outs, grain, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < s.rows; ++r) {
      const float* xr = x + r * s.in;
      for (int64_t j = j0; j < j1; ++j) {
        const float acc = dot(xr, w + j * row, s.in);
        float& o = out[r * s.outs + j];
        o = p.beta == 0.0f ? p.alpha * acc : p.alpha * acc + p.beta * o;
      }
    }
  });
}

// Runs `fn` over the whole product in work items on the thread pool: one-row products as contiguous ranges of w
// rows (split evenly: the GEMV is bound by memory, so every thread streams an equal share), many-row products as
// kGemmBlockRows × kGemmBlockOuts blocks, x rows varying fastest so a thread's consecutive blocks share w rows.
// `panel`: each thread's blocks get GemmBlock::panel (kPanelFloats, the thread's own, kept for its next call).
void run_blocks(BlockFn fn, const void* x, const void* w, float* out, GemmShape s, LinearParams p, bool panel = false) {
  const GemmBlock whole{x, w, out, s.in, s.outs, 0, s.rows, 0, s.outs, p.alpha, p.beta, nullptr};
  if (s.rows == 1) {
    const int64_t items = (s.outs + kGemvBlockOuts - 1) / kGemvBlockOuts;
    const int64_t grain = std::max<int64_t>(1, kMinTaskWork / (kGemvBlockOuts * s.in));
    parallel_for(items, grain, [&](int64_t b0, int64_t b1) {
      GemmBlock b = whole;
      b.j0 = b0 * kGemvBlockOuts;
      b.j1 = std::min(s.outs, b1 * kGemvBlockOuts);
      fn(b);
    });
    return;
  }
  const int64_t row_blocks = (s.rows + kGemmBlockRows - 1) / kGemmBlockRows;
  const int64_t out_blocks = (s.outs + kGemmBlockOuts - 1) / kGemmBlockOuts;
  const int64_t block_work = std::min(s.rows, kGemmBlockRows) * std::min(s.outs, kGemmBlockOuts) * s.in;
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, block_work));
  parallel_for(row_blocks * out_blocks, grain, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> scratch;
    if (panel) scratch.resize(size_t(kPanelFloats));
    for (int64_t i = b0; i < b1; ++i) {
      GemmBlock b = whole;
      b.panel = panel ? scratch.data() : nullptr;
      b.r0 = (i % row_blocks) * kGemmBlockRows;
      b.r1 = std::min(s.rows, b.r0 + kGemmBlockRows);
      b.j0 = (i / row_blocks) * kGemmBlockOuts;
      b.j1 = std::min(s.outs, b.j0 + kGemmBlockOuts);
      fn(b);
    }
  });
}

// Checks the shape; handles the products with nothing to sum. Returns whether kernels have work left.
bool prepare(float* out, GemmShape s, LinearParams p, const char* op) {
  if (s.rows < 0 || s.in < 0 || s.outs < 0)
    fail(ErrorKind::internal, std::string("cpu ") + op + ": negative shape rows " + std::to_string(s.rows) + " in " +
                                  std::to_string(s.in) + " outs " + std::to_string(s.outs));
  if (s.rows == 0 || s.outs == 0) return false;
  if (s.in > 0) return true;
  for (int64_t i = 0; i < s.rows * s.outs; ++i) out[i] = p.beta == 0.0f ? 0.0f : p.beta * out[i];
  return false;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512bf16:
      return "avx512bf16";
  }
  return "?";
}

Isa parse_isa(std::string_view name, std::string_view what) {
  for (Isa isa : kIsas)
    if (name == isa_name(isa)) return isa;
  fail(ErrorKind::bad_input, std::string(what) + ": unknown CPU kernel path '" + std::string(name) +
                                 "' (expected scalar, avx2, avx512 or avx512bf16)");
}

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (c & (1u << 27)) {  // OSXSAVE: xgetbv may be executed
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.os_saves_ymm = (lo & 0x06u) == 0x06u;
    f.os_saves_zmm = (lo & 0xe6u) == 0xe6u;
  }
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned max_subleaf = a;
  f.avx2 = b & (1u << 5);
  f.avx512f = b & (1u << 16);
  f.avx512dq = b & (1u << 17);
  f.avx512bw = b & (1u << 30);
  f.avx512vl = b & (1u << 31);
  if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = a & (1u << 5);
#endif
  return f;
}

bool isa_supported(Isa isa, const CpuFeatures& f) { return missing_features(isa, f).empty() && compiled(isa); }

Isa best_isa(const CpuFeatures& f) {
  Isa best = Isa::scalar;
  for (Isa isa : kIsas)
    if (isa_supported(isa, f)) best = isa;
  return best;
}

Isa choose_isa(const char* requested, const CpuFeatures& f) {
  if (!requested || !*requested) return best_isa(f);
  const Isa isa = parse_isa(requested, "WICK_CPU_ISA");
  require(isa, f, "WICK_CPU_ISA=" + std::string(requested));
  return isa;
}

Isa active_isa() {
  const int forced = forced_isa.load(std::memory_order_relaxed);
  if (forced >= 0) return Isa(forced);
  // Read once; a throw leaves it unset, so every later call reports the bad setting again.
  static const Isa chosen = choose_isa(std::getenv("WICK_CPU_ISA"), this_cpu());
  return chosen;
}

void force_isa(Isa isa) {
  require(isa, this_cpu(), "force_isa(" + std::string(isa_name(isa)) + ")");
  forced_isa.store(int(isa), std::memory_order_relaxed);
}

void reset_isa() { forced_isa.store(-1, std::memory_order_relaxed); }

void gemm_bf16(const float* x, const uint16_t* w, float* out, GemmShape s, LinearParams p) {
  if (!prepare(out, s, p, "gemm_bf16")) return;
  const Isa isa = active_isa();
  if (isa == Isa::scalar) return scalar_gemm<dot_half<bf16_to_f32>>(x, w, out, s, p);
  const IsaKernels& k = kernels_for(isa);
  if (!k.gemm_bf16) return run_blocks(s.rows == 1 ? k.gemv_bf16w : k.gemm_bf16w, x, w, out, s, p);
  // x [rows, in] rounded to bf16 once, whatever the number of rows (a row's result must not depend on the others). The buffer stays with the calling thread for its next call; workers get its
  // address (a thread_local named inside the loop would be each worker's own).
  thread_local std::vector<uint16_t> x_bf16;
  x_bf16.resize(size_t(s.rows * s.in));
  uint16_t* xb = x_bf16.data();
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / s.in);
  parallel_for(s.rows, grain, [&](int64_t r0, int64_t r1) { k.to_bf16(x + r0 * s.in, xb + r0 * s.in, (r1 - r0) * s.in); });
  run_blocks(s.rows == 1 ? k.gemv_bf16 : k.gemm_bf16, xb, w, out, s, p);
}

void gemm_f32(const float* x, const float* w, float* out, GemmShape s, LinearParams p) {
  if (!prepare(out, s, p, "gemm_f32")) return;
  const Isa isa = active_isa();
  if (isa == Isa::scalar) return scalar_gemm<dot_f32>(x, w, out, s, p);
  const IsaKernels& k = kernels_for(isa);
  run_blocks(s.rows == 1 ? k.gemv_f32w : k.gemm_f32w, x, w, out, s, p);
}

void gemm_f16(const float* x, const uint16_t* w, float* out, GemmShape s, LinearParams p) {
  if (!prepare(out, s, p, "gemm_f16")) return;
  const Isa isa = active_isa();
  if (isa == Isa::scalar) return scalar_gemm<dot_half<f16_to_f32>>(x, w, out, s, p);
  const IsaKernels& k = kernels_for(isa);
  run_blocks(s.rows == 1 ? k.gemv_f16w : k.gemm_f16w, x, w, out, s, p);
}

void gemm_q8(const float* x, const Q8Block* w, float* out, GemmShape s, LinearParams p) {
  if (!prepare(out, s, p, "gemm_q8")) return;
  const Isa isa = active_isa();
  if (isa == Isa::scalar) return scalar_gemm<dot_q8>(x, w, out, s, p);
  const IsaKernels& k = kernels_for(isa);
  if (s.rows == 1) return run_blocks(k.gemv_q8w, x, w, out, s, p);
  run_blocks(k.gemm_q8w, x, w, out, s, p, k.gemm_q8w_widens);
}

void attention_scores(const float* q, const float* k, int64_t stride, int64_t n, int64_t d, float scale,
                      float* scores) {
  const IsaKernels& kernels = kernels_for(active_isa());
  if (kernels.attention_scores) {
    return kernels.attention_scores(
        {.q = q, .k = k, .v = nullptr, .p = nullptr, .scores = scores, .out = nullptr, .stride = stride, .n = n, .d = d,
         .scale = scale});
  }
  for (int64_t j = 0; j < n; ++j) {
    float s = 0.0f;
    for (int64_t i = 0; i < d; ++i) s += q[i] * k[j * stride + i];
    scores[j] = scale * s;
  }
}

void attention_values(const float* p, const float* v, int64_t stride, int64_t n, int64_t d, float* out) {
  const IsaKernels& kernels = kernels_for(active_isa());
  if (kernels.attention_values) {
    return kernels.attention_values({.q = nullptr, .k = nullptr, .v = v, .p = p, .scores = nullptr, .out = out,
                                     .stride = stride, .n = n, .d = d, .scale = 1.0f});
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < d; ++i) out[i] += p[j] * v[j * stride + i];
}

float softmax_exp(float* s, int64_t n) {
  if (n <= 0) return 0.0f;
  const IsaKernels& kernels = kernels_for(active_isa());
  if (kernels.softmax_exp) return kernels.softmax_exp(s, n);
  float top = s[0];
  for (int64_t j = 1; j < n; ++j) top = std::max(top, s[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum += s[j] = std::exp(s[j] - top);
  return sum;
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const IsaKernels& kernels = kernels_for(active_isa());
  if (kernels.silu_mul) return kernels.silu_mul(gate, up, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace wick::cpu
