// The CUDA backend's training ops (backend.h, "Backward twins") against their CPU twins, which cpu_backward_test.cpp
// checks by finite differences: the same random bf16-representable inputs on both, the CPU in f32 (sums in double),
// the GPU storing bf16 or f32 and computing in f32. Skipped (not failed) on machines without a CUDA device.
//
// Tolerances, relative L2 over a whole output (EXPECT_CLOSE):
// - kBf16Out = 1e-2 for outputs stored in bf16: rounding to bf16 alone is up to 2⁻⁹ ≈ 2e-3 relative per element
//   (≈ 1e-3 RMS), plus f32 summation-order noise; the bound every forward op's test uses (DESIGN: ≤ 1e-2).
// - kF32Out = 1e-4 for outputs stored in f32 from identical inputs: they differ only by summation order, the CPU's
//   double sums and the accuracy of expf, rsqrtf and sincosf (each ≈ 1e-7 relative, ≈ 1e-6 after sums of a few
//   thousand terms), so 1e-4 leaves a margin of a hundred while a missing or wrong term is an error of order 0.1.
// - The loss: relative 1e-5. Each row's loss is log Σ exp − x[target] of order 1–10; the GPU's Σ exp in f32 over a
//   row of thousands is good to ≈ 1e-6 relative, so its log to ≈ 1e-6 absolute.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

using CudaBackward = CudaBackendTest;

constexpr double kBf16Out = 1e-2;
constexpr double kF32Out = 1e-4;
constexpr double kLossRelTol = 1e-5;

double tolerance_for(DType stored) { return stored == DType::f32 ? kF32Out : kBf16Out; }

// after − before elementwise: the part of an accumulated gradient one call added.
Tensor added(const Tensor& after, const Tensor& before) {
  Tensor d = Tensor::empty(after.shape(), DType::f32);
  for (int64_t i = 0; i < after.numel(); ++i) d.data<float>()[i] = after.data<float>()[i] - before.data<float>()[i];
  return d;
}

// out = alpha·op(a)·op(b) + beta·out in every transpose combination, accumulating onto a non-zero out: bf16 operands
// into f32 (a LoRA parameter gradient) and into bf16 (an activation gradient), and f32 operands into f32.
TEST_F(CudaBackward, MatmulEveryTransposeWithAccumulate) {
  const int64_t m = 37, k = 67, n = 29;
  const struct {
    DType in, out;
  } cases[] = {{DType::bf16, DType::f32}, {DType::bf16, DType::bf16}, {DType::f32, DType::f32}};
  for (const auto& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        SCOPED_TRACE(::testing::Message() << to_string(c.in) << " → " << to_string(c.out) << ", transpose_a " << ta
                                          << " transpose_b " << tb);
        const Tensor a = random_bf16_values(ta ? Shape{k, m} : Shape{m, k}, 1),
                     b = random_bf16_values(tb ? Shape{n, k} : Shape{k, n}, 2), prior = random_bf16_values({m, n}, 3);
        const MatmulParams p{.transpose_a = ta, .transpose_b = tb, .alpha = 0.7f, .beta = 0.5f};
        Tensor want = on_cpu(prior), got = gpu->upload(prior, c.out);
        cpu->matmul(on_cpu(a), on_cpu(b), want, p);
        gpu->matmul(gpu->upload(a, c.in), gpu->upload(b, c.in), got, p);
        EXPECT_CLOSE(gpu->download(got), want, tolerance_for(c.out));
      }
}

TEST_F(CudaBackward, MatmulRejectsMismatchedShapesAndDtypes) {
  const Tensor a = on_gpu(random_bf16_values({2, 3}, 1)), b = on_gpu(random_bf16_values({4, 5}, 2));
  Tensor out = gpu->alloc({2, 5}, DType::f32);
  EXPECT_WICK_ERROR(gpu->matmul(a, b, out), ErrorKind::internal, "matmul", "[2, 3]", "[4, 5]");
  const Tensor b32 = gpu->upload(random_bf16_values({3, 5}, 3), DType::f32);
  EXPECT_WICK_ERROR(gpu->matmul(a, b32, out), ErrorKind::internal, "matmul", "bf16", "f32");
  Tensor out16 = gpu->alloc({2, 5}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->matmul(gpu->upload(random_bf16_values({2, 3}, 4), DType::f32), b32, out16),
                    ErrorKind::internal, "matmul", "out [2, 5] bf16");
}

