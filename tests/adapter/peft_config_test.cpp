// adapter_config.json: what PEFT's fields mean to wick, and what is refused.
#include <gtest/gtest.h>

#include "adapter/lora.h"
#include "test_util.h"

namespace wick::test {
namespace {

LoraConfig parse(const std::string& body) {
  return LoraConfig::parse("{\"peft_type\": \"LORA\"" + std::string(body.empty() ? "" : ", ") + body + "}", "cfg.json");
}

ModelConfig tiny() {
  ModelConfig c;
  c.vocab_size = 384;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  return c;
}

std::vector<std::string> keys(const AdapterPlan& p) {
  std::vector<std::string> out;
  for (const auto& m : p.lora) out.push_back(m.key);
  return out;
}

TEST(LoraConfig, ReadsPeftFields) {
  const LoraConfig c = parse(R"("r": 16, "lora_alpha": 32, "use_rslora": true, "target_modules": ["q_proj", "v_proj"],
      "layers_to_transform": 1, "modules_to_save": ["score"], "task_type": "SEQ_CLS", "bias": "none",
      "fan_in_fan_out": false, "use_dora": false, "lora_bias": false, "init_lora_weights": true,
      "base_model_name_or_path": "Qwen/Qwen2.5-0.5B")");
  EXPECT_EQ(c.r, 16);
  EXPECT_EQ(c.lora_alpha, 32);
  EXPECT_TRUE(c.use_rslora);
  EXPECT_EQ(c.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c.layers_to_transform, (std::vector<int64_t>{1}));
  EXPECT_EQ(c.modules_to_save, (std::vector<std::string>{"score"}));
  EXPECT_EQ(c.base_model_name_or_path, "Qwen/Qwen2.5-0.5B");
}

TEST(LoraConfig, DefaultTargetsAreQwen2sQAndV) {
  const AdapterPlan p = plan_adapter(parse(""), tiny(), "cfg");
  EXPECT_EQ(p.lora.size(), 6u);
  EXPECT_EQ(p.lora[0].key, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(p.lora[1].key, "model.layers.0.self_attn.v_proj");
  EXPECT_FLOAT_EQ(p.lora[0].scale, 1.0f);  // PEFT defaults r = 8, alpha = 8
}

TEST(LoraConfig, AllLinearIsTheSevenProjections) {
  const AdapterPlan p = plan_adapter(parse(R"("target_modules": "all-linear")"), tiny(), "cfg");
  EXPECT_EQ(p.lora.size(), 21u);
  EXPECT_EQ(p.lora[6].key, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(p.lora[6].a_shape, (Shape{8, 160}));
  EXPECT_EQ(p.lora[6].b_shape, (Shape{64, 8}));
}

TEST(LoraConfig, RegexTargetsAreFullMatches) {
  const AdapterPlan p = plan_adapter(parse(R"("target_modules": ".*layers\\.[02]\\.mlp\\.(gate|up)_proj")"), tiny(), "cfg");
  EXPECT_EQ(keys(p), (std::vector<std::string>{"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                                               "model.layers.2.mlp.gate_proj", "model.layers.2.mlp.up_proj"}));
  // Python's fullmatch: a pattern matching only part of the key selects nothing.
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("target_modules": "q_proj")"), tiny(), "cfg"), ErrorKind::bad_input,
                    "matches no projection");
}

TEST(LoraConfig, ListTargetsMatchWholeNamesAfterADot) {
  const AdapterPlan p = plan_adapter(parse(R"("target_modules": ["self_attn.o_proj", "model.layers.1.mlp.up_proj"])"),
                                     tiny(), "cfg");
  EXPECT_EQ(keys(p), (std::vector<std::string>{"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj",
                                               "model.layers.1.mlp.up_proj", "model.layers.2.self_attn.o_proj"}));
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("target_modules": ["proj"])"), tiny(), "cfg"), ErrorKind::bad_input,
                    "'proj'", "no module of a Qwen2 model");
}

TEST(LoraConfig, ExcludeModulesAndLayersToTransform) {
  const AdapterPlan p = plan_adapter(
      parse(R"("target_modules": ["q_proj", "k_proj"], "exclude_modules": ["model.layers.2.self_attn.k_proj"],
               "layers_to_transform": [0, 2])"),
      tiny(), "cfg");
  EXPECT_EQ(keys(p), (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                               "model.layers.2.self_attn.q_proj"}));
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("layers_to_transform": [3])"), tiny(), "cfg"), ErrorKind::bad_input,
                    "layer 3", "has 3");
}

TEST(LoraConfig, PatternsTakeExactKeyThenFirstSuffixMatch) {
  const AdapterPlan p = plan_adapter(
      parse(R"("r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "down_proj"],
               "rank_pattern": {"proj": 3, "q_proj": 2, "model.layers.1.self_attn.q_proj": 5, "layers\\.2\\..*q_proj": 6},
               "alpha_pattern": {"down_proj": 1.5})"),
      tiny(), "cfg");
  // "proj" matches no key end after a '.', so q_proj -> 2; layer 1's exact key -> 5; the regex for
  // layer 2 comes after "q_proj", which matches first.
  EXPECT_EQ(p.lora[0].rank, 2);
  EXPECT_EQ(p.lora[1].rank, 4);
  EXPECT_FLOAT_EQ(p.lora[1].scale, 1.5f / 4.0f);
  EXPECT_EQ(p.lora[2].rank, 5);
  EXPECT_EQ(p.lora[4].rank, 2);
}

TEST(LoraConfig, RsLoraScalesByRootRank) {
  const AdapterPlan p = plan_adapter(parse(R"("r": 16, "lora_alpha": 8, "use_rslora": true)"), tiny(), "cfg");
  EXPECT_FLOAT_EQ(p.lora[0].scale, 2.0f);
}

TEST(LoraConfig, RefusesWhatItCannotCompute) {
  EXPECT_WICK_ERROR(parse(R"("use_dora": true)"), ErrorKind::unsupported, "DoRA");
  EXPECT_WICK_ERROR(LoraConfig::parse(R"({"peft_type": "IA3"})", "cfg.json"), ErrorKind::unsupported, "IA3", "cfg.json");
  EXPECT_WICK_ERROR(LoraConfig::parse(R"({"r": 8})", "cfg.json"), ErrorKind::bad_input, "peft_type");
  EXPECT_WICK_ERROR(parse(R"("bias": "all")"), ErrorKind::unsupported, "bias");
  EXPECT_WICK_ERROR(parse(R"("lora_bias": true)"), ErrorKind::unsupported, "lora_bias");
  EXPECT_WICK_ERROR(parse(R"("layer_replication": [[0, 2]])"), ErrorKind::unsupported, "layer_replication");
  EXPECT_WICK_ERROR(parse(R"("init_lora_weights": "pissa")"), ErrorKind::unsupported, "pissa");
  EXPECT_WICK_ERROR(parse(R"("r": 0)"), ErrorKind::bad_input, "'r'", "≥ 1");
  EXPECT_WICK_ERROR(parse(R"("rank_pattern": {"q_proj": 0})"), ErrorKind::bad_input, "rank_pattern");
  EXPECT_WICK_ERROR(parse(R"("lora_alpha": NaN)"), ErrorKind::bad_input, "NaN", "finite");
  EXPECT_WICK_ERROR(parse(R"("lora_alpha": 1e999)"), ErrorKind::bad_input, "lora_alpha", "finite");
  EXPECT_WICK_ERROR(parse(R"("lora_alpha": "8")"), ErrorKind::bad_input, "lora_alpha");
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("target_modules": "(unclosed")"), tiny(), "cfg"), ErrorKind::bad_input,
                    "regular expression");
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("target_modules": ["q_proj", "lm_head"])"), tiny(), "cfg"),
                    ErrorKind::unsupported, "lm_head");
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("modules_to_save": ["input_layernorm"])"), tiny(), "cfg"),
                    ErrorKind::unsupported, "input_layernorm");
  EXPECT_WICK_ERROR(plan_adapter(parse(R"("task_type": "SEQ_CLS")"), tiny(), "cfg"), ErrorKind::bad_input, "SEQ_CLS");
  EXPECT_WICK_ERROR(LoraConfig::parse("{nope", "cfg.json"), ErrorKind::corrupt, "cfg.json");
}

