// Weight files that do not fit the config, random models, and the LoRA chokepoint.
#include <gtest/gtest.h>

#include <filesystem>

#include "backend/backend.h"
#include "model/linear.h"
#include "model/weights.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/model.h"
#include "wick/random_model.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

// A copy of tiny-tied whose model.safetensors went through `edit`.
fs::path edited_copy(const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  const fs::path src = fixture("models/tiny-tied"), dst = temp_dir("weights");
  fs::copy_file(src / "config.json", dst / "config.json");
  auto file = SafetensorsFile::open(src / "model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& e : file->entries()) tensors.emplace_back(e.name, file->tensor(e.name).clone());
  edit(tensors);
  write_safetensors(dst / "model.safetensors", tensors);
  return dst;
}

TEST(Weights, ReportsEveryMissingTensorAtOnce) {
  const auto dir = edited_copy([](auto& ts) {
    std::erase_if(ts, [](const auto& p) { return p.first == "model.norm.weight" || p.first == "model.layers.1.mlp.up_proj.weight"; });
  });
  EXPECT_WICK_ERROR(Model::load(dir), ErrorKind::not_found, "2 tensors", "missing 'model.norm.weight' [64]",
                    "missing 'model.layers.1.mlp.up_proj.weight' [160, 64]", "different model");
}

TEST(Weights, ReportsWrongShapesWithExpectedAndFound) {
  const auto dir = edited_copy([](auto& ts) {
    for (auto& [name, t] : ts)
      if (name == "model.layers.0.self_attn.q_proj.weight") t = Tensor::zeros({32, 64}, DType::f32);
    std::erase_if(ts, [](const auto& p) { return p.first == "model.norm.weight"; });
  });
  EXPECT_WICK_ERROR(Model::load(dir), ErrorKind::corrupt, "'model.layers.0.self_attn.q_proj.weight': expected shape [64, 64], found [32, 64]",
                    "missing 'model.norm.weight'");
}

TEST(Weights, RejectsIntegerWeights) {
  const auto dir = edited_copy([](auto& ts) {
    for (auto& [name, t] : ts)
      if (name == "model.norm.weight") t = Tensor::zeros({64}, DType::i32);
  });
  EXPECT_WICK_ERROR(Model::load(dir), ErrorKind::corrupt, "model.norm.weight", "I32");
}

TEST(Weights, ConfigFromAnotherModel) {
  const fs::path dst = temp_dir("mix");
  fs::copy_file(fixture("models/tiny-untied/config.json"), dst / "config.json");
  fs::copy_file(fixture("models/tiny-tied/model.safetensors"), dst / "model.safetensors");
  EXPECT_WICK_ERROR(Model::load(dst), ErrorKind::corrupt, "expected shape [384, 96], found [384, 64]", "lm_head.weight");
}

TEST(Weights, MissingFiles) {
  EXPECT_WICK_ERROR(Model::load("/nonexistent/dir"), ErrorKind::not_found, "/nonexistent/dir");
  const fs::path dst = temp_dir("nofile");
  fs::copy_file(fixture("models/tiny-tied/config.json"), dst / "config.json");
  EXPECT_WICK_ERROR(Model::load(dst), ErrorKind::not_found, "model.safetensors");
}

TEST(RandomModel, WritesALoadableDeterministicModel) {
  const fs::path a = temp_dir("rand"), b = temp_dir("rand");
  const ModelConfig tiny = ModelConfig::preset("tiny");
  write_random_model(tiny, a, {.dtype = DType::bf16, .seed = 7});
  write_random_model(tiny, b, {.dtype = DType::bf16, .seed = 7});
  EXPECT_EQ(read_file(a / "model.safetensors"), read_file(b / "model.safetensors"));
  auto model = Model::load(a);
  EXPECT_EQ(model->config().parameter_count(), tiny.parameter_count());
  EXPECT_EQ(model->generation_defaults().eos_token_ids, tiny.eos_token_ids);
  const Tensor logits = model->logits({{1, 2, 3}});
  for (int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits.data<float>()[i]));
  // Norm weights lie in [0.5, 1.5] and matrices have variance 1/fan_in (uniform).
  auto file = SafetensorsFile::open(a / "model.safetensors");
  const Tensor norm = file->tensor("model.norm.weight").to(DType::f32);
  for (int64_t i = 0; i < norm.numel(); ++i) ASSERT_TRUE(norm.data<float>()[i] >= 0.5f && norm.data<float>()[i] <= 1.5f);
  const Tensor w = file->tensor("model.layers.0.mlp.down_proj.weight").to(DType::f32);
  double var = 0;
  for (int64_t i = 0; i < w.numel(); ++i) var += double(w.data<float>()[i]) * w.data<float>()[i];
  EXPECT_NEAR(var / double(w.numel()) * 160.0, 1.0, 0.05);
}

// The chokepoint adds scale · B(A·x) to the base projection; compared with plain loops.
TEST(LoraChokepoint, AddsScaledLowRankProduct) {
  auto backend = make_cpu_backend();
  const int64_t rows = 3, in = 5, out = 4, rank = 2;
  auto seq = [](int64_t n, float step, float off) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = off + step * float((i * 7) % 11) - 0.3f * float(i % 3);
    return v;
  };
  const auto xs = seq(rows * in, 0.1f, -0.4f), ws = seq(out * in, 0.05f, -0.2f), bs = seq(out, 0.2f, 0.1f),
             as = seq(rank * in, -0.07f, 0.3f), bbs = seq(out * rank, 0.09f, -0.1f);
  Projection proj{.weight = Tensor::from_floats(ws, {out, in}), .bias = Tensor::from_floats(bs, {out}), .layer = 1,
                  .kind = ProjKind::v};
  struct OneAdapter : LoraSource {
    LoraFactors f;
    const LoraFactors* factors(int layer, ProjKind kind) const override {
      return layer == 1 && kind == ProjKind::v ? &f : nullptr;
    }
  } lora;
  lora.f = {.a = Tensor::from_floats(as, {rank, in}), .b = Tensor::from_floats(bbs, {out, rank}), .scale = 2.5f};
  const Tensor x = Tensor::from_floats(xs, {rows, in});
  Tensor y = Tensor::empty({rows, out}, DType::f32), base = Tensor::empty({rows, out}, DType::f32);
  linear(*backend, x, proj, &lora, y);
  linear(*backend, x, proj, nullptr, base);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double plain = bs[size_t(o)], delta = 0;
      for (int64_t i = 0; i < in; ++i) plain += double(xs[size_t(r * in + i)]) * ws[size_t(o * in + i)];
      for (int64_t k = 0; k < rank; ++k) {
        double ax = 0;
        for (int64_t i = 0; i < in; ++i) ax += double(as[size_t(k * in + i)]) * xs[size_t(r * in + i)];
        delta += double(bbs[size_t(o * rank + k)]) * ax;
      }
      EXPECT_NEAR(base.data<float>()[r * out + o], plain, 1e-5);
      EXPECT_NEAR(y.data<float>()[r * out + o], plain + 2.5 * delta, 1e-5);
    }
  proj.layer = 0;  // a projection the adapter does not target is left alone
  linear(*backend, x, proj, &lora, y);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y.data<float>()[i], base.data<float>()[i]);
}

}  // namespace
}  // namespace wick::test
