// config.json / generation_config.json parsing and validation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/config.h"

namespace wick::test {
namespace {

using nlohmann::json;

json base_config() {
  return json{{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"vocab_size", 100},
              {"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 2},
              {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"rope_theta", 10000.0},
              {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 128}};
}

ModelConfig parse(const json& j) { return ModelConfig::parse(j.dump(), "config.json"); }

TEST(ModelConfig, ReadsTransformersV5Fixture) {
  const ModelConfig c = ModelConfig::load(fixture("models/tiny-tied"));
  EXPECT_EQ(c.head, ModelHead::causal_lm);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // from rope_parameters
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, DType::f32);
}

TEST(ModelConfig, ReadsTransformersV4Fixture) {
  const ModelConfig c = ModelConfig::load(fixture("models/tiny-untied"));
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);  // top-level rope_theta
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 16);  // given explicitly
  EXPECT_EQ(c.dtype, DType::bf16);  // torch_dtype
}

TEST(ModelConfig, ReadsClassifier) {
  const ModelConfig c = ModelConfig::load(fixture("models/tiny-seqcls"));
  EXPECT_EQ(c.head, ModelHead::sequence_classification);
  EXPECT_EQ(c.num_labels, 3);
  EXPECT_EQ(c.pad_token_id, 0);
}

TEST(ModelConfig, Defaults) {
  json j = base_config();
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.head_dim, 8);
}

TEST(ModelConfig, EosAsIntOrList) {
  json j = base_config();
  j["eos_token_id"] = 7;
  EXPECT_EQ(parse(j).eos_token_ids, std::vector<int32_t>{7});
  j["eos_token_id"] = {7, 9};
  EXPECT_EQ(parse(j).eos_token_ids, (std::vector<int32_t>{7, 9}));
  j["eos_token_id"] = 100;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "eos_token_id", "vocabulary");
}

TEST(ModelConfig, RejectsContradictions) {
  json j = base_config();
  j["num_key_value_heads"] = 3;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "config.json", "num_attention_heads 4", "num_key_value_heads 3");
  j = base_config();
  j["hidden_size"] = 30;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "hidden_size 30", "not divisible");
  j["head_dim"] = 8;  // an explicit head_dim resolves it
  EXPECT_EQ(parse(j).q_dim(), 32);
  j = base_config();
  j["head_dim"] = 7;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "head_dim 7", "even");
  j = base_config();
  j["num_hidden_layers"] = 0;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "num_hidden_layers", "positive");
  j = base_config();
  j.erase("vocab_size");
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "missing field 'vocab_size'");
  j = base_config();
  j["hidden_size"] = "32";
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "hidden_size", "integer");
  j = base_config();
  j["rms_norm_eps"] = -1;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "rms_norm_eps");
  EXPECT_WICK_ERROR(ModelConfig::parse("{not json", "config.json"), ErrorKind::corrupt, "config.json", "JSON");
  EXPECT_WICK_ERROR(ModelConfig::parse("[1]", "config.json"), ErrorKind::corrupt, "object");
}

TEST(ModelConfig, RejectsWhatWickDoesNotImplement) {
  json j = base_config();
  j["model_type"] = "llama";
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "llama");
  j = base_config();
  j["architectures"] = {"Qwen2ForTokenClassification"};
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "Qwen2ForTokenClassification");
  j = base_config();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "yarn");
  j = base_config();
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}};
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "linear");
  j = base_config();
  j["use_sliding_window"] = true;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "sliding");
  j = base_config();
  j["hidden_act"] = "gelu";
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "gelu");
  j = base_config();
  j["torch_dtype"] = "float8";
  EXPECT_WICK_ERROR(parse(j), ErrorKind::unsupported, "float8");
}

TEST(ModelConfig, MissingDirectory) {
  EXPECT_WICK_ERROR(ModelConfig::load("/nonexistent/model"), ErrorKind::not_found, "/nonexistent/model");
  const auto dir = temp_dir("cfg");
  EXPECT_WICK_ERROR(ModelConfig::load(dir), ErrorKind::not_found, "config.json");
}

