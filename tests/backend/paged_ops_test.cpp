// The ops of a batch over a paged KV cache with an adapter per row: paged_attention (each query reads its own
// sequence's keys through its block table) and lora_rows (each row its own adapter's factors). On the CPU each is
// held to the op it generalises — attention over the sequence's rows gathered in order (bit for bit: the same
// arithmetic), the LoRA path as two BLAS products; on CUDA each to its CPU twin on identical bf16 inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "wick/error.h"

namespace wick::test {
namespace {

constexpr int64_t kHeads = 6, kKvHeads = 2, kDim = 32;

// Sequences of given lengths whose keys sit in shuffled blocks of one pool; queries: the last `fresh` positions of
// each. k and v [pool rows, kv_heads, d] random bf16 values; rows no sequence owns hold huge values (any leak shows).
struct PagedProblem {
  static constexpr int64_t kBlock = 8;
  Tensor q, k, v;
  std::vector<int32_t> tables, starts, positions;
  std::vector<std::vector<int32_t>> seq_rows;  // each sequence's rows in position order
  std::vector<int64_t> query_seq;              // the sequence of each query
  int64_t max_visible = 0;
  AttentionParams params{.num_heads = kHeads, .num_kv_heads = kKvHeads, .head_dim = kDim,
                         .scale = float(1.0 / std::sqrt(double(kDim)))};

