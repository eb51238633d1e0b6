// The fused one-token decode ops (backend.h's FusedDecode) against the plain ops on the CPU backend, with and
// without LoRA read from a device table, and what FusedDecode says of itself (supports, max_lora_rank,
// lora_scratch). Whole decode steps with adapters swapped between them: cuda_model_test.cpp. Skipped (not failed) on
// machines without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

// Low-rank factors of one projection on both backends.
struct Factors {
  Tensor a_cpu, b_cpu, a_gpu, b_gpu;
  float scale = 0.0f;
  int32_t rank = 0;
};

class CudaFused : public CudaBackendTest {
 protected:
  void SetUp() override {
    CudaBackendTest::SetUp();
    if (IsSkipped()) return;
    fused = gpu->fused_decode();
    ASSERT_NE(fused, nullptr);
    scratch = fused->lora_scratch(1);
    epoch = gpu->alloc({1}, DType::i32);
  }
  Factors factors(int32_t rank, int64_t in, int64_t out, uint32_t seed) {
    Factors f;
    f.scale = 2.0f / float(std::max(rank, 1));
    f.rank = rank;
    if (rank == 0) return f;
    const Tensor a = random_bf16_values({rank, in}, seed, 1.0f / std::sqrt(float(in)));
    const Tensor b = random_bf16_values({out, rank}, seed + 1, 0.5f);
    f.a_cpu = on_cpu(a), f.b_cpu = on_cpu(b), f.a_gpu = on_gpu(a), f.b_gpu = on_gpu(b);
    return f;
  }
  // The device table of `fs` and a fresh epoch (the step counter the kernels' ready flags compare with).
  DecodeLora device_lora(const std::vector<const Factors*>& fs) {
    std::vector<LoraEntry> entries;
    for (const Factors* f : fs)
      entries.push_back(f->rank ? LoraEntry{.a = f->a_gpu.raw(), .b = f->b_gpu.raw(), .scale = f->scale, .rank = f->rank}
                                : LoraEntry{});
    Tensor host = Tensor::empty({int64_t(entries.size() * sizeof(LoraEntry) / 4)}, DType::i32);
    std::memcpy(host.raw(), entries.data(), entries.size() * sizeof(LoraEntry));
    tables.push_back(on_gpu(host));
    ++step;
    gpu->write(epoch, &step, sizeof step);
    return {.entries = static_cast<const LoraEntry*>(tables.back().raw()), .scratch = scratch.rows(0, 1).raw(),
            .epoch = epoch.data<int32_t>()};
  }
  // out = n·Wᵀ (+ bias) + scale · (n·Aᵀ)·Bᵀ on the CPU.
  Tensor cpu_projection(const Tensor& n, const Tensor& w, const Tensor& bias, const Factors& f) {
    Tensor out = cpu->alloc({1, w.dim(0)}, DType::f32);
    cpu->linear(n, w, bias, out);
    if (f.rank) {
      Tensor low = cpu->alloc({1, f.rank}, DType::f32);
      cpu->linear(n, f.a_cpu, Tensor(), low);
      cpu->linear(low, f.b_cpu, Tensor(), out, {.alpha = f.scale, .beta = 1.0f});
    }
    return out;
  }
  Tensor cpu_norm(const Tensor& x, const Tensor& g) {
    Tensor n = cpu->alloc(x.shape(), DType::f32);
    cpu->rmsnorm(x, g, 1e-6f, n);
    return n;
  }

  // The fused op's input: x normed by g, both uploaded.
  FusedInput normed_input(const Tensor& x, const Tensor& g) {
    return {.x = on_gpu(x), .norm = on_gpu(g), .eps = 1e-6f};
  }

  FusedDecode* fused = nullptr;
  Tensor scratch, epoch;  // one call's LoRA scratch row; the step counter
  std::vector<Tensor> tables;
  int32_t step = 0;
};

struct AttnCase {
  int64_t hidden, heads, kv_heads, d;
  int32_t rank_q, rank_k, rank_v;
};

