// An encoder's config.json (BertModel, XLMRobertaModel / RobertaModel, MPNetModel), as transformers reads it.
#include <filesystem>

#include "core/json_util.h"
#include "model/encoder.h"
#include "wick/error.h"

namespace wick {

namespace {

using nlohmann::json;

int64_t positive(const json& obj, const char* key, const std::string& source, std::optional<int64_t> fallback = {}) {
  const auto v = json_int(obj, key, source);
  if (!v && !fallback) fail(ErrorKind::corrupt, source + ": missing field '" + key + "'");
  const int64_t value = v ? *v : *fallback;
  if (value <= 0)
    fail(ErrorKind::corrupt, source + ": field '" + key + "' must be positive, found " + std::to_string(value));
  return value;
}

// model_type from the field, else from the first architecture's name (old configs lack model_type).
std::string model_type_of(const json& obj, const std::string& source) {
  if (auto mt = json_string(obj, "model_type", source)) return *mt;
  if (auto it = obj.find("architectures"); it != obj.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    const std::string arch = (*it)[0].get<std::string>();
    for (const auto& [prefix, type] : {std::pair{"XLMRoberta", "xlm-roberta"}, std::pair{"Roberta", "roberta"},
                                       std::pair{"MPNet", "mpnet"}, std::pair{"Bert", "bert"}})
      if (arch.starts_with(prefix)) return type;
    fail(ErrorKind::unsupported, source + ": architecture '" + arch +
                                     "' in field 'architectures' and no model_type "
                                     "(wick's encoders: BertModel, XLMRobertaModel, RobertaModel, MPNetModel)");
  }
  fail(ErrorKind::corrupt, source + ": missing field 'model_type'");
}

}  // namespace

bool is_encoder_model_type(const std::string& t) {
  return t == "bert" || t == "xlm-roberta" || t == "roberta" || t == "mpnet";
}

EncoderConfig EncoderConfig::parse(const std::string& json_text, const std::string& source) {
  const json obj = parse_json(json_text, source);
  if (!obj.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object");
  EncoderConfig c;
  c.model_type = model_type_of(obj, source);
  if (c.model_type == "bert")
    c.kind = EncoderKind::bert;
  else if (c.model_type == "xlm-roberta" || c.model_type == "roberta")
    c.kind = EncoderKind::roberta;
  else if (c.model_type == "mpnet")
    c.kind = EncoderKind::mpnet;
  else
    fail(ErrorKind::unsupported,
         source + ": field 'model_type' is '" + c.model_type +
             "' (wick's encoders: bert, xlm-roberta, roberta, mpnet; qwen2 embeds as a decoder)");
  if (json_bool(obj, "is_decoder", source).value_or(false))
    fail(ErrorKind::unsupported,
         source + ": field 'is_decoder' is true (a causal " + c.model_type + " is not an encoder)");
  if (auto pe = json_string(obj, "position_embedding_type", source); pe && *pe != "absolute")
    fail(ErrorKind::unsupported,
         source + ": field 'position_embedding_type' is '" + *pe + "' (only absolute is implemented)");
  const std::string act = json_string(obj, "hidden_act", source).value_or("gelu");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh")
    c.gelu_tanh = true;
  else if (act != "gelu")
    fail(ErrorKind::unsupported,
         source + ": field 'hidden_act' is '" + act + "' (expected gelu, gelu_new or gelu_pytorch_tanh)");

  const bool mpnet = c.kind == EncoderKind::mpnet;
  c.vocab_size = positive(obj, "vocab_size", source);
  c.hidden_size = positive(obj, "hidden_size", source);
  c.intermediate_size = positive(obj, "intermediate_size", source);
  c.num_layers = positive(obj, "num_hidden_layers", source);
  c.num_heads = positive(obj, "num_attention_heads", source);
  if (c.hidden_size % c.num_heads != 0)
    fail(ErrorKind::corrupt, source + ": hidden_size " + std::to_string(c.hidden_size) +
                                 " is not divisible by num_attention_heads " + std::to_string(c.num_heads));
  c.head_dim = c.hidden_size / c.num_heads;
  c.max_position_embeddings = positive(obj, "max_position_embeddings", source, mpnet ? 514 : 512);
  if (!mpnet) {
    const auto types = json_int(obj, "type_vocab_size", source);
    c.type_vocab_size = types.value_or(2);
    if (c.type_vocab_size < 0) fail(ErrorKind::corrupt, source + ": field 'type_vocab_size' is negative");
  }
  c.layer_norm_eps = json_number(obj, "layer_norm_eps", source).value_or(1e-12);
  if (!(c.layer_norm_eps > 0.0) || !(c.layer_norm_eps < 1.0))
    fail(ErrorKind::corrupt,
         source + ": field 'layer_norm_eps' must be in (0, 1), found " + std::to_string(c.layer_norm_eps));
  const int64_t pad = json_int(obj, "pad_token_id", source).value_or(c.kind == EncoderKind::bert ? 0 : 1);
  if (pad < 0 || pad >= c.vocab_size)
    fail(ErrorKind::corrupt, source + ": field 'pad_token_id' " + std::to_string(pad) +
                                 " is outside the vocabulary of " + std::to_string(c.vocab_size));
  // transformers' MPNetEmbeddings counts positions past padding index 1 whatever pad_token_id says (MPNet's own
  // vocabularies have <pad> at 1; a folder with another pad_token_id still gets positions from 2).
  c.pad_token_id = mpnet ? 1 : int32_t(pad);
  if (c.pad_token_id >= c.vocab_size)
    fail(ErrorKind::corrupt, source + ": field 'vocab_size' " + std::to_string(c.vocab_size) +
                                 " leaves out MPNet's padding index 1");
  if (c.max_sequence_length() < 1)
    fail(ErrorKind::corrupt, source + ": max_position_embeddings " + std::to_string(c.max_position_embeddings) +
                                 " leaves no position after pad_token_id + 1 = " + std::to_string(c.position_offset()));
  if (mpnet) {
    // transformers' MPNetEncoder buckets relative positions by 32 (compute_position_bias's default) whatever this
    // field says, and indexes a table of this many rows: only 32 is both.
    c.relative_attention_num_buckets = positive(obj, "relative_attention_num_buckets", source, 32);
    if (c.relative_attention_num_buckets != 32)
      fail(ErrorKind::unsupported, source + ": field 'relative_attention_num_buckets' is " +
                                       std::to_string(c.relative_attention_num_buckets) +
                                       " (transformers' MPNet buckets relative positions by 32)");
  }
  // Sizes the loader multiplies: far below overflow for any real checkpoint, checked so a hostile file cannot wrap.
  if (c.vocab_size > (int64_t(1) << 32) || c.hidden_size > (int64_t(1) << 20) ||
      c.intermediate_size > (int64_t(1) << 22) || c.num_layers > 4096 ||
      c.max_position_embeddings > (int64_t(1) << 24) || c.type_vocab_size > (int64_t(1) << 16) ||
      c.relative_attention_num_buckets > (int64_t(1) << 16))
    fail(ErrorKind::corrupt, source +
                                 ": sizes beyond any encoder (vocab_size, hidden_size, intermediate_size, "
                                 "num_hidden_layers, max_position_embeddings)");
  return c;
}

EncoderConfig EncoderConfig::load(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail(ErrorKind::not_found, dir.string() + ": no such model directory");
  const auto path = dir / "config.json";
  return parse(read_text_file(path), path.string());
}

}  // namespace wick
