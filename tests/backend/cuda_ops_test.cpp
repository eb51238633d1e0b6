// Every CUDA op against its CPU twin on random inputs (whole models: cuda_model_test.cpp). Skipped (not failed) on
// machines without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

using CudaOps = CudaBackendTest;

TEST_F(CudaOps, Embedding) {
  const Tensor table = random_bf16_values({50, 96}, 1);
  const Tensor ids = Tensor::from_ints({3, 0, 49, 3, 17}, {5});
  Tensor a = cpu->alloc({5, 96}, DType::f32), b = gpu->alloc({5, 96}, DType::bf16);
  cpu->embedding(on_cpu(table), ids, a);
  gpu->embedding(on_gpu(table), on_gpu(ids), b);
  EXPECT_CLOSE(gpu->download(b), a, 0.0);  // a pure copy
}

TEST_F(CudaOps, RmsNorm) {
  for (int64_t n : {64, 896, 3584}) {
    const Tensor x = random_bf16_values({7, n}, 2, 3.0f), w = random_bf16_values({n}, 3);
    Tensor a = cpu->alloc({7, n}, DType::f32), b = gpu->alloc({7, n}, DType::bf16);
    cpu->rmsnorm(on_cpu(x), on_cpu(w), 1e-6f, a);
    gpu->rmsnorm(on_gpu(x), on_gpu(w), 1e-6f, b);
    EXPECT_CLOSE(gpu->download(b), a, kBf16Tol) << "n = " << n;
  }
}

TEST_F(CudaOps, AddRmsNormAndZero) {
  const Tensor x = random_bf16_values({3, 896}, 20, 2.0f), d = random_bf16_values({3, 896}, 21),
               w = random_bf16_values({896}, 22);
  Tensor xa = on_cpu(x), xb = on_gpu(x);
  Tensor na = cpu->alloc({3, 896}, DType::f32), nb = gpu->alloc({3, 896}, DType::bf16);
  cpu->add_rmsnorm(xa, on_cpu(d), on_cpu(w), 1e-6f, na);
  gpu->add_rmsnorm(xb, on_gpu(d), on_gpu(w), 1e-6f, nb);
  EXPECT_CLOSE(gpu->download(xb), xa, kBf16Tol);
  EXPECT_CLOSE(gpu->download(nb), na, kBf16Tol);
  gpu->zero(nb);
  EXPECT_CLOSE(gpu->download(nb), cpu->upload(Tensor::zeros({3, 896}, DType::f32), DType::f32), 0.0);
}

TEST_F(CudaOps, RopeWithKvCacheWrite) {
  const int64_t n = 5, heads = 14, kvh = 2, d = 64, cap = 40;
  const Tensor q = random_bf16_values({n, heads, d}, 23), k = random_bf16_values({n, kvh, d}, 24),
               v = random_bf16_values({n, kvh, d}, 25), cache = random_bf16_values({cap, kvh, d}, 26);
  const Tensor pos = Tensor::from_ints({7, 8, 9, 33, 0}, {n});
  Tensor qa = on_cpu(q), ka = on_cpu(k), kca = on_cpu(cache), vca = on_cpu(cache);
  Tensor qb = on_gpu(q), kb = on_gpu(k), kcb = on_gpu(cache), vcb = on_gpu(cache);
  cpu->rope_kv(qa, ka, on_cpu(v), pos, 10000.0, kca, vca);
  gpu->rope_kv(qb, kb, on_gpu(v), on_gpu(pos), 10000.0, kcb, vcb);
  EXPECT_CLOSE(gpu->download(qb), qa, kBf16Tol);
  EXPECT_CLOSE(gpu->download(kb), ka, kBf16Tol);
  EXPECT_CLOSE(gpu->download(kcb), kca, kBf16Tol);
  EXPECT_CLOSE(gpu->download(vcb), vca, 0.0);
  // Into rows of a paged pool instead of the positions' rows.
  const Tensor rows = Tensor::from_ints({39, 2, 17, 5, 30}, {n});
  cpu->rope_kv(qa, ka, on_cpu(v), pos, 10000.0, kca, vca, rows);
  gpu->rope_kv(qb, kb, on_gpu(v), on_gpu(pos), 10000.0, kcb, vcb, on_gpu(rows));
  EXPECT_CLOSE(gpu->download(kcb), kca, kBf16Tol);
  EXPECT_CLOSE(gpu->download(vcb), vca, 0.0);
  // With the projections' biases added on the way (fresh q and k: the ones above are rotated).
  const Tensor qbias = random_bf16_values({heads * d}, 27), kbias = random_bf16_values({kvh * d}, 28),
               vbias = random_bf16_values({kvh * d}, 29);
  qa = on_cpu(q), ka = on_cpu(k), qb = on_gpu(q), kb = on_gpu(k);
  cpu->rope_kv(qa, ka, on_cpu(v), pos, 10000.0, kca, vca, rows,
               {.q = on_cpu(qbias), .k = on_cpu(kbias), .v = on_cpu(vbias)});
  gpu->rope_kv(qb, kb, on_gpu(v), on_gpu(pos), 10000.0, kcb, vcb, on_gpu(rows),
               {.q = on_gpu(qbias), .k = on_gpu(kbias), .v = on_gpu(vbias)});
  EXPECT_CLOSE(gpu->download(qb), qa, kBf16Tol);
  EXPECT_CLOSE(gpu->download(kcb), kca, kBf16Tol);
  EXPECT_CLOSE(gpu->download(vcb), vca, kBf16Tol);
}

