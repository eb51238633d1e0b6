// OpenAI's HTTP API as wick reads and writes it: request bodies parsed into plain structs (every bad field a 400
// naming it, unknown fields ignored as OpenAI does), responses and stream chunks built from generated tokens, and
// the error object. No sockets here: the server (server.cpp) and the fuzz target (fuzz/openai_request_fuzz.cpp)
// both call these.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "wick/generator.h"
#include "wick/sampler.h"
#include "wick/tensor.h"
#include "wick/tokenizer.h"

namespace wick::serve {

/// An error answered as OpenAI's error object: {"error": {"message", "type", "param", "code"}} with `status`.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(std::move(message)),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;   ///< invalid_request_error, authentication_error, not_found_error, rate_limit_error, ...
  std::string param;  ///< the request field at fault ("" when none)
  std::string code;   ///< a machine-readable reason ("" when none), e.g. context_length_exceeded
};

/// 400 invalid_request_error naming `param`.
[[noreturn]] void bad_field(const std::string& param, const std::string& message);
/// The error object's JSON text.
std::string error_body(const ApiError& e);

/// A /v1/completions or /v1/chat/completions request. Sampling follows OpenAI's defaults (temperature 1, top_p 1),
/// not the model's generation_config.json: an API client states what it wants.
struct CompletionRequest {
  bool chat = false;
  std::string model;                   ///< "" when absent: the base model
  std::vector<ChatMessage> messages;   ///< chat: the conversation
  std::optional<std::string> prompt;   ///< completions: the text prompt, or
  std::vector<int32_t> prompt_ids;     ///< completions: the prompt as token ids
  std::optional<int64_t> max_tokens;   ///< max_tokens / max_completion_tokens; unset: 16 for completions (OpenAI's
                                       ///< default), up to the context for chat
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  ///< stream_options.include_usage
  bool logprobs = false;       ///< chat: logprobs true; completions: logprobs ≥ 0 given
  bool ignore_eos = false;     ///< vLLM's and llama.cpp's extension, for benchmarks
  int64_t n = 1;               ///< choices: each sampled alone (seed + i), the prompt computed once
};

/// Parses a request body; ApiError 400 naming the field for malformed JSON, a wrong type or a value out of range
/// (OpenAI's ranges: temperature [0, 2], top_p [0, 1], penalties [-2, 2], n [1, 128], best_of = 1, ...).
CompletionRequest parse_completion_request(std::string_view body, bool chat);

/// POST /v1/adapters: {name, path}.
struct AdapterLoadRequest {
  std::string name;
  std::string path;
};
AdapterLoadRequest parse_adapter_request(std::string_view body);

/// POST /v1/fine_tuning/jobs.
struct FineTuneRequest {
  std::string model;
  std::string training_file;
  std::optional<std::string> validation_file;
  std::optional<double> n_epochs;
  std::optional<int64_t> batch_size;
  std::optional<double> learning_rate_multiplier;
  std::string suffix;
  std::optional<uint64_t> seed;
};
FineTuneRequest parse_fine_tune_request(std::string_view body);

/// POST /v1/embeddings (OpenAI's shape). `input` is a string, an array of strings, an array of token ids or an array of
/// such arrays; every text and id list must be non-empty (as OpenAI requires).
struct EmbeddingRequest {
  std::string model;                           ///< "" when absent: the only embedding model, if there is one
  std::vector<std::string> texts;              ///< the inputs given as text, or
  std::vector<std::vector<int32_t>> token_ids; ///< the inputs given as token ids (then texts is empty)
  bool base64 = false;                         ///< encoding_format "base64": each embedding's f32 bytes, base64
  int64_t dimensions = 0;                      ///< Matryoshka truncation (0: the model's dimension)
};
EmbeddingRequest parse_embedding_request(std::string_view body);
/// The response: {"object": "list", "data": [{"object": "embedding", "index", "embedding"}...], "model", "usage"}.
/// embeddings f32 [n, dim] on the host.
nlohmann::json embedding_response(const std::string& model, const Tensor& embeddings, bool base64,
                                  int64_t prompt_tokens);
/// RFC 4648 base64 of `bytes` (with padding), as OpenAI encodes embeddings.
std::string base64_encode(std::string_view bytes);

/// The body parsed as a JSON object (400 otherwise).
nlohmann::json parse_object(std::string_view body);

/// What a response needs besides the tokens.
struct ResponseHead {
  std::string id;       ///< chatcmpl-... / cmpl-...
  std::string model;    ///< the model field as the client sent it
  int64_t created = 0;  ///< Unix seconds
  bool chat = false;
};

/// OpenAI's finish_reason: "stop" (EOS or a stop string), "length", or null.
nlohmann::json finish_reason(std::optional<FinishReason> finish);
/// The logprobs object of one token (chat's content entry), or of a completions chunk (tokens, token_logprobs,
/// top_logprobs, text_offset) for the tokens given.
nlohmann::json token_logprobs(const ResponseHead& head, const Tokenizer* tokenizer,
                              const std::vector<StreamToken>& tokens, int64_t text_offset);
/// A stream chunk of choice `index` carrying `tokens` (the text they release, their logprobs when asked) and finish,
/// if ended.
nlohmann::json stream_chunk(const ResponseHead& head, const CompletionRequest& request, const Tokenizer* tokenizer,
                            const std::vector<StreamToken>& tokens, int64_t text_offset, bool first,
                            int64_t index = 0);
/// The stream's usage chunk (stream_options.include_usage): choices [] and usage.
nlohmann::json usage_chunk(const ResponseHead& head, int64_t prompt_tokens, int64_t completion_tokens);
/// What one choice of a non-streaming request produced.
struct ChoiceAnswer {
  std::vector<StreamToken> tokens;
  const GenerateResult* result = nullptr;
};
/// The whole response of a non-streaming request: its choices in order; usage counts the prompt once and every
/// choice's tokens.
nlohmann::json completion_response(const ResponseHead& head, const CompletionRequest& request,
                                   const Tokenizer* tokenizer, std::span<const ChoiceAnswer> choices);
nlohmann::json usage_object(int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace wick::serve
