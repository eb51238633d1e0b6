#include "wick/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "wick/error.h"

namespace wick {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Hot loops over the vocabulary are also built for AVX2 and AVX-512 and picked by the CPU at load time (an ifunc).
// Not under ThreadSanitizer: its runtime is not up yet when ifunc resolvers run, and they crash.
#if defined(__SANITIZE_THREAD__)
#define WICK_CPU_CLONES
#else
#define WICK_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// e^x for x ≤ 0, written so that loops over it vectorize (no calls, no branches; this file is built with
// -fno-trapping-math so the selects may be): x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7 Taylor
// polynomial (relative error < 1e-8, below float's own rounding) and 2^n put straight into the exponent bits.
// Below -87 it returns exactly 0 (float's e^x is subnormal there), so a masked score (-inf) gets probability 0.
inline float exp_nonpositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  const float n = (xc * 1.44269504f + kRound) - kRound;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-6f;  // ln 2 split in two parts
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) * (1 << 23));
  return x < -87.0f ? 0.0f : p * scale;
}

// out[i] = e^(s[i] - shift) for every i (shift ≥ every s[i]); returns their sum. Two flat passes the compiler
// vectorizes: the exponentials, then sixteen float lanes per block of kSumBlock whose sums go into a double, so
// 150k terms keep double precision. Each block's sum also goes into block_sums when it is given
// (sum_blocks_of(n) of them).
constexpr size_t kSumBlock = 1024;
size_t sum_blocks_of(size_t n) { return (n + kSumBlock - 1) / kSumBlock; }

WICK_CPU_CLONES double exp_sum(std::span<const float> scores, float shift, std::span<float> probs,
                               std::span<double> block_sums = {}) {
  const size_t n = scores.size();
  const float* __restrict s = scores.data();
  float* __restrict out = probs.data();
  for (size_t i = 0; i < n; ++i) out[i] = exp_nonpositive(s[i] - shift);
  constexpr size_t kLanes = 16;
  double total = 0;
  size_t i = 0;
  for (; i + kSumBlock <= n; i += kSumBlock) {
    float lane[kLanes] = {};
    for (size_t j = i; j < i + kSumBlock; j += kLanes)
      for (size_t l = 0; l < kLanes; ++l) lane[l] += out[j + l];
    double block = 0;
    for (float v : lane) block += v;
    if (!block_sums.empty()) block_sums[i / kSumBlock] = block;
    total += block;
  }
  if (i < n) {
    double block = 0;
    for (size_t j = i; j < n; ++j) block += out[j];
    if (!block_sums.empty()) block_sums[i / kSumBlock] = block;
    total += block;
  }
  return total;
}

// Indices of the n largest scores, best first (ties: lower id first). One pass with a min-heap,
// so vocabulary-sized inputs cost O(V) comparisons plus O(n log n) for the survivors.
constexpr size_t kScanBlock = 64;

// The largest of scores[b, e) (NaN ignored), in sixteen independent lanes so that the compiler vectorizes it.
WICK_CPU_CLONES float block_max(std::span<const float> scores, size_t b, size_t e) {
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  for (float& m : lane) m = kNegInf;
  size_t i = b;
  for (; i + kLanes <= e; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) lane[l] = scores[i + l] > lane[l] ? scores[i + l] : lane[l];
  float m = kNegInf;
  for (; i < e; ++i) m = scores[i] > m ? scores[i] : m;
  for (float v : lane) m = v > m ? v : m;
  return m;
}

size_t blocks_of(size_t n) { return (n + kScanBlock - 1) / kScanBlock; }

// maxima[j] = the largest of block j of scores (kScanBlock scores, the last one shorter), NaN ignored: one pass
// where a call per block would cost more than the block's own comparisons. Written with a 16-float vector type so
// that each block is four loads and a few folds in a handful of registers: left to vectorize plain lanes, the
// compiler transposed blocks across all 32 AVX-512 registers, and the rest of the process ran up to 3.5x slower
// after it (tiny-model generation on the dev machine: 10 tokens in 4.4-5.3 ms instead of 1.1-1.6).
using F32x16 = float __attribute__((vector_size(64)));

