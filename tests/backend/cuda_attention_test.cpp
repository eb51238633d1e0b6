// CUDA attention (split-K decode, tensor-core prefill) against the CPU backend's f32 attention on random bf16
// inputs, including cache rows past the visible end that hold huge values and must be masked. Skipped (not
// failed) on machines without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "wick/error.h"

namespace wick::test {
namespace {

constexpr float kHuge = 1e30f;  // in cache rows no query sees: any leak swamps the result

struct Shape4 {
  int64_t heads, kv_heads, d;
};

// A sequence of n new queries at `positions` over a cache of `capacity` rows: q [n, heads, d], k and v
// [capacity, kv_heads, d], random bf16-representable values; rows past the last visible key hold kHuge.
struct Problem {
  Tensor q, k, v, positions;
  AttentionParams params;

  Problem(const Shape4& s, const std::vector<int32_t>& pos, int64_t capacity, uint32_t seed) {
    const int64_t n = int64_t(pos.size()), visible = *std::max_element(pos.begin(), pos.end()) + 1;
    q = random_bf16_values({n, s.heads, s.d}, seed, 2.0f);  // scale 2: peaked softmaxes as well as flat ones
    k = random_bf16_values({capacity, s.kv_heads, s.d}, seed + 1);
    v = random_bf16_values({capacity, s.kv_heads, s.d}, seed + 2);
    for (Tensor* t : {&k, &v})
      std::fill(t->data<float>() + visible * s.kv_heads * s.d, t->data<float>() + t->numel(), kHuge);
    positions = Tensor::from_ints(pos, {n});
    params = {.num_heads = s.heads, .num_kv_heads = s.kv_heads, .head_dim = s.d,
              .scale = float(1.0 / std::sqrt(double(s.d)))};
  }
  int64_t n() const { return q.dim(0); }
};

std::vector<int32_t> consecutive(int64_t n, int64_t past) {
  std::vector<int32_t> pos(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), int32_t(past));
  return pos;
}

std::string describe(const Shape4& s, int64_t n, int64_t past, int64_t capacity) {
  std::ostringstream o;
  o << "heads " << s.heads << "/" << s.kv_heads << " d " << s.d << ", n " << n << " past " << past << " capacity "
    << capacity;
  return o.str();
}

class CudaAttention : public CudaBackendTest {
 protected:

  Tensor reference(const Problem& p) {
    Tensor out = cpu->alloc({p.n(), p.q.numel() / p.n()}, DType::f32);
    cpu->attention(cpu->upload(p.q, DType::f32), cpu->upload(p.k, DType::f32), cpu->upload(p.v, DType::f32),
                   p.positions, out, p.params);
    return out;
  }

  // The problem on the GPU: inputs uploaded once, so a graph or a repeated call sees the same tensors.
  struct OnGpu {
    Tensor q, k, v, positions, out;
  };
  OnGpu upload(const Problem& p) {
    return {gpu->upload(p.q, DType::bf16), gpu->upload(p.k, DType::bf16), gpu->upload(p.v, DType::bf16),
            gpu->upload(p.positions, DType::i32), gpu->alloc({p.n(), p.q.numel() / p.n()}, DType::bf16)};
  }
  void run(OnGpu& g, const Problem& p) { gpu->attention(g.q, g.k, g.v, g.positions, g.out, p.params); }

