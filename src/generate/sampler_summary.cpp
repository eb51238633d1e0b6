// Sampler::choose from a LogitSummary: the processors applied to the few ids that can matter, with the proof
// that the rest cannot (every id outside the summary keeps its logit, at most the last candidate's).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "wick/error.h"
#include "wick/sampler.h"

namespace wick {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// An id of the summary with its raw logit and its score after the processors (and the temperature, once scaled).
struct Entry {
  int32_t id;
  float logit, score;
};

bool better(const Entry& a, const Entry& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

}  // namespace

std::optional<Sampler::SummaryRequest> Sampler::summary_request() const {
  const bool top_k = params_.top_k > 0 && params_.top_k <= kSummaryTopK && params_.top_k < vocab_;
  if (!params_.greedy() && !top_k) return std::nullopt;
  SummaryRequest r{.count = 2 * kSummaryTopK, .gather = {}};
  for (const auto& [id, bias] : params_.logit_bias) r.gather.push_back(id);
  if (params_.repetition_penalty != 1.0f) r.gather.insert(r.gather.end(), seen_ids_.begin(), seen_ids_.end());
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f)
    for (const auto& [id, n] : counts_) r.gather.push_back(id);
  for (int32_t id : masked_)
    if (id >= 0 && id < vocab_) r.gather.push_back(id);
  std::sort(r.gather.begin(), r.gather.end());
  r.gather.erase(std::unique(r.gather.begin(), r.gather.end()), r.gather.end());
  return r;
}

std::optional<TokenChoice> Sampler::choose(const LogitSummary& s) {
  if (s.vocab != vocab_ || s.ids.size() != s.values.size() || s.gathered_ids.size() != s.gathered.size())
    fail(ErrorKind::internal, "sampler: a logit summary of " + std::to_string(s.vocab) + " ids for a vocabulary of " +
                                  std::to_string(vocab_));
  // Every id a processor changes was gathered; any other id outside the candidates scores its logit, which is at
  // most the last candidate's.
  const bool outside = int64_t(s.ids.size()) < vocab_;
  const float last = outside && !s.values.empty() ? s.values.back() : kNegInf;
  std::vector<int32_t> candidates(s.ids);
  std::sort(candidates.begin(), candidates.end());
  std::vector<float> gathered_scores(s.gathered_ids.size());
  for (size_t i = 0; i < s.gathered_ids.size(); ++i) gathered_scores[i] = penalized(s.gathered_ids[i], s.gathered[i]);
  std::vector<Entry> entries;
  entries.reserve(s.ids.size() + s.gathered_ids.size());
  for (size_t i = 0; i < s.ids.size(); ++i)
    entries.push_back({s.ids[i], s.values[i], penalized(s.ids[i], s.values[i])});
  for (size_t i = 0; i < s.gathered_ids.size(); ++i)
    if (!std::binary_search(candidates.begin(), candidates.end(), s.gathered_ids[i]))
      entries.push_back({s.gathered_ids[i], s.gathered[i], gathered_scores[i]});

  TokenChoice c;
  if (params_.greedy()) {
    // The best n (the choice and its alternatives) must beat every id outside.
    std::sort(entries.begin(), entries.end(), better);
    const size_t n = size_t(std::max(1, params_.top_logprobs));
    if (entries.size() < n || !(entries[n - 1].score > last)) return std::nullopt;
    // The normaliser: the row's, with each gathered id's logit traded for its score. The row's sum comes in float
    // precision: where the traded logits carried most of it (a masked EOS far above the rest), too little of it
    // would be left to know z to 1e-5, and the summary declines.
    const double m = entries.front().score;
    const double row = double(s.sum_exp) * std::exp(double(s.max) - m);
    double z = row;
    for (size_t i = 0; i < s.gathered_ids.size(); ++i)
      z += std::exp(double(gathered_scores[i]) - m) - std::exp(double(s.gathered[i]) - m);
    if (!(z > 0) || row > 10 * z) return std::nullopt;
    const double log_z = m + std::log(z);
    c.id = entries.front().id;
    c.logit = entries.front().logit;
    c.logprob = float(double(entries.front().score) - log_z);
    c.probability = std::exp(c.logprob);
    if (params_.top_logprobs > 0)
      for (size_t i = 0; i < n; ++i) c.top.push_back({entries[i].id, float(double(entries[i].score) - log_z)});
    return c;
  }

  // Top-k: the k-th best score (with the temperature, as warp() applies it) must beat every id outside; then the
  // survivors go through top-p, min-p and the draw as in choose().
  const float t = params_.temperature;
  if (t != 1.0f)
    for (Entry& e : entries) e.score /= t;
  std::sort(entries.begin(), entries.end(), better);
  const size_t k = size_t(params_.top_k);
  if (entries.size() < k) return std::nullopt;
  const float kth = entries[k - 1].score;
  if (outside && !(kth > (t != 1.0f ? last / t : last))) return std::nullopt;
  kept_.clear();
  for (const Entry& e : entries) {
    if (!(e.score >= kth)) break;
    kept_.push_back(e.id);
    scores_[size_t(e.id)] = e.score;
  }
  all_kept_ = false;
  cut_by_mass();
  double log_z = 0;
  c.id = draw_kept(log_z);
  c.logit = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.id == c.id; })->logit;
  std::vector<int32_t> none;
  describe(c, log_z, none);
  return c;
}

}  // namespace wick