WICK_CPU_CLONES void block_maxima(std::span<const float> scores, std::span<float> maxima) {
  static_assert(kScanBlock == 64, "a block is four vectors of sixteen scores");
  const size_t full = scores.size() / kScanBlock;
  for (size_t j = 0; j < full; ++j) {
    F32x16 v[4];
    std::memcpy(v, scores.data() + j * kScanBlock, sizeof v);
    F32x16 m = F32x16{} + kNegInf;
    for (const F32x16& x : v) m = x > m ? x : m;  // NaN in x ignored
    // Halves, quarters, ... of the sixteen lanes, folded onto the others (__builtin_shufflevector: GCC ≥ 12, clang).
    F32x16 x = __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    m = x > m ? x : m;
    x = __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
    m = x > m ? x : m;
    x = __builtin_shufflevector(m, m, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
    m = x > m ? x : m;
    x = __builtin_shufflevector(m, m, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    m = x > m ? x : m;
    maxima[j] = m[0];
  }
  if (full < blocks_of(scores.size())) maxima[full] = block_max(scores, full * kScanBlock, scores.size());
}

// The index of the first maximum, as torch.argmax (maxima from block_maxima): the first block holding the
// largest value, then its first position there.
size_t argmax(std::span<const float> scores, std::span<const float> maxima) {
  float best = kNegInf;
  size_t first = 0;
  for (size_t j = 0; j < maxima.size(); ++j)
    if (maxima[j] > best) best = maxima[j], first = j;
  for (size_t i = first * kScanBlock; i < std::min(scores.size(), (first + 1) * kScanBlock); ++i)
    if (scores[i] == best) return i;
  return 0;  // every score is NaN
}

// maxima: block_maxima of scores.
void top_n(std::span<const float> scores, std::span<const float> maxima, size_t n, std::vector<int32_t>& out) {
  out.clear();
  if (n == 0) return;
  auto worse = [&](int32_t a, int32_t b) {  // heap order: the worst survivor at the front
    return scores[size_t(a)] > scores[size_t(b)] || (scores[size_t(a)] == scores[size_t(b)] && a < b);
  };
  for (size_t b = 0; b < scores.size(); b += kScanBlock) {
    const size_t e = std::min(scores.size(), b + kScanBlock);
    // Once the heap is full, a block whose best does not beat the worst survivor changes nothing.
    if (out.size() == n && !(maxima[b / kScanBlock] > scores[size_t(out.front())])) continue;
    for (size_t i = b; i < e; ++i) {
      if (scores[i] == kNegInf) continue;
      if (out.size() < n) {
        out.push_back(int32_t(i));
        std::push_heap(out.begin(), out.end(), worse);
      } else if (scores[i] > scores[size_t(out.front())]) {
        std::pop_heap(out.begin(), out.end(), worse);
        out.back() = int32_t(i);
        std::push_heap(out.begin(), out.end(), worse);
      }
    }
  }
  std::sort_heap(out.begin(), out.end(), worse);
}

}  // namespace

SamplingParams SamplingParams::from_defaults(const GenerationDefaults& d) {
  SamplingParams p;
  p.repetition_penalty = d.repetition_penalty.value_or(1.0f);
  if (!d.do_sample.value_or(false)) {
    p.temperature = 0.0f;
    return p;
  }
  p.temperature = d.temperature.value_or(1.0f);
  p.top_k = d.top_k.value_or(50);
  p.top_p = d.top_p.value_or(1.0f);
  p.min_p = d.min_p.value_or(0.0f);
  return p;
}

void SamplingParams::validate(int64_t vocab_size) const {
  std::string problems;
  auto bad = [&](const std::string& msg) { problems += (problems.empty() ? "" : "; ") + msg; };
  if (!(temperature >= 0.0f) || std::isinf(temperature))
    bad("--temperature: expected a finite number >= 0 (0 = greedy), found " + num(temperature));
  if (top_k < 0) bad("--top-k: expected >= 0 (0 = off), found " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) bad("--top-p: expected a number in (0, 1], found " + num(top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("--min-p: expected a number in [0, 1], found " + num(min_p));
  if (!(repetition_penalty > 0.0f) || std::isinf(repetition_penalty))
    bad("--repeat-penalty: expected a finite number > 0 (1 = off), found " + num(repetition_penalty));
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    bad("--presence-penalty: expected a number in [-2, 2], found " + num(presence_penalty));
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    bad("--frequency-penalty: expected a number in [-2, 2], found " + num(frequency_penalty));
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size)
      bad("--logit-bias: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
          std::to_string(vocab_size) + ")");
    if (!std::isfinite(bias)) bad("--logit-bias: the bias of token " + std::to_string(id) + " is " + num(bias));
  }
  if (top_logprobs < 0 || top_logprobs > 20)
    bad("--top-logprobs: expected 0..20, found " + std::to_string(top_logprobs));
  if (!problems.empty()) fail(ErrorKind::bad_input, "sampling parameters: " + problems);
}

Sampler::Sampler(const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> masked_ids)
    : params_(params), vocab_(vocab_size), masked_(masked_ids.begin(), masked_ids.end()) {
  params_.validate(vocab_size);
  seen_.assign(static_cast<size_t>(vocab_), 0);
  scores_.resize(static_cast<size_t>(vocab_));
  kept_.reserve(static_cast<size_t>(vocab_));
  probs_.resize(static_cast<size_t>(vocab_));
  block_max_.resize(blocks_of(size_t(vocab_)));
  block_sum_.resize(sum_blocks_of(size_t(vocab_)));
  rng_.seed(params_.seed ? *params_.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}());
}

