// The sampler against transformers' logits processors (scripts/make_sampler_fixtures.py), plus the
// OpenAI penalty formula, the seeded draw and parameter validation.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/safetensors.h"
#include "wick/sampler.h"

namespace wick::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kTolerance = 1e-5;  // |Δ log p| on the surviving tokens

std::vector<float> floats(const Tensor& t) {
  const Tensor f = t.to(DType::f32);
  return {f.data<float>(), f.data<float>() + f.numel()};
}
std::vector<int32_t> ints(const Tensor& t) { return {t.data<int32_t>(), t.data<int32_t>() + t.numel()}; }

std::vector<double> log_softmax(const std::vector<float>& x) {
  double m = -kInf, z = 0;
  for (float v : x) m = std::max(m, double(v));
  for (float v : x) z += std::exp(double(v) - m);
  std::vector<double> out;
  for (float v : x) out.push_back(double(v) - m - std::log(z));
  return out;
}

struct Case {
  std::string name;
  bool big = false;
  SamplingParams params;
  std::vector<int32_t> masked;
};

Case parse_case(const nlohmann::json& j) {
  Case c;
  c.name = j["name"];
  c.big = j["vocab"] == "big";
  const auto& p = j["params"];
  if (p.value("greedy", false)) c.params.temperature = 0.0f;
  else c.params.temperature = p.value("temperature", 1.0f);
  c.params.top_k = p.value("top_k", 0);
  c.params.top_p = p.value("top_p", 1.0f);
  c.params.min_p = p.value("min_p", 0.0f);
  c.params.repetition_penalty = p.value("repetition_penalty", 1.0f);
  if (p.contains("logit_bias"))
    for (const auto& [k, v] : p["logit_bias"].items()) c.params.logit_bias[std::stoi(k)] = v.get<float>();
  if (p.contains("eos_ids")) c.masked = p["eos_ids"].get<std::vector<int32_t>>();
  return c;
}

class SamplerFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = SafetensorsFile::open(fixture("sampler/sampler.safetensors"));
    for (const auto& j : nlohmann::json::parse(read_file(fixture("sampler/cases.json")))) cases_.push_back(parse_case(j));
  }
  static std::vector<float> logits(bool big) { return floats(file_->tensor(big ? "big.logits" : "small.logits")); }
  static std::vector<int32_t> seen(bool big) { return ints(file_->tensor(big ? "big.input_ids" : "small.input_ids")); }
  // transformers' log-probabilities [vocab], -inf where a processor removed the token.
  static std::vector<double> reference(const Case& c) {
    if (!c.big) {
      const auto lp = floats(file_->tensor(c.name + ".logprobs"));
      return {lp.begin(), lp.end()};
    }
    std::vector<double> out(logits(true).size(), -kInf);
    const auto ids = ints(file_->tensor(c.name + ".kept_ids"));
    const auto lp = floats(file_->tensor(c.name + ".kept_logprobs"));
    for (size_t i = 0; i < ids.size(); ++i) out[size_t(ids[i])] = lp[i];
    return out;
  }
  static inline std::shared_ptr<const SafetensorsFile> file_;
  static inline std::vector<Case> cases_;
};

TEST_F(SamplerFixture, ProcessedDistributionsMatchTransformers) {
  ASSERT_EQ(cases_.size(), 23u);
  for (const Case& c : cases_) {
    SCOPED_TRACE(c.name);
    const auto x = logits(c.big);
    Sampler s(c.params, int64_t(x.size()), c.masked);
    s.observe_context(seen(c.big));
    std::vector<float> out(x.size());
    s.process(x, out);
    const auto got = log_softmax(out), want = reference(c);
    size_t kept = 0, mismatched = 0;
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isinf(want[i]) || std::isinf(got[i])) {
        mismatched += std::isinf(want[i]) != std::isinf(got[i]);
        continue;
      }
      ++kept;
      worst = std::max(worst, std::fabs(got[i] - want[i]));
    }
    EXPECT_EQ(mismatched, 0u) << "tokens kept by one side only";
    EXPECT_LE(worst, kTolerance);
    EXPECT_GT(kept, 0u);
  }
}

