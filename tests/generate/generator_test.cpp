// The four generation paths against transformers' greedy ids and against each other, sessions,
// cancellation and errors, on the tiny fixture models.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "cpu_paths.h"
#include "generate_test_util.h"
#include "test_util.h"
#include "wick/generator.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

using Ids = std::vector<int32_t>;

std::vector<int32_t> int_row(const Tensor& t, int64_t r) {
  const int64_t w = t.dim(1);
  return {t.data<int32_t>() + r * w, t.data<int32_t>() + (r + 1) * w};
}

// Runs one request through all four paths and returns what each delivered.
struct PathOutputs {
  std::vector<GenerateResult> results;          // generate, stream, iterator, async
  std::vector<std::vector<StreamToken>> tokens;  // the delivered tokens of the three streaming paths
};

PathOutputs all_paths(const Generator& gen, const Ids& prompt, const GenerateParams& params) {
  PathOutputs out;
  out.results.push_back(gen.generate(prompt, params));
  std::vector<StreamToken> cb;
  out.results.push_back(gen.generate_stream(prompt, params, [&](const StreamToken& t) {
    cb.push_back(t);
    return true;
  }));
  out.tokens.push_back(cb);
  std::vector<StreamToken> it;
  TokenStream stream = gen.stream(prompt, params);
  for (const StreamToken& t : stream) it.push_back(t);
  out.results.push_back(stream.result());
  out.tokens.push_back(it);
  std::vector<StreamToken> as;
  AsyncStream async = gen.stream_async(prompt, params, 2);
  while (auto t = async.next()) as.push_back(*t);
  out.results.push_back(async.result().get());
  out.tokens.push_back(as);
  return out;
}

Ids ids_of(const std::vector<StreamToken>& ts) {
  Ids ids;
  for (const auto& t : ts) ids.push_back(t.id);
  return ids;
}

class GreedyFixture : public ::testing::TestWithParam<std::string> {};

