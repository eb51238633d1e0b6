// Loading tokenizer.json / tokenizer_config.json and the encode pipeline:
// added tokens (raw) -> normalizer -> added tokens (normalized) -> pre-tokenizer -> BPE.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_util.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick {

namespace {

using nlohmann::json;


// A lone ByteLevel decoder (or a Sequence of just it) has wick's byte-table fast path; anything else is a chain.
void parse_decoder(const json& j, const std::string& where, Tokenizer::Impl& im) {
  if (j.is_null()) return;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": decoder without a \"type\"");
  }
  const std::string type = j["type"];
  if (type == "ByteLevel") {
    im.decoder = Tokenizer::Impl::Decoder::byte_level;
    return;
  }
  if (type == "Sequence" && j.contains("decoders") && j["decoders"].is_array() && j["decoders"].size() == 1) {
    parse_decoder(j["decoders"][0], where, im);
    return;
  }
  im.decoder_chain = tok::DecoderChain::from_json(j, where);
  im.decoder = Tokenizer::Impl::Decoder::chain;
}

// "eos_token": "<|im_end|>" or {"content": "<|im_end|>", ...}.
std::optional<int32_t> config_token(const json& config, const char* key, const Tokenizer::Impl& im) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config[key];
  std::string content;
  if (v.is_string()) content = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string()) content = v["content"].get<std::string>();
  else return std::nullopt;
  return im.id_of(content);
}

std::string config_chat_template(const json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null()) return {};
  const json& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    for (const auto& e : t) {
      if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template") && e["template"].is_string()) {
        return e["template"].get<std::string>();
      }
    }
  }
  fail(ErrorKind::corrupt, where + ": \"chat_template\" must be a string or a list with a \"default\" entry");
}