TEST(LoraConfig, ToJsonRoundTrips) {
  const LoraConfig c = parse(R"("r": 6, "lora_alpha": 12.5, "use_rslora": true, "target_modules": ".*\\.(q|v)_proj",
      "exclude_modules": ["model.layers.0.self_attn.q_proj"], "rank_pattern": {"v_proj": 2, "q_proj": 3},
      "alpha_pattern": {"v_proj": 4}, "layers_to_transform": [0, 2], "modules_to_save": ["lm_head"],
      "task_type": "CAUSAL_LM", "base_model_name_or_path": "base")");
  const LoraConfig d = LoraConfig::parse(c.to_json(), "again");
  EXPECT_EQ(d.r, 6);
  EXPECT_EQ(d.lora_alpha, 12.5);
  EXPECT_TRUE(d.use_rslora);
  EXPECT_EQ(d.target_regex, c.target_regex);
  EXPECT_EQ(d.exclude_modules, c.exclude_modules);
  EXPECT_EQ(d.rank_pattern, c.rank_pattern) << "file order matters: the first matching pattern wins";
  EXPECT_EQ(d.alpha_pattern, c.alpha_pattern);
  EXPECT_EQ(d.layers_to_transform, c.layers_to_transform);
  EXPECT_EQ(d.modules_to_save, c.modules_to_save);
  EXPECT_EQ(d.task_type, "CAUSAL_LM");
  EXPECT_EQ(d.base_model_name_or_path, "base");
  EXPECT_TRUE(LoraConfig::parse(parse(R"("target_modules": "all-linear")").to_json(), "x").all_linear);
}

}  // namespace
}  // namespace wick::test