// Through the f32 products: rounded activations may part at a near tie of a random model's logits.
TEST_P(GreedyFixture, EveryPathEqualsTransformersGreedyIds) {
  const F32CpuProducts exact;
  const auto dir = fixture("models/" + GetParam());
  const Generator gen(Model::load(dir));
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  for (int64_t r = 0; r < prompts.dim(0); ++r) {
    const GenerateParams params{.max_tokens = int32_t(expected.dim(1)), .ignore_eos = true,
                                .sampling = SamplingParams::greedy_params()};
    const PathOutputs out = all_paths(gen, int_row(prompts, r), params);
    for (const auto& res : out.results) {
      EXPECT_EQ(res.output_ids, int_row(expected, r)) << "prompt row " << r;
      EXPECT_EQ(res.finish, FinishReason::length);
    }
    for (const auto& ts : out.tokens) {
      EXPECT_EQ(ids_of(ts), int_row(expected, r));
      ASSERT_FALSE(ts.empty());
      EXPECT_EQ(ts.back().finish, FinishReason::length);
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Tiny, GreedyFixture, ::testing::Values("tiny-tied", "tiny-untied"));

// Sampling with a seed; the tiny model is peaked, so a high temperature keeps the draws varied.
TEST(Generator, SameSeedSameTokensOnAllFourPaths) {
  const Generator gen(Model::load(fixture("models/tiny-tied")), tiny_tokenizer());
  SamplingParams sp{.temperature = 3.0f, .top_k = 50, .top_p = 0.98f, .min_p = 0.01f, .repetition_penalty = 1.1f,
                    .presence_penalty = 0.3f, .frequency_penalty = 0.2f, .seed = 42};
  sp.top_logprobs = 3;
  const GenerateParams params{.max_tokens = 40, .ignore_eos = true, .sampling = sp};
  const PathOutputs out = all_paths(gen, {5, 9, 17, 33}, params);
  for (const auto& res : out.results) {
    EXPECT_EQ(res.output_ids, out.results[0].output_ids);
    EXPECT_EQ(res.text, out.results[0].text);
    EXPECT_EQ(res.output_ids.size(), 40u);
  }
  for (const auto& ts : out.tokens) {
    ASSERT_EQ(ts.size(), out.tokens[0].size());
    std::string text;
    for (size_t i = 0; i < ts.size(); ++i) {
      EXPECT_EQ(ts[i].logprob, out.tokens[0][i].logprob);
      EXPECT_EQ(ts[i].top, out.tokens[0][i].top);
      EXPECT_GE(ts[i].top.size(), 1u);  // alternatives come from the tokens that survived the cuts
      EXPECT_LE(ts[i].top.size(), 3u);
      EXPECT_EQ(ts[i].index, int32_t(i));
      text += ts[i].text;
    }
    EXPECT_EQ(text, out.results[0].text);  // the pieces add up to the text
  }
  EXPECT_EQ(out.results[0].text, gen.tokenizer()->decode(out.results[0].output_ids));
  // A different seed gives a different sequence (40 draws from top-k 20).
  sp.seed = 43;
  EXPECT_NE(gen.generate(Ids{5, 9, 17, 33}, {.max_tokens = 40, .ignore_eos = true, .sampling = sp}).output_ids,
            out.results[0].output_ids);
}

TEST(Generator, EosEndsGenerationAndIgnoreEosMasksIt) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  ASSERT_EQ(gen.eos_ids(), (Ids{2, 3}));  // generation_config.json
  SamplingParams force_eos = SamplingParams::greedy_params();
  force_eos.logit_bias = {{3, 1000.0f}};
  const GenerateResult r = gen.generate(Ids{5, 6}, {.max_tokens = 8, .sampling = force_eos});
  EXPECT_EQ(r.output_ids, (Ids{3}));
  EXPECT_EQ(r.finish, FinishReason::eos);
  const GenerateResult masked = gen.generate(Ids{5, 6}, {.max_tokens = 8, .ignore_eos = true, .sampling = force_eos});
  EXPECT_EQ(masked.output_ids.size(), 8u);
  for (int32_t id : masked.output_ids) EXPECT_TRUE(id != 2 && id != 3);
}

TEST(Generator, BadRequestsFailBeforeComputingOnEveryPath) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const Ids ok = {1, 2, 3};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Bad {
    GenerateParams params;
    const char* needle;
  };
  const std::vector<Bad> bad = {
      {{.max_tokens = 0}, "--max-tokens"},
      {{.max_tokens = 254}, "context"},  // 3 + 254 > 256 positions
      {{.sampling = SamplingParams{.temperature = -1.0f}}, "--temperature"},
      {{.sampling = SamplingParams{.temperature = nan}}, "--temperature"},
      {{.sampling = SamplingParams{.top_p = 0.0f}}, "--top-p"},
      {{.sampling = SamplingParams{.top_p = 1.5f}}, "--top-p"},
      {{.sampling = SamplingParams{.top_k = -1}}, "--top-k"},
      {{.sampling = SamplingParams{.min_p = nan}}, "--min-p"},
      {{.sampling = SamplingParams{.repetition_penalty = nan}}, "--repeat-penalty"},
      {{.sampling = SamplingParams{.logit_bias = {{384, 1.0f}}}}, "--logit-bias"},
      {{.stop = {"x"}}, "tokenizer"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.needle);
    EXPECT_WICK_ERROR(gen.generate(ok, b.params), ErrorKind::bad_input, b.needle);
    EXPECT_WICK_ERROR(gen.generate_stream(ok, b.params, [](const StreamToken&) { return true; }), ErrorKind::bad_input,
                      b.needle);
    EXPECT_WICK_ERROR(gen.stream(ok, b.params), ErrorKind::bad_input, b.needle);
    EXPECT_WICK_ERROR(gen.stream_async(ok, b.params), ErrorKind::bad_input, b.needle);
  }
  EXPECT_WICK_ERROR(gen.generate(Ids{}, {}), ErrorKind::bad_input, "empty");
  EXPECT_NO_THROW(gen.generate(ok, {.max_tokens = 253, .sampling = SamplingParams::greedy_params()}));  // 3 + 253 = 256 fit
  // Several problems are reported together.
  EXPECT_WICK_ERROR(gen.generate(ok, {.max_tokens = 0, .sampling = SamplingParams{.top_k = -1}}), ErrorKind::bad_input,
                    "--max-tokens", "--top-k");
}