// The chosen token's logprob, probability and raw logit are those of the final distribution.
TEST_F(SamplerFixture, ChosenTokenScoresAndTopAlternatives) {
  for (const Case& c : cases_) {
    SCOPED_TRACE(c.name);
    const auto x = logits(c.big);
    const auto want = reference(c);
    SamplingParams p = c.params;
    p.seed = 7;
    p.top_logprobs = 5;
    Sampler s(p, int64_t(x.size()), c.masked);
    s.observe_context(seen(c.big));
    for (int draw = 0; draw < 20; ++draw) {
      const TokenChoice t = s.choose(x);
      ASSERT_FALSE(std::isinf(want[size_t(t.id)])) << "drew a removed token " << t.id;
      EXPECT_NEAR(t.logprob, want[size_t(t.id)], kTolerance);
      EXPECT_NEAR(t.probability, std::exp(want[size_t(t.id)]), kTolerance);
      EXPECT_EQ(t.logit, x[size_t(t.id)]);
      if (c.params.greedy()) {
        EXPECT_EQ(t.id, std::max_element(want.begin(), want.end()) - want.begin());
      }
      // The alternatives are the best tokens of the reference distribution, best first.
      std::vector<std::pair<double, int32_t>> best;
      for (size_t i = 0; i < want.size(); ++i)
        if (!std::isinf(want[i])) best.push_back({want[i], int32_t(i)});
      std::sort(best.begin(), best.end(), std::greater<>());
      ASSERT_EQ(t.top.size(), std::min<size_t>(5, best.size()));
      for (size_t k = 0; k < t.top.size(); ++k) EXPECT_NEAR(t.top[k].logprob, best[k].first, kTolerance) << k;
    }
  }
}

// Frequencies of many seeded draws follow the reference probabilities (5 standard errors).
TEST_F(SamplerFixture, DrawsFollowTheReferenceDistribution) {
  for (const std::string name : {"topp_0.9", "qwen_defaults", "temp_topk_minp"}) {
    SCOPED_TRACE(name);
    const Case& c = *std::find_if(cases_.begin(), cases_.end(), [&](const Case& k) { return k.name == name; });
    const auto x = logits(false);
    const auto want = reference(c);
    SamplingParams p = c.params;
    p.seed = 12345;
    Sampler s(p, int64_t(x.size()), c.masked);
    s.observe_context(seen(false));
    constexpr int kDraws = 20000;
    std::map<int32_t, int> hits;
    for (int i = 0; i < kDraws; ++i) ++hits[s.choose(x).id];
    for (size_t i = 0; i < want.size(); ++i) {
      const double prob = std::exp(want[i]);
      const double freq = double(hits[int32_t(i)]) / kDraws;
      EXPECT_NEAR(freq, prob, 5 * std::sqrt(prob * (1 - prob) / kDraws) + 1e-9) << "token " << i;
    }
  }
}

TEST(Sampler, SameSeedSameDraws) {
  std::vector<float> x(500);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(double(i) * 0.37) * 3);
  auto draws = [&](uint64_t seed) {
    Sampler s({.temperature = 1.2f, .top_p = 0.95f, .seed = seed}, 500);
    std::vector<int32_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(s.choose(x).id);
    return ids;
  };
  EXPECT_EQ(draws(1), draws(1));
  EXPECT_NE(draws(1), draws(2));
}

