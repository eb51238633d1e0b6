#include "train/dataset.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include "core/json_util.h"
#include "wick/error.h"

namespace wick {

namespace {

using nlohmann::json;

constexpr std::string_view kTurnStart = "<|im_start|>", kAssistantHeader = "<|im_start|>assistant\n",
                           kTurnEnd = "<|im_end|>";

struct LineContext {
  const Tokenizer* tokenizer;
  const DatasetOptions& options;
  const std::string& where;  // "FILE: line N"
};

const Tokenizer& need_tokenizer(const LineContext& ctx, std::string_view what) {
  if (!ctx.tokenizer) {
    fail(ErrorKind::bad_input, std::string(what) + " needs a tokenizer (without one, only input_ids lines can be read)");
  }
  return *ctx.tokenizer;
}

std::string required_string(const json& obj, const char* key, const std::string& source) {
  std::optional<std::string> s = json_string(obj, key, source);
  if (!s) fail(ErrorKind::corrupt, source + ": field '" + key + "': expected a string, found null");
  return std::move(*s);
}

// TRL's add_eos: the EOS token after `text` unless the text already ends with it.
void append_eos(std::string_view text, const Tokenizer& tokenizer, const DatasetOptions& options,
                std::vector<int32_t>& ids) {
  const std::optional<int32_t> eos = tokenizer.eos_token_id();
  if (!options.append_eos || !eos || text.ends_with(tokenizer.token_bytes(*eos))) return;
  ids.push_back(*eos);
}

Example from_text(const json& obj, const LineContext& ctx) {
  const std::string text = required_string(obj, "text", ctx.where);
  const Tokenizer& tok = need_tokenizer(ctx, "a 'text' example");
  Example e;
  e.ids = tok.encode(text);
  append_eos(text, tok, ctx.options, e.ids);
  e.labels = e.ids;
  return e;
}

// ids = tokenize(prompt) + tokenize(completion) + EOS; loss on the completion and EOS. TRL tokenizes
// prompt + completion as one string and masks the first len(tokenize(prompt)) tokens; the two agree unless
// BPE merges across the boundary (TRL then warns), where this keeps the tokens the model sees at inference.
Example from_prompt_completion(const json& obj, const LineContext& ctx) {
  const std::string prompt = required_string(obj, "prompt", ctx.where);
  const std::string completion = required_string(obj, "completion", ctx.where);
  const Tokenizer& tok = need_tokenizer(ctx, "a 'prompt'/'completion' example");
  Example e;
  tok.encode(prompt, e.ids);
  e.labels.assign(e.ids.size(), kIgnoreLabel);
  tok.encode(completion, e.ids);
  append_eos(completion, tok, ctx.options, e.ids);
  e.labels.insert(e.labels.end(), e.ids.begin() + std::ptrdiff_t(e.labels.size()), e.ids.end());
  return e;
}

std::vector<ChatMessage> parse_messages(const json& obj, const std::string& where) {
  const json& list = obj.at("messages");
  if (!list.is_array() || list.empty()) {
    fail(ErrorKind::corrupt, where + ": field 'messages': expected a non-empty array, found " + list.dump());
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string source = where + ": messages[" + std::to_string(i) + "]";
    if (!list[i].is_object()) fail(ErrorKind::corrupt, source + ": expected an object, found " + list[i].dump());
    ChatMessage m{.role = required_string(list[i], "role", source), .content = required_string(list[i], "content", source)};
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      fail(ErrorKind::bad_input, source + ": unknown role '" + m.role + "' (expected system, user, assistant or tool)");
    }
    messages.push_back(std::move(m));
  }
  return messages;
}

Example from_messages(const json& obj, const LineContext& ctx) {
  const std::vector<ChatMessage> messages = parse_messages(obj, ctx.where);
  ChatTokens chat = tokenize_chat(need_tokenizer(ctx, "a 'messages' example"), messages);
  return {.ids = std::move(chat.ids), .labels = std::move(chat.labels)};
}

std::vector<int32_t> id_array(const json& obj, const char* key, int32_t vocab, bool allow_ignore,
                              const std::string& where) {
  const json& list = obj.at(key);
  if (!list.is_array()) fail(ErrorKind::corrupt, where + ": field '" + key + "': expected an array of integers");
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!list[i].is_number_integer()) {
      fail(ErrorKind::corrupt, where + ": " + at + ": expected an integer, found " + list[i].dump());
    }
    const int64_t id = list[i].get<int64_t>();
    if ((id < 0 || id >= vocab) && !(allow_ignore && id == kIgnoreLabel)) {
      fail(ErrorKind::bad_input, where + ": " + at + " = " + std::to_string(id) + " is outside [0, " +
                                     std::to_string(vocab) + ")" + (allow_ignore ? " and is not -100" : ""));
    }
    ids.push_back(int32_t(id));
  }
  return ids;
}