TEST(Generator, CallbackReturningFalseCancelsAfterThatToken) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  int seen = 0;
  const GenerateResult r = gen.generate_stream(Ids{1, 2, 3}, {.max_tokens = 50, .ignore_eos = true},
                                               [&](const StreamToken&) { return ++seen < 5; });
  EXPECT_EQ(seen, 5);
  EXPECT_EQ(r.output_ids.size(), 5u);
  EXPECT_EQ(r.finish, FinishReason::cancelled);
}

TEST(Generator, IteratorStopsEarlyAndCancels) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 30, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  const Ids full = gen.generate(Ids{7, 8}, params).output_ids;
  TokenStream s = gen.stream(Ids{7, 8}, params);
  Ids got;
  for (const StreamToken& t : s) {
    got.push_back(t.id);
    if (got.size() == 4) break;
  }
  s.cancel();
  EXPECT_EQ(got, Ids(full.begin(), full.begin() + 4));
  EXPECT_EQ(s.result().output_ids, got);
  EXPECT_EQ(s.result().finish, FinishReason::cancelled);
}

// With a channel of one token, the worker can be at most one token ahead of what the consumer took,
// plus the step it is computing when cancel() arrives (which is then dropped).
TEST(AsyncStream, CancelStopsWithinOneDecodeStep) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 200, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  const GenerateResult full = gen.generate(Ids{4, 5, 6}, params);
  const double step_ms = full.decode_ms / double(full.output_ids.size() - 1);
  AsyncStream s = gen.stream_async(Ids{4, 5, 6}, params, 1);
  Ids got;
  for (int i = 0; i < 3; ++i) got.push_back(s.next()->id);
  const auto t0 = std::chrono::steady_clock::now();
  s.cancel();
  const double cancel_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const GenerateResult r = s.result().get();
  EXPECT_EQ(r.finish, FinishReason::cancelled);
  EXPECT_LE(r.output_ids.size(), got.size() + 1);  // the channel's one token, nothing computed after
  EXPECT_EQ(r.output_ids, Ids(full.output_ids.begin(), full.output_ids.begin() + long(r.output_ids.size())));
  // Tokens already in the channel stay readable; then the stream ends.
  while (auto t = s.next()) got.push_back(t->id);
  EXPECT_EQ(got, r.output_ids);
  // Generous for a loaded 2-core machine: the bound is one step, the check a few hundred.
  EXPECT_LT(cancel_ms, std::max(50.0, 200 * step_ms)) << "one step takes " << step_ms << " ms";
}

TEST(AsyncStream, TimeoutWaitsAndFutureCarriesTheResult) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 20, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  const GenerateResult full = gen.generate(Ids{9, 10}, params);
  AsyncStream s = gen.stream_async(Ids{9, 10}, params, 4);
  Ids got;
  int timeouts = 0;
  for (StreamToken t;;) {
    const auto status = s.next(t, std::chrono::milliseconds(0));
    if (status == AsyncStream::Status::finished) break;
    if (status == AsyncStream::Status::timeout) {
      ++timeouts;
      std::this_thread::yield();
      continue;
    }
    got.push_back(t.id);
  }
  EXPECT_EQ(got, full.output_ids);
  EXPECT_EQ(s.result().get().output_ids, full.output_ids);
  EXPECT_EQ(s.result().get().finish, FinishReason::length);
  StreamToken t;
  EXPECT_EQ(s.next(t, std::chrono::milliseconds(1)), AsyncStream::Status::finished);
}