TEST_F(CudaBackward, RmsNorm) {
  for (DType t : {DType::bf16, DType::f32})
    for (int64_t n : {64, 896}) {
      SCOPED_TRACE(::testing::Message() << to_string(t) << ", n " << n);
      const Tensor x = random_bf16_values({5, n}, 10, 2.0f), w = random_bf16_values({n}, 11),
                   g = random_bf16_values({5, n}, 12);
      Tensor want = cpu->alloc({5, n}, DType::f32), got = gpu->alloc({5, n}, t);
      cpu->rmsnorm_backward(on_cpu(x), on_cpu(w), 1e-6f, on_cpu(g), want);
      gpu->rmsnorm_backward(gpu->upload(x, t), gpu->upload(w, t), 1e-6f, gpu->upload(g, t), got);
      EXPECT_CLOSE(gpu->download(got), want, tolerance_for(t));
    }
}

// Positions from 0 to far into a long context, head_dim 64; and rope_backward undoes the GPU's rope.
TEST_F(CudaBackward, Rope) {
  const int64_t n = 6, heads = 4, d = 64;
  const Tensor pos = Tensor::from_ints({0, 3, 17, 250, 1023, 4095}, {n}), g = random_bf16_values({n, heads, d}, 20);
  for (DType t : {DType::bf16, DType::f32}) {
    SCOPED_TRACE(to_string(t));
    Tensor want = on_cpu(g), got = gpu->upload(g, t);
    cpu->rope_backward(want, pos, 1e6);
    gpu->rope_backward(got, on_gpu(pos), 1e6);
    EXPECT_CLOSE(gpu->download(got), want, tolerance_for(t));
  }
  Tensor x = on_gpu(g);
  gpu->rope(x, on_gpu(pos), 1e6);
  gpu->rope_backward(x, on_gpu(pos), 1e6);
  EXPECT_CLOSE(gpu->download(x), g, kBf16Out);
}

TEST_F(CudaBackward, Swiglu) {
  const Shape shape{7, 300};
  const Tensor gate = random_bf16_values(shape, 30, 3.0f), up = random_bf16_values(shape, 31),
               g = random_bf16_values(shape, 32);
  for (DType t : {DType::bf16, DType::f32}) {
    SCOPED_TRACE(to_string(t));
    Tensor want_gate = cpu->alloc(shape, DType::f32), want_up = cpu->alloc(shape, DType::f32);
    Tensor got_gate = gpu->alloc(shape, t), got_up = gpu->alloc(shape, t);
    cpu->swiglu_backward(on_cpu(gate), on_cpu(up), on_cpu(g), want_gate, want_up);
    gpu->swiglu_backward(gpu->upload(gate, t), gpu->upload(up, t), gpu->upload(g, t), got_gate, got_up);
    EXPECT_CLOSE(gpu->download(got_gate), want_gate, tolerance_for(t)) << "gate";
    EXPECT_CLOSE(gpu->download(got_up), want_up, tolerance_for(t)) << "up";
  }
}

struct AttentionCase {
  int64_t n, capacity, first_position;
  AttentionParams p;
};

