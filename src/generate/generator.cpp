#include "wick/generator.h"

#include "generate/decode_loop.h"
#include "wick/error.h"

namespace wick {

std::string_view to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::eos: return "eos";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "?";
}

double GenerateResult::decode_tokens_per_s() const {
  const size_t steps = output_ids.size() > 1 ? output_ids.size() - 1 : 0;
  return decode_ms > 0 ? double(steps) / (decode_ms / 1000.0) : 0.0;
}

Generator::Generator(std::shared_ptr<const Model> model, std::optional<Tokenizer> tokenizer)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)) {
  if (!model_) fail(ErrorKind::bad_input, "Generator: no model");
  if (model_->config().head != ModelHead::causal_lm)
    fail(ErrorKind::bad_input, "Generator: a sequence-classification model cannot generate text");
  eos_ = model_->generation_defaults().eos_token_ids;
  if (eos_.empty()) eos_ = model_->config().eos_token_ids;
}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateParams& params) const {
  DecodeLoop loop(model_, tokenizer(), eos_, nullptr, prompt, params);
  StreamToken t;
  while (loop.step(t)) {
  }
  return std::move(loop.result());
}

namespace {
GenerateResult run_with_callback(DecodeLoop& loop, const TokenCallback& on_token) {
  StreamToken t;
  while (loop.step(t))
    if (!on_token(t)) {
      loop.cancel();
      break;
    }
  return std::move(loop.result());
}
}  // namespace

GenerateResult Generator::generate_stream(std::span<const int32_t> prompt, const GenerateParams& params,
                                          const TokenCallback& on_token) const {
  DecodeLoop loop(model_, tokenizer(), eos_, nullptr, prompt, params);
  return run_with_callback(loop, on_token);
}

Session Generator::make_session(int64_t capacity) const {
  if (capacity < 1 || capacity > model_->config().max_position_embeddings)
    fail(ErrorKind::bad_input, "--context: expected 1.." + std::to_string(model_->config().max_position_embeddings) +
                                   " (max_position_embeddings), found " + std::to_string(capacity));
  return Session(model_->make_cache(capacity));
}

GenerateResult Generator::generate_stream(Session& session, std::span<const int32_t> prompt,
                                          const GenerateParams& params, const TokenCallback& on_token) const {
  DecodeLoop loop(model_, tokenizer(), eos_, &session, prompt, params);
  return run_with_callback(loop, on_token);
}

TokenStream Generator::stream(std::span<const int32_t> prompt, const GenerateParams& params) const {
  return TokenStream(std::make_unique<DecodeLoop>(model_, tokenizer(), eos_, nullptr, prompt, params));
}

TokenStream::TokenStream(std::unique_ptr<DecodeLoop> loop) : loop_(std::move(loop)) {}
TokenStream::TokenStream(TokenStream&&) noexcept = default;
TokenStream& TokenStream::operator=(TokenStream&&) noexcept = default;
TokenStream::~TokenStream() = default;

TokenStream::iterator TokenStream::begin() {
  if (!started_) {
    started_ = true;
    advance();
  }
  return iterator(this);
}

void TokenStream::advance() { has_current_ = loop_->step(current_); }

void TokenStream::cancel() {
  loop_->cancel();
  has_current_ = false;
}

const GenerateResult& TokenStream::result() const { return loop_->result(); }

}  // namespace wick
