// The bodies `wick serve` reads (src/serve/openai.h): the first byte picks the endpoint's parser, the rest is the
// body. A request the parser takes is then answered as the server would (a whole response and stream chunks from a
// made-up token), so the builders see every shape the parser lets through. A refusal must be an ApiError with a 4xx
// status naming a field (or the body); anything else escapes to libFuzzer and is a finding.
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "serve/openai.h"

namespace {

void check_refusal(const wick::serve::ApiError& e) {
  if (e.status < 400 || e.status > 499) std::abort();  // bad input is the client's fault, never a 5xx
  (void)wick::serve::error_body(e);
}

void answer(const wick::serve::CompletionRequest& r) {
  using namespace wick;
  const serve::ResponseHead head{.id = "cmpl-1", .model = r.model, .created = 1, .chat = r.chat};
  StreamToken t;
  t.id = 7;
  t.text = "\xff partial";  // not UTF-8: the builders must still give a JSON value
  t.logprob = -0.5f;
  t.top = {{7, -0.5f}, {3, -1.5f}};
  t.finish = FinishReason::length;
  GenerateResult g;
  g.prompt_ids = r.prompt_ids;
  g.output_ids = {7};
  g.text = t.text;
  // As many choices as the request asks for (n), each the same made-up token.
  const std::vector<serve::ChoiceAnswer> choices(size_t(r.n), serve::ChoiceAnswer{.tokens = {t}, .result = &g});
  const auto replace = nlohmann::json::error_handler_t::replace;
  (void)serve::completion_response(head, r, nullptr, choices).dump(-1, ' ', false, replace);
  (void)serve::stream_chunk(head, r, nullptr, {}, 0, true, r.n - 1).dump(-1, ' ', false, replace);
  (void)serve::stream_chunk(head, r, nullptr, {t}, 0, false, r.n - 1).dump(-1, ' ', false, replace);
  (void)serve::usage_chunk(head, 3, 1).dump();
}

// An embeddings answer of the request's shape: as many rows as inputs, `dimensions` wide (8 when unset).
void answer_embeddings(const wick::serve::EmbeddingRequest& r) {
  using namespace wick;
  const int64_t n = int64_t(r.texts.empty() ? r.token_ids.size() : r.texts.size());
  const int64_t dim = r.dimensions > 0 && r.dimensions <= 64 ? r.dimensions : 8;
  Tensor e = Tensor::zeros({n, dim}, DType::f32);
  (void)serve::embedding_response(r.model, e, r.base64, n).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body = wick::fuzz::text(data + 1, size - 1);
  try {
    switch (data[0] % 5) {
      case 0: answer(wick::serve::parse_completion_request(body, false)); break;
      case 1: answer(wick::serve::parse_completion_request(body, true)); break;
      case 2: (void)wick::serve::parse_adapter_request(body); break;
      case 3: answer_embeddings(wick::serve::parse_embedding_request(body)); break;
      default: (void)wick::serve::parse_fine_tune_request(body); break;
    }
  } catch (const wick::serve::ApiError& e) {
    check_refusal(e);
  }
  return 0;
}