void Sampler::observe_context(std::span<const int32_t> ids) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_) fail(ErrorKind::bad_input, "sampler: token id " + std::to_string(id) + " is outside the vocabulary");
    if (!seen_[size_t(id)]) seen_[size_t(id)] = 1, seen_ids_.push_back(id);
  }
}

void Sampler::accept(int32_t id) {
  observe_context(std::span<const int32_t>(&id, 1));
  ++counts_[id];
}

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

// Logit bias, penalties and EOS masking: the processors that also apply to greedy decoding, in transformers'
// order. Each rule is one function below, applied by penalize() to the ids it touches in a whole row and by
// penalized() to one id of a logit summary, so that both paths compute the same bits.
namespace {

float biased(float s, float bias) { return s + bias; }

// transformers' RepetitionPenaltyLogitsProcessor (CTRL): a seen id's score is divided by r where positive and
// multiplied by it where negative, so r > 1 lowers it.
float repetition_penalized(float s, float r) { return s < 0 ? s * r : s / r; }

bool penalizes_counts(const SamplingParams& p) { return p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f; }

// OpenAI's presence and frequency penalties, for an id generated n times.
float count_penalized(float s, const SamplingParams& p, int32_t n) {
  return s - (p.presence_penalty + p.frequency_penalty * float(n));
}

}  // namespace

void Sampler::penalize(std::span<const float> logits) {
  if (int64_t(logits.size()) != vocab_)
    fail(ErrorKind::internal, "sampler: expected " + std::to_string(vocab_) + " logits, got " + std::to_string(logits.size()));
  std::copy(logits.begin(), logits.end(), scores_.begin());
  for (const auto& [id, bias] : params_.logit_bias) scores_[size_t(id)] = biased(scores_[size_t(id)], bias);
  if (params_.repetition_penalty != 1.0f)
    for (int32_t id : seen_ids_)
      scores_[size_t(id)] = repetition_penalized(scores_[size_t(id)], params_.repetition_penalty);
  if (penalizes_counts(params_))
    for (const auto& [id, n] : counts_) scores_[size_t(id)] = count_penalized(scores_[size_t(id)], params_, n);
  for (int32_t id : masked_)
    if (id >= 0 && id < vocab_) scores_[size_t(id)] = kNegInf;
}

float Sampler::penalized(int32_t id, float logit) const {
  float s = logit;
  if (const auto b = params_.logit_bias.find(id); b != params_.logit_bias.end()) s = biased(s, b->second);
  if (params_.repetition_penalty != 1.0f && seen_[size_t(id)]) s = repetition_penalized(s, params_.repetition_penalty);
  if (penalizes_counts(params_))
    if (const auto n = counts_.find(id); n != counts_.end()) s = count_penalized(s, params_, n->second);
  if (std::find(masked_.begin(), masked_.end(), id) != masked_.end()) s = kNegInf;
  return s;
}