Example from_input_ids(const json& obj, const LineContext& ctx) {
  if (!ctx.options.vocab_size && !ctx.tokenizer) {
    fail(ErrorKind::bad_input, "pre-tokenised examples need a vocab size (no tokenizer and no vocab_size given)");
  }
  const int32_t vocab = ctx.options.vocab_size ? *ctx.options.vocab_size : ctx.tokenizer->vocab_size();
  Example e;
  e.ids = id_array(obj, "input_ids", vocab, false, ctx.where);
  if (!obj.contains("labels") || obj["labels"].is_null()) {
    e.labels = e.ids;
    return e;
  }
  e.labels = id_array(obj, "labels", vocab, true, ctx.where);
  if (e.labels.size() != e.ids.size()) {
    fail(ErrorKind::corrupt, ctx.where + ": 'labels' has " + std::to_string(e.labels.size()) + " entries, 'input_ids' " +
                                 std::to_string(e.ids.size()));
  }
  return e;
}

// The one format whose keys the object holds; other keys are ignored, as TRL ignores extra columns.
Example from_object(const json& obj, const LineContext& ctx) {
  using Reader = Example (*)(const json&, const LineContext&);
  std::vector<std::pair<std::string, Reader>> formats;
  if (obj.contains("text")) formats.emplace_back("text", from_text);
  if (obj.contains("prompt") || obj.contains("completion")) {
    if (!obj.contains("prompt") || !obj.contains("completion")) {
      fail(ErrorKind::corrupt, std::string("'") + (obj.contains("prompt") ? "prompt" : "completion") + "' without '" +
                                   (obj.contains("prompt") ? "completion" : "prompt") + "'");
    }
    formats.emplace_back("prompt/completion", from_prompt_completion);
  }
  if (obj.contains("messages")) formats.emplace_back("messages", from_messages);
  if (obj.contains("input_ids")) formats.emplace_back("input_ids", from_input_ids);
  if (formats.size() == 1) return formats[0].second(obj, ctx);
  std::string found;
  if (formats.empty()) {
    for (const auto& item : obj.items()) found += " '" + item.key() + "'";
    fail(ErrorKind::corrupt, "expected {\"text\"}, {\"prompt\", \"completion\"}, {\"messages\"} or "
                             "{\"input_ids\", \"labels\"?}; found keys:" + (found.empty() ? " none" : found));
  }
  for (const auto& format : formats) found += " '" + format.first + "'";
  fail(ErrorKind::corrupt, "keys of more than one format:" + found);
}

Example read_line(std::string_view line, const LineContext& ctx) {
  json obj;
  try {
    obj = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    fail(ErrorKind::corrupt, std::string("not valid JSON (") + e.what() + ")");
  } catch (const json::out_of_range& e) {  // a number past a double's range: "1e400"
    fail(ErrorKind::corrupt, std::string("a number does not fit a double (") + e.what() + ")");
  }
  if (!obj.is_object()) fail(ErrorKind::corrupt, "expected a JSON object, found " + obj.dump());
  Example e = from_object(obj, ctx);
  // Ids the tokenizer made must fit the model too (a tokenizer.json larger than the model's embedding).
  if (const std::optional<int32_t> vocab = ctx.options.vocab_size) {
    for (const int32_t id : e.ids) {
      if (id >= *vocab)
        fail(ErrorKind::bad_input, "the tokenizer gave token id " + std::to_string(id) +
                                       ", outside the model's vocabulary [0, " + std::to_string(*vocab) +
                                       "): the tokenizer does not belong to this model");
    }
  }
  if (const std::optional<int64_t> classes = ctx.options.num_labels) {
    const auto label = obj.find("label");
    if (label == obj.end() || !label->is_number_integer())
      fail(ErrorKind::bad_input, "a sequence classifier's example needs \"label\", an integer in [0, " +
                                     std::to_string(*classes) + ")");
    const int64_t k = label->get<int64_t>();
    if (k < 0 || k >= *classes)
      fail(ErrorKind::bad_input, "\"label\" " + std::to_string(k) + " is outside [0, " + std::to_string(*classes) +
                                     ") (num_labels)");
    e.class_label = int32_t(k);
  }
  return e;
}