TEST_F(CudaFused, AttentionInputsMatchNormLinearRopeAndCacheWrite) {
  // The 7B shape (33 MB of weights) takes the balanced launch plan of large launches (fused_gemv.cu's plan_launch).
  // Ranks 64/64/64: more rank rows than one pass of a cluster LoRA launch covers (fused_gemv.cu).
  const AttnCase cases[] = {{64, 4, 2, 16, 0, 0, 0},    {64, 4, 2, 16, 5, 16, 1},   {896, 14, 2, 64, 16, 0, 64},
                            {896, 14, 2, 64, 0, 0, 0},  {256, 2, 1, 128, 8, 8, 8},  {3584, 28, 4, 128, 0, 0, 0},
                            {896, 14, 2, 64, 64, 64, 64}};
  uint32_t seed = 100;
  for (const AttnCase& c : cases) {
    const int64_t capacity = 9, pos = 6, q_dim = c.heads * c.d, kv_dim = c.kv_heads * c.d;
    const Tensor x = random_bf16_values({1, c.hidden}, ++seed), g = random_bf16_values({c.hidden}, ++seed);
    const Tensor w[3] = {random_bf16_values({q_dim, c.hidden}, ++seed, 0.05f),
                         random_bf16_values({kv_dim, c.hidden}, ++seed, 0.05f),
                         random_bf16_values({kv_dim, c.hidden}, ++seed, 0.05f)};
    const Tensor bias[3] = {random_bf16_values({q_dim}, ++seed), random_bf16_values({kv_dim}, ++seed),
                            random_bf16_values({kv_dim}, ++seed)};
    const Factors f[3] = {factors(c.rank_q, c.hidden, q_dim, ++seed), factors(c.rank_k, c.hidden, kv_dim, ++seed),
                          factors(c.rank_v, c.hidden, kv_dim, ++seed)};
    const Tensor positions = Tensor::from_ints({int32_t(pos)}, {1});
    const Tensor zeros = Tensor::zeros({capacity, c.kv_heads, c.d}, DType::f32);

    // Reference: rmsnorm, three projections (+ LoRA), rope_kv.
    const Tensor n = cpu_norm(on_cpu(x), on_cpu(g));
    Tensor q = cpu_projection(n, on_cpu(w[0]), on_cpu(bias[0]), f[0]).reshape({1, c.heads, c.d});
    Tensor k = cpu_projection(n, on_cpu(w[1]), on_cpu(bias[1]), f[1]).reshape({1, c.kv_heads, c.d});
    const Tensor v = cpu_projection(n, on_cpu(w[2]), on_cpu(bias[2]), f[2]).reshape({1, c.kv_heads, c.d});
    Tensor kc = on_cpu(zeros), vc = on_cpu(zeros);
    cpu->rope_kv(q, k, v, positions, 1e6, kc, vc);

    const Tensor gw[3] = {on_gpu(w[0]), on_gpu(w[1]), on_gpu(w[2])};
    const Tensor gb[3] = {on_gpu(bias[0]), on_gpu(bias[1]), on_gpu(bias[2])};
    Tensor gq = gpu->alloc({1, q_dim}, DType::bf16), gkc = on_gpu(zeros), gvc = on_gpu(zeros);
    const bool lora = c.rank_q || c.rank_k || c.rank_v;
    // Twice: the second run must not see the first one's LoRA shrink results as ready.
    const QkvProjections p{.weight = {gw[0], gw[1], gw[2]}, .bias = {gb[0], gb[1], gb[2]},
                           .positions = on_gpu(positions), .rope_theta = 1e6, .head_dim = c.d};
    for (int run = 0; run < 2; ++run)
      fused->attention_inputs(normed_input(x, g), p, gq, gkc, gvc,
                              lora ? device_lora({&f[0], &f[1], &f[2]}) : DecodeLora{});
    const std::string where = "hidden " + std::to_string(c.hidden) + " d " + std::to_string(c.d) + " ranks " +
                              std::to_string(c.rank_q) + "/" + std::to_string(c.rank_k) + "/" + std::to_string(c.rank_v);
    EXPECT_CLOSE(gpu->download(gq), q.reshape({1, q_dim}), kBf16Tol) << where << ": q";
    EXPECT_CLOSE(gpu->download(gkc), kc, kBf16Tol) << where << ": k cache";
    EXPECT_CLOSE(gpu->download(gvc), vc, kBf16Tol) << where << ": v cache";
  }
}

