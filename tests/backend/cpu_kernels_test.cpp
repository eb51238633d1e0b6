// The CPU kernels (src/backend/cpu/cpu_kernels.h): every path this CPU runs, forced in turn, against the scalar twin
// and both against a double-precision reference, on shapes with odd sizes; and the dispatcher's choice of path.
//
// Tolerance: x and w hold bf16-representable values with magnitudes in [0.5, 1] and random signs. A product of two
// such values is exact in f32 (8-bit mantissas), so the only error is the f32 summation (in some order) of `in`
// products, then alpha · s + beta · out: at most γ_{in+3} · (|alpha| · Σ|x·w| + |beta · out|), γ_n = n·u/(1 − n·u),
// u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1). Path and twin each meet it against the double reference, so they
// differ by at most twice it. Every term |x·w| ≥ 0.25 while the bound stays below 0.1 for these sizes, so a dropped,
// doubled or misplaced term (a wrong tail, a wrong row) always fails. f32 weights hold arbitrary f32 values: each
// product then rounds too, which γ_{in+3} covers as well (one more rounding per term, within the +3). f16 and q8_0
// weights are such f32 values too: each f16 value and each dequantised weight q · scale is exact in f32, and the
// reference takes those values.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "test_util.h"
#include "wick/dtype.h"
#include "wick/error.h"
#include "wick/quant.h"

namespace wick::cpu {
namespace {

constexpr double kU = 1.0 / (1 << 24);

// Drops any forced path when a test ends.
struct ResetIsa {
  ~ResetIsa() { reset_isa(); }
};

std::vector<Isa> runnable_paths() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512bf16})
    if (isa_supported(isa, detect_cpu_features())) out.push_back(isa);
  return out;
}

// Magnitudes in [0.5, 1], random signs, rounded to bf16.
std::vector<float> random_values(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> mag(0.5f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = bf16_to_f32(f32_to_bf16((rng() & 1 ? 1.0f : -1.0f) * mag(rng)));
  return v;
}

enum class Weights { bf16, f16, f32, q8 };

const char* weights_name(Weights w) {
  return w == Weights::bf16 ? "bf16" : w == Weights::f16 ? "f16" : w == Weights::f32 ? "f32" : "q8_0";
}

struct Problem {
  GemmShape s;
  LinearParams p;
  std::vector<float> x;      // [rows, in]
  std::vector<uint16_t> wb;  // [outs, in] bf16 bits
  std::vector<float> wf;     // the same values in f32 (or any f32 values: see make_problem)
  std::vector<float> out0;   // out's contents before the call (NaN when beta == 0: they must not be read)
  std::vector<Q8Block> wq;   // [outs, in] as q8_0 (⌈in / 32⌉ blocks a row) once quantize_weights ran
  std::vector<uint16_t> wh;  // [outs, in] f16 bits once round_to_f16 ran
};

// Normal f32 weights in place of the bf16 ones (their products round as well).
void use_f32_weights(Problem& pr, uint32_t seed) {
  std::mt19937 rng(seed * 7919u);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : pr.wf) v = dist(rng);
}

// wf quantised to q8_0 row by row into wq; wf then holds the dequantised values, what the q8_0 kernels multiply by.
void quantize_weights(Problem& pr) {
  const int64_t blocks = q8_blocks(pr.s.in);
  pr.wq.assign(size_t(pr.s.outs * blocks), Q8Block{});
  for (int64_t j = 0; j < pr.s.outs; ++j) {
    quantize_q8_0(pr.wf.data() + j * pr.s.in, pr.wq.data() + j * blocks, pr.s.in);
    dequantize_q8_0(pr.wq.data() + j * blocks, pr.wf.data() + j * pr.s.in, pr.s.in);
  }
}

