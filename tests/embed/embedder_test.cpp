// The embedder (wick/embedder.h) on folders built here: a sentence-transformers folder around a tiny random encoder,
// held against the double-precision encoder of model/encoder_test_util.h pooled and normalised as
// sentence-transformers does (mean, CLS, max; Normalize); a Qwen2 folder (last-token pooling) against the model's
// own logits; texts through the Qwen2 BPE tokenizer; and every bad input the issue lists.
//
// Tolerance: cosine distance ≤ 1e-5 per embedding, as the parity with sentence-transformers asks; the encoder's
// states themselves agree to ~1e-6 relative (model/encoder_test.cpp), so the margin is wide.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "model/encoder_test_util.h"
#include "test_util.h"
#include "wick/embedder.h"
#include "wick/model.h"
#include "wick/random_model.h"
#include "wick/safetensors.h"
#include "wick/tokenizer.h"

namespace wick::test {
namespace {

using nlohmann::json;

// 1 − cos(a, b) of two rows.
double cosine_distance(const float* a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    ab += a[i] * b[i];
    aa += double(a[i]) * a[i];
    bb += b[i] * b[i];
  }
  return 1.0 - ab / std::sqrt(aa * bb);
}

struct FolderSpec {
  std::string pooling = "pooling_mode_mean_tokens";
  json pooling_mode = nullptr;  // not null: 1_Pooling/config.json as sentence-transformers 6 writes it, by name
  bool normalize = true;
  int64_t max_seq_length = 30;
  json prompts = json::object();
  std::string module_path = "";  // the Transformer module's folder ("" is the root)
};

// A sentence-transformers folder as SentenceTransformer.save writes it.
void write_st_folder(const std::filesystem::path& dir, const FolderSpec& s) {
  json modules = json::array(
      {{{"idx", 0}, {"name", "0"}, {"path", s.module_path}, {"type", "sentence_transformers.models.Transformer"}},
       {{"idx", 1}, {"name", "1"}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}}});
  if (s.normalize)
    modules.push_back(
        {{"idx", 2}, {"name", "2"}, {"path", "2_Normalize"}, {"type", "sentence_transformers.models.Normalize"}});
  write_file(dir / "modules.json", modules.dump(2));
  json pooling = {{"word_embedding_dimension", 32},
                  {"pooling_mode_cls_token", false},
                  {"pooling_mode_mean_tokens", false},
                  {"pooling_mode_max_tokens", false},
                  {"pooling_mode_mean_sqrt_len_tokens", false},
                  {"pooling_mode_weightedmean_tokens", false},
                  {"pooling_mode_lasttoken", false},
                  {"include_prompt", true}};
  pooling[s.pooling] = true;
  if (!s.pooling_mode.is_null())
    pooling = {{"embedding_dimension", 32}, {"pooling_mode", s.pooling_mode}, {"include_prompt", true}};
  std::filesystem::create_directories(dir / "1_Pooling");
  write_file(dir / "1_Pooling" / "config.json", pooling.dump(2));
  write_file(dir / s.module_path / "sentence_bert_config.json",
             json({{"max_seq_length", s.max_seq_length}, {"do_lower_case", false}}).dump());
  write_file(dir / "config_sentence_transformers.json",
             json({{"prompts", s.prompts}, {"default_prompt_name", nullptr}, {"similarity_fn_name", "cosine"}}).dump());
}

const std::vector<std::vector<int32_t>> kIds = {{2, 17, 33, 4, 3},
                                                {2, 3},
                                                {2, 9, 3},
                                                {2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 3},
                                                {2, 40, 41, 42, 43, 3}};

// The reference embedding of one sequence: pooled in double from the reference states, normalised when asked.
std::vector<double> reference_embedding(const TinyEncoder& model, const std::vector<int32_t>& ids,
                                        const std::string& pooling, bool normalize) {
  const auto states = model.reference(ids);
  std::vector<double> v(static_cast<size_t>(model.hidden), pooling == "pooling_mode_max_tokens" ? -1e300 : 0.0);
  for (size_t t = 0; t < states.size(); ++t)
    for (size_t i = 0; i < v.size(); ++i) {
      if (pooling == "pooling_mode_mean_tokens") v[i] += states[t][i] / double(states.size());
      if (pooling == "pooling_mode_max_tokens") v[i] = std::max(v[i], states[t][i]);
    }
  if (pooling == "pooling_mode_cls_token") v = states.front();
  if (pooling == "pooling_mode_lasttoken") v = states.back();
  if (normalize) {
    double n = 0;
    for (double e : v) n += e * e;
    for (double& e : v) e /= std::sqrt(n);
  }
  return v;
}