TEST_F(CudaFused, GateUpMatchesNormLinearSwiglu) {
  const struct {
    int64_t hidden, ffn;
    int32_t rank_gate, rank_up;
  } cases[] = {{64, 96, 0, 0}, {64, 96, 16, 3}, {896, 4864, 16, 16}, {896, 4864, 0, 64}, {896, 4863, 16, 64}};
  // On the H200, 896 × 4864 (and 4863, whose last warp has one pair) fit one wave only with half a warp per pair.
  uint32_t seed = 200;
  for (const auto& c : cases) {
    const Tensor x = random_bf16_values({1, c.hidden}, ++seed), g = random_bf16_values({c.hidden}, ++seed);
    const Tensor wg = random_bf16_values({c.ffn, c.hidden}, ++seed, 0.05f);
    const Tensor wu = random_bf16_values({c.ffn, c.hidden}, ++seed, 0.05f);
    const Factors fg = factors(c.rank_gate, c.hidden, c.ffn, ++seed), fu = factors(c.rank_up, c.hidden, c.ffn, ++seed);
    const Tensor n = cpu_norm(on_cpu(x), on_cpu(g));
    Tensor gate = cpu_projection(n, on_cpu(wg), Tensor(), fg);
    const Tensor up = cpu_projection(n, on_cpu(wu), Tensor(), fu);
    cpu->swiglu(gate, up, gate);
    Tensor h = gpu->alloc({1, c.ffn}, DType::bf16);
    const bool lora = c.rank_gate || c.rank_up;
    fused->gate_up(normed_input(x, g), on_gpu(wg), on_gpu(wu), h, lora ? device_lora({&fg, &fu}) : DecodeLora{});
    EXPECT_CLOSE(gpu->download(h), gate, kBf16Tol) << "ffn " << c.ffn << " ranks " << c.rank_gate << "/" << c.rank_up;
  }
}

TEST_F(CudaFused, ResidualLinearAddsIntoTheStream) {
  const struct {
    int64_t in, rows;
    int32_t rank;
  } cases[] = {{96, 64, 0}, {96, 65, 7}, {4864, 896, 16}, {896, 896, 64}, {4864, 896, 64}};
  uint32_t seed = 300;
  for (const auto& c : cases) {
    const Tensor in = random_bf16_values({1, c.in}, ++seed), x = random_bf16_values({1, c.rows}, ++seed);
    const Tensor w = random_bf16_values({c.rows, c.in}, ++seed, 0.05f);
    const Factors f = factors(c.rank, c.in, c.rows, ++seed);
    Tensor want = on_cpu(x);
    cpu->add(want, cpu_projection(on_cpu(in), on_cpu(w), Tensor(), f), want);
    Tensor got = on_gpu(x);
    fused->residual_linear(on_gpu(in), on_gpu(w), got, c.rank ? device_lora({&f}) : DecodeLora{});
    EXPECT_CLOSE(gpu->download(got), want, kBf16Tol) << "in " << c.in << " rows " << c.rows << " rank " << c.rank;
  }
}

TEST_F(CudaFused, NormLinearGivesF32Logits) {
  for (const int64_t rows : {3, 1000, 151936}) {
    const Tensor x = random_bf16_values({1, 896}, 401), g = random_bf16_values({896}, 402);
    const Tensor w = random_bf16_values({rows, 896}, 403, 0.05f);
    const Tensor want = cpu_projection(cpu_norm(on_cpu(x), on_cpu(g)), on_cpu(w), Tensor(), Factors{});
    Tensor got = gpu->alloc({1, rows}, DType::f32);
    fused->norm_linear(normed_input(x, g), on_gpu(w), got);
    EXPECT_CLOSE(gpu->download(got), want, kBf16Tol) << "rows " << rows;
  }
}

