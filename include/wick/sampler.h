// Token sampling: the logits processors of transformers' generate(), in its order, and a seedable draw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "wick/config.h"
#include "wick/logit_summary.h"

namespace wick {

/// How the next token is chosen. Designated initializers: `{.temperature = 0.7f, .top_p = 0.9f}`.
///
/// Processors run in the order transformers' `_get_logits_processor` builds them:
/// logit_bias (SequenceBias) → repetition_penalty → presence/frequency penalties → EOS masking
/// (MinNewTokensLength) → temperature → top_k → top_p → min_p. Greedy (temperature == 0) stops after
/// EOS masking and takes the argmax, as transformers does with do_sample=False.
struct SamplingParams {
  float temperature = 1.0f;          ///< 0 = greedy; otherwise > 0 (logits are divided by it)
  int32_t top_k = 0;                 ///< keep the k best tokens (ties at the k-th value kept); 0 = off
  float top_p = 1.0f;                ///< keep the smallest set whose mass reaches p, in (0, 1]; 1 = off
  float min_p = 0.0f;                ///< drop tokens with p < min_p · p_max, in [0, 1]; 0 = off
  /// transformers semantics over prompt + generated ids: a positive logit is divided by it, a negative
  /// one multiplied (> 0; 1 = off).
  float repetition_penalty = 1.0f;
  /// OpenAI semantics over the generated ids: logit -= presence·[count > 0] + frequency·count, in [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::map<int32_t, float> logit_bias = {};  ///< added to the raw logit of each id (OpenAI's logit_bias)
  std::optional<uint64_t> seed = {};       ///< same seed ⇒ same tokens; unset = seeded from std::random_device
  int32_t top_logprobs = 0;             ///< alternatives reported per token (StreamToken::top), 0..20

  bool greedy() const { return temperature == 0.0f; }
  /// Argmax decoding (temperature 0), with no penalties.
  static SamplingParams greedy_params() { return {.temperature = 0.0f}; }
  /// The model's generation_config.json as transformers reads it: do_sample absent or false means
  /// greedy; otherwise its temperature / top_k / top_p / min_p / repetition_penalty (transformers'
  /// defaults 1.0 / 50 / 1.0 / off / 1.0 for those it leaves out).
  static SamplingParams from_defaults(const GenerationDefaults& defaults);

  /// Every problem at once in one Error{bad_input}, each named by its CLI flag (--temperature,
  /// --top-k, --top-p, --min-p, --repeat-penalty, --presence-penalty, --frequency-penalty,
  /// --logit-bias, --top-logprobs): negative or NaN temperature, top_p outside (0, 1], top_k < 0, ...
  void validate(int64_t vocab_size) const;
};

/// One alternative token under the final distribution.
struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
  bool operator==(const TokenLogprob&) const = default;
};

/// The token a Sampler picked, with its scores.
struct TokenChoice {
  int32_t id = 0;
  float logprob = 0;      ///< log-probability under the final (processed) distribution
  float probability = 0;  ///< exp(logprob)
  float logit = 0;        ///< the raw model logit, before any processor
  std::vector<TokenLogprob> top = {};  ///< the top_logprobs best tokens of the final distribution, best first
};

/// Picks tokens for one sequence. Holds the ids seen so far (for the penalties), the RNG and scratch
/// buffers of vocabulary size, so a step allocates nothing. Not thread-safe: one per request.
class Sampler {
 public:
  /// `masked_ids` are set to -inf before the warpers (EOS ids for --ignore-eos). Validates params.
  Sampler(const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> masked_ids = {});

  /// Records ids already in the context (the prompt): they count for repetition_penalty only.
  void observe_context(std::span<const int32_t> ids);
  /// Records a generated id: it counts for repetition_penalty and the presence/frequency penalties.
  void accept(int32_t id);

  /// Chooses the next token from `logits` [vocab] (raw model output) and returns it with its scores.
  /// Does not accept() it.
  TokenChoice choose(std::span<const float> logits);

  /// The summary (see LogitSummary) choose(const LogitSummary&) needs of the next row: its `count` best ids and the
  /// logits of every id a processor changes. nullopt when these params need every logit (drawing with no top-k
  /// cut, or a top-k above kSummaryTopK).
  struct SummaryRequest {
    int32_t count = 0;
    std::vector<int32_t> gather;
  };
  std::optional<SummaryRequest> summary_request() const;
  /// choose() from the summary of the raw logits that summary_request() asked for: the same token and scores as
  /// choose() over the whole row (the normaliser up to rounding), or nullopt — drawing nothing, changing nothing —
  /// when the summary cannot decide it exactly (a tie or a penalised id at its last candidate's value; for greedy
  /// also a row normaliser the gathered logits carried almost all of); then call choose() with the whole row.
  std::optional<TokenChoice> choose(const LogitSummary& summary);
  /// The largest top_k a summary serves (it carries twice as many candidates).
  static constexpr int32_t kSummaryTopK = 64;

  /// The processed scores transformers' processors would hand to softmax: `out` [vocab] gets the
  /// scaled logits of the kept tokens and -inf elsewhere. For tests against transformers.
  void process(std::span<const float> logits, std::span<float> out);

  const SamplingParams& params() const { return params_; }

 private:
  void penalize(std::span<const float> logits);
  float penalized(int32_t id, float logit) const;  // penalize() for one id
  void warp();
  void cut_by_mass();
  int32_t draw_kept(double& log_z);
  // c.logprob, c.probability and c.top (from kept_, or `best` when every token is kept) under log_z.
  void describe(TokenChoice& c, double log_z, std::vector<int32_t>& best) const;
  double uniform();

  SamplingParams params_;
  int64_t vocab_;
  std::vector<int32_t> masked_;
  std::vector<uint8_t> seen_;          // [vocab] 1 when the id is in prompt or output
  std::vector<int32_t> seen_ids_;      // the ids with seen_ == 1, each once
  std::map<int32_t, int32_t> counts_;  // generated id -> how often
  std::mt19937_64 rng_;
  std::vector<float> scores_;          // [vocab] processed logits, before temperature
  std::vector<int32_t> kept_;          // surviving ids, best first, when truncation applies
  bool all_kept_ = true;               // no top-k/top-p/min-p cut: every finite score survives
  std::vector<float> probs_;           // [vocab] exp(score - max) of this step (top-p after top-k: survivors only)
  std::vector<float> block_max_;       // [vocab / 64] the maxima of scores_' blocks of 64 (top-k, argmax)
  std::vector<double> block_sum_;      // [vocab / 1024] sums of probs_ by blocks of 1024 (drawing from every token)
};

}  // namespace wick
