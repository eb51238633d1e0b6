// write_random_embedder: a sentence-transformers folder around a random BertModel, for speed work (wick-bench,
// scripts/bench_embed_transformers.py) on a machine with no model hub.
#include <cmath>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/random_fill.h"
#include "wick/error.h"
#include "wick/random_model.h"
#include "wick/safetensors.h"

namespace wick {

namespace {

using ojson = nlohmann::ordered_json;

struct EncoderShape {
  int64_t hidden, layers, heads, ffn;
};

EncoderShape shape_of(const std::string& like) {
  if (like == "minilm-l6") return {384, 6, 12, 1536};
  if (like == "bert-base") return {768, 12, 12, 3072};
  if (like == "tiny-bert") return {32, 2, 4, 64};
  fail(ErrorKind::bad_input, "--like: expected minilm-l6, bert-base or tiny-bert for an encoder, found '" + like + "'");
}

constexpr int64_t kVocab = 30522, kPositions = 512, kTypes = 2;

// BERT's layout: [PAD] 0, [unused0..98] 1..99, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then pieces.
ojson tokenizer_json() {
  std::vector<std::string> vocab = {"[PAD]"};
  for (int i = 0; i < 99; ++i) vocab.push_back("[unused" + std::to_string(i) + "]");
  for (const char* s : {"[UNK]", "[CLS]", "[SEP]", "[MASK]"}) vocab.push_back(s);
  for (char c = 33; c < 127; ++c) vocab.push_back(std::string(1, c));
  for (char c = 33; c < 127; ++c) vocab.push_back("##" + std::string(1, c));
  for (int64_t n = 0; int64_t(vocab.size()) < kVocab; ++n) {  // two-letter and longer words, and continuations
    std::string w;
    for (int64_t v = n + 26; v > 0; v /= 26) w.insert(w.begin(), char('a' + v % 26));
    vocab.push_back(n % 2 ? "##" + w : w);
  }
  ojson ids = ojson::object();
  for (size_t i = 0; i < vocab.size(); ++i) ids[vocab[i]] = i;
  ojson added = ojson::array();
  for (size_t id : {0u, 100u, 101u, 102u, 103u})
    added.push_back({{"id", id}, {"content", vocab[id]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  const auto special = [](const char* name, int type) {
    return ojson{{"SpecialToken", {{"id", name}, {"type_id", type}}}};
  };
  const auto sequence = [](const char* id, int type) { return ojson{{"Sequence", {{"id", id}, {"type_id", type}}}}; };
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
            {"strip_accents", nullptr}, {"lowercase", true}}},
          {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)}},
            {"pair", {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1),
                      special("[SEP]", 1)}},
            {"special_tokens",
             {{"[CLS]", {{"id", "[CLS]"}, {"ids", {101}}, {"tokens", {"[CLS]"}}}},
              {"[SEP]", {{"id", "[SEP]"}, {"ids", {102}}, {"tokens", {"[SEP]"}}}}}}}},
          {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
          {"model",
           {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
            {"max_input_chars_per_word", 100}, {"vocab", ids}}}};
}

ojson module(int idx, const char* path, const char* type) {
  return {{"idx", idx}, {"name", std::to_string(idx)}, {"path", path},
          {"type", std::string("sentence_transformers.models.") + type}};
}

}  // namespace

bool is_random_embedder_shape(const std::string& like) {
  return like == "minilm-l6" || like == "bert-base" || like == "tiny-bert";
}

