#include "generate/decode_loop.h"

#include <algorithm>
#include <string>

#include "wick/error.h"

namespace wick {

DecodeLoop::DecodeLoop(std::shared_ptr<const Model> model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
                       Session* session, std::span<const int32_t> prompt, const GenerateParams& params)
    : model_(std::move(model)),
      lora_(model_->active_lora()),
      vocab_(model_->config().vocab_size),
      params_(validated_request(*model_, tokenizer, session, prompt, params)),
      session_(session ? session : &own_),
      follower_(*model_, tokenizer, eos, prompt, params_) {
  size_t reused = 0;
  if (session) {
    // Keep the cache for the longest common prefix; at least one token must run to get logits.
    const std::vector<int32_t>& had = session->tokens_;
    const size_t limit = std::min({had.size(), size_t(session->cache_.length()), prompt.size() - 1});
    while (reused < limit && had[reused] == prompt[reused]) ++reused;
    session->cache_.truncate(int64_t(reused));
  } else {
    own_ = Session(model_->make_cache(int64_t(prompt.size()) + params_.max_tokens));
  }
  session_->tokens_.assign(prompt.begin(), prompt.end());
  pending_.assign(prompt.begin() + long(reused), prompt.end());
  follower_.result().cached_tokens = int64_t(reused);
}

bool DecodeLoop::step(StreamToken& out) {
  if (follower_.done()) return false;
  const auto t0 = clock::now();
  const SequenceInput in[] = {{pending_, &session_->cache_}};
  const ForwardOptions options{.logits = LogitsFor::last_token, .lora = lora_.get()};
  Sampler& sampler = follower_.sampler();
  // On a GPU, when the sampling params allow it, only a summary of the logits comes back (Sampler::choose from a
  // LogitSummary); the whole row only when the summary cannot decide.
  std::optional<TokenChoice> choice;
  Tensor logits;
  std::optional<Sampler::SummaryRequest> request =
      model_->device() != Device::cpu && params_.device_summary ? sampler.summary_request() : std::nullopt;
  if (request) {
    logits = model_
                 ->forward_summary(in[0], options,
                                   {.count = request->count,
                                    .gather = std::move(request->gather),
                                    .enough = [&](const LogitSummary& s) {
                                      return (choice = sampler.choose(s)).has_value();
                                    }})
                 .row;
  } else {
    logits = model_->forward(in, options);
  }
  if (follower_.result().output_ids.empty()) follower_.prefill_done(t0);
  if (!choice) choice = sampler.choose(std::span<const float>(logits.data<float>(), size_t(vocab_)));
  const int32_t id = choice->id;
  follower_.accept(std::move(*choice), out);
  session_->tokens_.push_back(id);
  pending_.assign(1, id);
  return true;
}

void DecodeLoop::cancel() { follower_.finish(FinishReason::cancelled); }

void DecodeLoop::retract(const StreamToken& token) {
  const bool last = !follower_.result().output_ids.empty() && follower_.result().output_ids.back() == token.id;
  follower_.retract(token);
  if (last) session_->tokens_.pop_back();
}

}  // namespace wick