class EncoderEmbedder : public ::testing::TestWithParam<std::string> {};

TEST_P(EncoderEmbedder, PooledEmbeddingsMatchReference) {
  for (const std::string model_type : {"bert", "mpnet"})
    for (bool normalize : {false, true}) {
      const TinyEncoder model = tiny_encoder(model_type);
      const auto dir = temp_dir("st");
      model.write(dir / "0_Transformer");
      write_st_folder(dir, {.pooling = GetParam(), .normalize = normalize, .module_path = "0_Transformer"});
      // batch_tokens 20: the texts run in several passes, sorted by length, and come back in input order.
      const Embedder e = Embedder::load(dir, {.batch_tokens = 20});
      EXPECT_EQ(e.dimension(), 32);
      EXPECT_EQ(e.max_seq_length(), 30);
      EXPECT_EQ(e.normalizes(), normalize);
      const Tensor got = e.embed_ids(kIds);
      ASSERT_EQ(got.shape(), (Shape{int64_t(kIds.size()), 32}));
      for (size_t s = 0; s < kIds.size(); ++s)
        EXPECT_LE(
            cosine_distance(got.data<float>() + s * 32, reference_embedding(model, kIds[s], GetParam(), normalize)),
            1e-5)
            << model_type << " " << GetParam() << " sequence " << s;
      if (normalize)
        for (size_t s = 0; s < kIds.size(); ++s) {
          double n = 0;
          for (int64_t i = 0; i < 32; ++i) n += double(got.data<float>()[s * 32 + i]) * got.data<float>()[s * 32 + i];
          EXPECT_NEAR(std::sqrt(n), 1.0, 1e-6);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Pooling, EncoderEmbedder,
                         ::testing::Values("pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                           "pooling_mode_max_tokens", "pooling_mode_lasttoken"));

// sentence-transformers 6 names the mode ("pooling_mode": "mean") where earlier releases set one boolean per mode.
TEST(Embedder, PoolingModeByNameAsSentenceTransformers6WritesIt) {
  const TinyEncoder model = tiny_encoder("bert");
  const std::pair<const char*, const char*> names[] = {{"mean", "pooling_mode_mean_tokens"},
                                                       {"cls", "pooling_mode_cls_token"},
                                                       {"max", "pooling_mode_max_tokens"},
                                                       {"lasttoken", "pooling_mode_lasttoken"}};
  for (const auto& [name, field] : names) {
    const auto dir = temp_dir("named");
    model.write(dir);
    // The boolean fields say cls; "pooling_mode" alone decides, as in sentence-transformers.
    write_st_folder(dir, {.pooling = "pooling_mode_cls_token", .pooling_mode = name});
    json config = json::parse(read_file(dir / "1_Pooling" / "config.json"));
    config["pooling_mode_cls_token"] = true;
    write_file(dir / "1_Pooling" / "config.json", config.dump());
    const Embedder e = Embedder::load(dir);
    const Tensor got = e.embed_ids(kIds);
    for (size_t s = 0; s < kIds.size(); ++s)
      EXPECT_LE(cosine_distance(got.data<float>() + s * 32, reference_embedding(model, kIds[s], field, true)), 1e-5)
          << name << " sequence " << s;
  }
  const auto fails_with = [&](const json& mode, ErrorKind kind, const char* what) {
    const auto dir = temp_dir("badnamed");
    model.write(dir);
    write_st_folder(dir, {.pooling_mode = mode});
    EXPECT_WICK_ERROR(Embedder::load(dir), kind, "1_Pooling/config.json", "'pooling_mode'", what);
  };
  fails_with("weightedmean", ErrorKind::unsupported, "'weightedmean' is a pooling mode wick does not implement");
  fails_with("attention", ErrorKind::unsupported, "'attention' is a pooling mode wick does not know");
  fails_with(json::array({"mean", "max"}), ErrorKind::unsupported, "are both on");
  fails_with(3, ErrorKind::corrupt, "expected a pooling mode's name or a list of them, found 3");
  fails_with(json::array(), ErrorKind::corrupt, "no pooling mode is on");
}

TEST(Embedder, PlainFolderPoolsTheMeanUnnormalised) {
  const TinyEncoder model = tiny_encoder("xlm-roberta");
  const auto dir = temp_dir("plain");
  model.write(dir);  // no modules.json: sentence-transformers wraps it with mean pooling
  const Embedder e = Embedder::load(dir);
  EXPECT_EQ(e.pooling(), EmbedPooling::mean);
  EXPECT_FALSE(e.normalizes());
  EXPECT_EQ(e.max_seq_length(), 40);  // the positions after pad + 1
  const Tensor got = e.embed_ids(kIds);
  for (size_t s = 0; s < kIds.size(); ++s)
    EXPECT_LE(cosine_distance(got.data<float>() + s * 32,
                              reference_embedding(model, kIds[s], "pooling_mode_mean_tokens", false)),
              1e-5);
}

TEST(Embedder, MatryoshkaDimensionsRenormalise) {
  const TinyEncoder model = tiny_encoder("bert");
  const auto dir = temp_dir("dims");
  model.write(dir);
  write_st_folder(dir, {});
  const Embedder e = Embedder::load(dir);
  const Tensor full = e.embed_ids(kIds), cut = e.embed_ids(kIds, 8);
  ASSERT_EQ(cut.shape(), (Shape{int64_t(kIds.size()), 8}));
  for (size_t s = 0; s < kIds.size(); ++s) {
    std::vector<double> first(full.data<float>() + s * 32, full.data<float>() + s * 32 + 8);
    EXPECT_LE(cosine_distance(cut.data<float>() + s * 8, first), 1e-6);
    double n = 0;
    for (int64_t i = 0; i < 8; ++i) n += double(cut.data<float>()[s * 8 + i]) * cut.data<float>()[s * 8 + i];
    EXPECT_NEAR(std::sqrt(n), 1.0, 1e-6);
  }
  EXPECT_WICK_ERROR(e.embed_ids(kIds, 33), ErrorKind::bad_input, "dimensions 33");
}

TEST(Embedder, BadFoldersNameFileAndField) {
  const TinyEncoder model = tiny_encoder("bert");
  {
    const auto dir = temp_dir("weighted");
    model.write(dir);
    write_st_folder(dir, {.pooling = "pooling_mode_weightedmean_tokens"});
    EXPECT_WICK_ERROR(Embedder::load(dir), ErrorKind::unsupported, "1_Pooling/config.json",
                      "pooling_mode_weightedmean_tokens");
  }
  {
    const auto dir = temp_dir("newmode");
    model.write(dir);
    write_st_folder(dir, {.pooling = "pooling_mode_attention"});
    EXPECT_WICK_ERROR(Embedder::load(dir), ErrorKind::unsupported, "1_Pooling/config.json", "pooling_mode_attention");
  }
  {
    const auto dir = temp_dir("dense");
    model.write(dir);
    write_st_folder(dir, {});
    json modules = json::parse(read_file(dir / "modules.json"));
    modules.push_back({{"idx", 3}, {"name", "3"}, {"path", "3_Dense"}, {"type", "sentence_transformers.models.Dense"}});
    write_file(dir / "modules.json", modules.dump());
    EXPECT_WICK_ERROR(Embedder::load(dir), ErrorKind::unsupported, "modules.json", "'type'", "Dense");
  }
  {
    TinyEncoder other = model;
    other.model_type = "distilbert";
    const auto dir = temp_dir("distil");
    other.write(dir);
    write_st_folder(dir, {});
    EXPECT_WICK_ERROR(Embedder::load(dir), ErrorKind::unsupported, "config.json", "model_type", "distilbert");
  }
  {
    const auto dir = temp_dir("missing");
    model.write(dir, {"encoder.layer.0.attention.self.key.weight"});
    write_st_folder(dir, {});
    EXPECT_WICK_ERROR(Embedder::load(dir), ErrorKind::not_found, "encoder.layer.0.attention.self.key.weight");
  }
}

TEST(Embedder, BadIdsAndPromptsAreBadInput) {
  const TinyEncoder model = tiny_encoder("bert");
  const auto dir = temp_dir("ids");
  model.write(dir);
  write_st_folder(dir, {.max_seq_length = 6, .prompts = {{"query", "query: "}}});
  const Embedder e = Embedder::load(dir);
  EXPECT_EQ(e.prompts().at("query"), "query: ");
  const Tensor with_empty = e.embed_ids({{2, 3}, {}});  // an empty sequence embeds as zeros
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(with_empty.data<float>()[32 + i], 0.0f);
  EXPECT_WICK_ERROR(e.embed_ids({{2, 4, 5, 6, 7, 8, 3}}), ErrorKind::bad_input, "7 tokens", "max_seq_length 6");
  EXPECT_WICK_ERROR(e.embed_ids({{2, 50, 3}}), ErrorKind::bad_input, "token id 50");
  // No tokenizer.json in this folder: texts cannot be embedded, ids can.
  EXPECT_WICK_ERROR(e.embed({"hello"}), ErrorKind::not_found, "tokenizer.json");
}

// A BERT tokenizer.json as transformers saves one (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP]),
// with a vocabulary small enough for the tiny encoder.
std::string wordpiece_tokenizer_json() {
  const std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world",
                                          "query", ":",     "the",   "##s",   "cat",   "."};
  json added = json::array(), v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) {
    v[vocab[i]] = i;
    if (i < 5)
      added.push_back({{"id", i}, {"content", vocab[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", true}});
  }
  const auto special = [](const char* t) { return json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}}; };
  const json sequence = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  return json({{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added},
               {"normalizer",
                {{"type", "BertNormalizer"},
                 {"clean_text", true},
                 {"handle_chinese_chars", true},
                 {"strip_accents", nullptr},
                 {"lowercase", true}}},
               {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
               {"post_processor",
                {{"type", "TemplateProcessing"},
                 {"single", {special("[CLS]"), sequence, special("[SEP]")}},
                 {"pair", {special("[CLS]"), sequence, special("[SEP]")}},
                 {"special_tokens",
                  {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
                   {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}}},
               {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
               {"model",
                {{"type", "WordPiece"},
                 {"unk_token", "[UNK]"},
                 {"continuing_subword_prefix", "##"},
                 {"max_input_chars_per_word", 100},
                 {"vocab", v}}}})
      .dump();
}

// Texts through a BERT tokenizer: special tokens added, truncation inside them, the empty text as [CLS] [SEP]. Needs
// the WordPiece tokenizer.
TEST(Embedder, BertTextsWithSpecialTokens) {
  const TinyEncoder model = tiny_encoder("bert");
  const auto dir = temp_dir("bert-text");
  model.write(dir);
  write_st_folder(dir, {.max_seq_length = 6, .prompts = {{"query", "query: "}}});
  write_file(dir / "tokenizer.json", wordpiece_tokenizer_json());
  const Embedder e = Embedder::load(dir);
  EXPECT_EQ(e.tokenize("Hello world"), (std::vector<int32_t>{2, 5, 6, 3}));
  EXPECT_EQ(e.tokenize(""), (std::vector<int32_t>{2, 3}));
  // Cut to max_seq_length 6 with [SEP] kept; the prompt is part of the text.
  EXPECT_EQ(e.tokenize("hello world the cats ."), (std::vector<int32_t>{2, 5, 6, 9, 11, 3}));
  EXPECT_EQ(e.tokenize("hello world", {.prompt_name = "query"}), (std::vector<int32_t>{2, 7, 8, 5, 6, 3}));
  // The texts embed as their ids do, and those as the reference encoder (mean pooling, Normalize) gives them.
  const std::vector<std::vector<int32_t>> ids = {{2, 3}, {2, 5, 6, 9, 11, 3}, {2, 7, 8, 5, 6, 3}};
  const Tensor by_ids = e.embed_ids(ids);
  const Tensor by_text = e.embed({"", "hello world the cats ."});
  const Tensor prompted = e.embed({"hello world"}, {.prompt_name = "query"});
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(by_text.data<float>()[i], by_ids.data<float>()[i]);
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(prompted.data<float>()[i], by_ids.data<float>()[64 + i]);
  for (size_t s = 0; s < ids.size(); ++s)
    EXPECT_LE(cosine_distance(by_ids.data<float>() + s * 32,
                              reference_embedding(model, ids[s], "pooling_mode_mean_tokens", true)),
              1e-5);
  EXPECT_WICK_ERROR(e.embed({"hello world the cats ."}, {.truncate = false}), ErrorKind::bad_input, "text 0",
                    "8 tokens", "max_seq_length 6");
}

// A Qwen2 embedder folder (gte-Qwen2's layout: Transformer at the root, last-token pooling, Normalize) around a tiny
// random Qwen2 saved as a headless Qwen2Model, with the repository's trained BPE tokenizer.
class QwenEmbedder : public ::testing::Test {
 protected:
  void SetUp() override {
    const Tokenizer tok = Tokenizer::load(fixture("tokenizer/trained/tokenizer.json"));
    ModelConfig c = ModelConfig::preset("tiny");
    c.vocab_size = tok.vocab_size();
    c.tie_word_embeddings = true;
    write_random_model(c, with_head, {.dtype = DType::f32, .seed = 5});
    // As Qwen2Model.save_pretrained writes it: architecture Qwen2Model, names without "model.", no lm_head.
    json config = json::parse(read_file(with_head / "config.json"));
    config["architectures"] = {"Qwen2Model"};
    write_file(dir / "config.json", config.dump(2));
    const TensorStore store = TensorStore::open_dir(with_head);
    std::vector<std::pair<std::string, Tensor>> bare;
    for (const std::string& name : store.names())
      bare.emplace_back(name.substr(name.find('.') + 1), store.tensor(name));
    write_safetensors(dir / "model.safetensors", bare);
    std::filesystem::copy_file(fixture("tokenizer/trained/tokenizer.json"), dir / "tokenizer.json");
    write_st_folder(dir, {.pooling = "pooling_mode_lasttoken", .max_seq_length = 12});
  }
  std::filesystem::path with_head = temp_dir("qwen-lm"), dir = temp_dir("qwen-st");
};

TEST_F(QwenEmbedder, HiddenStatesAreTheHeadInput) {
  // The final-norm states times the tied embedding are the logits forward() gives: the states are the head's input.
  const auto model = Model::load(with_head);
  const std::vector<std::vector<int32_t>> rows = {{5, 6, 7, 8}, {9, 10}};
  const std::vector<std::span<const int32_t>> spans = {rows[0], rows[1]};
  const Tensor states = model->hidden_states(spans);
  const int64_t H = model->config().hidden_size, V = model->config().vocab_size;
  ASSERT_EQ(states.shape(), (Shape{6, H}));
  const Tensor embed = model->state_dict().front().second;  // model.embed_tokens.weight
  ASSERT_EQ(embed.shape(), (Shape{V, H}));
  int64_t row = 0;
  for (const auto& r : rows) {
    const Tensor logits = model->logits({r});  // [1, len, vocab]
    for (size_t t = 0; t < r.size(); ++t, ++row) {
      double num = 0, den = 0;
      for (int64_t v = 0; v < V; ++v) {
        double dot = 0;
        for (int64_t i = 0; i < H; ++i)
          dot += double(states.data<float>()[row * H + i]) * embed.data<float>()[v * H + i];
        const double ref = logits.data<float>()[int64_t(t) * V + v];
        num += (dot - ref) * (dot - ref);
        den += ref * ref;
      }
      EXPECT_LT(std::sqrt(num / den), 1e-5) << "row " << row;
    }
  }
}

TEST_F(QwenEmbedder, LastTokenOfTheHeadlessModel) {
  const Embedder e = Embedder::load(dir);
  EXPECT_EQ(e.pooling(), EmbedPooling::last_token);
  const auto model = Model::load(with_head);
  const std::vector<std::vector<int32_t>> rows = {{5, 6, 7, 8}, {9, 10}, {11}};
  const Tensor got = e.embed_ids(rows);
  const int64_t H = model->config().hidden_size;
  for (size_t s = 0; s < rows.size(); ++s) {
    const std::vector<std::span<const int32_t>> one = {rows[s]};
    const Tensor states = model->hidden_states(one);
    std::vector<double> last(states.data<float>() + (int64_t(rows[s].size()) - 1) * H,
                             states.data<float>() + int64_t(rows[s].size()) * H);
    EXPECT_LE(cosine_distance(got.data<float>() + int64_t(s) * H, last), 1e-6) << s;
  }
  // A Qwen2Model gives no logits, and says so.
  const auto headless = Model::load(dir);
  EXPECT_EQ(headless->config().head, ModelHead::none);
  EXPECT_WICK_ERROR(headless->logits({{1, 2}}), ErrorKind::unsupported, "no head");
}

TEST_F(QwenEmbedder, TextsTokenizedTruncatedAndChecked) {
  const Embedder e = Embedder::load(dir);
  const std::vector<std::string> texts = {"Hello world", "The quick brown fox jumps over the lazy dog again and again",
                                          "café"};
  const Tensor by_text = e.embed(texts);
  std::vector<std::vector<int32_t>> ids;
  for (const auto& t : texts) ids.push_back(e.tokenize(t));
  EXPECT_EQ(int64_t(ids[1].size()), 12);  // truncated to max_seq_length
  const Tensor by_ids = e.embed_ids(ids);
  for (int64_t i = 0; i < by_text.numel(); ++i) EXPECT_EQ(by_text.data<float>()[i], by_ids.data<float>()[i]);
  EXPECT_WICK_ERROR(e.embed(texts, {.truncate = false}), ErrorKind::bad_input, "text 1", "max_seq_length 12");
  EXPECT_WICK_ERROR(e.embed({"fine", std::string("bad \xff byte")}), ErrorKind::bad_input, "text 1", "UTF-8");
  EXPECT_WICK_ERROR(e.embed(texts, {.prompt_name = "query"}), ErrorKind::bad_input, "prompt_name 'query'");
  // This tokenizer adds no special tokens: an empty text has no tokens and embeds as zeros.
  const Tensor empty = e.embed({""});
  for (int64_t i = 0; i < empty.numel(); ++i) EXPECT_EQ(empty.data<float>()[i], 0.0f);
  // A literal prompt is prepended before tokenizing.
  const Tensor prompted = e.embed({"world"}, {.prompt = "Hello "});
  const Tensor plain = e.embed({"Hello world"});
  for (int64_t i = 0; i < plain.numel(); ++i) EXPECT_EQ(prompted.data<float>()[i], plain.data<float>()[i]);
}

TEST_F(QwenEmbedder, IncludePromptFalseLeavesThePromptOutOfTheMean) {
  json pooling = json::parse(read_file(dir / "1_Pooling" / "config.json"));
  pooling["pooling_mode_lasttoken"] = false;
  pooling["pooling_mode_mean_tokens"] = true;
  pooling["include_prompt"] = false;
  write_file(dir / "1_Pooling" / "config.json", pooling.dump());
  const Embedder e = Embedder::load(dir);
  const Tokenizer tok = Tokenizer::load(dir);
  const std::vector<int32_t> ids = e.tokenize("world", {.prompt = "Hello there, "});
  // sentence-transformers 6 leaves out the prompt's tokens (the prompt tokenized alone, as it is; this tokenizer adds
  // no special tokens, so all of them: releases before 6 left out all but the last).
  const int64_t skip = int64_t(tok.encode("Hello there, ").size());
  ASSERT_GT(skip, 0);
  ASSERT_GT(int64_t(ids.size()), skip);
  const auto model = Model::load(dir);
  const std::vector<std::span<const int32_t>> one = {ids};
  const Tensor states = model->hidden_states(one);
  const int64_t H = model->config().hidden_size;
  std::vector<double> mean(static_cast<size_t>(H), 0.0);
  for (int64_t t = skip; t < int64_t(ids.size()); ++t)
    for (int64_t i = 0; i < H; ++i) mean[size_t(i)] += states.data<float>()[t * H + i];
  const Tensor got = e.embed({"world"}, {.prompt = "Hello there, "});
  EXPECT_LE(cosine_distance(got.data<float>(), mean), 1e-6);
  // With the prompt included, the mean is another vector.
  pooling["include_prompt"] = true;
  write_file(dir / "1_Pooling" / "config.json", pooling.dump());
  const Tensor with_prompt = Embedder::load(dir).embed({"world"}, {.prompt = "Hello there, "});
  EXPECT_GT(cosine_distance(with_prompt.data<float>(), mean), 1e-4);
}

// sentence-transformers 6 tokenizes each text as it is (earlier releases stripped it first): whitespace at either
// end gets its tokens where the tokenizer sees whitespace.
TEST_F(QwenEmbedder, TextsKeepTheirWhitespace) {
  const Embedder e = Embedder::load(dir);
  const Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(e.tokenize(" \thello\n\u00a0"), tok.encode(" \thello\n\u00a0"));  // (under max_seq_length 12)
  EXPECT_NE(e.tokenize(" hello "), tok.encode("hello"));
  EXPECT_EQ(e.tokenize("hello", {.prompt = "query: "}), tok.encode("query: hello"));
  EXPECT_EQ(e.tokenize("", {.prompt = "query: "}), tok.encode("query: "));
}

TEST_F(QwenEmbedder, LowerCaseAsPython) {
  write_file(dir / "sentence_bert_config.json", json({{"max_seq_length", 64}, {"do_lower_case", true}}).dump());
  const Embedder e = Embedder::load(dir);
  const Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(e.tokenize("Hello WORLD"), tok.encode("hello world"));
  // Python's str.lower(): İ becomes i + combining dot, Σ at the end of a word becomes ς.
  EXPECT_EQ(e.tokenize("İSTANBUL ΟΔΟΣ ΣΑΣ"), tok.encode("i\u0307stanbul οδος σας"));
}

}  // namespace
}  // namespace wick::test
