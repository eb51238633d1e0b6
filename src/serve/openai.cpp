#include "serve/openai.h"

#include <cctype>
#include <limits>
#include <map>
#include <random>

#include "wick/error.h"

namespace wick::serve {

using nlohmann::json;

void bad_field(const std::string& param, const std::string& message) {
  throw ApiError(400, "invalid_request_error", message, param);
}

std::string error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", std::move(err)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_object(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad_field("", "the request body is not valid JSON");
  if (!j.is_object()) bad_field("", "the request body must be a JSON object, found " + std::string(j.type_name()));
  return j;
}

namespace {

// A field of `j`, absent or null → nullptr; of another type → 400 naming it.
const json* field(const json& j, const char* key, json::value_t type, const char* expected) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  const bool ok = type == json::value_t::number_float ? it->is_number()
                  : type == json::value_t::number_integer ? it->is_number_integer()
                                                          : it->type() == type;
  if (!ok) bad_field(key, std::string("'") + key + "' must be " + expected + ", found " + it->type_name());
  return &*it;
}

std::optional<double> number(const json& j, const char* key, double lo, double hi) {
  const json* v = field(j, key, json::value_t::number_float, "a number");
  if (!v) return std::nullopt;
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad_field(key, std::string("'") + key + "' must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], found " +
                       v->dump());
  return x;
}

std::optional<int64_t> integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key, json::value_t::number_integer, "an integer");
  if (!v) return std::nullopt;
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad_field(key, std::string("'") + key + "' is too large: " + v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    bad_field(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "], found " + std::to_string(x));
  return x;
}

std::optional<bool> boolean(const json& j, const char* key) {
  const json* v = field(j, key, json::value_t::boolean, "a boolean");
  return v ? std::optional<bool>(v->get<bool>()) : std::nullopt;
}

std::optional<std::string> text(const json& j, const char* key) {
  const json* v = field(j, key, json::value_t::string, "a string");
  return v ? std::optional<std::string>(v->get<std::string>()) : std::nullopt;
}

std::string required_text(const json& j, const char* key) {
  std::optional<std::string> s = text(j, key);
  if (!s) bad_field(key, std::string("'") + key + "' is required");
  return *s;
}

// A message's content: a string, or an array of {"type": "text", "text"} parts (joined).
std::string message_content(const json& content, const std::string& where) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_field(where, "'" + where + "' must be a string or an array of text parts");
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!part.is_object()) bad_field(at, "'" + at + "' must be an object");
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string()) bad_field(at + ".type", "'" + at + ".type' is required");
    if (*type != "text")
      throw ApiError(400, "invalid_request_error",
                     "'" + at + ".type' is '" + type->get<std::string>() + "': this model takes text parts only",
                     at + ".type");
    const auto t = part.find("text");
    if (t == part.end() || !t->is_string()) bad_field(at + ".text", "'" + at + ".text' must be a string");
    out += t->get<std::string>();
  }
  return out;
}

std::vector<ChatMessage> parse_messages(const json& j) {
  const json* m = field(j, "messages", json::value_t::array, "an array of messages");
  if (!m) bad_field("messages", "'messages' is required");
  if (m->empty()) bad_field("messages", "'messages' must hold at least one message");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) bad_field(at, "'" + at + "' must be an object");
    const auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) bad_field(at + ".role", "'" + at + ".role' must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      bad_field(at + ".role", "'" + at + ".role' must be system, developer, user, assistant or tool, found '" + r + "'");
    const auto content = msg.find("content");
    ChatMessage cm{.role = std::move(r),
                   .content = content == msg.end() ? "" : message_content(*content, at + ".content")};
    if (const auto rc = msg.find("reasoning_content"); rc != msg.end() && rc->is_string())
      cm.reasoning_content = rc->get<std::string>();
    out.push_back(std::move(cm));
  }
  return out;
}

// Token ids of a prompt array: every element a non-negative int32.
std::vector<int32_t> prompt_ids(const json& a) {
  std::vector<int32_t> ids;
  for (const json& v : a) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max())
      bad_field("prompt", "'prompt' as an array must hold token ids (non-negative integers), found " + v.dump());
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  return ids;
}

void parse_prompt(const json& j, CompletionRequest& r) {
  const auto p = j.find("prompt");
  if (p == j.end() || p->is_null()) bad_field("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array() && !p->empty() && (*p)[0].is_string()) {
    if (p->size() != 1) bad_field("prompt", "'prompt' may hold one text (n = 1 choice per request)");
    r.prompt = (*p)[0].get<std::string>();
  } else if (p->is_array() && !p->empty() && (*p)[0].is_array()) {
    if (p->size() != 1) bad_field("prompt", "'prompt' may hold one list of token ids");
    r.prompt_ids = prompt_ids((*p)[0]);
  } else if (p->is_array()) {
    r.prompt_ids = prompt_ids(*p);
  } else {
    bad_field("prompt", std::string("'prompt' must be a string or an array of token ids, found ") + p->type_name());
  }
  if (r.prompt ? r.prompt->empty() : r.prompt_ids.empty()) bad_field("prompt", "'prompt' is empty");
}