// Without a norm weight the ops take x as it is.
TEST_F(CudaFused, OpsWithoutNormTakeTheInputAsItIs) {
  const Tensor x = random_bf16_values({1, 256}, 451);
  const Tensor w = random_bf16_values({96, 256}, 452, 0.05f), w_up = random_bf16_values({96, 256}, 453, 0.05f);
  Tensor logits = gpu->alloc({1, 96}, DType::f32);
  fused->norm_linear({.x = on_gpu(x)}, on_gpu(w), logits);
  EXPECT_CLOSE(gpu->download(logits), cpu_projection(on_cpu(x), on_cpu(w), Tensor(), Factors{}), kBf16Tol);
  Tensor gate = cpu_projection(on_cpu(x), on_cpu(w), Tensor(), Factors{});
  cpu->swiglu(gate, cpu_projection(on_cpu(x), on_cpu(w_up), Tensor(), Factors{}), gate);
  Tensor h = gpu->alloc({1, 96}, DType::bf16);
  fused->gate_up({.x = on_gpu(x)}, on_gpu(w), on_gpu(w_up), h, {});
  EXPECT_CLOSE(gpu->download(h), gate, kBf16Tol);
}

TEST_F(CudaFused, SupportsShapesWhoseRowsAreWhole16ByteChunks) {
  EXPECT_TRUE(fused->supports({.hidden = 896, .ffn = 4864, .heads = 14, .kv_heads = 2, .head_dim = 64}));
  EXPECT_TRUE(fused->supports({.hidden = 3584, .ffn = 18944, .heads = 28, .kv_heads = 4, .head_dim = 128}));
  // The rule is on heads·head_dim (the output projection's input), not on head_dim alone.
  EXPECT_TRUE(fused->supports({.hidden = 64, .ffn = 96, .heads = 4, .kv_heads = 2, .head_dim = 6}));
  // Each breaks one rule.
  EXPECT_FALSE(fused->supports({.hidden = 900, .ffn = 4864, .heads = 14, .kv_heads = 2, .head_dim = 64}))
      << "hidden % 8: the input of q/k/v, gate/up and the head";
  EXPECT_FALSE(fused->supports({.hidden = 896, .ffn = 4860, .heads = 14, .kv_heads = 2, .head_dim = 64}))
      << "ffn % 8: the input of the down projection";
  EXPECT_FALSE(fused->supports({.hidden = 64, .ffn = 96, .heads = 3, .kv_heads = 1, .head_dim = 20}))
      << "heads·head_dim % 8: the input of the output projection";
  EXPECT_FALSE(fused->supports({.hidden = 64, .ffn = 96, .heads = 8, .kv_heads = 8, .head_dim = 7}))
      << "head_dim even: RoPE rotates pairs (i, i + d/2)";
}

// The rank-64 cases above and this one: an adapter of rank max_lora_rank() takes the fused ops.
TEST_F(CudaFused, MaxLoraRankIsTheLargestTheLoraBuildsTake) {
  ASSERT_EQ(fused->max_lora_rank(), 64);
  const int32_t rank = fused->max_lora_rank();
  const Tensor in = random_bf16_values({1, 512}, 601), x = random_bf16_values({1, 128}, 602);
  const Tensor w = random_bf16_values({128, 512}, 603, 0.05f);
  const Factors f = factors(rank, 512, 128, 604);
  Tensor want = on_cpu(x);
  cpu->add(want, cpu_projection(on_cpu(in), on_cpu(w), Tensor(), f), want);
  Tensor got = on_gpu(x);
  fused->residual_linear(on_gpu(in), on_gpu(w), got, device_lora({&f}));
  EXPECT_CLOSE(gpu->download(got), want, kBf16Tol);
}