void write_random_embedder(const std::string& like, const std::filesystem::path& dir,
                           const RandomModelOptions& options) {
  const EncoderShape s = shape_of(like);
  std::error_code ec;
  std::filesystem::create_directories(dir / "1_Pooling", ec);
  if (!ec) std::filesystem::create_directories(dir / "2_Normalize", ec);
  if (ec) fail(ErrorKind::bad_input, "--out " + dir.string() + ": cannot create directory (" + ec.message() + ")");

  std::vector<std::pair<std::string, Tensor>> tensors;
  uint64_t seed = random_mix(options.seed);
  const auto add = [&](const std::string& name, const Shape& shape, float lo, float hi) {
    seed = random_mix(seed);
    tensors.emplace_back(name, random_uniform(shape, options.dtype, lo, hi, seed));
  };
  const float bias = 0.1f * std::sqrt(3.0f), unit = std::sqrt(3.0f);
  const auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    const float a = std::sqrt(3.0f / float(in));
    add(name + ".weight", {out, in}, -a, a);
    add(name + ".bias", {out}, -bias, bias);
  };
  const auto norm = [&](const std::string& name) {
    add(name + ".weight", {s.hidden}, 0.5f, 1.5f);
    add(name + ".bias", {s.hidden}, -bias, bias);
  };
  add("embeddings.word_embeddings.weight", {kVocab, s.hidden}, -unit, unit);
  add("embeddings.position_embeddings.weight", {kPositions, s.hidden}, -unit, unit);
  add("embeddings.token_type_embeddings.weight", {kTypes, s.hidden}, -unit, unit);
  norm("embeddings.LayerNorm");
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* m : {"query", "key", "value"}) linear(p + "attention.self." + m, s.hidden, s.hidden);
    linear(p + "attention.output.dense", s.hidden, s.hidden);
    norm(p + "attention.output.LayerNorm");
    linear(p + "intermediate.dense", s.ffn, s.hidden);
    linear(p + "output.dense", s.hidden, s.ffn);
    norm(p + "output.LayerNorm");
  }
  linear("pooler.dense", s.hidden, s.hidden);
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});

  const auto write = [&](const std::filesystem::path& rel, const ojson& j) {
    write_text_file(dir / rel, j.dump(2) + "\n");
  };
  write("config.json", {{"architectures", {"BertModel"}},
                        {"model_type", "bert"},
                        {"vocab_size", kVocab},
                        {"hidden_size", s.hidden},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"intermediate_size", s.ffn},
                        {"hidden_act", "gelu"},
                        {"hidden_dropout_prob", 0.1},
                        {"attention_probs_dropout_prob", 0.1},
                        {"max_position_embeddings", kPositions},
                        {"type_vocab_size", kTypes},
                        {"initializer_range", 0.02},
                        {"layer_norm_eps", 1e-12},
                        {"pad_token_id", 0},
                        {"position_embedding_type", "absolute"},
                        {"dtype", options.dtype == DType::f32 ? "float32"
                                  : options.dtype == DType::f16 ? "float16"
                                                                : "bfloat16"}});
  write_text_file(dir / "tokenizer.json", tokenizer_json().dump() + "\n");
  write("tokenizer_config.json", {{"tokenizer_class", "BertTokenizer"}, {"do_lower_case", true},
                                  {"model_max_length", kPositions}, {"cls_token", "[CLS]"}, {"sep_token", "[SEP]"},
                                  {"pad_token", "[PAD]"}, {"unk_token", "[UNK]"}, {"mask_token", "[MASK]"}});
  write("modules.json", ojson::array({module(0, "", "Transformer"), module(1, "1_Pooling", "Pooling"),
                                     module(2, "2_Normalize", "Normalize")}));
  write("1_Pooling/config.json", {{"word_embedding_dimension", s.hidden},
                                  {"pooling_mode_cls_token", false},
                                  {"pooling_mode_mean_tokens", true},
                                  {"pooling_mode_max_tokens", false},
                                  {"pooling_mode_mean_sqrt_len_tokens", false},
                                  {"pooling_mode_weightedmean_tokens", false},
                                  {"pooling_mode_lasttoken", false},
                                  {"include_prompt", true}});
  write("sentence_bert_config.json", {{"max_seq_length", kPositions}, {"do_lower_case", false}});
}

}  // namespace wick