// Truncation keeps the first seq_len tokens (TRL's keep_start); then some position the shifted loss reads
// (1..len-1) must carry a label.
void truncate(Example& e, int64_t seq_len, const std::string& file) {
  if (int64_t(e.ids.size()) > seq_len) {
    e.ids.resize(size_t(seq_len));
    e.labels.resize(size_t(seq_len));
  }
  if (e.class_label >= 0) return;  // a classifier's target is its class
  if (e.labels.size() < 2 || std::all_of(e.labels.begin() + 1, e.labels.end(), [](int32_t l) { return l == kIgnoreLabel; })) {
    fail(ErrorKind::bad_input, file + ": line " + std::to_string(e.line) + ": no target tokens (" +
                                   std::to_string(e.ids.size()) + " tokens after truncation to seq_len " +
                                   std::to_string(seq_len) + "; the loss reads labels[1:] and all are -100)");
  }
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// Byte ranges [begin, end) of each assistant turn's text and end marker in a rendered ChatML conversation.
std::vector<std::pair<size_t, size_t>> assistant_spans(const std::string& text) {
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t at = text.find(kAssistantHeader); at != std::string::npos; at = text.find(kAssistantHeader, at)) {
    const size_t begin = at + kAssistantHeader.size();
    const size_t close = text.find(kTurnEnd, begin);
    if (close == std::string::npos) fail(ErrorKind::internal, "chat template: an assistant turn without <|im_end|>");
    spans.emplace_back(begin, close + kTurnEnd.size());
    at = spans.back().second;
  }
  return spans;
}

}  // namespace

ChatTokens tokenize_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages) {
  size_t assistant_turns = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& c = messages[i].content;
    if (c.find(kTurnStart) != std::string::npos || c.find(kTurnEnd) != std::string::npos) {
      fail(ErrorKind::bad_input, "messages[" + std::to_string(i) + "]: content holds '<|im_start|>' or '<|im_end|>', "
                                 "which would move the turn boundaries");
    }
    assistant_turns += messages[i].role == "assistant";
  }
  const std::string text = tokenizer.apply_chat_template(messages, false);
  const std::vector<std::pair<size_t, size_t>> spans = assistant_spans(text);
  if (spans.size() != assistant_turns) {
    fail(ErrorKind::internal, "chat template: " + std::to_string(spans.size()) + " assistant turns rendered for " +
                                  std::to_string(assistant_turns) + " assistant messages");
  }

  // Tokenize once and map byte spans to tokens through the tokens' bytes (byte-level BPE: they join to the
  // text). When the normalizer changed the text (NFC), the bytes no longer line up: tokenize the pieces
  // between span boundaries instead. The boundaries sit after "\n" and after <|im_end|>, where the
  // pre-tokenizer splits anyway, so both give the same ids for text the normalizer leaves alone.
  ChatTokens out;
  out.ids = tokenizer.encode(text);
  std::vector<size_t> ends(out.ids.size());
  size_t pos = 0;
  bool aligned = true;
  for (size_t k = 0; k < out.ids.size() && aligned; ++k) {
    const std::string_view bytes = tokenizer.token_bytes(out.ids[k]);
    aligned = text.compare(pos, bytes.size(), bytes) == 0;
    ends[k] = pos += bytes.size();
  }
  if (aligned && pos == text.size()) {
    out.labels.assign(out.ids.size(), kIgnoreLabel);
    size_t s = 0, begin = 0;
    for (size_t k = 0; k < out.ids.size(); begin = ends[k++]) {
      while (s < spans.size() && spans[s].second <= begin) ++s;
      if (s < spans.size() && spans[s].first < ends[k]) out.labels[k] = out.ids[k];  // token overlaps the span
    }
    return out;
  }
  out.ids.clear();
  size_t prev = 0;
  for (const auto& [begin, end] : spans) {
    tokenizer.encode(std::string_view(text).substr(prev, begin - prev), out.ids);
    out.labels.resize(out.ids.size(), kIgnoreLabel);
    const size_t first = out.ids.size();
    tokenizer.encode(std::string_view(text).substr(begin, end - begin), out.ids);
    out.labels.insert(out.labels.end(), out.ids.begin() + std::ptrdiff_t(first), out.ids.end());
    prev = end;
  }
  tokenizer.encode(std::string_view(text).substr(prev), out.ids);
  out.labels.resize(out.ids.size(), kIgnoreLabel);
  return out;
}

