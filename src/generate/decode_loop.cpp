#include "generate/decode_loop.h"

#include <algorithm>
#include <string>

#include "wick/error.h"

namespace wick {

namespace {

SamplingParams sampling_of(const Model& model, const GenerateParams& params) {
  return params.sampling ? *params.sampling : SamplingParams::from_defaults(model.generation_defaults());
}

// Every problem with a request, in one bad_input error, before anything is allocated.
const GenerateParams& validated(const Model& model, const Tokenizer* tokenizer, const Session* session,
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

const std::vector<int32_t>& no_ids() {
  static const std::vector<int32_t> none;
  return none;
}

}  // namespace

DecodeLoop::DecodeLoop(std::shared_ptr<const Model> model, const Tokenizer* tokenizer, const std::vector<int32_t>& eos,
                       Session* session, std::span<const int32_t> prompt, const GenerateParams& params)
    : model_(std::move(model)),
      lora_(model_->active_lora()),
      vocab_(model_->config().vocab_size),
      eos_(eos),
      params_(validated(*model_, tokenizer, session, prompt, params)),
      session_(session ? session : &own_),
      sampler_(sampling_of(*model_, params_), vocab_, params_.ignore_eos ? eos_ : no_ids()) {
  if (tokenizer) decoder_.emplace(*tokenizer, params_.skip_special_tokens);
  if (!params_.stop.empty()) stops_.emplace(params_.stop);
  result_.prompt_ids.assign(prompt.begin(), prompt.end());
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
  result_.cached_tokens = int64_t(reused);
  sampler_.observe_context(prompt);
}

bool DecodeLoop::step(StreamToken& out) {
  if (done_) return false;
  const auto t0 = clock::now();
  const SequenceInput in[] = {{pending_, &session_->cache_}};
  const ForwardOptions options{.logits = LogitsFor::last_token, .lora = lora_.get()};
  // On a GPU, when the sampling params allow it, only a summary of the logits comes back (Sampler::choose from a
  // LogitSummary); the whole row only when the summary cannot decide.
  std::optional<TokenChoice> choice;
  Tensor logits;
  std::optional<Sampler::SummaryRequest> request =
      model_->device() != Device::cpu && params_.device_summary ? sampler_.summary_request() : std::nullopt;
  if (request) {
    logits = model_
                 ->forward_summary(in[0], options,
                                   {.count = request->count,
                                    .gather = std::move(request->gather),
                                    .enough = [&](const LogitSummary& s) {
                                      return (choice = sampler_.choose(s)).has_value();
                                    }})
                 .row;
  } else {
    logits = model_->forward(in, options);
  }
  if (result_.output_ids.empty()) {
    decode_start_ = clock::now();
    result_.prefill_ms = std::chrono::duration<double, std::milli>(decode_start_ - t0).count();
  }
  if (!choice) choice = sampler_.choose(std::span<const float>(logits.data<float>(), size_t(vocab_)));
  TokenChoice c = std::move(*choice);
  sampler_.accept(c.id);
  session_->tokens_.push_back(c.id);
  result_.output_ids.push_back(c.id);
  pending_.assign(1, c.id);

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
  return true;
}

void DecodeLoop::finish(FinishReason reason) {
  done_ = true;
  result_.finish = reason;
  if (!result_.output_ids.empty())
    result_.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - decode_start_).count();
}

void DecodeLoop::cancel() {
  if (!done_) finish(FinishReason::cancelled);
}

void DecodeLoop::retract(const StreamToken& token) {
  if (result_.output_ids.empty() || result_.output_ids.back() != token.id) return;
  result_.output_ids.pop_back();
  session_->tokens_.pop_back();
  result_.text.resize(result_.text.size() - std::min(result_.text.size(), token.text.size()));
  done_ = false;
  finish(FinishReason::cancelled);
}

}  // namespace wick