// Temperature, top-k, top-p, min-p. Leaves scores_ divided by the temperature and, when any cut
// applied, kept_ = the survivors sorted best first (all_kept_ = false).
void Sampler::warp() {
  all_kept_ = true;
  const float t = params_.temperature;
  if (t != 1.0f)
    for (float& s : scores_) s /= t;
  auto by_score = [&](int32_t a, int32_t b) {
    return scores_[size_t(a)] > scores_[size_t(b)] || (scores_[size_t(a)] == scores_[size_t(b)] && a < b);
  };
  if (params_.top_k > 0 && params_.top_k < vocab_) {
    // transformers keeps every token >= the k-th best value, so ties at the boundary all survive.
    block_maxima(scores_, block_max_);
    top_n(scores_, block_max_, size_t(params_.top_k), kept_);
    if (kept_.size() == size_t(params_.top_k)) {
      const float kth = scores_[size_t(kept_.back())];
      for (size_t b = 0; b < scores_.size(); b += kScanBlock) {
        const size_t e = std::min(scores_.size(), b + kScanBlock);
        if (block_max_[b / kScanBlock] < kth) continue;
        for (size_t i = b; i < e; ++i)
          if (scores_[i] == kth && std::find(kept_.begin(), kept_.end(), int32_t(i)) == kept_.end())
            kept_.push_back(int32_t(i));
      }
      std::sort(kept_.begin(), kept_.end(), by_score);
    }
    all_kept_ = false;
  }
  cut_by_mass();
}

// Top-p, then min-p, over every token (all_kept_) or over the top-k survivors in kept_.
void Sampler::cut_by_mass() {
  auto by_score = [&](int32_t a, int32_t b) {
    return scores_[size_t(a)] > scores_[size_t(b)] || (scores_[size_t(a)] == scores_[size_t(b)] && a < b);
  };
  if (params_.top_p < 1.0f) {
    // Keep a token while the mass ranked strictly above it is < p (transformers removes tokens whose
    // ascending cumulative sum is <= 1 - p); the best token always survives.
    double z = 0;
    if (all_kept_) {
      // Over the whole vocabulary: one vectorized pass for the normaliser (masked scores add 0), then only the
      // tokens within delta of the best score, delta doubling until their mass passes the target. They are a
      // prefix of the ranking, so the cut below, made over them, is the cut over every token. Past 87 every
      // probability left is 0 (exp_nonpositive), so delta 128 takes every token that can matter.
      block_maxima(scores_, block_max_);
      const float s_max = *std::max_element(block_max_.begin(), block_max_.end());
      z = exp_sum(scores_, s_max, probs_);
      const double enough = double(params_.top_p) * z * (1 + 1e-9);  // the margin covers summation order
      for (float delta = 8.0f;; delta *= 2.0f) {
        const bool every = delta > 128.0f;
        const float floor = s_max - delta;
        kept_.clear();
        double mass = 0;
        for (size_t b = 0; b < block_max_.size(); ++b) {
          if (!every && block_max_[b] < floor) continue;
          for (size_t i = b * kScanBlock; i < std::min(scores_.size(), (b + 1) * kScanBlock); ++i)
            if (scores_[i] != kNegInf && (every || scores_[i] >= floor)) {
              kept_.push_back(int32_t(i));
              mass += probs_[i];
            }
        }
        if (every || mass > enough) break;
      }
    } else {
      // Over a top-k cut, its few survivors.
      float s_max = kNegInf;
      for (int32_t id : kept_) s_max = std::max(s_max, scores_[size_t(id)]);
      for (int32_t id : kept_) z += double(probs_[size_t(id)] = exp_nonpositive(scores_[size_t(id)] - s_max));
    }
    const size_t n = kept_.size();
    const double target = double(params_.top_p) * z;
    // Sort only as far as needed: the survivors are usually a few hundred of a large vocabulary.
    size_t sorted = all_kept_ ? 0 : n, chunk = 256, keep = n;
    double above = 0;  // mass of kept_[0, j)
    for (size_t j = 0; j < n; ++j) {
      if (j == sorted) {
        const size_t end = std::min(n, sorted + chunk);
        std::partial_sort(kept_.begin() + long(sorted), kept_.begin() + long(end), kept_.end(), by_score);
        sorted = end, chunk *= 4;
      }
      if (j > 0 && above >= target) {
        keep = j;
        break;
      }
      above += probs_[size_t(kept_[j])];
    }
    kept_.resize(keep);
    all_kept_ = false;
  }
  if (params_.min_p > 0.0f) {
    // p_i < min_p · p_max  ⇔  exp(s_i - s_max) < min_p: the normaliser cancels.
    const double log_min = std::log(double(params_.min_p));
    if (all_kept_) {
      // Only blocks whose best score passes the threshold hold survivors.
      block_maxima(scores_, block_max_);
      const float s_max = *std::max_element(block_max_.begin(), block_max_.end());
      kept_.clear();
      for (size_t b = 0; b < block_max_.size(); ++b) {
        if (double(block_max_[b]) - s_max < log_min) continue;
        for (size_t i = b * kScanBlock; i < std::min(scores_.size(), (b + 1) * kScanBlock); ++i)
          if (double(scores_[i]) - s_max >= log_min) kept_.push_back(int32_t(i));
      }
      std::sort(kept_.begin(), kept_.end(), by_score);
    } else if (!kept_.empty()) {
      const double s_max = scores_[size_t(kept_.front())];
      size_t keep = 1;
      while (keep < kept_.size() && double(scores_[size_t(kept_[keep])]) - s_max >= log_min) ++keep;
      kept_.resize(keep);
    }
    all_kept_ = false;
  }
}