// At vocabulary size, the vectorized passes (maximum, exponentials, their sum) against plain double arithmetic:
// greedy takes the first of tied maxima wherever they sit in the scan blocks, and the logprob of the chosen token
// and of the top alternatives equal log-softmax computed with std::exp; masked (-inf) tokens get exactly 0.
TEST(Sampler, VocabularySizedPassesMatchPlainArithmetic) {
  constexpr int64_t kVocab = 151936;
  std::vector<float> x(kVocab);
  for (int64_t i = 0; i < kVocab; ++i) x[size_t(i)] = float(std::sin(double(i) * 0.011) * 4 + std::cos(double(i) * 0.7));
  for (size_t i = 0; i < x.size(); i += 7) x[i] = -std::numeric_limits<float>::infinity();
  for (const size_t first : {size_t(5), size_t(63), size_t(64), size_t(151935)}) {
    std::vector<float> y = x;
    y[first] = 9.5f;
    if (first + 70 < y.size()) y[first + 70] = 9.5f;  // a later tie, in another scan block
    if (first >= 64) y[first - 1] = 9.25f;
    Sampler s({.temperature = 0.0f, .top_logprobs = 3}, kVocab);
    const TokenChoice c = s.choose(y);
    EXPECT_EQ(c.id, int32_t(first));
    double z = 0;
    for (float v : y) z += std::exp(double(v) - 9.5);
    const double log_z = 9.5 + std::log(z);
    EXPECT_NEAR(c.logprob, 9.5 - log_z, 1e-6);
    ASSERT_EQ(c.top.size(), 3u);
    EXPECT_EQ(c.top[0].id, int32_t(first));
    for (const auto& t : c.top) EXPECT_NEAR(t.logprob, double(y[size_t(t.id)]) - log_z, 1e-6);
  }
  // Sampling draws only unmasked tokens, with the probabilities of exp(score / T).
  Sampler s({.temperature = 0.7f, .seed = 3}, kVocab);
  for (int i = 0; i < 50; ++i) {
    const TokenChoice c = s.choose(x);
    ASSERT_NE(x[size_t(c.id)], -std::numeric_limits<float>::infinity());
    double z = 0;
    for (float v : x) z += std::exp((double(v) - 4.99) / 0.7);
    EXPECT_NEAR(c.logprob, (double(x[size_t(c.id)]) - 4.99) / 0.7 - std::log(z), 1e-5);
  }
}

// Top-p over the whole vocabulary looks at the tokens near the best score first and widens that set until it holds
// the nucleus: a few high tokens above a flat floor need it widened, and the cut must still be the one made over
// every token in ranking order (ties by id), computed here in plain double arithmetic: a prefix of the ranking, of
// the same length up to one token (where thousands of tied tokens meet the target, float and double sums may
// cross it one token apart).
TEST(Sampler, TopPCutEqualsTheCutOverEveryToken) {
  constexpr int64_t kVocab = 151936;
  for (const float top : {3.0f, 10.0f, 30.0f}) {
    SCOPED_TRACE(top);
    std::vector<float> x(kVocab, 0.0f);
    for (int64_t i = 0; i < kVocab; i += 997) x[size_t(i)] = top - float(i % 5);
    for (int64_t i = 3; i < kVocab; i += 11) x[size_t(i)] = float(i % 7) * 0.25f;
    for (const float p : {0.3f, 0.9f, 0.999f}) {
      Sampler s({.temperature = 1.0f, .top_p = p}, kVocab);
      std::vector<float> got(kVocab);
      s.process(x, got);
      std::vector<int32_t> order(kVocab);
      for (int32_t i = 0; i < int32_t(kVocab); ++i) order[size_t(i)] = i;
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[size_t(a)] > x[size_t(b)]; });
      const double best = x[size_t(order[0])];
      double z = 0;
      for (float v : x) z += std::exp(double(v) - best);
      size_t keep = 0;
      for (double above = 0; keep < order.size() && (keep == 0 || above < double(p) * z); ++keep)
        above += std::exp(double(x[size_t(order[keep])]) - best);
      size_t kept = 0;
      while (kept < order.size() && got[size_t(order[kept])] != -std::numeric_limits<float>::infinity()) ++kept;
      size_t after = 0;  // kept tokens ranked after the first removed one: the cut must be a prefix
      for (size_t r = kept; r < order.size(); ++r) after += got[size_t(order[r])] != -std::numeric_limits<float>::infinity();
      EXPECT_EQ(after, 0u) << "p " << p;
      EXPECT_LE(std::max(kept, keep) - std::min(kept, keep), 1u) << "p " << p << ": " << keep << " in the nucleus, " << kept << " kept";
    }
  }
}

