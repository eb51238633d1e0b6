// wick's own CPU matrix kernels: out = alpha · x · wᵀ + beta · out with f32 activations and bf16, f16, q8_0 or f32
// weights, one path per instruction set, picked at run time. The decode GEMV (one row) streams w once and is bound by
// memory; on the AVX-512 paths so do products of a few rows (a batched decode step: up to 16), every row group against
// a tile of w rows before the next; the prefill GEMM (many rows) keeps tiles of x rows × w rows in registers and is
// bound by arithmetic.
// Private to src/backend/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "wick/quant.h"

namespace wick::cpu {

/// The kernel paths, slowest first. Each needs what the one before it needs, and more:
/// avx2 = AVX2 + FMA + F16C; avx512 = AVX-512 F/BW/VL/DQ; avx512bf16 = avx512 + AVX512_BF16 (vdpbf16ps).
enum class Isa : uint8_t { scalar, avx2, avx512, avx512bf16 };

/// "scalar", "avx2", "avx512", "avx512bf16".
std::string_view isa_name(Isa isa);

/// Parses a name of isa_name; throws Error(bad_input) listing the names otherwise. `what` names the source
/// ("WICK_CPU_ISA").
Isa parse_isa(std::string_view name, std::string_view what);

/// What the CPU reports through cpuid, and which register state the OS saves (XCR0 through xgetbv): an
/// instruction set is usable only when both hold.
struct CpuFeatures {
  bool fma = false, avx2 = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512bf16 = false;
  bool os_saves_ymm = false;  // XCR0 bits 1–2 (SSE, AVX state)
  bool os_saves_zmm = false;  // XCR0 bits 5–7 (opmask, upper zmm halves, zmm16–31)
};

/// This machine's features (cpuid, once per call; all false off x86-64).
CpuFeatures detect_cpu_features();

/// Whether a CPU with features `f` can run path `isa`.
bool isa_supported(Isa isa, const CpuFeatures& f);

/// The fastest path a CPU with features `f` can run. avx512bf16 rounds activations to bf16 where they meet bf16
/// weights, as llama.cpp's bf16 path and PyTorch's bf16 matmuls do (on a Zen 5 with the 0.5B model: 1.27× the f32
/// products' 512-token prefill, 1.06× their decode; logits about 3·10⁻³ relative off the f32 reference, within bf16's
/// tolerance). What needs the f32 products asks for them: WICK_CPU_ISA=avx512, or f32 weights (`--compute f32`,
/// CpuWeights::f32), which no path rounds.
Isa best_isa(const CpuFeatures& f);

/// The path for a request (WICK_CPU_ISA's value; null or empty: none) on a CPU with features `f`: the one asked for,
/// else best_isa(f). Throws Error(bad_input) for an unknown name, Error(unsupported) naming the request, the missing
/// features and the paths `f` runs when `f` cannot run it.
Isa choose_isa(const char* requested, const CpuFeatures& f);

/// The path the kernels take now: the one forced by force_isa, else choose_isa(WICK_CPU_ISA, this CPU), read
/// once. Throws what choose_isa throws, on every call while WICK_CPU_ISA is bad.
Isa active_isa();

/// Forces every later kernel call onto `isa` (tests, benchmarks). Throws Error(unsupported) naming `isa` and what
/// the CPU has when it cannot run it; the previous choice then stays.
void force_isa(Isa isa);

/// Drops a force_isa: back to WICK_CPU_ISA or the best path.
void reset_isa();

/// Matrix sizes of a gemm: x [rows, in], w [outs, in], out [rows, outs], all dense and row-major.
struct GemmShape {
  int64_t rows = 0;
  int64_t in = 0;
  int64_t outs = 0;
};

/// out[r, j] = alpha · Σ_i x[r, i] · w[j, i] + beta · out[r, j], on the active path, over wick's thread pool.
/// w holds bf16 bit patterns. With beta == 0, out is written without being read.
/// Numerics: products of f32 x and bf16 w are exact in f32 and summed in f32 in an order that depends on the
/// path, never on the number of rows: on every path, row r of a product equals, bit for bit, the product of row r
/// alone (a batch gives each sequence what it would get alone). On avx512bf16 x is rounded to bf16 first (relative
/// error ≤ 2⁻⁸ per element, denormals flushed) to use vdpbf16ps, for one row as for many.
void gemm_bf16(const float* x, const uint16_t* w, float* out, GemmShape s, LinearParams p = {});

/// The same with f32 weights (always f32 x; no bf16 rounding anywhere; rows independent as above).
void gemm_f32(const float* x, const float* w, float* out, GemmShape s, LinearParams p = {});

/// The same with f16 weights (w holds f16 bit patterns): each widened to f32 in registers, exactly, and summed as
/// gemm_f32 sums, so the result is gemm_f32's on the widened matrix, bit for bit, on every path (always f32 x;
/// avx512bf16 runs avx512's kernels); rows independent bit for bit as above.
void gemm_f16(const float* x, const uint16_t* w, float* out, GemmShape s, LinearParams p = {});

/// The same with q8_0 weights: w is [outs, in] as ⌈in / 32⌉ Q8Blocks a row (wick/quant.h). Each weight is dequantised
/// in registers — q · scale, exact in f32 — so the result is gemm_f32's on the dequantised matrix, on every path (the
/// same sums in the same order where in ≤ 2048, a single k block; beyond, the k blocks split on multiples of 32
/// instead of 16 or 8). Always f32 x (avx512bf16 runs avx512's kernels); rows independent bit for bit as above.
void gemm_q8(const float* x, const Q8Block* w, float* out, GemmShape s, LinearParams p = {});

/// Attention's inner loops for one query and one head over a run of n cache rows `stride` floats apart (one head's
/// keys or values, d floats each), on the active path (f32 on every path; the calling thread only):
/// scores[j] = scale · q·k_j, with k_j = k + j · stride.
void attention_scores(const float* q, const float* k, int64_t stride, int64_t n, int64_t d, float scale, float* scores);
/// out[0, d) += Σ_j p[j] · v_j, with v_j = v + j · stride.
void attention_values(const float* p, const float* v, int64_t stride, int64_t n, int64_t d, float* out);
/// The softmax's exponentials in place: s[j] = exp(s[j] − max_j s) for j < n; returns their sum. The vector paths
/// compute exp by a polynomial (relative error ≈ 1e-7; exp(x) = 0 below −87.3), the scalar path by std::exp.
float softmax_exp(float* s, int64_t n);
/// out[i] = silu(gate[i]) · up[i] = gate[i] · up[i] / (1 + exp(−gate[i])) for i < n (out may alias either input; the
/// vector paths' exp as softmax_exp's).
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

}  // namespace wick::cpu
