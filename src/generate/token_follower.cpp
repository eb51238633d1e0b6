#include "generate/token_follower.h"

#include <algorithm>
#include <string>

#include "wick/error.h"

namespace wick {

namespace {

const std::vector<int32_t>& no_ids() {
  static const std::vector<int32_t> none;
  return none;
}

}  // namespace

SamplingParams sampling_of(const Model& model, const GenerateParams& params) {
  return params.sampling ? *params.sampling : SamplingParams::from_defaults(model.generation_defaults());
}

const GenerateParams& validated_request(const Model& model, const Tokenizer* tokenizer, const Session* session,
                                        std::span<const int32_t> prompt, const GenerateParams& params) {
  std::string problems;
  auto bad = [&](const std::string& msg) { problems += (problems.empty() ? "" : "; ") + msg; };
  const ModelConfig& c = model.config();
  if (prompt.empty()) bad("the prompt is empty");
  if (params.max_tokens < 1) bad("--max-tokens: expected at least 1, found " + std::to_string(params.max_tokens));
  const int64_t context = session ? session->capacity() : c.max_position_embeddings;
  const int64_t needed = int64_t(prompt.size()) + std::max(params.max_tokens, 1);
  if (needed > context)
    bad("prompt of " + std::to_string(prompt.size()) + " tokens + --max-tokens " + std::to_string(params.max_tokens) +
        " exceeds the context of " + std::to_string(context) +
        (session ? " (the session's capacity)" : " (max_position_embeddings)"));
  try {
    sampling_of(model, params).validate(c.vocab_size);
  } catch (const Error& e) {
    bad(e.what());
  }
  if (!params.stop.empty() && !tokenizer) bad("--stop: stop strings need a tokenizer (tokenizer.json beside the model)");
  for (const std::string& s : params.stop)
    if (s.empty()) bad("--stop: a stop string is empty");
  if (!problems.empty()) fail(ErrorKind::bad_input, "generate: " + problems);
  return params;
}

TokenFollower::TokenFollower(const Model& model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
                             std::span<const int32_t> prompt, const GenerateParams& params)
    : eos_(eos),
      params_(params),
      sampler_(sampling_of(model, params_), model.config().vocab_size, params_.ignore_eos ? eos_ : no_ids()) {
  if (tokenizer) decoder_.emplace(*tokenizer, params_.skip_special_tokens);
  if (!params_.stop.empty()) stops_.emplace(params_.stop);
  result_.prompt_ids.assign(prompt.begin(), prompt.end());
  sampler_.observe_context(prompt);
}

void TokenFollower::prefill_done(clock::time_point started) {
  decode_start_ = clock::now();
  result_.prefill_ms = std::chrono::duration<double, std::milli>(decode_start_ - started).count();
}

void TokenFollower::accept(TokenChoice c, StreamToken& out) {
  sampler_.accept(c.id);
  result_.output_ids.push_back(c.id);

  out.id = c.id;
  out.index = int32_t(result_.output_ids.size()) - 1;
  out.logprob = c.logprob;
  out.probability = c.probability;
  out.logit = c.logit;
  out.top = std::move(c.top);
  out.text.clear();
  out.finish.reset();

  std::optional<FinishReason> reason;
  if (!params_.ignore_eos && std::find(eos_.begin(), eos_.end(), c.id) != eos_.end()) {
    reason = FinishReason::eos;
  } else if (decoder_) {
    std::string piece = decoder_->push(c.id);
    if (stops_) {
      StopMatcher::Output o = stops_->push(piece);
      out.text = std::move(o.text);
      if (o.stopped) reason = FinishReason::stop;
    } else {
      out.text = std::move(piece);
    }
  }
  if (!reason && int32_t(result_.output_ids.size()) >= params_.max_tokens) reason = FinishReason::length;
  if (reason && *reason != FinishReason::stop && decoder_) {
    // Release what is still held: an incomplete character (as U+FFFD), then a partial stop match.
    const std::string tail = decoder_->flush();
    if (stops_) {
      StopMatcher::Output o = stops_->push(tail);
      out.text += o.text;
      if (o.stopped) reason = FinishReason::stop;
      else out.text += stops_->flush();
    } else {
      out.text += tail;
    }
  }
  result_.text += out.text;
  if (reason) {
    out.finish = reason;
    finish(*reason);
  }
}

void TokenFollower::finish(FinishReason reason) {
  if (done_) return;
  done_ = true;
  result_.finish = reason;
  if (!result_.output_ids.empty())
    result_.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - decode_start_).count();
}

void TokenFollower::retract(const StreamToken& token) {
  if (result_.output_ids.empty() || result_.output_ids.back() != token.id) return;
  result_.output_ids.pop_back();
  result_.text.resize(result_.text.size() - std::min(result_.text.size(), token.text.size()));
  done_ = false;
  finish(FinishReason::cancelled);
}

}  // namespace wick
