// Generator::generate_batch: requests with their own adapters, sampling params, stop strings and lengths, decoded
// together through the engine, each give what generate() gives them alone with that adapter in effect.
#include <gtest/gtest.h>

#include "generate_test_util.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/generator.h"

namespace wick::test {
namespace {

std::shared_ptr<const LoraAdapter> adapter(const Model& model, const char* name, uint64_t seed) {
  LoraConfig config;
  config.r = 4;
  config.lora_alpha = 16;
  config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return LoraAdapter::random(name, config, model, seed);
}

struct BatchCase {
  std::vector<int32_t> prompt;
  GenerateParams params;
  std::shared_ptr<const LoraAdapter> adapter;
};

std::vector<BatchCase> cases(const Model& model) {
  const auto a = adapter(model, "a", 1), b = adapter(model, "b", 2);
  const SamplingParams greedy = SamplingParams::greedy_params();
  SamplingParams drawn{.temperature = 3.0f, .top_k = 50, .top_p = 0.98f, .repetition_penalty = 1.1f, .seed = 7};
  return {
      {{5, 9, 17, 33}, {.max_tokens = 40, .ignore_eos = true, .sampling = greedy}, a},
      {{1, 2}, {.max_tokens = 25, .ignore_eos = true, .sampling = drawn}, nullptr},
      {{100, 200, 300, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {.max_tokens = 60, .sampling = greedy}, b},
      {{44}, {.max_tokens = 30, .ignore_eos = true, .sampling = drawn, .stop = {"b"}}, a},
      {{3, 3, 3}, {.max_tokens = 1, .sampling = greedy}, nullptr},
  };
}

TEST(GenerateBatch, EachRequestGetsWhatItGetsAlone) {
  auto model = Model::load(fixture("models/tiny-tied"));
  const Generator gen(model, tiny_tokenizer());
  const std::vector<BatchCase> cs = cases(*model);
  std::vector<BatchRequest> requests;
  for (const BatchCase& c : cs)
    requests.push_back({.prompt = c.prompt, .params = c.params, .lora = LoraAdapter::shared_source(c.adapter)});
  std::vector<std::vector<int32_t>> streamed(cs.size());
  const std::vector<GenerateResult> got = gen.generate_batch(requests, [&](size_t i, const StreamToken& t) {
    streamed.at(i).push_back(t.id);
    return true;
  });
  ASSERT_EQ(got.size(), cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    if (cs[i].adapter) model->apply_adapter(cs[i].adapter);
    else model->remove_adapter();
    const GenerateResult alone = gen.generate(cs[i].prompt, cs[i].params);
    EXPECT_EQ(got[i].output_ids, alone.output_ids) << "request " << i;
    EXPECT_EQ(got[i].text, alone.text) << "request " << i;
    EXPECT_EQ(got[i].finish, alone.finish) << "request " << i;
    EXPECT_EQ(got[i].prompt_ids, cs[i].prompt);
    EXPECT_EQ(streamed[i], got[i].output_ids) << "the callback saw every token of request " << i;
  }
  model->remove_adapter();
  EXPECT_EQ(got[3].finish, FinishReason::stop);
}

TEST(GenerateBatch, ACallbackStopsOnlyItsRequest) {
  auto model = Model::load(fixture("models/tiny-untied"));
  const Generator gen(model);
  const GenerateParams p{.max_tokens = 20, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  const std::vector<BatchRequest> requests{{.prompt = {1, 2, 3}, .params = p}, {.prompt = {4, 5}, .params = p}};
  const auto got = gen.generate_batch(requests, [](size_t i, const StreamToken& t) { return i != 1 || t.index < 4; });
  EXPECT_EQ(got[0].output_ids.size(), 20u);
  EXPECT_EQ(got[0].finish, FinishReason::length);
  EXPECT_EQ(got[1].output_ids.size(), 5u) << "stopped after the token the callback refused";
  EXPECT_EQ(got[1].finish, FinishReason::cancelled);
  const std::vector<int32_t> prompt{4, 5};
  const std::vector<int32_t> alone = gen.generate(prompt, p).output_ids;
  EXPECT_EQ(got[1].output_ids, std::vector<int32_t>(alone.begin(), alone.begin() + 5));
}

TEST(GenerateBatch, AnInvalidRequestIsNamedAndNothingRuns) {
  const Generator gen(Model::load(fixture("models/tiny-untied")));
  bool called = false;
  const std::vector<BatchRequest> requests{{.prompt = {1}, .params = {.max_tokens = 3}},
                                           {.prompt = {}, .params = {.max_tokens = 3}}};
  EXPECT_WICK_ERROR(gen.generate_batch(requests, [&](size_t, const StreamToken&) { return called = true; }),
                    ErrorKind::bad_input, "request 1: generate: the prompt is empty");
  EXPECT_FALSE(called);
  EXPECT_TRUE(gen.generate_batch({}).empty());
}

// Generator::submit: a request on an engine the caller runs (as wick serve does) streams and ends through its
// callbacks with what generate() gives it alone; a request for another model's engine or a bad request is refused
// before the engine sees it, and the engine goes on.
TEST(GenerateBatch, SubmitToACallersEngineEndsThroughItsCallbacks) {
  auto model = Model::load(fixture("models/tiny-tied"));
  const Generator gen(model, tiny_tokenizer());
  Engine engine(model, {.block_size = 4, .num_blocks = 64, .max_running = 4});
  const std::vector<BatchCase> all = cases(*model);
  std::vector<GenerateResult> results(all.size());
  std::vector<std::vector<int32_t>> streamed(all.size());
  std::vector<SequenceEnd> ends(all.size(), SequenceEnd::failed);
  for (size_t i = 0; i < all.size(); ++i)
    gen.submit(engine,
               {.prompt = all[i].prompt, .params = all[i].params,
                .lora = LoraAdapter::shared_source(all[i].adapter)},
               {.on_token =
                    [&, i](const StreamToken& t) {
                      streamed[i].push_back(t.id);
                      return true;
                    },
                .on_end =
                    [&, i](GenerateResult&& r, SequenceEnd end) {
                      results[i] = std::move(r);
                      ends[i] = end;
                    }});
  engine.run();
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (all[i].adapter) model->apply_adapter(all[i].adapter);
    const GenerateResult alone = gen.generate(all[i].prompt, all[i].params);
    model->remove_adapter();
    EXPECT_EQ(results[i].output_ids, alone.output_ids);
    EXPECT_EQ(results[i].text, alone.text);
    EXPECT_EQ(results[i].finish, alone.finish);
    EXPECT_EQ(streamed[i], alone.output_ids);
    EXPECT_EQ(ends[i], SequenceEnd::finished);
  }

  auto other = Model::load(fixture("models/tiny-untied"));
  Engine elsewhere(other, {.block_size = 4, .num_blocks = 8});
  EXPECT_WICK_ERROR(gen.submit(elsewhere, {.prompt = {1, 2}}, {}), ErrorKind::bad_input, "another model");
  EXPECT_WICK_ERROR(gen.submit(engine, {.prompt = {1, 2}, .params = {.max_tokens = 0}}, {}), ErrorKind::bad_input,
                    "--max-tokens: expected at least 1");
  EXPECT_EQ(engine.stats().waiting, 0);
  GenerateResult after;
  const GenerateParams three{.max_tokens = 3, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  gen.submit(engine, {.prompt = {1, 2}, .params = three},
             {.on_end = [&](GenerateResult&& r, SequenceEnd) { after = std::move(r); }});
  engine.run();
  EXPECT_EQ(after.output_ids.size(), 3u);
}

}  // namespace
}  // namespace wick::test