  ::testing::AssertionResult matches_cpu(const Problem& p) {
    OnGpu g = upload(p);
    run(g, p);
    return close(gpu->download(g.out), reference(p), kBf16Tol);
  }

};

const Shape4 kQwen05{14, 2, 64}, kQwen7{28, 4, 128};

TEST_F(CudaAttention, DecodeAtManyPastsAndGroupSizes) {
  // Group sizes 7, 7, 1, 2, 8 and 16 (two blocks share a kv head); head dims 64, 128, 256, 96.
  for (const Shape4& s : {kQwen05, kQwen7, Shape4{8, 8, 128}, Shape4{4, 2, 256}, Shape4{8, 1, 96}, Shape4{32, 2, 64}})
    for (int64_t past : {0, 1, 63, 64, 65, 700, 4095}) {
      const int64_t capacity = past + 1 + 45;
      EXPECT_TRUE(matches_cpu(Problem(s, {int32_t(past)}, capacity, uint32_t(past)))) << describe(s, 1, past, capacity);
    }
}

TEST_F(CudaAttention, DecodeInALargeCache) {
  // Splits are sized for the capacity; the chunks then adapt to the visible length on the device.
  for (int64_t past : {5, 700, 9000, 32767}) {
    EXPECT_TRUE(matches_cpu(Problem(kQwen05, {int32_t(past)}, 32768, 1))) << describe(kQwen05, 1, past, 32768);
    EXPECT_TRUE(matches_cpu(Problem(kQwen7, {int32_t(past)}, 32768, 2))) << describe(kQwen7, 1, past, 32768);
  }
}

TEST_F(CudaAttention, DecodeSeveralQueries) {
  for (int64_t n : {2, 3, 4})
    for (int64_t past : {0, 100, 1000}) {
      const int64_t capacity = past + n + 10;
      EXPECT_TRUE(matches_cpu(Problem(kQwen05, consecutive(n, past), capacity, 3)))
          << describe(kQwen05, n, past, capacity);
    }
}

TEST_F(CudaAttention, PrefillOddSizesOntoAnExistingCache) {
  for (const Shape4& s : {kQwen05, kQwen7, Shape4{8, 8, 64}, Shape4{6, 3, 96}, Shape4{4, 1, 32}})
    for (int64_t n : {1, 4, 5, 7, 31, 33, 63, 64, 65, 127, 129, 130})
      for (int64_t past : {0, 37, 300}) {
        const int64_t capacity = past + n + 20;
        EXPECT_TRUE(matches_cpu(Problem(s, consecutive(n, past), capacity, uint32_t(n))))
            << describe(s, n, past, capacity);
      }
}

TEST_F(CudaAttention, PrefillWithHeadDim256) {
  for (int64_t n : {9, 70}) EXPECT_TRUE(matches_cpu(Problem({8, 2, 256}, consecutive(n, 50), 200, 4)));
}

TEST_F(CudaAttention, PrefillReadsEveryPosition) {
  // Out-of-order positions: each query's mask follows its own position, not its row.
  std::vector<int32_t> pos = consecutive(150, 40);
  std::shuffle(pos.begin(), pos.end(), std::mt19937(5));
  EXPECT_TRUE(matches_cpu(Problem(kQwen05, pos, 200, 5)));
  EXPECT_TRUE(matches_cpu(Problem(kQwen7, pos, 200, 6)));
}

TEST_F(CudaAttention, PrefillLong) {
  EXPECT_TRUE(matches_cpu(Problem(kQwen05, consecutive(2048, 0), 2048, 7))) << "0.5B shape, 2048 tokens";
  EXPECT_TRUE(matches_cpu(Problem(kQwen05, consecutive(1024, 1024), 2100, 8))) << "chunked: 1024 onto 1024";
  EXPECT_TRUE(matches_cpu(Problem(kQwen7, consecutive(512, 1500), 2100, 9))) << "7B shape: 512 onto 1500";
}

TEST_F(CudaAttention, DecodeRepeatedLeavesNoState) {
  const Problem p(kQwen05, {3000}, 4096, 10);
  const Tensor ref = reference(p);
  OnGpu g = upload(p);
  for (int call = 0; call < 3; ++call) {
    run(g, p);
    EXPECT_CLOSE(gpu->download(g.out), ref, kBf16Tol) << "call " << call;
  }
}

TEST_F(CudaAttention, DecodeGraphReplaysAtNewPositions) {
  Problem p(kQwen7, {4100}, 4200, 11);  // rows past 4100 hold kHuge
  OnGpu g = upload(p);
  const auto graph = gpu->capture([&] { run(g, p); });
  ASSERT_NE(graph, nullptr);
  for (int32_t pos : {700, 4100, 10, 700}) {
    gpu->write(g.positions, &pos, sizeof(pos));
    graph->replay();
    p.positions = Tensor::from_ints({pos}, {1});
    EXPECT_CLOSE(gpu->download(g.out), reference(p), kBf16Tol) << "position " << pos;
  }
}

}  // namespace
}  // namespace wick::test