// A row per call, zero-filled; a LoRA op publishes into its own row only.
TEST_F(CudaFused, LoraScratchIsZeroedWithARowPerCall) {
  const int64_t calls = 5;
  const Tensor rows = fused->lora_scratch(calls);
  ASSERT_EQ(rows.device(), Device::cuda);
  ASSERT_EQ(rows.rank(), 2);
  ASSERT_EQ(rows.dim(0), calls);
  // Room for the t values of three projections (q/k/v) at the largest rank, 8 bytes each.
  EXPECT_GE(int64_t(rows.nbytes()) / calls, 3 * int64_t(fused->max_lora_rank()) * 8);
  std::set<const void*> starts;
  for (int64_t i = 0; i < calls; ++i) starts.insert(rows.rows(i, i + 1).raw());
  EXPECT_EQ(int64_t(starts.size()), calls);
  const auto nonzero = [&](const Tensor& host, int64_t row) {
    const int64_t n = host.numel() / calls;
    int64_t count = 0;
    for (int64_t i = row * n; i < (row + 1) * n; ++i) count += host.data<float>()[i] != 0.0f;
    return count;
  };
  const Tensor before = gpu->download(rows);
  for (int64_t i = 0; i < calls; ++i) EXPECT_EQ(nonzero(before, i), 0) << "row " << i;

  const Tensor in = random_bf16_values({1, 64}, 701), x = random_bf16_values({1, 64}, 702);
  const Tensor w = random_bf16_values({64, 64}, 703, 0.05f);
  const Factors f = factors(8, 64, 64, 704);
  DecodeLora lora = device_lora({&f});
  lora.scratch = rows.rows(2, 3).raw();
  Tensor got = on_gpu(x);
  fused->residual_linear(on_gpu(in), on_gpu(w), got, lora);
  const Tensor after = gpu->download(rows);
  for (int64_t i = 0; i < calls; ++i) {
    if (i == 2) {
      EXPECT_GT(nonzero(after, i), 0) << "the call's own row";
    } else {
      EXPECT_EQ(nonzero(after, i), 0) << "row " << i;
    }
  }
}

TEST_F(CudaFused, BeginStepEmbedsAndInstallsTheTableAtTheGivenAddress) {
  const Tensor embed = random_bf16_values({10, 64}, 501);
  const Tensor tables[2] = {Tensor::from_ints(std::vector<int32_t>(42, 7), {42}),
                            Tensor::from_ints(std::vector<int32_t>(42, -3), {42})};
  const Tensor on_device[2] = {on_gpu(tables[0]), on_gpu(tables[1])};
  Tensor step = gpu->alloc({3}, DType::i32), x = gpu->alloc({1, 64}, DType::bf16), table = gpu->alloc({42}, DType::i32);
  for (int which : {1, 0}) {
    int32_t host[3] = {0, 0, 3 + which};
    const void* address = on_device[which].raw();
    std::memcpy(host, &address, sizeof address);
    gpu->write(step, host, sizeof host);
    Tensor ids = step.rows(2, 3), source = step.rows(0, 2);
    fused->begin_step(on_gpu(embed), ids, x, source, table);
    EXPECT_CLOSE(gpu->download(x), embed.rows(3 + which, 4 + which).reshape({1, 64}), 0.0);
    const Tensor got = gpu->download(table);
    for (int64_t i = 0; i < 42; ++i) ASSERT_EQ(got.data<float>()[i], float(tables[which].data<int32_t>()[i]));
  }
}

TEST_F(CudaFused, RejectsMisshapedInputsByName) {
  const Tensor x = on_gpu(random_bf16_values({1, 60}, 1)), w = on_gpu(random_bf16_values({8, 60}, 2));
  Tensor out = gpu->alloc({1, 8}, DType::f32);
  EXPECT_WICK_ERROR(fused->norm_linear({.x = x, .norm = on_gpu(random_bf16_values({60}, 3)), .eps = 1e-6f}, w, out),
                    ErrorKind::internal, "norm_linear", "multiple of 8");
  const Tensor x64 = on_gpu(random_bf16_values({1, 64}, 4));
  EXPECT_WICK_ERROR(fused->residual_linear(x64, on_gpu(random_bf16_values({8, 56}, 5)), out, {}), ErrorKind::internal,
                    "residual_linear", "weight");
}

}  // namespace
}  // namespace wick::test