std::shared_ptr<const Tokenizer::Impl> build(tok::TokenizerJson parsed, std::string_view config_json,
                                             std::string chat_template_source, const std::string& origin) {
  auto im = std::make_shared<Tokenizer::Impl>();
  im->origin = origin;
  const json& j = parsed.tree;
  if (!j.is_object()) fail(ErrorKind::corrupt, origin + ": top level must be an object");
  if (!j.contains("model") || j["model"].is_null()) fail(ErrorKind::corrupt, origin + ": missing \"model\"");
  // "truncation" and "padding" are what the file's last user left set (sentence-transformers folders ship them);
  // transformers overrides both on every call, and so does wick: EncodeOptions::max_length, no padding.
  for (const char* key : {"truncation", "padding"}) {
    if (j.contains(key) && !j[key].is_null() && !j[key].is_object()) {
      fail(ErrorKind::corrupt, origin + ": \"" + key + "\" must be an object or null");
    }
  }

  im->normalizer = tok::Normalizer::from_json(j.value("normalizer", json()), origin);
  im->pre_tokenizer = tok::PreTokenizer::from_json(j.value("pre_tokenizer", json()), origin);
  {
    const tok::VocabAndMerges lists = std::move(parsed.lists);  // freed once the model holds its tables
    im->model = tok::Model::from_json(j["model"], lists, im->pre_tokenizer.byte_level(), origin);
  }
  im->added = tok::AddedVocabulary::from_json(j.value("added_tokens", json()), im->normalizer, origin);
  parse_decoder(j.value("decoder", json()), origin, *im);
  im->post_processor = tok::PostProcessor::from_json(j.value("post_processor", json()), origin);

  // Per-id tables: the model's vocab, then the added tokens (which win for decoding, as in HF).
  const auto& vocab = im->model->vocab();
  size_t size = vocab.size();
  for (const auto& a : im->added.tokens()) size = std::max(size, size_t(a.id) + 1);
  im->text.resize(size);
  im->flags.assign(size, 0);
  for (size_t id = 0; id < vocab.size(); ++id) {
    if (!vocab[id]) continue;
    im->text[id] = *vocab[id];
    im->flags[id] = Tokenizer::Impl::known;
  }
  for (const auto& a : im->added.tokens()) {
    const auto id = size_t(a.id);
    if (id < vocab.size() && vocab[id] && *vocab[id] != a.content) {
      fail(ErrorKind::corrupt, origin + ": added token '" + a.content + "' has id " + std::to_string(id) +
                                   ", which the model vocab gives to '" + *vocab[id] + "'");
    }
    const int32_t in_vocab = im->model->vocab_id(a.content);
    if (in_vocab >= 0 && in_vocab != a.id) {
      fail(ErrorKind::corrupt, origin + ": added token '" + a.content + "' has id " + std::to_string(id) +
                                   " but the vocab has it as " + std::to_string(in_vocab));
    }
    const auto [it, inserted] = im->added_ids.emplace(a.content, a.id);
    if (!inserted && it->second != a.id) {
      fail(ErrorKind::corrupt, origin + ": added token '" + a.content + "' has id " + std::to_string(id) +
                                   " but is also added as " + std::to_string(it->second));
    }
    im->text[id] = a.content;
    im->flags[id] = uint8_t(Tokenizer::Impl::known | Tokenizer::Impl::is_added | (a.special ? Tokenizer::Impl::special : 0));
  }
  im->bytes.resize(size);
  for (size_t id = 0; id < size; ++id) {
    if (!(im->flags[id] & Tokenizer::Impl::known)) continue;
    // ByteLevel decoder: a token made only of alphabet characters stands for raw bytes; any other
    // (e.g. an added token with a space) stands for its own UTF-8.
    if (im->decoder == Tokenizer::Impl::Decoder::chain) {
      im->bytes[id] = im->decoder_chain.decode_one(im->text[id], false);
    } else if (im->decoder != Tokenizer::Impl::Decoder::byte_level || !tok::byte_level_decode(im->text[id], im->bytes[id])) {
      im->bytes[id] = im->text[id];
    }
  }

  const std::string config_origin = "tokenizer_config.json";
  const json config = config_json.empty() ? json::object() : parse_json(config_json, config_origin);
  im->eos = config_token(config, "eos_token", *im);
  im->bos = config_token(config, "bos_token", *im);
  im->pad = config_token(config, "pad_token", *im);
  if (chat_template_source.empty()) chat_template_source = config_chat_template(config, config_origin);
  im->chat = tok::ChatTemplate::parse(chat_template_source);
  return im;
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               std::string_view origin) {
  const std::string where(origin);
  return Tokenizer(build(tok::read_tokenizer_json(tokenizer_json, where), tokenizer_config_json, {}, where));
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = path / "tokenizer.json";
  if (!fs::exists(file, ec)) fail(ErrorKind::not_found, file.string() + ": no such file");
  const fs::path dir = file.parent_path();
  // The file's text (11 MB for Qwen's) is freed before the tables are built.
  tok::TokenizerJson parsed = tok::read_tokenizer_json(read_text_file(file), file.string());
  const fs::path config_path = dir / "tokenizer_config.json";
  const std::string config = fs::exists(config_path, ec) ? read_text_file(config_path) : std::string();
  // transformers >= 4.43 saves the template beside the config; it takes precedence.
  const fs::path jinja_path = dir / "chat_template.jinja";
  std::string jinja = fs::exists(jinja_path, ec) ? read_text_file(jinja_path) : std::string();
  return Tokenizer(build(std::move(parsed), config, std::move(jinja), file.string()));
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const Impl& im = *impl_;
  if (const size_t bad = tok::find_invalid_utf8(text); bad != std::string_view::npos) {
    fail(ErrorKind::bad_input, "tokenizer: text is not valid UTF-8 at byte " + std::to_string(bad));
  }
  std::vector<tok::Segment> raw, norm;
  std::string normalized, buffer;
  tok::Ranges words;

  auto encode_piece = [&](std::string_view piece, bool at_text_start) {
    buffer.assign(piece);
    im.pre_tokenizer.split(buffer, words, at_text_start);
    for (const auto& [b, e] : words) im.model->encode_word(std::string_view(buffer).substr(b, e - b), out);
  };

  if (im.added.has_raw()) im.added.split_raw(text, raw);
  else if (!text.empty()) raw.push_back({0, text.size(), -1});
  for (const tok::Segment& s : raw) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    std::string_view piece = text.substr(s.begin, s.end - s.begin);
    if (im.normalizer.normalize(piece, normalized)) piece = normalized;
    if (!im.added.has_normalized()) {
      encode_piece(piece, s.begin == 0);
      continue;
    }
    norm.clear();
    im.added.split_normalized(piece, norm);
    for (const tok::Segment& n : norm) {
      if (n.id >= 0) out.push_back(n.id);
      else encode_piece(piece.substr(n.begin, n.end - n.begin), s.begin == 0 && n.begin == 0);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode(text, ids);
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  if (options.max_length && *options.max_length < 0) {
    fail(ErrorKind::bad_input, "tokenizer: max_length must not be negative (got " + std::to_string(*options.max_length) + ")");
  }
  const tok::PostProcessor& post = impl_->post_processor;
  const bool specials = options.add_special_tokens;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4 + post.added());
  if (specials) ids.assign(post.prefix().begin(), post.prefix().end());
  const size_t content_begin = ids.size();
  encode(text, ids);
  if (options.max_length) {
    // HF: the text's ids are cut to max_length minus the specials added (to none when they alone exceed it).
    const size_t added = specials ? post.added() : 0;
    const size_t limit = size_t(*options.max_length) > added ? size_t(*options.max_length) - added : 0;
    if (ids.size() - content_begin > limit) ids.resize(content_begin + limit);
  }
  if (specials) ids.insert(ids.end(), post.suffix().begin(), post.suffix().end());
  return ids;
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->flags.size()); }

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  return impl_->id_of(token);
}

std::string Tokenizer::token_text(int32_t id) const {
  if (!impl_->has(id)) {
    fail(ErrorKind::bad_input, "tokenizer: no token with id " + std::to_string(id) + " (vocab size " +
                                   std::to_string(vocab_size()) + ")");
  }
  return impl_->text[size_t(id)];
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  return impl_->has(id) ? std::string_view(impl_->bytes[size_t(id)]) : std::string_view();
}

bool Tokenizer::is_special(int32_t id) const { return impl_->has(id) && (impl_->flags[size_t(id)] & Impl::special); }
bool Tokenizer::is_added(int32_t id) const { return impl_->has(id) && (impl_->flags[size_t(id)] & Impl::is_added); }
std::optional<int32_t> Tokenizer::eos_token_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::bos_token_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::pad_token_id() const { return impl_->pad; }

bool Tokenizer::has_chat_template() const { return impl_->chat.kind() != tok::ChatTemplate::Kind::none; }

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return impl_->chat.render(messages, {.add_generation_prompt = add_generation_prompt});
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                           const ChatTemplateOptions& options) const {
  return impl_->chat.render(messages, options);
}

}  // namespace wick
