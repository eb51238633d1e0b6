// The fused one-token decode ops (backend.h's FusedDecode) against the plain ops on the CPU backend, with and
// without LoRA read from a device table; and whole decode steps with adapters swapped between steps, which must
// match the CPU backend and record no new graph. Skipped (not failed) on machines without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "../model/model_test_util.h"
#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/model.h"

namespace wick::test {
namespace {

constexpr double kTol = 1e-2;

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
    scratch = gpu->alloc({kFusedLoraScratchBytes / 4}, DType::i32);
    gpu->zero(scratch);
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
    return {.entries = static_cast<const LoraEntry*>(tables.back().raw()), .scratch = scratch.raw(),
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

  FusedDecode* fused = nullptr;
  Tensor scratch, epoch;
  std::vector<Tensor> tables;
  int32_t step = 0;
};

struct AttnCase {
  int64_t hidden, heads, kv_heads, d;
  int32_t rank_q, rank_k, rank_v;
};

TEST_F(CudaFused, AttentionInputsMatchNormLinearRopeAndCacheWrite) {
  // The 7B shape (33 MB of weights) takes the balanced launch plan of large launches (gemv.cu's plan_launch).
  // Ranks 64/64/64: more rank rows than one pass of a cluster LoRA launch covers (gemv.cu).
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
    for (int run = 0; run < 2; ++run)
      fused->attention_inputs(on_gpu(x), on_gpu(g), 1e-6f, gw, gb, on_gpu(positions), 1e6, c.d, gq, gkc, gvc,
                              lora ? device_lora({&f[0], &f[1], &f[2]}) : DecodeLora{});
    const std::string where = "hidden " + std::to_string(c.hidden) + " d " + std::to_string(c.d) + " ranks " +
                              std::to_string(c.rank_q) + "/" + std::to_string(c.rank_k) + "/" + std::to_string(c.rank_v);
    EXPECT_CLOSE(gpu->download(gq), q.reshape({1, q_dim}), kTol) << where << ": q";
    EXPECT_CLOSE(gpu->download(gkc), kc, kTol) << where << ": k cache";
    EXPECT_CLOSE(gpu->download(gvc), vc, kTol) << where << ": v cache";
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
    fused->gate_up(on_gpu(x), on_gpu(g), 1e-6f, on_gpu(wg), on_gpu(wu), h, lora ? device_lora({&fg, &fu}) : DecodeLora{});
    EXPECT_CLOSE(gpu->download(h), gate, kTol) << "ffn " << c.ffn << " ranks " << c.rank_gate << "/" << c.rank_up;
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
    EXPECT_CLOSE(gpu->download(got), want, kTol) << "in " << c.in << " rows " << c.rows << " rank " << c.rank;
  }
}

TEST_F(CudaFused, NormLinearGivesF32Logits) {
  for (const int64_t rows : {3, 1000, 151936}) {
    const Tensor x = random_bf16_values({1, 896}, 401), g = random_bf16_values({896}, 402);
    const Tensor w = random_bf16_values({rows, 896}, 403, 0.05f);
    const Tensor want = cpu_projection(cpu_norm(on_cpu(x), on_cpu(g)), on_cpu(w), Tensor(), Factors{});
    Tensor got = gpu->alloc({1, rows}, DType::f32);
    fused->norm_linear(on_gpu(x), on_gpu(g), 1e-6f, on_gpu(w), got);
    EXPECT_CLOSE(gpu->download(got), want, kTol) << "rows " << rows;
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
  EXPECT_WICK_ERROR(fused->norm_linear(x, on_gpu(random_bf16_values({60}, 3)), 1e-6f, w, out), ErrorKind::internal,
                    "norm_linear", "multiple of 8");
  const Tensor x64 = on_gpu(random_bf16_values({1, 64}, 4));
  EXPECT_WICK_ERROR(fused->residual_linear(x64, on_gpu(random_bf16_values({8, 56}, 5)), out, {}), ErrorKind::internal,
                    "residual_linear", "weight");
}

// Decode steps through the recorded graph with adapters swapped between steps (two of rank ≤ 64, none, and one
// of rank 80 that takes the plain ops), each step against the CPU backend; one graph for the adapters, one without.
TEST(CudaAdapterDecode, SwapsBetweenStepsMatchCpuWithoutRecapture) {
  try {
    make_backend(Device::cuda);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const auto dir = fixture("models/tiny-tied");
  auto gpu = Model::load(dir, {.device = Device::cuda});
  auto cpu = Model::load(dir);
  LoraConfig all7, wide;
  all7.r = 16, all7.lora_alpha = 32, all7.all_linear = true;
  wide.r = 80, wide.lora_alpha = 16, wide.all_linear = true;
  const auto peft_gpu = LoraAdapter::load(fixture("adapters/tied-all7"), *gpu);
  const auto peft_cpu = LoraAdapter::load(fixture("adapters/tied-all7"), *cpu);
  const auto rand_gpu = LoraAdapter::random("r16", all7, *gpu, 7), rand_cpu = LoraAdapter::random("r16", all7, *cpu, 7);
  const auto wide_gpu = LoraAdapter::random("r80", wide, *gpu, 8), wide_cpu = LoraAdapter::random("r80", wide, *cpu, 8);
  const std::vector<std::pair<const LoraSource*, const LoraSource*>> schedule{
      {&peft_gpu->source(), &peft_cpu->source()}, {&rand_gpu->source(), &rand_cpu->source()},
      {nullptr, nullptr},
      {&peft_gpu->source(), &peft_cpu->source()}, {&wide_gpu->source(), &wide_cpu->source()},
      {&rand_gpu->source(), &rand_cpu->source()}, {nullptr, nullptr}};
  const std::vector<int32_t> prompt{3, 17, 99, 4};
  KVCache gc = gpu->make_cache(16), cc = cpu->make_cache(16);
  gpu->forward(std::vector<SequenceInput>{{prompt, &gc}});
  cpu->forward(std::vector<SequenceInput>{{prompt, &cc}});
  for (size_t s = 0; s < schedule.size(); ++s) {
    const int32_t token[] = {int32_t(20 + 11 * s)};
    const Tensor got = gpu->forward(std::vector<SequenceInput>{{token, &gc}}, {.lora = schedule[s].first});
    const Tensor want = cpu->forward(std::vector<SequenceInput>{{token, &cc}}, {.lora = schedule[s].second});
    EXPECT_CLOSE(got, want, 3e-2) << "step " << s;
  }
  EXPECT_EQ(gpu->decode_graphs_recorded(), 2);  // the base model's and the adapters' (all of them)
}

}  // namespace
}  // namespace wick::test