// One attention_backward on both backends: queries at first_position, first_position + 1, ... over a cache longer
// than the last of them, dk and dv accumulated onto non-zero values. dq and what dk, dv gained are compared; the
// rows past the last visible key must keep their values exactly.
void check_attention_backward(Backend& cpu, Backend& gpu, const AttentionCase& c, DType t) {
  const AttentionParams& p = c.p;
  const int64_t n = c.n, cap = c.capacity, last = c.first_position + n - 1;
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[size_t(i)] = int32_t(c.first_position + i);
  const Tensor pos = Tensor::from_ints(positions, {n});
  const Tensor q = random_bf16_values({n, p.num_heads, p.head_dim}, 40),
               k = random_bf16_values({cap, p.num_kv_heads, p.head_dim}, 41),
               v = random_bf16_values({cap, p.num_kv_heads, p.head_dim}, 42),
               g = random_bf16_values({n, p.num_heads * p.head_dim}, 43);
  // Prior gradients of the size of what a call adds, so that the sum's rounding to bf16 stays within kBf16Out of it.
  const Tensor dk0 = random_bf16_values(k.shape(), 44, 0.1f), dv0 = random_bf16_values(v.shape(), 45, 0.1f);
  Tensor dq_want = cpu.alloc(q.shape(), DType::f32), dk_want = cpu.upload(dk0, DType::f32),
         dv_want = cpu.upload(dv0, DType::f32);
  cpu.attention_backward({.q = cpu.upload(q, DType::f32), .k = cpu.upload(k, DType::f32),
                          .v = cpu.upload(v, DType::f32), .positions = pos},
                         cpu.upload(g, DType::f32), {.dq = dq_want, .dk = dk_want, .dv = dv_want}, p);
  Tensor dq = gpu.upload(random_bf16_values(q.shape(), 46), t), dk = gpu.upload(dk0, t), dv = gpu.upload(dv0, t);
  gpu.attention_backward({.q = gpu.upload(q, t), .k = gpu.upload(k, t), .v = gpu.upload(v, t),
                          .positions = gpu.upload(pos, DType::i32)},
                         gpu.upload(g, t), {.dq = dq, .dk = dk, .dv = dv}, p);
  const Tensor dk_got = gpu.download(dk), dv_got = gpu.download(dv);
  EXPECT_CLOSE(gpu.download(dq), dq_want, tolerance_for(t)) << "dq";
  EXPECT_CLOSE(added(dk_got, dk0), added(dk_want, dk0), tolerance_for(t)) << "dk";
  EXPECT_CLOSE(added(dv_got, dv0), added(dv_want, dv0), tolerance_for(t)) << "dv";
  EXPECT_TRUE(same_rows(dk_got, dk0, last + 1, cap)) << "dk past the last visible key";
  EXPECT_TRUE(same_rows(dv_got, dv0, last + 1, cap)) << "dv past the last visible key";
}

// Grouped-query (4 query heads on 2 kv heads), a chunk of 37 queries after 11 cached tokens in a cache of 60.
TEST_F(CudaBackward, AttentionGroupedQueryOverCache) {
  const AttentionCase c{
      .n = 37, .capacity = 60, .first_position = 11,
      .p = {.num_heads = 4, .num_kv_heads = 2, .head_dim = 64, .scale = 0.125f}};
  for (DType t : {DType::bf16, DType::f32}) {
    SCOPED_TRACE(to_string(t));
    check_attention_backward(*cpu, *gpu, c, t);
  }
}

// A whole sequence of 512 at head_dim 128 (7 query heads per kv head, as Qwen2-7B groups them): the long case, and
// enough blocks for compute-sanitizer to see every kernel's edges.
TEST_F(CudaBackward, AttentionLongSequence) {
  const AttentionCase c{
      .n = 512, .capacity = 512, .first_position = 0,
      .p = {.num_heads = 14, .num_kv_heads = 2, .head_dim = 128, .scale = 0.0883883476f}};
  check_attention_backward(*cpu, *gpu, c, DType::bf16);
}

TEST_F(CudaBackward, AttentionRejectsMismatchedShapesAndHeadDims) {
  const AttentionParams p{.num_heads = 4, .num_kv_heads = 2, .head_dim = 8, .scale = 0.5f};
  const Tensor q = on_gpu(random_bf16_values({2, 4, 8}, 1)), k = on_gpu(random_bf16_values({12, 2, 8}, 2));
  const Tensor pos = on_gpu(Tensor::from_ints({3, 4}, {2})), g = on_gpu(random_bf16_values({2, 32}, 3));
  Tensor dq = gpu->alloc({2, 4, 8}, DType::bf16), dk = gpu->alloc({12, 1, 8}, DType::bf16);
  const AttentionGrads narrow_dk{.dq = dq, .dk = dk, .dv = dk};
  EXPECT_WICK_ERROR(gpu->attention_backward({.q = q, .k = k, .v = k, .positions = pos}, g, narrow_dk, p),
                    ErrorKind::internal, "attention_backward", "dk [12, 1, 8]");
  const AttentionParams wide{.num_heads = 1, .num_kv_heads = 1, .head_dim = 320, .scale = 0.05f};
  const Tensor x = on_gpu(random_bf16_values({1, 1, 320}, 4));
  Tensor dx = gpu->alloc({1, 1, 320}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->attention_backward({.q = x, .k = x, .v = x, .positions = on_gpu(Tensor::from_ints({0}, {1}))},
                                            x.reshape({1, 320}), {.dq = dx, .dk = dx, .dv = dx}, wide),
                    ErrorKind::unsupported, "head_dim 320");
}

