// Adapters that do not fit: each fails with a clear error and leaves the model exactly as it was.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "adapter_test_util.h"

namespace wick::test {
namespace {

class BadAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    model = Model::load(fixture("models/tiny-tied"));
    rows = {{5, 6, 7, 8, 9}, {10, 11, 12, 13, 14}};
    good = LoraAdapter::random("good", all_projections(4, 8), *model, 1);
    model->apply_adapter(good);  // "unchanged" must include the adapter in effect
    logits = model->logits(rows, model->active_lora().get());
    weights = weight_snapshot(*model);
    dir = temp_dir("bad");
    LoraAdapter::random("other", all_projections(4, 8), *model, 2)->save(dir);
  }
  void TearDown() override {
    EXPECT_EQ(model->current_adapter(), good);
    EXPECT_EQ(model->merged_adapter(), nullptr);
    EXPECT_EQ(changed_tensors(weights, weight_snapshot(*model)), 0);
    EXPECT_TRUE(bit_equal(model->logits(rows, model->active_lora().get()), logits));
  }
  void edit_config(const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(read_file(dir / "adapter_config.json"));
    edit(j);
    write_file(dir / "adapter_config.json", j.dump());
  }
  std::map<std::string, Tensor> tensors() {
    auto f = SafetensorsFile::open(dir / "adapter_model.safetensors");
    std::map<std::string, Tensor> out;
    for (const auto& e : f->entries()) out[e.name] = f->tensor(e.name).clone();
    return out;
  }
  void write_tensors(const std::map<std::string, Tensor>& t) {
    write_safetensors(dir / "adapter_model.safetensors", {t.begin(), t.end()});
  }
  // Loads `dir` and applies it: the path a user takes.
  void load_and_apply() { model->apply_adapter(LoraAdapter::load(dir, *model)); }

  std::shared_ptr<Model> model;
  std::vector<std::vector<int32_t>> rows;
  std::shared_ptr<const LoraAdapter> good;
  Tensor logits;
  std::vector<Tensor> weights;
  std::filesystem::path dir;
};

TEST_F(BadAdapter, RankZero) {
  edit_config([](auto& j) { j["r"] = 0; });
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::bad_input, "adapter_config.json", "'r' is 0", "≥ 1");
}

TEST_F(BadAdapter, NanAlpha) {
  write_file(dir / "adapter_config.json",
             R"({"peft_type": "LORA", "r": 4, "lora_alpha": NaN, "target_modules": ["q_proj"]})");
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::bad_input, "adapter_config.json", "NaN", "finite");
}

TEST_F(BadAdapter, UnsupportedTypes) {
  edit_config([](auto& j) { j["use_dora"] = true; });
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::unsupported, "DoRA");
  edit_config([](auto& j) {
    j["use_dora"] = false;
    j["peft_type"] = "PREFIX_TUNING";
  });
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::unsupported, "PREFIX_TUNING");
}

TEST_F(BadAdapter, UnknownTarget) {
  edit_config([](auto& j) { j["target_modules"].push_back("c_attn"); });
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::bad_input, "'c_attn'", "no module of a Qwen2 model");
}

// One error lists every problem: a misshaped, a missing, an unexpected and a mistyped tensor.
TEST_F(BadAdapter, EveryTensorProblemInOneError) {
  auto t = tensors();
  const std::string p = "base_model.model.model.layers.";
  t[p + "0.self_attn.q_proj.lora_A.weight"] = Tensor::zeros({4, 32}, DType::f32);
  t.erase(p + "1.mlp.down_proj.lora_B.weight");
  t[p + "0.self_attn.q_proj.lora_magnitude_vector.weight"] = Tensor::zeros({64}, DType::f32);
  t[p + "1.mlp.up_proj.lora_A.weight"] = Tensor::zeros({4, 64}, DType::i32);
  write_tensors(t);
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::bad_input, "4 tensors do not fit",
                    "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': expected shape [4, 64], found [4, 32]",
                    "missing 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' [64, 4]",
                    "unexpected 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.weight'",
                    "up_proj.lora_A.weight': dtype I32", "different base model");
}

TEST_F(BadAdapter, DifferentHiddenSize) {
  auto untied = Model::load(fixture("models/tiny-untied"));  // hidden 96, 3 layers
  LoraAdapter::random("wide", all_projections(4, 8), *untied, 3)->save(dir);
  edit_config([](auto& j) { j["base_model_name_or_path"] = "tiny-untied"; });
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::bad_input, "hidden size 64", "expected shape [4, 64], found [4, 96]",
                    "... and 14 more", "than tiny-untied?");
  // An adapter already made for that model cannot be applied to this one either.
  const auto wide = LoraAdapter::load(dir, *untied, "wide");
  EXPECT_WICK_ERROR(model->apply_adapter(wide), ErrorKind::bad_input, "'wide'", "hidden 96", "hidden 64");
  EXPECT_WICK_ERROR(model->merge_adapter(wide), ErrorKind::bad_input, "'wide'");
}

TEST_F(BadAdapter, MissingFiles) {
  EXPECT_WICK_ERROR(model->apply_adapter(LoraAdapter::load(dir / "nope", *model)), ErrorKind::not_found, "nope");
  std::filesystem::remove(dir / "adapter_model.safetensors");
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::not_found, "adapter_model.safetensors");
  write_file(dir / "adapter_model.bin", "pickle");
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::unsupported, "adapter_model.bin", "safetensors");
  std::filesystem::remove(dir / "adapter_config.json");
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::not_found, "adapter_config.json");
}

TEST_F(BadAdapter, TruncatedWeights) {
  const std::string bytes = read_file(dir / "adapter_model.safetensors");
  write_file(dir / "adapter_model.safetensors", bytes.substr(0, bytes.size() / 2));
  EXPECT_WICK_ERROR(load_and_apply(), ErrorKind::corrupt, "adapter_model.safetensors");
}

TEST_F(BadAdapter, SecondMergeAndNullAdapters) {
  model->merge_adapter(LoraAdapter::load(dir, *model));
  const auto merged = weight_snapshot(*model);
  EXPECT_WICK_ERROR(model->merge_adapter(good), ErrorKind::bad_input, "already merged");
  EXPECT_EQ(changed_tensors(merged, weight_snapshot(*model)), 0);
  model->unmerge_adapter();
  EXPECT_EQ(model->unmerge_adapter(), nullptr) << "nothing left to unmerge";
  EXPECT_WICK_ERROR(model->apply_adapter(nullptr), ErrorKind::bad_input, "remove_adapter");
}

}  // namespace
}  // namespace wick::test