// OpenAI: logit -= presence · [count > 0] + frequency · count, over generated ids only.
TEST(Sampler, PresenceAndFrequencyPenaltiesFollowOpenAI) {
  const std::vector<float> x = {1.0f, 2.0f, -0.5f, 0.25f};
  Sampler s({.temperature = 0.0f, .presence_penalty = 0.5f, .frequency_penalty = 0.25f}, 4);
  s.observe_context(std::vector<int32_t>{0, 0, 3});  // prompt ids: not penalised
  s.accept(1);
  s.accept(1);
  s.accept(2);
  std::vector<float> out(4);
  s.process(x, out);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 2.0f - 0.5f - 0.25f * 2);
  EXPECT_FLOAT_EQ(out[2], -0.5f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(out[3], 0.25f);
}

TEST(Sampler, GenerationDefaultsFollowTransformers) {
  GenerationDefaults d;
  EXPECT_TRUE(SamplingParams::from_defaults(d).greedy());  // no do_sample: greedy
  d.do_sample = true;
  d.temperature = 0.7f;
  d.top_p = 0.8f;
  d.repetition_penalty = 1.05f;
  const SamplingParams p = SamplingParams::from_defaults(d);
  EXPECT_FLOAT_EQ(p.temperature, 0.7f);
  EXPECT_EQ(p.top_k, 50);  // transformers' default when the file has none
  EXPECT_FLOAT_EQ(p.top_p, 0.8f);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.05f);
}

TEST(Sampler, EveryBadParameterIsNamed) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto check = [](SamplingParams p, const char* flag) {
    EXPECT_WICK_ERROR(p.validate(100), ErrorKind::bad_input, flag);
    EXPECT_WICK_ERROR(Sampler(p, 100), ErrorKind::bad_input, flag);
  };
  check({.temperature = -0.1f}, "--temperature");
  check({.temperature = nan}, "--temperature");
  check({.temperature = kInf}, "--temperature");
  check({.top_k = -1}, "--top-k");
  check({.top_p = 0.0f}, "--top-p");
  check({.top_p = 1.01f}, "--top-p");
  check({.top_p = nan}, "--top-p");
  check({.min_p = -0.1f}, "--min-p");
  check({.min_p = 1.5f}, "--min-p");
  check({.min_p = nan}, "--min-p");
  check({.repetition_penalty = 0.0f}, "--repeat-penalty");
  check({.repetition_penalty = nan}, "--repeat-penalty");
  check({.presence_penalty = 2.5f}, "--presence-penalty");
  check({.presence_penalty = nan}, "--presence-penalty");
  check({.frequency_penalty = nan}, "--frequency-penalty");
  check({.logit_bias = {{100, 1.0f}}}, "--logit-bias");
  check({.logit_bias = {{-1, 1.0f}}}, "--logit-bias");
  check({.logit_bias = {{3, nan}}}, "--logit-bias");
  check({.top_logprobs = 21}, "--top-logprobs");
  // All problems in one message.
  check({.temperature = -1.0f, .top_k = -2, .top_p = 2.0f}, "--temperature");
  EXPECT_WICK_ERROR((SamplingParams{.temperature = -1.0f, .top_k = -2, .top_p = 2.0f}.validate(10)),
                    ErrorKind::bad_input, "--temperature", "--top-k", "--top-p");
  EXPECT_NO_THROW((SamplingParams{.temperature = 0.0f, .top_p = 1.0f, .min_p = 1.0f}.validate(10)));
}