  PagedProblem(const std::vector<int64_t>& lengths, const std::vector<int64_t>& fresh, uint32_t seed) {
    int64_t blocks = 3;  // a few no sequence owns
    for (int64_t n : lengths) blocks += (n + kBlock - 1) / kBlock;
    std::vector<int32_t> order(static_cast<size_t>(blocks));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    k = random_bf16_values({blocks * kBlock, kKvHeads, kDim}, seed + 1);
    v = random_bf16_values({blocks * kBlock, kKvHeads, kDim}, seed + 2);
    std::vector<bool> owned(static_cast<size_t>(blocks * kBlock), false);
    size_t next = 0;
    for (size_t s = 0; s < lengths.size(); ++s) {
      const int32_t start = int32_t(tables.size());
      seq_rows.emplace_back();
      for (int64_t p = 0; p < lengths[s]; ++p) {
        if (p % kBlock == 0) tables.push_back(order[next++]);
        seq_rows.back().push_back(int32_t(tables.back() * kBlock + p % kBlock));
        owned[size_t(seq_rows.back().back())] = true;
      }
      for (int64_t p = lengths[s] - fresh[s]; p < lengths[s]; ++p) {
        starts.push_back(start);
        positions.push_back(int32_t(p));
        query_seq.push_back(int64_t(s));
      }
      max_visible = std::max(max_visible, lengths[s]);
    }
    for (size_t r = 0; r < owned.size(); ++r)
      if (!owned[r])
        for (Tensor* t : {&k, &v}) std::fill_n(t->data<float>() + int64_t(r) * kKvHeads * kDim, kKvHeads * kDim, 1e30f);
    q = random_bf16_values({int64_t(positions.size()), kHeads, kDim}, seed + 3, 2.0f);
  }
  int64_t n() const { return q.dim(0); }
};

// One sequence's keys or values gathered into position order: [length, kv_heads, d].
Tensor gathered(const Tensor& pool, const std::vector<int32_t>& rows) {
  const int64_t row = kKvHeads * kDim;
  Tensor out = Tensor::empty({int64_t(rows.size()), kKvHeads, kDim}, DType::f32);
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(out.data<float>() + int64_t(i) * row, pool.data<float>() + rows[i] * row, size_t(row) * sizeof(float));
  return out;
}

Tensor run_paged(Backend& b, const PagedProblem& pr, const std::function<Tensor(const Tensor&)>& put) {
  const int64_t n = pr.n();
  const PagedKeys keys{.tables = put(Tensor::from_ints(pr.tables, {int64_t(pr.tables.size())})),
                       .starts = put(Tensor::from_ints(pr.starts, {n})),
                       .positions = put(Tensor::from_ints(pr.positions, {n})),
                       .block_size = PagedProblem::kBlock,
                       .max_visible = pr.max_visible};
  Tensor out = b.alloc({n, kHeads * kDim}, b.compute_dtype());
  b.paged_attention(put(pr.q), put(pr.k), put(pr.v), keys, out, pr.params);
  return b.download(out);
}

TEST(PagedOps, CpuPagedAttentionIsAttentionOverTheGatheredRowsBitForBit) {
  const auto cpu = make_cpu_backend();
  const PagedProblem pr({5, 40, 1, 23}, {5, 1, 1, 7}, 11);  // prefills, decodes and a chunk after a past
  const auto put = [&](const Tensor& t) { return t; };
  const Tensor got = run_paged(*cpu, pr, put);
  for (int64_t i = 0; i < pr.n(); ++i) {
    const std::vector<int32_t>& rows = pr.seq_rows[size_t(pr.query_seq[size_t(i)])];
    Tensor out = Tensor::empty({1, kHeads * kDim}, DType::f32);
    cpu->attention(pr.q.rows(i, i + 1), gathered(pr.k, rows), gathered(pr.v, rows),
                   Tensor::from_ints({pr.positions[size_t(i)]}, {1}), out, pr.params);
    for (int64_t e = 0; e < kHeads * kDim; ++e)
      ASSERT_EQ(got.data<float>()[i * kHeads * kDim + e], out.data<float>()[e]) << "query " << i << " element " << e;
  }
}

// The projections' biases added in rope_kv's pass are the biases linear adds: bit for bit on the CPU.
TEST(PagedOps, CpuRopeKvAddsTheBiasesLinearWould) {
  const auto cpu = make_cpu_backend();
  const int64_t n = 4, in = 24, heads = 3, kvh = 1, d = 8, pool_rows = 16;
  const Tensor x = random_bf16_values({n, in}, 40);
  Tensor w[3], bias[3], with[3], without[3];
  for (int i = 0; i < 3; ++i) {
    const int64_t outs = (i == 0 ? heads : kvh) * d;
    w[i] = random_bf16_values({outs, in}, uint32_t(41 + i));
    bias[i] = random_bf16_values({outs}, uint32_t(44 + i));
    with[i] = Tensor::empty({n, outs}, DType::f32), without[i] = Tensor::empty({n, outs}, DType::f32);
    cpu->linear(x, w[i], bias[i], with[i]);
    cpu->linear(x, w[i], Tensor(), without[i]);
  }
  const Tensor pos = Tensor::from_ints({3, 4, 5, 9}, {n}), rows = Tensor::from_ints({15, 0, 7, 2}, {n});
  Tensor kc[2] = {Tensor::zeros({pool_rows, kvh, d}, DType::f32), Tensor::zeros({pool_rows, kvh, d}, DType::f32)};
  Tensor vc[2] = {Tensor::zeros({pool_rows, kvh, d}, DType::f32), Tensor::zeros({pool_rows, kvh, d}, DType::f32)};
  Tensor qa = with[0].reshape({n, heads, d}), ka = with[1].reshape({n, kvh, d});
  Tensor qb = without[0].reshape({n, heads, d}), kb = without[1].reshape({n, kvh, d});
  cpu->rope_kv(qa, ka, with[2].reshape({n, kvh, d}), pos, 1e4, kc[0], vc[0], rows);
  cpu->rope_kv(qb, kb, without[2].reshape({n, kvh, d}), pos, 1e4, kc[1], vc[1], rows,
               {.q = bias[0], .k = bias[1], .v = bias[2]});
  for (const auto& [a, b] : {std::pair{&qa, &qb}, {&kc[0], &kc[1]}, {&vc[0], &vc[1]}})
    for (int64_t e = 0; e < a->numel(); ++e) ASSERT_EQ(a->data<float>()[e], b->data<float>()[e]) << "element " << e;
}

TEST(PagedOps, CpuPagedAttentionRefusesBlocksOutsideThePool) {
  const auto cpu = make_cpu_backend();
  PagedProblem pr({12, 3}, {1, 1}, 5);
  const auto same = [](const Tensor& t) { return t; };
  pr.tables[1] = int32_t(pr.k.dim(0) / PagedProblem::kBlock);  // one past the pool
  EXPECT_THROW(run_paged(*cpu, pr, same), Error);
  pr.tables[1] = 0;
  pr.positions[1] = 40;  // reads past every block table
  EXPECT_THROW(run_paged(*cpu, pr, same), Error);
}

// Adapters of different ranks over one projection (in → out) and the per-row table addresses of a batch.
struct RowLora {
  int64_t in = 48, out = 40;
  std::vector<Tensor> a, b;  // host f32 [rank, in], [out, rank]
  std::vector<float> scale;