// wf rounded to f16 into wh (subnormals among them: the normal values scaled by 2⁻¹⁶ in every 16th row); wf then
// holds the f16 values, what the f16 kernels multiply by.
void round_to_f16(Problem& pr) {
  pr.wh.clear();
  for (size_t i = 0; i < pr.wf.size(); ++i) {
    const bool tiny = (int64_t(i) / pr.s.in) % 16 == 15;
    pr.wh.push_back(f32_to_f16(tiny ? std::ldexp(pr.wf[i], -16) : pr.wf[i]));
    pr.wf[i] = f16_to_f32(pr.wh.back());
  }
}

Problem make_problem(GemmShape s, LinearParams p, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem pr{s, p, random_values(s.rows * s.in, rng), {}, random_values(s.outs * s.in, rng), {}, {}, {}};
  for (float v : pr.wf) pr.wb.push_back(f32_to_bf16(v));
  pr.out0 = p.beta == 0.0f ? std::vector<float>(size_t(s.rows * s.outs), std::numeric_limits<float>::quiet_NaN())
                           : random_values(s.rows * s.outs, rng);
  return pr;
}

// The exact result (double) and the f32 error bound of each output.
struct Reference {
  std::vector<double> value, bound;
};

Reference reference(const Problem& pr, const std::vector<float>& x, const std::vector<float>& w) {
  const GemmShape s = pr.s;
  Reference ref;
  const double gamma = double(s.in + 3) * kU / (1.0 - double(s.in + 3) * kU);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t j = 0; j < s.outs; ++j) {
      double sum = 0, abs_sum = 0;
      for (int64_t i = 0; i < s.in; ++i) {
        const double t = double(x[size_t(r * s.in + i)]) * double(w[size_t(j * s.in + i)]);
        sum += t;
        abs_sum += std::fabs(t);
      }
      const double prior = pr.p.beta == 0.0f ? 0.0 : double(pr.p.beta) * pr.out0[size_t(r * s.outs + j)];
      ref.value.push_back(double(pr.p.alpha) * sum + prior);
      ref.bound.push_back(gamma * (std::fabs(pr.p.alpha) * abs_sum + std::fabs(prior)) + 1e-30);
    }
  return ref;
}

std::vector<float> run(const Problem& pr, Weights weights, const std::vector<float>& x) {
  std::vector<float> out = pr.out0;
  switch (weights) {
    case Weights::bf16: gemm_bf16(x.data(), pr.wb.data(), out.data(), pr.s, pr.p); break;
    case Weights::f16: gemm_f16(x.data(), pr.wh.data(), out.data(), pr.s, pr.p); break;
    case Weights::f32: gemm_f32(x.data(), pr.wf.data(), out.data(), pr.s, pr.p); break;
    case Weights::q8: gemm_q8(x.data(), pr.wq.data(), out.data(), pr.s, pr.p); break;
  }
  return out;
}

// Every output within `scale` bounds of the reference; the first failure names its place.
::testing::AssertionResult within(const std::vector<float>& got, const Reference& ref, double scale) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - ref.value[i]);
    if (!(err <= scale * ref.bound[i]))
      return ::testing::AssertionFailure() << "output " << i << ": got " << got[i] << ", exact " << ref.value[i]
                                           << ", error " << err << " > " << scale * ref.bound[i];
  }
  return ::testing::AssertionSuccess();
}

struct Case {
  GemmShape s;
  LinearParams p;
};

std::vector<Case> cases() {
  const LinearParams params[] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}};
  std::vector<Case> out;
  int n = 0;
  for (int64_t rows : {1, 2, 5, 64, 200})
    for (int64_t in : {1, 7, 31, 33, 896 + 5})
      for (int64_t outs : {1, 3, 17, 129}) out.push_back({{rows, in, outs}, params[n++ % 3]});
  return out;
}