TEST(Sampler, IgnoreEosMasksEveryEosId) {
  const std::vector<float> x = {0.0f, 1.0f, 9.0f, 8.0f};
  Sampler s(SamplingParams::greedy_params(), 4, std::vector<int32_t>{2, 3});
  EXPECT_EQ(s.choose(x).id, 1);
}

}  // namespace
}  // namespace wick::test

namespace wick::test {
namespace {

// choose() from a summary of the logits (what the GPU sends instead of them) against choose() over every logit,
// two samplers with the same seed and history side by side over many steps: greedy and top-k with temperature,
// top-p, min-p, logit bias, penalties, EOS masks and alternatives. Where the summary cannot decide it says so
// (nullopt) and the step takes the whole row; it must decide almost every step, and the same token every time.
TEST(SamplerSummary, ChoosesWhatTheWholeRowChooses) {
  constexpr int64_t kVocab = 5000;
  const int32_t eos[] = {7, 4999};
  const std::vector<SamplingParams> cases = {
      {.temperature = 0.0f},
      {.temperature = 0.0f, .repetition_penalty = 1.3f, .top_logprobs = 5},
      {.temperature = 0.0f, .presence_penalty = 1.5f, .logit_bias = {{3, 4.0f}, {11, -100.0f}}, .top_logprobs = 20},
      {.temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .repetition_penalty = 1.05f, .seed = 5, .top_logprobs = 3},
      {.temperature = 1.0f, .top_k = 64, .seed = 6},
      {.temperature = 1.3f, .top_k = 8, .min_p = 0.05f, .frequency_penalty = 0.7f, .seed = 7},
      {.temperature = 0.5f, .top_k = 1, .seed = 8}};
  for (size_t n = 0; n < cases.size(); ++n) {
    SCOPED_TRACE("case " + std::to_string(n));
    Sampler whole(cases[n], kVocab, eos), summary(cases[n], kVocab, eos);
    const std::vector<int32_t> prompt = {1, 2, 3, 900, 901, 902, 4998};
    whole.observe_context(prompt);
    summary.observe_context(prompt);
    int decided = 0;
    for (int step = 0; step < 60; ++step) {
      std::vector<float> x(kVocab);
      for (int64_t i = 0; i < kVocab; ++i)
        x[size_t(i)] = float(std::sin(double(i) * 0.37 + step) * 2 + std::cos(double(i * i % 101) + step * 0.1));
      x[size_t(900 + step % 3)] = 6.0f;  // a seen id on top: the penalties move it
      x[7] = 7.0f;                         // the masked EOS id above everything
      const auto request = summary.summary_request();
      ASSERT_TRUE(request.has_value());
      const LogitSummary sum = summarize_logits(x, request->count, request->gather);
      const TokenChoice want = whole.choose(x);
      std::optional<TokenChoice> got = summary.choose(sum);
      if (got) ++decided;
      else got = summary.choose(x);
      ASSERT_EQ(got->id, want.id) << "step " << step;
      EXPECT_EQ(got->logit, want.logit);
      EXPECT_NEAR(got->logprob, want.logprob, 1e-5);
      ASSERT_EQ(got->top.size(), want.top.size());
      for (size_t i = 0; i < want.top.size(); ++i) {
        EXPECT_EQ(got->top[i].id, want.top[i].id);
        EXPECT_NEAR(got->top[i].logprob, want.top[i].logprob, 1e-5);
      }
      whole.accept(want.id);
      summary.accept(want.id);
    }
    EXPECT_GE(decided, 55);
  }
}

// Ties and penalties at the summary's edge: the last candidate's logit shared with an id outside, or the penalties
// pushing the candidates down to it, leave the choice open, and the summary says so instead of guessing.
TEST(SamplerSummary, DeclinesWhenIdsOutsideCouldMatter) {
  constexpr int64_t kVocab = 1000;
  std::vector<float> flat(kVocab, 1.0f);  // everything tied: the last candidate ties with ids outside
  for (const SamplingParams& p :
       {SamplingParams{.temperature = 0.0f}, SamplingParams{.temperature = 1.0f, .top_k = 4}}) {
    Sampler s(p, kVocab);
    const auto request = s.summary_request();
    ASSERT_TRUE(request.has_value());
    EXPECT_FALSE(s.choose(summarize_logits(flat, request->count, request->gather)).has_value());
  }
  // The 128 best ids all biased far down: what is best now lies outside the summary.
  std::map<int32_t, float> bias;
  std::vector<float> x(kVocab, 0.0f);
  for (int32_t i = 0; i < 128; ++i) x[size_t(i)] = 5.0f, bias[i] = -10.0f;
  x[500] = 0.5f;
  Sampler s({.temperature = 0.0f, .logit_bias = bias}, kVocab);
  const auto request = s.summary_request();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->gather.size(), 128u);
  const LogitSummary sum = summarize_logits(x, request->count, request->gather);
  EXPECT_FALSE(s.choose(sum).has_value());
  EXPECT_EQ(s.choose(x).id, 500);
  // A masked EOS id far above every other logit: the row's float normaliser is almost all its mass, too little
  // is left to know the rest's to 1e-5, so greedy with a log-probability declines (top-k needs no normaliser).
  {
    std::vector<float> y(kVocab);
    for (int64_t i = 0; i < kVocab; ++i) y[size_t(i)] = float(std::sin(double(i) * 0.3));
    y[9] = 40.0f;
    const int32_t eos[] = {9};
    Sampler greedy({.temperature = 0.0f, .top_logprobs = 2}, kVocab, eos);
    const auto r = greedy.summary_request();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(greedy.choose(summarize_logits(y, r->count, r->gather)).has_value());
    EXPECT_NE(greedy.choose(y).id, 9);
    const SamplingParams p{.temperature = 1.0f, .top_k = 5, .seed = 1};
    Sampler top_k(p, kVocab, eos), whole(p, kVocab, eos);
    const auto rk = top_k.summary_request();
    const std::optional<TokenChoice> got = top_k.choose(summarize_logits(y, rk->count, rk->gather));
    ASSERT_TRUE(got.has_value());
    const TokenChoice want = whole.choose(y);
    EXPECT_EQ(got->id, want.id);
    EXPECT_NEAR(got->logprob, want.logprob, 1e-6);
  }
  // Draws with no top-k cut need every logit.
  EXPECT_FALSE(Sampler({.temperature = 1.0f, .top_p = 0.9f}, kVocab).summary_request().has_value());
  EXPECT_FALSE(Sampler({.temperature = 1.0f, .top_k = 65}, kVocab).summary_request().has_value());
}

// The host summary itself: the best ids in order (ties to the lower id), gathered logits, max and normaliser.
TEST(SamplerSummary, HostSummaryIsExact) {
  const std::vector<float> x = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, -std::numeric_limits<float>::infinity()};
  const int32_t gather[] = {5, 0};
  const LogitSummary s = summarize_logits(x, 3, gather);
  EXPECT_EQ(s.ids, (std::vector<int32_t>{1, 3, 4}));
  EXPECT_EQ(s.values, (std::vector<float>{3.0f, 3.0f, 2.0f}));
  EXPECT_EQ(s.gathered_ids, (std::vector<int32_t>{5, 0}));
  EXPECT_EQ(s.gathered[1], 0.5f);
  EXPECT_EQ(s.max, 3.0f);
  double z = 0;
  for (float v : x) z += std::exp(double(v) - 3.0);
  EXPECT_NEAR(s.sum_exp, z, 1e-6);
  EXPECT_EQ(s.vocab, 6);
}

}  // namespace
}  // namespace wick::test