TEST(ModelConfig, PresetsMatchPublishedShapes) {
  const ModelConfig small = ModelConfig::preset("qwen2.5-0.5b");
  EXPECT_EQ(small.parameter_count(), 494032768);  // Qwen2.5-0.5B's published parameter count
  const ModelConfig big = ModelConfig::preset("qwen2.5-7b");
  EXPECT_EQ(big.parameter_count(), 7615616512);  // Qwen2.5-7B
  EXPECT_WICK_ERROR(ModelConfig::preset("gpt2"), ErrorKind::bad_input, "gpt2");
  // to_json round-trips.
  const ModelConfig again = ModelConfig::parse(small.to_json(), "preset");
  EXPECT_EQ(again.parameter_count(), small.parameter_count());
  EXPECT_EQ(again.eos_token_ids, small.eos_token_ids);
}

TEST(GenerationDefaults, ReadsFixture) {
  const GenerationDefaults g = GenerationDefaults::load(fixture("models/tiny-tied"));
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(g.bos_token_id, 1);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_FLOAT_EQ(g.temperature.value(), 0.7f);
  EXPECT_TRUE(GenerationDefaults::load(temp_dir("gen")).eos_token_ids.empty());
  EXPECT_WICK_ERROR(GenerationDefaults::parse("{\"top_k\": \"x\"}", "generation_config.json"), ErrorKind::corrupt,
                    "generation_config.json", "top_k");
}

// Found by fuzz/config_fuzz (docs/FUZZING.md): nlohmann throws out_of_range, not parse_error, for a number past a
// double's range, and it escaped the parser as a foreign exception.
TEST(ModelConfig, NumberPastDoubleRangeIsCorrupt) {
  EXPECT_WICK_ERROR(ModelConfig::parse(R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.1e3080})",
                                       "config.json"),
                    ErrorKind::corrupt, "config.json", "does not fit a double", "0.1e3080");
  EXPECT_WICK_ERROR(GenerationDefaults::parse(R"({"temperature": -1e400})", "generation_config.json"),
                    ErrorKind::corrupt, "generation_config.json", "does not fit a double", "-1e400");
}

// Found reading what fuzz/config_fuzz reaches (docs/FUZZING.md): sizes whose products overflow int64_t made
// parameter_count() (and the weight shapes the loader computes from them) overflow a signed integer.
TEST(ModelConfig, SizesOverflowingTheParameterCountAreCorrupt) {
  json j = base_config();
  j["hidden_size"] = int64_t(1) << 62;
  j["num_attention_heads"] = 1;
  j["num_key_value_heads"] = 1;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "config.json", "imply more than 2^63 parameters");
  j = base_config();
  j["num_hidden_layers"] = int64_t(1) << 50;
  EXPECT_WICK_ERROR(parse(j), ErrorKind::corrupt, "config.json", "imply more than 2^63 parameters");
  EXPECT_EQ(parse(base_config()).parameter_count(), 100 * 32 + 2 * (32 * 32 + 32 + 2 * (32 * 16 + 16) + 32 * 32 +
                                                                    3 * 32 * 64 + 2 * 32) + 32 + 100 * 32);
}

// Found the same way: values past int32_t / float were wrapped (top_k 2^32 + 1 read as 1) or made infinite.
TEST(GenerationDefaults, ValuesPastTheirTypeAreCorrupt) {
  EXPECT_WICK_ERROR(GenerationDefaults::parse(R"({"top_k": 4294967297})", "generation_config.json"),
                    ErrorKind::corrupt, "generation_config.json", "'top_k'", "does not fit a 32-bit integer");
  EXPECT_WICK_ERROR(GenerationDefaults::parse(R"({"max_new_tokens": -3000000000})", "generation_config.json"),
                    ErrorKind::corrupt, "'max_new_tokens'", "does not fit a 32-bit integer");
  EXPECT_WICK_ERROR(GenerationDefaults::parse(R"({"temperature": 1e39})", "generation_config.json"),
                    ErrorKind::corrupt, "'temperature'", "does not fit a float");
  EXPECT_EQ(GenerationDefaults::parse(R"({"top_k": -1, "max_new_tokens": 2147483647})", "g").max_new_tokens,
            2147483647);
}

}  // namespace
}  // namespace wick::test