// Dropping streams mid-generation (worker blocked on a full channel, or never read) must stop the
// worker and free everything: run under -DWICK_SANITIZE=ON, LeakSanitizer checks this.
TEST(AsyncStream, DroppedStreamsReleaseEverything) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 100, .ignore_eos = true};
  for (int i = 0; i < 5; ++i) {
    AsyncStream never_read = gen.stream_async(Ids{1, 2}, params, 1);
    AsyncStream half_read = gen.stream_async(Ids{3, 4}, params, 2);
    ASSERT_TRUE(half_read.next().has_value());
  }
  AsyncStream moved = gen.stream_async(Ids{1, 2}, params, 1);
  AsyncStream target = std::move(moved);
  target = gen.stream_async(Ids{5, 6}, params, 1);  // cancels the first worker
  EXPECT_TRUE(target.next().has_value());
}

// Workers are reused between streams, but a stream never waits for another's worker: more streams than
// idle workers, each blocked on a full channel, consumed last first, all deliver their tokens.
TEST(AsyncStream, OpenStreamsEachHaveTheirOwnWorker) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 12, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  std::vector<Ids> want;
  std::vector<AsyncStream> streams;
  for (int32_t i = 0; i < 9; ++i) {
    want.push_back(gen.generate(Ids{i + 1, i + 2}, params).output_ids);
    streams.push_back(gen.stream_async(Ids{i + 1, i + 2}, params, 1));
  }
  for (size_t i = streams.size(); i-- > 0;) {
    Ids got;
    while (auto t = streams[i].next()) got.push_back(t->id);
    EXPECT_EQ(got, want[i]) << "stream " << i;
  }
  for (int round = 0; round < 3; ++round) {  // again, on the workers the first round left waiting
    AsyncStream s = gen.stream_async(Ids{1, 2}, params, 1);
    Ids got;
    while (auto t = s.next()) got.push_back(t->id);
    EXPECT_EQ(got, want[0]);
  }
}

TEST(Session, ReusesTheCacheForTheCommonPrefix) {
  const Generator gen(Model::load(fixture("models/tiny-tied")));
  const GenerateParams params{.max_tokens = 6, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  Session session = gen.make_session(128);
  const auto none = [](const StreamToken&) { return true; };
  const Ids turn1 = {11, 12, 13, 14};
  const GenerateResult r1 = gen.generate_stream(session, turn1, params, none);
  EXPECT_EQ(r1.cached_tokens, 0);
  EXPECT_EQ(r1.output_ids, gen.generate(turn1, params).output_ids);
  // Turn 2: the whole conversation again plus new tokens; only the new part is computed.
  Ids turn2 = turn1;
  turn2.insert(turn2.end(), r1.output_ids.begin(), r1.output_ids.end());
  turn2.insert(turn2.end(), {21, 22});
  const GenerateResult r2 = gen.generate_stream(session, turn2, params, none);
  EXPECT_EQ(r2.cached_tokens, int64_t(turn1.size() + r1.output_ids.size() - 1));  // last output not yet run
  EXPECT_EQ(r2.output_ids, gen.generate(turn2, params).output_ids);  // same as a fresh prefill
  // A diverging prompt keeps only the shared prefix.
  const Ids other = {11, 12, 99, 98};
  const GenerateResult r3 = gen.generate_stream(session, other, params, none);
  EXPECT_EQ(r3.cached_tokens, 2);
  EXPECT_EQ(r3.output_ids, gen.generate(other, params).output_ids);
  EXPECT_WICK_ERROR(gen.generate_stream(session, other, {.max_tokens = 125}, none), ErrorKind::bad_input, "capacity");
}

}  // namespace
}  // namespace wick::test
