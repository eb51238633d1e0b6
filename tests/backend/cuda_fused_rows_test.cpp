// The fused few-row ops (backend.h's FusedRows) against the plain ops on the CPU backend (rmsnorm, linear, rope_kv,
// swiglu, add), with the norm inside the op and without: every row count a fragment splits differently (1, 5, 8, 13,
// 16, 32), shapes whose launches split k over a block's warps (a few k blocks each or many), or end in a partial
// tile; each op run twice (a launch must leave nothing the next one trips on). Whole decode steps of many
// sequences: tests/model/paged_forward_test.cpp. Skipped (not failed) on machines without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

const int64_t kRowCounts[] = {1, 5, 8, 13, 16, 32};

class CudaFusedRows : public CudaBackendTest {
 protected:
  void SetUp() override {
    CudaBackendTest::SetUp();
    if (IsSkipped()) return;
    rows = gpu->fused_rows();
    ASSERT_NE(rows, nullptr);
    ASSERT_EQ(rows->max_rows(), 32);
  }
  Tensor cpu_linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor()) {
    Tensor out = cpu->alloc({x.dim(0), w.dim(0)}, DType::f32);
    cpu->linear(x, w, bias, out);
    return out;
  }
  // x normed by g on the CPU, rounded to bf16 as the plain rmsnorm stores it on a GPU.
  Tensor cpu_norm(const Tensor& x, const Tensor& g) {
    Tensor n = cpu->alloc(x.shape(), DType::f32);
    cpu->rmsnorm(x, g, 1e-6f, n);
    for (int64_t i = 0; i < n.numel(); ++i) n.data<float>()[i] = bf16_to_f32(f32_to_bf16(n.data<float>()[i]));
    return n;
  }
  FusedRows* rows = nullptr;
};

struct RowsAttnCase {
  int64_t hidden, heads, kv_heads, d;
  bool bias;
};

TEST_F(CudaFusedRows, AttentionInputsMatchLinearRopeAndPoolWrite) {
  const RowsAttnCase cases[] = {{96, 6, 2, 16, true}, {896, 14, 2, 64, true}, {3584, 28, 4, 128, false}};
  uint32_t seed = 300;
  for (const RowsAttnCase& c : cases)
    for (const int64_t n : kRowCounts) {
      const int64_t q_dim = c.heads * c.d, kv_dim = c.kv_heads * c.d, pool_rows = 40;
      const Tensor x = random_bf16_values({n, c.hidden}, ++seed);
      const Tensor w[3] = {random_bf16_values({q_dim, c.hidden}, ++seed, 0.05f),
                           random_bf16_values({kv_dim, c.hidden}, ++seed, 0.05f),
                           random_bf16_values({kv_dim, c.hidden}, ++seed, 0.05f)};
      Tensor bias[3];
      if (c.bias)
        for (int s = 0; s < 3; ++s) bias[s] = random_bf16_values({w[s].dim(0)}, ++seed);
      // Distinct pool rows in no order, positions anywhere in a long context.
      std::vector<int32_t> slot_ids(static_cast<size_t>(pool_rows)), position_ids(static_cast<size_t>(n));
      std::iota(slot_ids.begin(), slot_ids.end(), 0);
      std::mt19937 rng(seed);
      std::shuffle(slot_ids.begin(), slot_ids.end(), rng);
      slot_ids.resize(size_t(n));
      for (int32_t& p : position_ids) p = int32_t(rng() % 5000);
      const Tensor slots = Tensor::from_ints(slot_ids, {n}), positions = Tensor::from_ints(position_ids, {n});
      const Tensor zeros = Tensor::zeros({pool_rows, c.kv_heads, c.d}, DType::f32);

      // The norm inside the op where the case has biases (the q/k/v of Qwen2), none otherwise.
      const Tensor g = random_bf16_values({c.hidden}, ++seed);
      const Tensor xc = c.bias ? cpu_norm(on_cpu(x), on_cpu(g)) : on_cpu(x);
      const auto cpu_bias = [&](int s) { return c.bias ? on_cpu(bias[s]) : Tensor(); };
      Tensor q = cpu_linear(xc, on_cpu(w[0]), cpu_bias(0)).reshape({n, c.heads, c.d});
      Tensor k = cpu_linear(xc, on_cpu(w[1]), cpu_bias(1)).reshape({n, c.kv_heads, c.d});
      const Tensor v = cpu_linear(xc, on_cpu(w[2]), cpu_bias(2)).reshape({n, c.kv_heads, c.d});
      Tensor kc = on_cpu(zeros), vc = on_cpu(zeros);
      cpu->rope_kv(q, k, v, on_cpu(positions), 1e6, kc, vc, on_cpu(slots));

      QkvProjections p{.weight = {on_gpu(w[0]), on_gpu(w[1]), on_gpu(w[2])},
                       .positions = on_gpu(positions), .slots = on_gpu(slots), .rope_theta = 1e6, .head_dim = c.d};
      if (c.bias)
        for (int s = 0; s < 3; ++s) p.bias[s] = on_gpu(bias[s]);
      Tensor gq = gpu->alloc({n, q_dim}, DType::bf16), gkc = on_gpu(zeros), gvc = on_gpu(zeros);
      const Tensor gx = on_gpu(x);
      const FusedInput in{.x = gx, .norm = c.bias ? on_gpu(g) : Tensor(), .eps = 1e-6f};
      for (int run = 0; run < 2; ++run) rows->attention_inputs(in, p, gq, gkc, gvc);
      const std::string where = "hidden " + std::to_string(c.hidden) + " d " + std::to_string(c.d) + " rows " +
                                std::to_string(n);
      EXPECT_CLOSE(gpu->download(gq), q.reshape({n, q_dim}), kBf16Tol) << where << ": q";
      EXPECT_CLOSE(gpu->download(gkc), kc, kBf16Tol) << where << ": k pool";
      EXPECT_CLOSE(gpu->download(gvc), vc, kBf16Tol) << where << ": v pool";
    }
}