// Rows of 5003 classes (not a multiple of any block size), three of nine ignored; the gradient in f32 and in bf16.
// The same mask as the CPU's, element for element (both keep exactly where dropout_keeps says), in either dtype.
TEST_F(CudaBackward, DropoutDrawsTheCpuMask) {
  const Shape shape{9, 1000};
  const Tensor x = random_bf16_values(shape, 40);
  for (DType t : {DType::bf16, DType::f32}) {
    SCOPED_TRACE(to_string(t));
    Tensor want = cpu->alloc(shape, DType::f32), got = gpu->upload(x, t);
    cpu->dropout(on_cpu(x), 0.3f, 1234, want);
    gpu->dropout(got, 0.3f, 1234, got);  // in place
    const Tensor back = gpu->download(got);
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_EQ(back.data<float>()[i] == 0.0f, want.data<float>()[i] == 0.0f) << "element " << i;
    EXPECT_CLOSE(back, want, tolerance_for(t));
  }
}

TEST_F(CudaBackward, CrossEntropy) {
  const int64_t rows = 9, classes = 5003;
  const float scale = 0.37f;
  const Tensor logits = random_bf16_values({rows, classes}, 50, 3.0f);
  const Tensor targets = Tensor::from_ints({7, -100, 0, 5002, -100, 1234, 42, -100, 4999}, {rows});
  Tensor want = cpu->alloc({rows, classes}, DType::f32);
  const double loss_want = cpu->cross_entropy(on_cpu(logits), targets, scale, want);
  for (DType t : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(to_string(t));
    Tensor got = gpu->upload(random_bf16_values({rows, classes}, 51), t);  // written: ignored rows must become 0
    const double loss = gpu->cross_entropy(gpu->upload(logits, DType::f32), on_gpu(targets), scale, got);
    EXPECT_NEAR(loss, loss_want, kLossRelTol * std::fabs(loss_want));
    const Tensor d = gpu->download(got);
    EXPECT_CLOSE(d, want, tolerance_for(t));
    EXPECT_TRUE(same_rows(d, want, 1, 2) && same_rows(d, want, 4, 5) && same_rows(d, want, 7, 8)) << "ignored rows";
  }
}

TEST_F(CudaBackward, CrossEntropyRejectsBadTargetsAndShapes) {
  const Tensor logits = gpu->upload(random_bf16_values({3, 4}, 60), DType::f32);
  Tensor d = gpu->alloc({3, 4}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->cross_entropy(logits, on_gpu(Tensor::from_ints({1, -100, 4}, {3})), 1.0f, d),
                    ErrorKind::bad_input, "row 2", "target 4");
  EXPECT_WICK_ERROR(gpu->cross_entropy(logits, on_gpu(Tensor::from_ints({-1, 0, 9}, {3})), 1.0f, d),
                    ErrorKind::bad_input, "row 0", "target -1");
  EXPECT_WICK_ERROR(gpu->cross_entropy(logits, on_gpu(Tensor::from_ints({1, 2}, {2})), 1.0f, d), ErrorKind::internal,
                    "cross_entropy", "targets [2]");
}

// Repeated ids add up (token 3 three times); rows no id names keep their values exactly.
TEST_F(CudaBackward, Embedding) {
  const int64_t vocab = 50, hidden = 96;
  const Tensor ids = Tensor::from_ints({3, 0, 49, 3, 17, 3}, {6}), g = random_bf16_values({6, hidden}, 70);
  const Tensor table0 = random_bf16_values({vocab, hidden}, 71);
  Tensor want = on_cpu(table0);
  cpu->embedding_backward(ids, on_cpu(g), want);
  for (DType t : {DType::bf16, DType::f32}) {
    SCOPED_TRACE(to_string(t));
    Tensor got = gpu->upload(table0, DType::f32);
    gpu->embedding_backward(on_gpu(ids), gpu->upload(g, t), got);
    const Tensor d = gpu->download(got);
    EXPECT_CLOSE(added(d, table0), added(want, table0), kF32Out);
    EXPECT_TRUE(same_rows(d, table0, 1, 3) && same_rows(d, table0, 4, 17) && same_rows(d, table0, 18, 49))
        << "rows no id names";
  }
  Tensor bf16_table = gpu->alloc({vocab, hidden}, DType::bf16);
  EXPECT_WICK_ERROR(gpu->embedding_backward(on_gpu(ids), on_gpu(g), bf16_table), ErrorKind::internal,
                    "embedding_backward", "d_table");
}

}  // namespace
}  // namespace wick::test