std::vector<Example> load_jsonl(const std::filesystem::path& path, const Tokenizer* tokenizer,
                                const DatasetOptions& options) {
  const std::string file = path.string();
  if (options.seq_len <= 0) {
    fail(ErrorKind::bad_input, file + ": seq_len must be positive, got " + std::to_string(options.seq_len));
  }
  const std::string data = read_text_file(path);
  std::vector<Example> examples;
  int64_t line_no = 0;
  for (size_t at = 0; at < data.size();) {
    const size_t eol = std::min(data.find('\n', at), data.size());
    const std::string_view line(data.data() + at, eol - at);
    at = eol + 1;
    ++line_no;
    if (is_blank(line)) continue;
    const std::string where = file + ": line " + std::to_string(line_no);
    Example e;
    try {
      e = read_line(line, {.tokenizer = tokenizer, .options = options, .where = where});
    } catch (const Error& err) {
      // Errors from the tokenizer and the format checks above name no line; add it once.
      if (std::string_view(err.what()).starts_with(where)) throw;
      fail(err.kind(), where + ": " + err.what());
    }
    e.line = line_no;
    truncate(e, options.seq_len, file);
    examples.push_back(std::move(e));
  }
  if (examples.empty()) fail(ErrorKind::bad_input, file + ": no examples (the file is empty or holds only blank lines)");
  return examples;
}

// --- batches ---------------------------------------------------------------------------------------------

namespace {

// A uniform draw from [0, bound): rejection keeps only values below the largest multiple of bound, so the
// remainder is unbiased. Depends only on the generator's output, which the standard fixes for mt19937_64.
uint64_t bounded(std::mt19937_64& rng, uint64_t bound) {
  constexpr uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % bound;
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % bound;
}

}  // namespace

Batcher::Batcher(int64_t num_examples, const Options& options, BatchPosition start)
    : num_examples_(num_examples), options_(options) {
  if (num_examples <= 0) fail(ErrorKind::bad_input, "batches: no examples");
  if (options.batch_size <= 0) {
    fail(ErrorKind::bad_input, "batches: batch size must be positive, got " + std::to_string(options.batch_size));
  }
  set_position(start);
}

void Batcher::set_position(BatchPosition position) {
  if (position.epoch < 0 || position.index < 0 || position.index >= num_examples_) {
    fail(ErrorKind::bad_input, "batches: position (epoch " + std::to_string(position.epoch) + ", index " +
                                   std::to_string(position.index) + ") is outside an epoch of " +
                                   std::to_string(num_examples_) + " examples");
  }
  position_ = position;
}

std::vector<int64_t> Batcher::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(num_examples_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!options_.shuffle) return order;
  std::mt19937_64 rng(options_.seed + uint64_t(epoch));
  for (size_t i = order.size(); i-- > 1;) std::swap(order[i], order[bounded(rng, i + 1)]);
  return order;
}

std::vector<int64_t> Batcher::next() {
  if (order_epoch_ != position_.epoch) {
    order_ = epoch_order(position_.epoch);
    order_epoch_ = position_.epoch;
  }
  const int64_t end = std::min(position_.index + options_.batch_size, num_examples_);
  std::vector<int64_t> batch(order_.begin() + position_.index, order_.begin() + end);
  position_ = end == num_examples_ ? BatchPosition{position_.epoch + 1, 0} : BatchPosition{position_.epoch, end};
  return batch;
}

}  // namespace wick