void parse_stop(const json& j, CompletionRequest& r) {
  const auto s = j.find("stop");
  if (s == j.end() || s->is_null()) return;
  if (s->is_string()) {
    r.stop.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    if (s->size() > 4) bad_field("stop", "'stop' holds at most 4 strings");
    for (const json& v : *s) {
      if (!v.is_string()) bad_field("stop", "'stop' must be a string or an array of strings");
      r.stop.push_back(v.get<std::string>());
    }
  } else {
    bad_field("stop", "'stop' must be a string or an array of strings");
  }
  for (const std::string& t : r.stop)
    if (t.empty()) bad_field("stop", "'stop' strings must not be empty");
}

std::map<int32_t, float> parse_logit_bias(const json& j) {
  const json* b = field(j, "logit_bias", json::value_t::object, "an object of token id → bias");
  std::map<int32_t, float> out;
  if (!b) return out;
  for (const auto& [key, value] : b->items()) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != key.size() || id < 0 || id > std::numeric_limits<int32_t>::max())
      bad_field("logit_bias", "'logit_bias' keys must be token ids, found '" + key + "'");
    if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100))
      bad_field("logit_bias", "'logit_bias' values must be numbers in [-100, 100], found " + value.dump());
    out[int32_t(id)] = value.get<float>();
  }
  return out;
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, bool chat) {
  const json j = parse_object(body);
  CompletionRequest r;
  r.chat = chat;
  r.model = text(j, "model").value_or("");  // absent: the base model, as vLLM and llama.cpp take it
  if (chat) r.messages = parse_messages(j);
  else parse_prompt(j, r);

  r.n = integer(j, "n", 1, 128).value_or(1);
  if (const std::optional<int64_t> best = integer(j, "best_of", 1, 128); best && *best != 1)
    bad_field("best_of", "'best_of' must be 1");
  if (boolean(j, "echo").value_or(false)) bad_field("echo", "'echo' is not supported");
  if (!chat) {
    if (const std::optional<std::string> suffix = text(j, "suffix"); suffix && !suffix->empty())
      bad_field("suffix", "'suffix' is not supported");
  }
  const char* max_key = j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null()
                            ? "max_completion_tokens"
                            : "max_tokens";
  r.max_tokens = integer(j, max_key, 0, std::numeric_limits<int32_t>::max());
  if (r.max_tokens && *r.max_tokens == 0) bad_field(max_key, std::string("'") + max_key + "' must be at least 1");

  SamplingParams& s = r.sampling;
  s.temperature = float(number(j, "temperature", 0, 2).value_or(1.0));
  s.top_p = float(number(j, "top_p", 0, 1).value_or(1.0));
  if (s.top_p == 0) s.top_p = std::numeric_limits<float>::min();  // OpenAI accepts 0: the most likely token only
  s.presence_penalty = float(number(j, "presence_penalty", -2, 2).value_or(0));
  s.frequency_penalty = float(number(j, "frequency_penalty", -2, 2).value_or(0));
  // vLLM's extensions, accepted by its clients: top_k, min_p, repetition_penalty.
  s.top_k = int32_t(integer(j, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0));
  if (s.top_k < 0) s.top_k = 0;
  s.min_p = float(number(j, "min_p", 0, 1).value_or(0));
  s.repetition_penalty = float(number(j, "repetition_penalty", 1e-6, 1e6).value_or(1));
  s.logit_bias = parse_logit_bias(j);
  if (const std::optional<int64_t> seed = integer(j, "seed", std::numeric_limits<int64_t>::min(),
                                                  std::numeric_limits<int64_t>::max()))
    s.seed = uint64_t(*seed);
  else
    s.seed = std::random_device{}();  // OpenAI: without a seed, each request draws afresh

  if (chat) {
    r.logprobs = boolean(j, "logprobs").value_or(false);
    const std::optional<int64_t> top = integer(j, "top_logprobs", 0, 20);
    if (top && !r.logprobs) bad_field("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    s.top_logprobs = int32_t(top.value_or(0));
  } else {
    const std::optional<int64_t> lp = integer(j, "logprobs", 0, 5);
    r.logprobs = lp.has_value();
    s.top_logprobs = int32_t(lp.value_or(0));
  }
  parse_stop(j, r);
  r.stream = boolean(j, "stream").value_or(false);
  if (const json* so = field(j, "stream_options", json::value_t::object, "an object")) {
    if (!r.stream) bad_field("stream_options", "'stream_options' is only allowed with 'stream': true");
    r.include_usage = boolean(*so, "include_usage").value_or(false);
  }
  r.ignore_eos = boolean(j, "ignore_eos").value_or(false);
  return r;
}

AdapterLoadRequest parse_adapter_request(std::string_view body) {
  const json j = parse_object(body);
  AdapterLoadRequest r{.name = required_text(j, "name"), .path = required_text(j, "path")};
  if (r.name.empty() || r.name.size() > 256) bad_field("name", "'name' must hold 1 to 256 characters");
  return r;
}

FineTuneRequest parse_fine_tune_request(std::string_view body) {
  const json j = parse_object(body);
  FineTuneRequest r;
  r.model = required_text(j, "model");
  r.training_file = required_text(j, "training_file");
  r.validation_file = text(j, "validation_file");
  r.suffix = text(j, "suffix").value_or("");
  if (r.suffix.size() > 64) bad_field("suffix", "'suffix' holds at most 64 characters");
  for (char c : r.suffix)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      bad_field("suffix", "'suffix' may hold letters, digits, '-', '_' and '.' only");
  if (const std::optional<int64_t> seed = integer(j, "seed", 0, std::numeric_limits<int64_t>::max()))
    r.seed = uint64_t(*seed);
  // OpenAI's hyperparameters, top level (legacy) or under method.supervised.hyperparameters.
  const json* h = field(j, "hyperparameters", json::value_t::object, "an object");
  if (const json* method = field(j, "method", json::value_t::object, "an object"))
    if (const json* sup = field(*method, "supervised", json::value_t::object, "an object"))
      if (const json* hh = field(*sup, "hyperparameters", json::value_t::object, "an object")) h = hh;
  if (h) {
    const auto not_auto = [&](const char* key) {
      const auto it = h->find(key);
      return it != h->end() && !(it->is_string() && *it == "auto");
    };
    if (not_auto("n_epochs")) r.n_epochs = number(*h, "n_epochs", 1e-3, 1000);
    if (not_auto("batch_size")) r.batch_size = integer(*h, "batch_size", 1, 4096);
    if (not_auto("learning_rate_multiplier"))
      r.learning_rate_multiplier = number(*h, "learning_rate_multiplier", 1e-6, 1e3);
  }
  return r;
}

json finish_reason(std::optional<FinishReason> finish) {
  if (!finish) return nullptr;
  switch (*finish) {
    case FinishReason::eos:
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "abort";  // vLLM's name; a client that stays never sees it
  }
  return nullptr;
}

namespace {

std::string token_string(const Tokenizer* tokenizer, int32_t id) {
  return tokenizer ? std::string(tokenizer->token_bytes(id)) : std::string();
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

}  // namespace

json token_logprobs(const ResponseHead& head, const Tokenizer* tokenizer, const std::vector<StreamToken>& tokens,
                    int64_t text_offset) {
  if (head.chat) {
    json content = json::array();
    for (const StreamToken& t : tokens) {
      const std::string s = token_string(tokenizer, t.id);
      json top = json::array();
      for (const TokenLogprob& alt : t.top) {
        const std::string a = token_string(tokenizer, alt.id);
        top.push_back({{"token", a}, {"logprob", alt.logprob}, {"bytes", bytes_of(a)}});
      }
      content.push_back(
          {{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}, {"top_logprobs", top}});
    }
    return {{"content", std::move(content)}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const StreamToken& t : tokens) {
    const std::string s = token_string(tokenizer, t.id);
    toks.push_back(s);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const TokenLogprob& alt : t.top) top[token_string(tokenizer, alt.id)] = alt.logprob;
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += int64_t(t.text.size());
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

namespace {

json envelope(const ResponseHead& head, bool chunk) {
  return {{"id", head.id},
          {"object", head.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", head.created},
          {"model", head.model},
          {"system_fingerprint", "wick"}};
}

}  // namespace

json usage_object(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json stream_chunk(const ResponseHead& head, const CompletionRequest& request, const Tokenizer* tokenizer,
                  const std::vector<StreamToken>& tokens, int64_t text_offset, bool first, int64_t index) {
  std::string text;
  std::optional<FinishReason> finish;
  for (const StreamToken& t : tokens) {
    text += t.text;
    if (t.finish) finish = t.finish;
  }
  json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_reason(finish)}};
  if (request.logprobs && !tokens.empty()) choice["logprobs"] = token_logprobs(head, tokenizer, tokens, text_offset);
  if (head.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  json out = envelope(head, true);
  out["choices"] = json::array({std::move(choice)});
  if (request.include_usage) out["usage"] = nullptr;
  return out;
}

json usage_chunk(const ResponseHead& head, int64_t prompt_tokens, int64_t completion_tokens) {
  json out = envelope(head, true);
  out["choices"] = json::array();
  out["usage"] = usage_object(prompt_tokens, completion_tokens);
  return out;
}

json completion_response(const ResponseHead& head, const CompletionRequest& request, const Tokenizer* tokenizer,
                         std::span<const ChoiceAnswer> choices) {
  json out = envelope(head, false);
  out["choices"] = json::array();
  int64_t completion = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const GenerateResult& result = *choices[i].result;
    json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish_reason(result.finish)}};
    if (request.logprobs) choice["logprobs"] = token_logprobs(head, tokenizer, choices[i].tokens, 0);
    if (head.chat) choice["message"] = {{"role", "assistant"}, {"content", result.text}};
    else choice["text"] = result.text;
    out["choices"].push_back(std::move(choice));
    completion += int64_t(result.output_ids.size());
  }
  out["usage"] = usage_object(int64_t(choices.front().result->prompt_ids.size()), completion);
  return out;
}

EmbeddingRequest parse_embedding_request(std::string_view body) {
  const json j = parse_object(body);
  EmbeddingRequest r;
  r.model = text(j, "model").value_or("");
  const auto format = text(j, "encoding_format").value_or("float");
  if (format != "float" && format != "base64")
    bad_field("encoding_format", "'encoding_format' must be 'float' or 'base64', found '" + format + "'");
  r.base64 = format == "base64";
  r.dimensions = integer(j, "dimensions", 1, std::numeric_limits<int32_t>::max()).value_or(0);
  const auto it = j.find("input");
  if (it == j.end() || it->is_null()) bad_field("input", "'input' is required");
  const json& in = *it;
  // A list of token ids: non-empty, each an integer in [0, 2³¹).
  const auto ids_of = [](const json& a, const std::string& where) {
    std::vector<int32_t> ids;
    if (a.empty()) bad_field("input", "'" + where + "' must not be empty");
    for (size_t i = 0; i < a.size(); ++i) {
      const json& v = a[i];
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max())
        bad_field("input", "'" + where + "[" + std::to_string(i) + "]' must be a token id (a non-negative integer), "
                           "found " + v.dump());
      ids.push_back(int32_t(v.get<int64_t>()));
    }
    return ids;
  };
  if (in.is_string()) {
    r.texts.push_back(in.get<std::string>());
  } else if (in.is_array()) {
    if (in.empty()) bad_field("input", "'input' must not be an empty array");
    if (in[0].is_number()) {
      r.token_ids.push_back(ids_of(in, "input"));
    } else if (in[0].is_string()) {
      for (size_t i = 0; i < in.size(); ++i) {
        if (!in[i].is_string())
          bad_field("input", "'input[" + std::to_string(i) + "]' must be a string like the first, found " +
                                 in[i].type_name());
        r.texts.push_back(in[i].get<std::string>());
      }
    } else if (in[0].is_array()) {
      for (size_t i = 0; i < in.size(); ++i) {
        const std::string at = "input[" + std::to_string(i) + "]";
        if (!in[i].is_array()) bad_field("input", "'" + at + "' must be an array of token ids like the first");
        r.token_ids.push_back(ids_of(in[i], at));
      }
    } else {
      bad_field("input", std::string("'input[0]' must be a string, a token id or an array of token ids, found ") +
                             in[0].type_name());
    }
  } else {
    bad_field("input", std::string("'input' must be a string or an array, found ") + in.type_name());
  }
  for (size_t i = 0; i < r.texts.size(); ++i)
    if (r.texts[i].empty())
      bad_field("input", r.texts.size() == 1 ? "'input' must not be an empty string"
                                             : "'input[" + std::to_string(i) + "]' must not be an empty string");
  return r;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (const size_t rest = bytes.size() - i; rest > 0) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | (rest == 2 ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0u);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

json embedding_response(const std::string& model, const Tensor& embeddings, bool base64, int64_t prompt_tokens) {
  const int64_t n = embeddings.dim(0), dim = embeddings.dim(1);
  json data = json::array();
  for (int64_t i = 0; i < n; ++i) {
    const float* row = embeddings.data<float>() + i * dim;
    json e = {{"object", "embedding"}, {"index", i}};
    if (base64)
      e["embedding"] = base64_encode(std::string_view(reinterpret_cast<const char*>(row), size_t(dim) * sizeof(float)));
    else
      e["embedding"] = std::vector<float>(row, row + dim);
    data.push_back(std::move(e));
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

}  // namespace wick::serve