void check_every_path(Weights weights) {
  ResetIsa reset;
  uint32_t seed = 1;
  for (const Case& c : cases()) {
    Problem pr = make_problem(c.s, c.p, seed++);
    if (weights != Weights::bf16) use_f32_weights(pr, seed);
    if (weights == Weights::q8) quantize_weights(pr);
    if (weights == Weights::f16) round_to_f16(pr);
    const Reference ref = reference(pr, pr.x, pr.wf);
    force_isa(Isa::scalar);
    const std::vector<float> twin = run(pr, weights, pr.x);
    const std::string shape = "rows " + std::to_string(c.s.rows) + " in " + std::to_string(c.s.in) + " outs " +
                              std::to_string(c.s.outs) + " alpha " + std::to_string(c.p.alpha) + " beta " +
                              std::to_string(c.p.beta);
    ASSERT_TRUE(within(twin, ref, 1.0)) << "scalar twin, " << shape;
    for (Isa isa : runnable_paths()) {
      force_isa(isa);
      const std::vector<float> got = run(pr, weights, pr.x);
      ASSERT_TRUE(within(got, ref, 1.0)) << isa_name(isa) << " against the exact result, " << shape;
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_LE(std::fabs(double(got[i]) - twin[i]), 2.0 * ref.bound[i])
            << isa_name(isa) << " against the scalar twin at output " << i << ", " << shape;
    }
  }
}

TEST(CpuKernels, EveryPathMatchesTheScalarTwinOnBf16Weights) { check_every_path(Weights::bf16); }

TEST(CpuKernels, EveryPathMatchesTheScalarTwinOnF16Weights) { check_every_path(Weights::f16); }

TEST(CpuKernels, EveryPathMatchesTheScalarTwinOnF32Weights) { check_every_path(Weights::f32); }

TEST(CpuKernels, EveryPathMatchesTheScalarTwinOnQ8Weights) { check_every_path(Weights::q8); }

// q8_0 weights are dequantised exactly and then summed as f32 weights are: on every path, gemm_q8 gives gemm_f32's
// bits on the dequantised matrix while in ≤ 2048 (one k block; beyond it the k blocks split on multiples of 32 rather
// than of the f32 kernels' 16 or 8), odd sizes and partial last blocks included.
TEST(CpuKernels, Q8EqualsF32OnTheDequantisedWeightsBitForBit) {
  ResetIsa reset;
  uint32_t seed = 300;
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    for (const Case& c : cases()) {
      Problem pr = make_problem(c.s, c.p, seed++);
      use_f32_weights(pr, seed);
      quantize_weights(pr);
      const std::vector<float> q8 = run(pr, Weights::q8, pr.x), f32 = run(pr, Weights::f32, pr.x);
      for (size_t i = 0; i < q8.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(q8[i]), std::bit_cast<uint32_t>(f32[i]))
            << isa_name(isa) << " rows " << c.s.rows << " in " << c.s.in << " outs " << c.s.outs << " output " << i
            << ": q8_0 " << q8[i] << ", f32 " << f32[i];
    }
  }
}

// f16 weights are widened exactly and then summed as f32 weights are (the same tiles, steps and k blocks): on every
// path, gemm_f16 gives gemm_f32's bits on the widened matrix, subnormal f16 values and odd sizes included.
TEST(CpuKernels, F16EqualsF32OnTheWidenedWeightsBitForBit) {
  ResetIsa reset;
  uint32_t seed = 400;
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    for (Case c : cases()) {
      if (c.s.rows == 5) c.s.in = 4864 + 3;  // three k blocks
      Problem pr = make_problem(c.s, c.p, seed++);
      use_f32_weights(pr, seed);
      round_to_f16(pr);
      const std::vector<float> f16 = run(pr, Weights::f16, pr.x), f32 = run(pr, Weights::f32, pr.x);
      for (size_t i = 0; i < f16.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(f16[i]), std::bit_cast<uint32_t>(f32[i]))
            << isa_name(isa) << " rows " << c.s.rows << " in " << c.s.in << " outs " << c.s.outs << " output " << i
            << ": f16 " << f16[i] << ", f32 " << f32[i];
    }
  }
}

