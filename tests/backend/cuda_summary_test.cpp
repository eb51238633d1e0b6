// The logit summary on the GPU (backend.h's summarize and summarize_rows) against the host summary, and generation
// on CUDA that samples from it against generation on the CPU backend. Skipped (not failed) without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../model/model_test_util.h"
#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"
#include "wick/generator.h"
#include "wick/logit_summary.h"
#include "wick/model.h"
#include "wick/sampler.h"

namespace wick::test {
namespace {

class CudaSummary : public CudaBackendTest {};

// Random logits in [-4, 4) with ties among the best (3.999 every 3001 ids, so in different chunks), a -inf at n / 2
// and, past 100 ids, a NaN at n / 3.
void fill_logits(float* x, int64_t n, uint32_t seed) {
  uint32_t state = seed;
  for (int64_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    x[i] = float(state >> 8) / float(1 << 24) * 8.0f - 4.0f;
  }
  for (int64_t i = 0; i < n; i += 3001) x[i] = 3.999f;
  x[n / 2] = -std::numeric_limits<float>::infinity();
  if (n > 100) x[n / 3] = std::nanf("");
}

// Ids, values, gathered logits and the maximum exact (a NaN gathered as a NaN); Σexp to 1e-5 relative.
void expect_same_summary(const LogitSummary& got, const LogitSummary& want) {
  EXPECT_EQ(got.ids, want.ids);
  EXPECT_EQ(got.values, want.values);
  EXPECT_EQ(got.gathered_ids, want.gathered_ids);
  ASSERT_EQ(got.gathered.size(), want.gathered.size());
  for (size_t i = 0; i < want.gathered.size(); ++i) {
    if (std::isnan(want.gathered[i]) && std::isnan(got.gathered[i])) continue;
    EXPECT_EQ(got.gathered[i], want.gathered[i]);
  }
  EXPECT_EQ(got.max, want.max);
  EXPECT_NEAR(got.sum_exp, want.sum_exp, 1e-5 * want.sum_exp);
  EXPECT_EQ(got.vocab, want.vocab);
}

// Rows shorter than the count and rows of many chunks; the longest runs on the host path (too many candidates to
// merge on the device) and must agree all the same.
TEST_F(CudaSummary, MatchesTheHostSummary) {
  for (const int64_t n : {int64_t(37), int64_t(4096), int64_t(151936), int64_t(262145)}) {  // the last: on the host
    Tensor row = Tensor::empty({1, n}, DType::f32);
    float* x = row.data<float>();
    fill_logits(x, n, uint32_t(n));
    const std::vector<int32_t> gather = {0, int32_t(n / 2), int32_t(n - 1)};
    const Tensor on_device = gpu->upload(row, DType::f32);
    for (const int32_t count : {1, 40, 128}) {
      SCOPED_TRACE("n " + std::to_string(n) + " count " + std::to_string(count));
      expect_same_summary(gpu->summarize(on_device, count, gather),
                          summarize_logits(std::span<const float>(x, size_t(n)), count, gather));
    }
  }
  const Tensor small = gpu->upload(Tensor::zeros({1, 8}, DType::f32), DType::f32);
  EXPECT_WICK_ERROR(gpu->summarize(small, 4, {8}), ErrorKind::internal, "summarize", "gathered id 8");
}

// A batch's rows in one pass: 37 rows of a Qwen2 vocabulary, each its own logits and gather list (some empty, one
// gathering its NaN), against the host summary of each row; then rows too long for the device (the host path).
TEST_F(CudaSummary, RowsMatchTheHostSummaryOfEachRow) {
  for (const auto& [rows, n] : {std::pair<int64_t, int64_t>{37, 151936}, std::pair<int64_t, int64_t>{3, 262145}}) {
    Tensor logits = Tensor::empty({rows, n}, DType::f32);
    std::vector<std::vector<int32_t>> gather(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      fill_logits(logits.data<float>() + r * n, n, uint32_t(1000 + r));
      for (int64_t i = 0; i < r % 5; ++i) gather[size_t(r)].push_back(int32_t((r * 7919 + i * 104729) % n));
    }
    gather[1] = {int32_t(n / 3), int32_t(n / 2), 0, int32_t(n - 1), 0};  // NaN, -inf, a tie, the last, a repeat
    const Tensor on_device = gpu->upload(logits, DType::f32);
    for (const int32_t count : {1, 40, 128}) {
      const std::vector<LogitSummary> got = gpu->summarize_rows(on_device, count, gather);
      const std::vector<LogitSummary> ungathered = gpu->summarize_rows(on_device, count, {});
      ASSERT_EQ(int64_t(got.size()), rows);
      ASSERT_EQ(int64_t(ungathered.size()), rows);
      for (int64_t r = 0; r < rows; ++r) {
        SCOPED_TRACE("n " + std::to_string(n) + " count " + std::to_string(count) + " row " + std::to_string(r));
        const std::span<const float> row(logits.data<float>() + r * n, size_t(n));
        expect_same_summary(got[size_t(r)], summarize_logits(row, count, gather[size_t(r)]));
        expect_same_summary(ungathered[size_t(r)], summarize_logits(row, count, {}));
      }
    }
  }
  const Tensor small = gpu->upload(Tensor::zeros({2, 8}, DType::f32), DType::f32);
  const std::vector<std::vector<int32_t>> one_list = {{1}}, outside = {{1}, {8}};
  EXPECT_WICK_ERROR(gpu->summarize_rows(small, 4, one_list), ErrorKind::bad_input, "gather lists: 1 for 2 rows");
  EXPECT_WICK_ERROR(gpu->summarize_rows(small, 4, outside), ErrorKind::bad_input, "outside a row of 8", "8 (row 1)");
}

// Generation on CUDA samples from the device summary (greedy with alternatives; top-k with temperature, top-p and
// a repetition penalty, which gathers the seen ids): the same tokens and scores as a sampler given every logit of
// the same steps (Model::forward downloads the whole row).
TEST(CudaSummaryGeneration, ChoosesWhatTheWholeRowChooses) {
  try {
    make_backend(Device::cuda);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const auto model = Model::load(fixture("models/tiny-tied"), {.device = Device::cuda});
  const Generator gen(model);
  const std::vector<int32_t> prompt{3, 17, 99, 4};
  for (const SamplingParams& sampling :
       {SamplingParams{.temperature = 0.0f, .top_logprobs = 3},
        SamplingParams{.temperature = 0.8f, .top_k = 20, .top_p = 0.9f, .repetition_penalty = 1.3f, .seed = 4,
                       .top_logprobs = 2}}) {
    std::vector<StreamToken> got;
    gen.generate_stream(prompt, {.max_tokens = 24, .sampling = sampling}, [&](const StreamToken& t) {
      got.push_back(t);
      return true;
    });
    ASSERT_FALSE(got.empty());
    Sampler whole(sampling, model->config().vocab_size);
    whole.observe_context(prompt);
    KVCache cache = model->make_cache(int64_t(prompt.size()) + 24);  // as the generator sizes it
    std::vector<int32_t> pending = prompt;
    for (size_t i = 0; i < got.size(); ++i) {
      const Tensor row = model->forward(std::vector<SequenceInput>{{pending, &cache}});
      const TokenChoice want = whole.choose(std::span<const float>(row.data<float>(), size_t(row.numel())));
      ASSERT_EQ(got[i].id, want.id) << "token " << i;
      EXPECT_EQ(got[i].logit, want.logit);
      EXPECT_NEAR(got[i].logprob, want.logprob, 1e-5) << "token " << i;
      ASSERT_EQ(got[i].top.size(), want.top.size());
      for (size_t j = 0; j < want.top.size(); ++j) EXPECT_EQ(got[i].top[j].id, want.top[j].id);
      whole.accept(want.id);
      pending = {want.id};
    }
  }
}

}  // namespace
}  // namespace wick::test