  explicit RowLora(const std::vector<int64_t>& ranks, int64_t in_features = 48) : in(in_features) {
    for (size_t i = 0; i < ranks.size(); ++i) {
      a.push_back(random_bf16_values({ranks[i], in}, uint32_t(100 + i)));
      b.push_back(random_bf16_values({out, ranks[i]}, uint32_t(200 + i)));
      scale.push_back(0.5f + float(i));
    }
  }
  // One LoraEntry table per adapter (slot 1 holds the factors; slot 0 an empty entry), on `backend`, and the
  // factors uploaded there; each row's table address (row_adapter[t] < 0: none) as i32 [n, 2].
  struct OnBackend {
    std::vector<Tensor> factors, tables;
    Tensor row_tables;
  };
  OnBackend put(Backend& backend, const std::vector<int>& row_adapter) const {
    OnBackend o;
    for (size_t i = 0; i < a.size(); ++i) {
      o.factors.push_back(backend.upload(a[i], backend.compute_dtype()));
      o.factors.push_back(backend.upload(b[i], backend.compute_dtype()));
      const LoraEntry entries[2] = {{}, {.a = o.factors[2 * i].raw(), .b = o.factors[2 * i + 1].raw(),
                                         .scale = scale[i], .rank = int32_t(a[i].dim(0))}};
      Tensor host = Tensor::empty({int64_t(sizeof(entries) / 4)}, DType::i32);
      std::memcpy(host.raw(), entries, sizeof(entries));
      o.tables.push_back(backend.upload(host, DType::i32));
    }
    std::vector<int32_t> words(2 * row_adapter.size(), 0);
    for (size_t t = 0; t < row_adapter.size(); ++t) {
      if (row_adapter[t] < 0) continue;
      const uint64_t address = uint64_t(reinterpret_cast<uintptr_t>(o.tables[size_t(row_adapter[t])].raw()));
      std::memcpy(&words[2 * t], &address, 8);
    }
    o.row_tables = backend.upload(Tensor::from_ints(words, {int64_t(row_adapter.size()), 2}), DType::i32);
    return o;
  }
};

TEST(PagedOps, CpuLoraRowsIsEachRowsAdapterAsTwoProducts) {
  const auto cpu = make_cpu_backend();
  const RowLora lora({4, 16, 7});
  const std::vector<int> row_adapter = {0, 2, -1, 1, 1, 0, -1, 2};
  const int64_t n = int64_t(row_adapter.size());
  const Tensor x = random_bf16_values({n, lora.in}, 1);
  const Tensor start = random_bf16_values({n, lora.out}, 2);
  const RowLora::OnBackend on = lora.put(*cpu, row_adapter);
  Tensor got = start.to(DType::f32);
  cpu->lora_rows(x, on.row_tables, 1, 16, got);
  cpu->lora_rows(x, on.row_tables, 0, 16, got);  // slot 0: rank 0 everywhere, nothing added
  for (int64_t t = 0; t < n; ++t) {
    Tensor want = start.rows(t, t + 1).to(DType::f32);
    if (const int i = row_adapter[size_t(t)]; i >= 0) {
      Tensor low = Tensor::empty({1, lora.a[size_t(i)].dim(0)}, DType::f32);
      cpu->linear(x.rows(t, t + 1), lora.a[size_t(i)], Tensor(), low);
      cpu->linear(low, lora.b[size_t(i)], Tensor(), want, {.alpha = lora.scale[size_t(i)], .beta = 1.0f});
    }
    for (int64_t o = 0; o < lora.out; ++o)
      EXPECT_NEAR(got.data<float>()[t * lora.out + o], want.data<float>()[o], 1e-5 * (1 + std::abs(want.data<float>()[o])))
          << "row " << t << " output " << o;
  }
}

class CudaPagedOps : public CudaBackendTest {};

TEST_F(CudaPagedOps, PagedAttentionMatchesTheCpu) {
  // Decodes over long and short contexts (long ones split over blocks), a prefill chunk, one lone query.
  for (const auto& [lengths, fresh] : std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>{
           {{700, 3, 129, 64}, {1, 1, 1, 1}}, {{90, 300}, {90, 20}}, {{1}, {1}}}) {
    const PagedProblem pr(lengths, fresh, uint32_t(lengths[0]));
    const Tensor ref = run_paged(*cpu, pr, [&](const Tensor& t) { return on_cpu(t); });
    const Tensor got = run_paged(*gpu, pr, [&](const Tensor& t) { return on_gpu(t); });
    EXPECT_CLOSE(got, ref, 1e-2) << "first length " << lengths[0];
  }
}

TEST_F(CudaPagedOps, LoraRowsMatchesTheCpu) {
  for (const int64_t in : {48, 36}) {  // vector loads, and the scalar path (in not a multiple of 8)
    const RowLora lora({4, 16, 64}, in);
    std::vector<int> row_adapter;
    for (int t = 0; t < 37; ++t) row_adapter.push_back(t % 5 == 4 ? -1 : t % 3);
    const int64_t n = int64_t(row_adapter.size());
    const Tensor x = random_bf16_values({n, in}, 3), start = random_bf16_values({n, lora.out}, 4);
    const RowLora::OnBackend on_c = lora.put(*cpu, row_adapter), on_g = lora.put(*gpu, row_adapter);
    Tensor ref = on_cpu(start), got = on_gpu(start);
    cpu->lora_rows(on_cpu(x), on_c.row_tables, 1, 64, ref);
    gpu->lora_rows(on_gpu(x), on_g.row_tables, 1, 64, got);
    EXPECT_CLOSE(gpu->download(got), cpu->download(ref), 1e-2) << "in " << in;
  }
}

}  // namespace
}  // namespace wick::test