// x not representable in bf16: every path but avx512bf16 keeps it in f32 (the tight bound holds); avx512bf16 rounds it
// to bf16 first, for one row as for many, adding at most 2⁻⁸ · |alpha| · Σ|x·w| (bf16's unit roundoff: each x's
// relative rounding error), and no more.
TEST(CpuKernels, OnlyTheBf16PathRoundsActivations) {
  ResetIsa reset;
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t rows : {1, 4, 64}) {
    Problem pr = make_problem({rows, 901, 37}, {1.5f, 0.0f}, 7u + uint32_t(rows));
    for (float& v : pr.x) v = dist(rng);
    const Reference ref = reference(pr, pr.x, pr.wf);
    Reference loose = ref;
    for (size_t i = 0; i < ref.bound.size(); ++i) {
      const double abs_sum = ref.bound[i] / (double(901 + 3) * kU / (1.0 - double(901 + 3) * kU));
      loose.bound[i] = ref.bound[i] + abs_sum / 256.0;
    }
    for (Isa isa : runnable_paths()) {
      force_isa(isa);
      const std::vector<float> got = run(pr, Weights::bf16, pr.x);
      EXPECT_TRUE(within(got, isa == Isa::avx512bf16 ? loose : ref, 1.0)) << isa_name(isa) << " rows " << rows;
    }
  }
}

// A row's result does not depend on the rows beside it: each row of a many-row product equals, bit for bit, the
// product of that row alone (the one-row GEMV), on every path, for every weight type — what lets a batch of
// sequences decode exactly as each would alone.
TEST(CpuKernels, EachRowEqualsItsProductAloneBitForBit) {
  ResetIsa reset;
  uint32_t seed = 500;
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    for (Weights weights : {Weights::bf16, Weights::f16, Weights::f32, Weights::q8})
      for (const GemmShape s : {GemmShape{5, 901, 129}, GemmShape{70, 33, 17}, GemmShape{9, 4864 + 3, 21},
                                GemmShape{16, 130, 37}, GemmShape{17, 130, 37}}) {  // streamed up to 16 rows
        Problem pr = make_problem(s, {0.75f, 0.5f}, seed++);
        if (weights == Weights::q8) quantize_weights(pr);
        if (weights == Weights::f16) round_to_f16(pr);
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        for (float& v : pr.x) v = dist(rng);  // not bf16 values: avx512bf16 rounds them the same way either way
        const std::vector<float> all = run(pr, weights, pr.x);
        for (int64_t r = 0; r < s.rows; ++r) {
          Problem one = pr;
          one.s.rows = 1;
          one.x.assign(pr.x.begin() + r * s.in, pr.x.begin() + (r + 1) * s.in);
          one.out0.assign(pr.out0.begin() + r * s.outs, pr.out0.begin() + (r + 1) * s.outs);
          const std::vector<float> alone = run(one, weights, one.x);
          for (int64_t j = 0; j < s.outs; ++j)
            ASSERT_EQ(std::bit_cast<uint32_t>(all[size_t(r * s.outs + j)]), std::bit_cast<uint32_t>(alone[size_t(j)]))
                << isa_name(isa) << " " << weights_name(weights) << " weights, rows " << s.rows << " in "
                << s.in << " outs " << s.outs << ": row " << r << " output " << j << " " << all[size_t(r * s.outs + j)]
                << " in the batch, " << alone[size_t(j)] << " alone";
        }
      }
  }
}