TEST_F(CudaFusedRows, ResidualLinearMatchesLinearAndAdd) {
  // k × out: one stage; split over many blocks (down_proj of 0.5B); a partial last tile; two stages of k per block
  // at 32 rows (3584 × 8192: few splits, each wider than the shared memory holds at once).
  const std::pair<int64_t, int64_t> shapes[] = {{96, 96}, {4864, 896}, {896, 200}, {8192, 3584}};
  uint32_t seed = 500;
  for (const auto& [k, out] : shapes) {
    const Tensor w = random_bf16_values({out, k}, ++seed, 0.03f);
    const Tensor gw = on_gpu(w), cw = on_cpu(w);
    for (const int64_t n : kRowCounts) {
      if (k == 8192 && n != 32 && n != 1) continue;
      const Tensor in = random_bf16_values({n, k}, ++seed), x = random_bf16_values({n, out}, ++seed);
      Tensor want = on_cpu(x);
      cpu->add(want, cpu_linear(on_cpu(in), cw), want);
      const Tensor gin = on_gpu(in);
      Tensor gx;
      for (int run = 0; run < 2; ++run) {
        gx = on_gpu(x);
        rows->residual_linear(gin, gw, gx);
      }
      EXPECT_CLOSE(gpu->download(gx), want, kBf16Tol) << k << " × " << out << ", rows " << n;
    }
  }
}

