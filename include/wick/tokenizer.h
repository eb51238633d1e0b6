// wick tokenizer: Hugging Face tokenizer.json in native C++: byte-level BPE (as Qwen2/Qwen2.5/Qwen3 ship it),
// WordPiece (BERT, MPNet) and Unigram (sentencepiece: XLM-R, E5, T5).
//
// encode() returns exactly the ids of HF tokenizers' `Tokenizer.encode(text, add_special_tokens=False)`
// (which is also what transformers returns with add_special_tokens=False): added and special tokens
// written in the text are recognised first, the rest is normalized (NFC/NFKC/..., BertNormalizer, Precompiled,
// Replace, ...), pre-tokenized (Split regex, ByteLevel, BertPreTokenizer, Metaspace, ...) and run through the
// model. encode(text, {.add_special_tokens = true}) adds the post-processor's specials ([CLS] ... [SEP]) and
// truncates as transformers does. decode() matches HF `decode`, including U+FFFD for byte sequences that
// are not UTF-8. Anything in tokenizer.json that wick does not implement is a load-time error of kind
// `unsupported` naming the component, never a silent difference.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wick {

/// One message of a conversation, as transformers' apply_chat_template takes it.
struct ChatMessage {
  std::string role;     ///< "system", "user", "assistant" or "tool"
  std::string content;
  /// Qwen3 templates only: the assistant's reasoning, rendered inside <think>...</think>.
  /// Unset means "not given" (the template then looks for <think> in `content`).
  std::optional<std::string> reasoning_content = std::nullopt;
};

/// Options of apply_chat_template (designated initializers: `{.add_generation_prompt = true}`).
struct ChatTemplateOptions {
  bool add_generation_prompt = false;   ///< end with the header of an assistant turn
  /// Qwen3 templates: false appends an empty <think></think> block after the generation prompt,
  /// as `enable_thinking=False` does in transformers. Unset = the template's default (thinking on).
  std::optional<bool> enable_thinking = std::nullopt;
};

/// Options of Tokenizer::encode (designated initializers: `{.add_special_tokens = true, .max_length = 512}`).
struct EncodeOptions {
  /// Add the post-processor's special tokens (TemplateProcessing, BertProcessing, RobertaProcessing), as
  /// transformers' `tokenizer(text)` does by default. False: the ids of encode(text).
  bool add_special_tokens = false;
  /// transformers' `truncation=True, max_length=L`: at most L ids in all, specials included; the text's own ids
  /// are cut on the right to L minus the specials added (to none when L is smaller). Unset: no truncation.
  std::optional<int64_t> max_length = std::nullopt;
};

/// A loaded tokenizer. Immutable after load: copies are cheap (they share one state) and every
/// const method may be called from many threads at once (the word cache inside is sharded and locked).
class Tokenizer {
 public:
  /// Loads `DIR/tokenizer.json` (plus `tokenizer_config.json` and `chat_template.jinja` beside it when
  /// present), or the tokenizer.json file given directly (its config is looked for beside it).
  /// Throws Error: not_found (no tokenizer.json), corrupt (bad JSON, a merge naming an unknown token,
  /// a regex that does not compile, a WordPiece unk_token missing from the vocab, a Unigram unk_id outside
  /// it, a precompiled_charsmap that is not base64), unsupported (a component type wick lacks, e.g. a
  /// CTC decoder or a UnicodeScripts pre_tokenizer). "truncation" and "padding" in the file are ignored,
  /// as transformers overrides them on every call (see EncodeOptions).
  static Tokenizer load(const std::filesystem::path& model_dir_or_tokenizer_json);

  /// Builds a tokenizer from the text of tokenizer.json (and optionally tokenizer_config.json).
  /// `origin` names the source in error messages.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                             std::string_view origin = "tokenizer.json");

  /// Text → ids, as HF `encode(text, add_special_tokens=False)`: the post-processor (ByteLevel,
  /// TemplateProcessing, ...) adds nothing.
  /// `text` must be valid UTF-8 (NUL bytes are fine); otherwise throws Error{bad_input} naming the
  /// byte offset of the first invalid sequence. Cost: linear in the text; BPE is O(n log n) per word.
  std::vector<int32_t> encode(std::string_view text) const;
  /// Same, appending to `out` (reuse one vector across calls to avoid allocations).
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  /// Text → ids as transformers' `tokenizer(text, add_special_tokens=..., truncation=max_length is set,
  /// max_length=...)["input_ids"]` gives them. Throws as encode(text), and Error{bad_input} for a negative
  /// max_length.
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options) const;

  /// Ids → text, as HF `decode(ids, skip_special_tokens)`: the bytes of all tokens are joined and
  /// invalid UTF-8 becomes U+FFFD (one per maximal invalid subsequence). Ids that name no token are
  /// skipped, as HF does (a model's padded vocab has such ids).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  /// One more than the largest token id, added tokens included (151669 for Qwen3; the model's
  /// embedding is usually larger: 151936).
  int32_t vocab_size() const;
  /// Id of a token written as in tokenizer.json ("Ġworld", "<|im_end|>"), added tokens included.
  std::optional<int32_t> token_id(std::string_view token) const;
  /// The token's string as in tokenizer.json ("Ġworld"). Throws Error{bad_input} for an unknown id.
  std::string token_text(int32_t id) const;
  /// The raw bytes the token decodes to (" world"); may be a fragment of a UTF-8 character.
  /// Empty for an unknown id. Valid while this tokenizer (or a copy of it) lives.
  std::string_view token_bytes(int32_t id) const;
  /// True for added tokens flagged "special" (skipped by decode(ids, true)).
  bool is_special(int32_t id) const;
  /// True for any added token (special or not), e.g. <|im_start|> or <think>.
  bool is_added(int32_t id) const;

  /// Special tokens named by tokenizer_config.json ("eos_token", ...), when present and known.
  std::optional<int32_t> eos_token_id() const;
  std::optional<int32_t> bos_token_id() const;
  std::optional<int32_t> pad_token_id() const;

  /// True when a chat template was found (tokenizer_config.json "chat_template" or chat_template.jinja).
  bool has_chat_template() const;
  /// Renders a conversation with the model's chat template. Qwen's ChatML templates (Qwen2, Qwen2.5
  /// with its default system prompt, Qwen3 with <think> handling) are recognised and rendered natively;
  /// any other template is Error{unsupported}, as is a missing template (Error{not_found}).
  /// Tool definitions and tool calls are not supported.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) const;

  struct Impl;  // internal (src/tokenizer/tokenizer_impl.h)

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class IncrementalDecoder;
};

/// Streaming decode: feed ids one at a time, get text pieces. A piece never ends inside a UTF-8
/// character (bytes are held until the character completes), and the concatenation of all pieces
/// plus flush() equals Tokenizer::decode of all ids (for ByteLevel, WordPiece, Metaspace, Replace and
/// ByteFallback/Fuse/Strip-at-start decoders; where the text depends on the stream's end, a Strip of
/// trailing characters or a BPEDecoder suffix, or on a whole run of <0xXX> tokens that is not UTF-8, HF
/// differs). Not thread-safe (one per stream).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  /// Text completed by this id; often empty (mid-character) and sometimes several characters.
  std::string push(int32_t id);
  /// Whatever is still held, with an incomplete trailing character as U+FFFD; resets the stream.
  std::string flush();

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  bool first_ = true;         // for decoders that join tokens with a separator
  std::string pending_;       // bytes of an incomplete UTF-8 character, at most 3
};

}  // namespace wick