// Attention's inner loops (scores, the softmax's exponentials, the weighted sum of values) on every path against
// double-precision sums, over runs of rows with a stride (one head of a cache row), odd head sizes and run lengths
// included: the sums within f32's summation bound (as above), the exponentials within 4e-7 relative (the vector paths'
// polynomial; the scalar path's std::exp).
TEST(CpuKernels, AttentionLoopsOnEveryPathMatchDoubleSums) {
  ResetIsa reset;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    for (const int64_t d : {1, 7, 16, 33, 64, 128})
      for (const int64_t n : {1, 3, 4, 17, 100}) {
        const int64_t stride = 3 * d + 5;  // rows of a cache with other heads between them
        std::vector<float> q(static_cast<size_t>(d)), kv(static_cast<size_t>(n * stride));
        std::vector<float> scores(static_cast<size_t>(n)), out(static_cast<size_t>(d));
        for (float& x : q) x = dist(rng);
        for (float& x : kv) x = dist(rng);
        for (float& x : out) x = dist(rng);
        const std::string where = std::string(isa_name(isa)) + " d " + std::to_string(d) + " n " + std::to_string(n);
        const double gamma = double(d + 2) * kU / (1.0 - double(d + 2) * kU);
        attention_scores(q.data(), kv.data(), stride, n, d, 0.125f, scores.data());
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0, abs_sum = 0;
          for (int64_t i = 0; i < d; ++i) {
            sum += double(q[size_t(i)]) * kv[size_t(j * stride + i)];
            abs_sum += std::fabs(double(q[size_t(i)]) * kv[size_t(j * stride + i)]);
          }
          ASSERT_LE(std::fabs(scores[size_t(j)] - 0.125 * sum), 0.125 * gamma * abs_sum + 1e-30) << where << " key " << j;
        }
        std::vector<float> e = scores;
        const float total = softmax_exp(e.data(), n);
        const double top = *std::max_element(scores.begin(), scores.end());
        double want_total = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double want = std::exp(double(scores[size_t(j)]) - top);
          want_total += want;
          ASSERT_LE(std::fabs(e[size_t(j)] - want), 4e-7 * want) << where << " exp " << j;
        }
        ASSERT_LE(std::fabs(total - want_total), 1e-6 * want_total) << where;
        const std::vector<float> before = out;
        attention_values(e.data(), kv.data(), stride, n, d, out.data());
        for (int64_t i = 0; i < d; ++i) {
          double sum = before[size_t(i)], abs_sum = std::fabs(before[size_t(i)]);
          for (int64_t j = 0; j < n; ++j) {
            sum += double(e[size_t(j)]) * kv[size_t(j * stride + i)];
            abs_sum += std::fabs(double(e[size_t(j)]) * kv[size_t(j * stride + i)]);
          }
          const double bound = double(n + 2) * kU / (1.0 - double(n + 2) * kU) * abs_sum + 1e-30;
          ASSERT_LE(std::fabs(out[size_t(i)] - sum), bound) << where << " column " << i;
        }
      }
  }
}

// The exponentials at the ends of the range: exp(0) = 1 exactly where the maximum is, a score far below the maximum
// gives (about) 0 and −∞ (a masked key) exactly 0, never NaN.
TEST(CpuKernels, SoftmaxExpAtTheEndsOfItsRange) {
  ResetIsa reset;
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    std::vector<float> s = {0.0f, -100.0f, -std::numeric_limits<float>::infinity(), 3.0f, -87.0f};
    const float total = softmax_exp(s.data(), int64_t(s.size()));
    EXPECT_EQ(s[3], 1.0f) << isa_name(isa);
    EXPECT_TRUE(s[1] >= 0.0f && s[1] < 1e-40f) << isa_name(isa) << " " << s[1];  // exp(−103): 0 or a denormal
    EXPECT_EQ(s[2], 0.0f) << isa_name(isa);
    EXPECT_NEAR(s[0], std::exp(-3.0), 4e-7 * std::exp(-3.0)) << isa_name(isa);
    EXPECT_TRUE(std::isfinite(total)) << isa_name(isa);
  }
}