void Sampler::process(std::span<const float> logits, std::span<float> out) {
  penalize(logits);
  if (!params_.greedy()) warp();
  else all_kept_ = true;
  if (all_kept_) {
    std::copy(scores_.begin(), scores_.end(), out.begin());
    return;
  }
  std::fill(out.begin(), out.end(), kNegInf);
  for (int32_t id : kept_) out[size_t(id)] = scores_[size_t(id)];
}

TokenChoice Sampler::choose(std::span<const float> logits) {
  penalize(logits);
  if (!params_.greedy()) warp();
  else all_kept_ = true;

  TokenChoice c;
  double log_z = 0;  // log of the normaliser of the final distribution
  if (all_kept_) {
    // Every finite score survives: one pass for max and normaliser, a second for the draw.
    block_maxima(scores_, block_max_);
    const size_t best = argmax(scores_, block_max_);
    const float s_max = scores_[best];
    if (s_max == kNegInf || std::isnan(s_max)) fail(ErrorKind::internal, "sampler: no token has a finite score");
    const double z = exp_sum(scores_, s_max, probs_, block_sum_);
    log_z = s_max + std::log(z);
    c.id = int32_t(best);
    if (!params_.greedy()) {
      // The first token whose cumulative mass (in id order) passes u: whole blocks by their sums, then token by
      // token from the block where it passes (on to the end if rounding leaves it short there).
      const double u = uniform() * z;
      double acc = 0;
      size_t from = 0;
      for (size_t b = 0; b < block_sum_.size() && acc + block_sum_[b] <= u; ++b) acc += block_sum_[b], from += kSumBlock;
      int32_t last_nonzero = c.id;
      for (size_t i = std::min(from, scores_.size()); i < scores_.size(); ++i) {
        if (probs_[i] == 0) continue;
        acc += probs_[i];
        last_nonzero = int32_t(i);
        if (acc > u) break;
      }
      c.id = last_nonzero;
    }
  } else {
    c.id = draw_kept(log_z);
  }
  c.logit = logits[size_t(c.id)];
  std::vector<int32_t> best;
  if (params_.top_logprobs > 0 && all_kept_) top_n(scores_, block_max_, size_t(params_.top_logprobs), best);
  describe(c, log_z, best);
  return c;
}

int32_t Sampler::draw_kept(double& log_z) {
  if (kept_.empty()) fail(ErrorKind::internal, "sampler: no token has a finite score");
  const float s_max = scores_[size_t(kept_.front())];
  double z = 0;
  for (int32_t id : kept_) z += std::exp(scores_[size_t(id)] - s_max);
  log_z = s_max + std::log(z);
  const double u = uniform() * z;
  double acc = 0;
  for (int32_t id : kept_) {
    acc += std::exp(scores_[size_t(id)] - s_max);
    if (acc > u) return id;
  }
  return kept_.back();
}

void Sampler::describe(TokenChoice& c, double log_z, std::vector<int32_t>& best) const {
  c.logprob = float(double(scores_[size_t(c.id)]) - log_z);
  c.probability = std::exp(c.logprob);
  if (params_.top_logprobs <= 0) return;
  if (!all_kept_) best.assign(kept_.begin(), kept_.begin() + long(std::min(size_t(params_.top_logprobs), kept_.size())));
  c.top.reserve(best.size());
  for (int32_t id : best) c.top.push_back({id, float(double(scores_[size_t(id)]) - log_z)});
}

}  // namespace wick