TEST_F(CudaFusedRows, GateUpMatchesSwiglu) {
  const std::pair<int64_t, int64_t> shapes[] = {{96, 192}, {896, 4864}, {64, 104}};
  uint32_t seed = 700;
  for (const auto& [k, ffn] : shapes) {
    const Tensor wg = random_bf16_values({ffn, k}, ++seed, 0.05f), wu = random_bf16_values({ffn, k}, ++seed, 0.05f);
    const Tensor gwg = on_gpu(wg), gwu = on_gpu(wu);
    for (const int64_t n : kRowCounts) {
      const Tensor in = random_bf16_values({n, k}, ++seed), g = random_bf16_values({k}, ++seed);
      const Tensor cin = cpu_norm(on_cpu(in), on_cpu(g));
      Tensor gate = cpu_linear(cin, on_cpu(wg)), want = cpu->alloc({n, ffn}, DType::f32);
      cpu->swiglu(gate, cpu_linear(cin, on_cpu(wu)), want);
      Tensor h = gpu->alloc({n, ffn}, DType::bf16);
      const Tensor gin = on_gpu(in);
      for (int run = 0; run < 2; ++run) rows->gate_up({.x = gin, .norm = on_gpu(g), .eps = 1e-6f}, gwg, gwu, h);
      EXPECT_CLOSE(gpu->download(h), want, kBf16Tol) << k << " × " << ffn << ", rows " << n;
    }
  }
}

TEST_F(CudaFusedRows, LinearF32MatchesLinear) {
  const std::pair<int64_t, int64_t> shapes[] = {{96, 1000}, {896, 32000}};
  uint32_t seed = 900;
  for (const auto& [k, out] : shapes) {
    const Tensor w = random_bf16_values({out, k}, ++seed, 0.05f);
    const Tensor gw = on_gpu(w), cw = on_cpu(w);
    for (const int64_t n : kRowCounts) {
      const Tensor in = random_bf16_values({n, k}, ++seed), g = random_bf16_values({k}, ++seed);
      const bool norm = k != 96;  // the head of a model: its final norm inside
      Tensor logits = gpu->alloc({n, out}, DType::f32);
      const FusedInput gin{.x = on_gpu(in), .norm = norm ? on_gpu(g) : Tensor(), .eps = 1e-6f};
      for (int run = 0; run < 2; ++run) rows->linear_f32(gin, gw, logits);
      const Tensor want = cpu_linear(norm ? cpu_norm(on_cpu(in), on_cpu(g)) : on_cpu(in), cw);
      EXPECT_CLOSE(gpu->download(logits), want, kBf16Tol) << k << " × " << out << ", rows " << n;
    }
  }
}

// What the kernels cannot take is refused with the op and the shape, before anything runs.
TEST_F(CudaFusedRows, ShapesTheKernelsCannotTakeAreRefused) {
  EXPECT_TRUE(rows->supports({.hidden = 896, .ffn = 4864, .heads = 14, .kv_heads = 2, .head_dim = 64}));
  EXPECT_FALSE(rows->supports({.hidden = 100, .ffn = 4864, .heads = 14, .kv_heads = 2, .head_dim = 64}));
  EXPECT_FALSE(rows->supports({.hidden = 896, .ffn = 4864, .heads = 16, .kv_heads = 2, .head_dim = 56}));
  const Tensor w = on_gpu(random_bf16_values({64, 96}, 1));
  Tensor x = gpu->alloc({33, 64}, DType::bf16), y = gpu->alloc({4, 64}, DType::bf16);
  Tensor logits = gpu->alloc({4, 64}, DType::bf16);
  EXPECT_WICK_ERROR(rows->residual_linear(gpu->alloc({33, 96}, DType::bf16), w, x), ErrorKind::internal,
                    "residual_linear", "[33, 96]");
  EXPECT_WICK_ERROR(rows->residual_linear(gpu->alloc({4, 80}, DType::bf16), w, y), ErrorKind::internal,
                    "residual_linear", "k % 32");
  EXPECT_WICK_ERROR(rows->linear_f32({.x = gpu->alloc({4, 96}, DType::bf16)}, w, logits), ErrorKind::internal,
                    "linear_f32", "out [4, 64]");
  EXPECT_WICK_ERROR(rows->linear_f32({.x = gpu->alloc({4, 96}, DType::bf16), .norm = gpu->alloc({64}, DType::bf16)},
                                     w, logits),
                    ErrorKind::internal, "linear_f32", "norm weight");
}

}  // namespace
}  // namespace wick::test