// silu(gate) · up on every path against double, odd lengths, and gates far out on both sides (no inf or NaN:
// silu(−100) · up is −0 or a tiny number, silu(100) · up is 100 · up).
TEST(CpuKernels, SiluMulOnEveryPathMatchesDouble) {
  ResetIsa reset;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    for (const int64_t n : {1, 7, 16, 33, 100}) {
      std::vector<float> gate(static_cast<size_t>(n)), up(static_cast<size_t>(n)), out(static_cast<size_t>(n));
      for (float& x : gate) x = dist(rng);
      for (float& x : up) x = dist(rng);
      gate[0] = -100.0f;
      if (n > 1) gate[1] = 100.0f;
      silu_mul(gate.data(), up.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double g = gate[size_t(i)], want = g / (1.0 + std::exp(-g)) * up[size_t(i)];
        ASSERT_TRUE(std::isfinite(out[size_t(i)])) << isa_name(isa) << " n " << n << " at " << i;
        ASSERT_LE(std::fabs(out[size_t(i)] - want), 1e-6 * std::fabs(want) + 1e-30)
            << isa_name(isa) << " n " << n << " at " << i << ": gate " << g;
      }
    }
  }
}

TEST(CpuKernels, EmptyProductsScaleOrClearOut) {
  ResetIsa reset;
  for (Isa isa : runnable_paths()) {
    force_isa(isa);
    std::vector<float> out = {1.0f, -2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    gemm_bf16(nullptr, nullptr, out.data(), {2, 0, 3}, {1.0f, 0.5f});
    EXPECT_EQ(out, (std::vector<float>{0.5f, -1.0f, 1.5f, 2.0f, 2.5f, 3.0f})) << isa_name(isa);
    gemm_q8(nullptr, nullptr, out.data(), {2, 0, 3}, {1.0f, 2.0f});
    EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 3.0f, 4.0f, 5.0f, 6.0f})) << isa_name(isa);
    gemm_f16(nullptr, nullptr, out.data(), {2, 0, 3}, {1.0f, -1.0f});
    EXPECT_EQ(out, (std::vector<float>{-1.0f, 2.0f, -3.0f, -4.0f, -5.0f, -6.0f})) << isa_name(isa);
    gemm_f32(nullptr, nullptr, out.data(), {2, 0, 3}, {1.0f, 0.0f});
    EXPECT_EQ(out, std::vector<float>(6, 0.0f)) << isa_name(isa);
  }
}

// All 2¹⁰ combinations of the feature bits: the chosen path needs nothing the CPU lacks, and is the best one it has.
TEST(CpuKernelsDispatch, NeverPicksWhatTheCpuLacks) {
  for (unsigned bits = 0; bits < 1024; ++bits) {
    CpuFeatures f;
    bool* flags[] = {&f.fma, &f.avx2, &f.f16c, &f.avx512f, &f.avx512bw, &f.avx512vl, &f.avx512dq, &f.avx512bf16,
                     &f.os_saves_ymm, &f.os_saves_zmm};
    for (unsigned b = 0; b < 10; ++b) *flags[b] = bits >> b & 1u;
    const bool avx2 = f.avx2 && f.fma && f.f16c && f.os_saves_ymm;
    const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.os_saves_zmm;
    const bool bf16 = avx512 && f.avx512bf16;
    const Isa want = bf16 ? Isa::avx512bf16 : avx512 ? Isa::avx512 : avx2 ? Isa::avx2 : Isa::scalar;
    EXPECT_EQ(best_isa(f), want) << "feature bits " << bits;
    EXPECT_EQ(isa_supported(Isa::avx2, f), avx2) << "feature bits " << bits;
    EXPECT_EQ(isa_supported(Isa::avx512, f), avx512) << "feature bits " << bits;
    EXPECT_EQ(isa_supported(Isa::avx512bf16, f), bf16) << "feature bits " << bits;
    EXPECT_TRUE(isa_supported(Isa::scalar, f));
  }
}