TEST_F(CudaOps, LinearWithBiasAccumulateAndF32Output) {
  for (int64_t rows : {1, 5, 300}) {  // one row takes the GEMV kernel, more take cuBLAS
    const Tensor x = random_bf16_values({rows, 128}, 4), w = random_bf16_values({96, 128}, 5, 0.1f),
                 bias = random_bf16_values({96}, 6), prior = random_bf16_values({rows, 96}, 7);
    Tensor a = cpu->upload(prior, DType::f32), b = gpu->upload(prior, DType::bf16);
    cpu->linear(on_cpu(x), on_cpu(w), on_cpu(bias), a, {.alpha = 0.5f, .beta = 1.0f});
    gpu->linear(on_gpu(x), on_gpu(w), on_gpu(bias), b, {.alpha = 0.5f, .beta = 1.0f});
    EXPECT_CLOSE(gpu->download(b), a, kBf16Tol) << "rows = " << rows;
    Tensor c = cpu->alloc({rows, 96}, DType::f32), d = gpu->alloc({rows, 96}, DType::f32);
    cpu->linear(on_cpu(x), on_cpu(w), Tensor(), c);
    gpu->linear(on_gpu(x), on_gpu(w), Tensor(), d);
    EXPECT_CLOSE(gpu->download(d), c, 1e-3) << "f32 output, rows = " << rows;
  }
}

TEST_F(CudaOps, Rope) {
  const Tensor x = random_bf16_values({9, 6, 64}, 8);
  const Tensor pos = Tensor::from_ints({0, 1, 2, 7, 100, 1000, 4095, 30000, 5}, {9});
  Tensor a = on_cpu(x), b = on_gpu(x);
  cpu->rope(a, pos, 1000000.0);
  gpu->rope(b, on_gpu(pos), 1000000.0);
  EXPECT_CLOSE(gpu->download(b), a, kBf16Tol);
}

TEST_F(CudaOps, CopyRowsSwigluAdd) {
  const Tensor g = random_bf16_values({4, 300}, 9, 2.0f), u = random_bf16_values({4, 300}, 10);
  Tensor a = cpu->alloc({4, 300}, DType::f32), b = gpu->alloc({4, 300}, DType::bf16);
  cpu->swiglu(on_cpu(g), on_cpu(u), a);
  gpu->swiglu(on_gpu(g), on_gpu(u), b);
  EXPECT_CLOSE(gpu->download(b), a, kBf16Tol);
  Tensor s1 = on_cpu(g), s2 = on_gpu(g);
  cpu->add(s1, on_cpu(u), s1);
  gpu->add(s2, on_gpu(u), s2);
  EXPECT_CLOSE(gpu->download(s2), s1, kBf16Tol);
  Tensor d1 = cpu->upload(Tensor::zeros({10, 300}, DType::f32), DType::f32);
  Tensor d2 = gpu->upload(Tensor::zeros({10, 300}, DType::f32), DType::bf16);
  cpu->copy_rows(on_cpu(u).rows(1, 3), d1, 6);
  gpu->copy_rows(on_gpu(u).rows(1, 3), d2, 6);
  EXPECT_CLOSE(gpu->download(d2), d1, 0.0);
  const Tensor where = Tensor::from_ints({9, 0, 4}, {3});
  cpu->scatter_rows(on_cpu(g).rows(0, 3), d1, where);
  gpu->scatter_rows(on_gpu(g).rows(0, 3), d2, on_gpu(where));
  EXPECT_CLOSE(gpu->download(d2), d1, 0.0);
}

TEST_F(CudaOps, AttentionPrefillAndDecodeWithGqa) {
  struct Case {
    int64_t n, past, heads, kv_heads, d;
  } cases[] = {{1, 0, 4, 2, 16}, {13, 0, 14, 2, 64}, {1, 700, 14, 2, 64}, {5, 40, 28, 4, 128}, {64, 3, 8, 8, 32}};
  for (const Case& c : cases) {
    const int64_t ctx = c.past + c.n + 3;  // rows past the visible end must be ignored
    const Tensor q = random_bf16_values({c.n, c.heads, c.d}, 11), k = random_bf16_values({ctx, c.kv_heads, c.d}, 12),
                 v = random_bf16_values({ctx, c.kv_heads, c.d}, 13);
    const AttentionParams p{.num_heads = c.heads, .num_kv_heads = c.kv_heads, .head_dim = c.d,
                            .scale = float(1.0 / std::sqrt(double(c.d)))};
    std::vector<int32_t> positions;
    for (int64_t i = 0; i < c.n; ++i) positions.push_back(int32_t(c.past + i));
    const Tensor pos = Tensor::from_ints(positions, {c.n});
    Tensor a = cpu->alloc({c.n, c.heads * c.d}, DType::f32), b = gpu->alloc({c.n, c.heads * c.d}, DType::bf16);
    cpu->attention(on_cpu(q), on_cpu(k), on_cpu(v), pos, a, p);
    gpu->attention(on_gpu(q), on_gpu(k), on_gpu(v), on_gpu(pos), b, p);
    EXPECT_CLOSE(gpu->download(b), a, kBf16Tol) << "n " << c.n << " past " << c.past << " d " << c.d;
  }
}

TEST_F(CudaOps, RejectsUnsupportedHeadDim) {
  const Tensor q = random_bf16_values({1, 2, 24}, 1);
  Tensor out = gpu->alloc({1, 48}, DType::bf16);
  const Tensor pos = on_gpu(Tensor::from_ints({0}, {1}));
  EXPECT_WICK_ERROR(gpu->attention(on_gpu(q), on_gpu(q), on_gpu(q), pos, out,
                                   {.num_heads = 2, .num_kv_heads = 2, .head_dim = 24, .scale = 1.0f}),
                    ErrorKind::unsupported, "head_dim 24");
}

}  // namespace
}  // namespace wick::test