// cpuid as read here agrees with the compiler's own reading (which also checks the OS's XSAVE state).
TEST(CpuKernelsDispatch, DetectionAgreesWithTheCompiler) {
#if defined(__x86_64__) && defined(__GNUC__)
  const CpuFeatures f = detect_cpu_features();
  EXPECT_EQ(f.avx2 && f.os_saves_ymm, bool(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(f.fma && f.os_saves_ymm, bool(__builtin_cpu_supports("fma")));
  EXPECT_EQ(f.f16c && f.os_saves_ymm, bool(__builtin_cpu_supports("f16c")));
  EXPECT_EQ(f.avx512f && f.os_saves_zmm, bool(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(f.avx512bw && f.os_saves_zmm, bool(__builtin_cpu_supports("avx512bw")));
  EXPECT_EQ(f.avx512vl && f.os_saves_zmm, bool(__builtin_cpu_supports("avx512vl")));
  EXPECT_EQ(f.avx512dq && f.os_saves_zmm, bool(__builtin_cpu_supports("avx512dq")));
  EXPECT_EQ(f.avx512bf16 && f.os_saves_zmm, bool(__builtin_cpu_supports("avx512bf16")));
  EXPECT_EQ(choose_isa(nullptr, f), best_isa(f));
#else
  GTEST_SKIP() << "x86-64 only";
#endif
}

TEST(CpuKernelsDispatch, ARequestTheCpuCannotRunNamesWhatWasAskedAndWhatItHas) {
  CpuFeatures zen3;  // AVX2, FMA and F16C, no AVX-512
  zen3.fma = zen3.avx2 = zen3.f16c = zen3.os_saves_ymm = true;
  EXPECT_EQ(choose_isa("avx2", zen3), Isa::avx2);
  EXPECT_EQ(choose_isa("", zen3), Isa::avx2);
  try {
    choose_isa("avx512bf16", zen3);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    const std::string m = e.what();
    EXPECT_NE(m.find("WICK_CPU_ISA=avx512bf16"), std::string::npos) << m;
    EXPECT_NE(m.find("AVX512F"), std::string::npos) << m;
    EXPECT_NE(m.find("AVX512_BF16"), std::string::npos) << m;
    EXPECT_NE(m.find("this CPU runs: scalar, avx2"), std::string::npos) << m;
  }
  CpuFeatures no_f16c = zen3;  // the avx2 path's q8_0 kernels convert their f16 scales with F16C
  no_f16c.f16c = false;
  EXPECT_EQ(best_isa(no_f16c), Isa::scalar);
  EXPECT_WICK_ERROR(choose_isa("avx2", no_f16c), ErrorKind::unsupported, "this CPU lacks F16C");
  CpuFeatures no_zmm_state = zen3;  // AVX-512 in cpuid, but the OS does not save zmm registers
  no_zmm_state.avx512f = no_zmm_state.avx512bw = no_zmm_state.avx512vl = no_zmm_state.avx512dq = true;
  EXPECT_EQ(best_isa(no_zmm_state), Isa::avx2);
  try {
    choose_isa("avx512", no_zmm_state);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("zmm"), std::string::npos) << e.what();
  }
}

TEST(CpuKernelsDispatch, AnUnknownPathIsBadInputListingTheNames) {
  try {
    choose_isa("sse9", detect_cpu_features());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    const std::string m = e.what();
    EXPECT_NE(m.find("'sse9'"), std::string::npos) << m;
    EXPECT_NE(m.find("scalar, avx2, avx512 or avx512bf16"), std::string::npos) << m;
  }
}

TEST(CpuKernelsDispatch, ForcingAPathTheCpuLacksFailsAndKeepsTheChoice) {
  ResetIsa reset;
  force_isa(Isa::scalar);
  EXPECT_EQ(active_isa(), Isa::scalar);
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512bf16}) {
    if (isa_supported(isa, detect_cpu_features())) {
      force_isa(isa);
      EXPECT_EQ(active_isa(), isa);
      force_isa(Isa::scalar);
    } else {
      EXPECT_THROW(force_isa(isa), Error) << isa_name(isa);
      EXPECT_EQ(active_isa(), Isa::scalar);
    }
  }
  reset_isa();
  EXPECT_EQ(active_isa(), choose_isa(std::getenv("WICK_CPU_ISA"), detect_cpu_features()));
}

}  // namespace
}  // namespace wick::cpu
