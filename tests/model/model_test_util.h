// Helpers for tests that compare wick's model outputs with transformers' reference dumps.
#pragma once

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "wick/model.h"
#include "wick/random_model.h"
#include "wick/safetensors.h"
#include "wick/tensor.h"

namespace wick::test {

/// max |a - b| / max |b| over all elements (b is the reference).
inline double relative_max_error(const Tensor& a, const Tensor& b) {
  const Tensor fa = a.to(DType::f32), fb = b.to(DType::f32);
  double num = 0, den = 0;
  for (int64_t i = 0; i < fb.numel(); ++i) {
    num = std::max(num, double(std::fabs(fa.data<float>()[i] - fb.data<float>()[i])));
    den = std::max(den, double(std::fabs(fb.data<float>()[i])));
  }
  return den > 0 ? num / den : num;
}

/// ‖a − b‖ / ‖b‖ over all elements (b is the reference).
inline double relative_l2_error(const Tensor& a, const Tensor& b) {
  const Tensor fa = a.to(DType::f32), fb = b.to(DType::f32);
  double num = 0, den = 0;
  for (int64_t i = 0; i < fb.numel(); ++i) {
    const double d = double(fa.data<float>()[i]) - fb.data<float>()[i];
    num += d * d;
    den += double(fb.data<float>()[i]) * fb.data<float>()[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// The model's weights as they are now, written out in f32 (save_pretrained) and loaded again with f32 weights: for
/// an 8-bit model, the f32 model of its dequantised values.
inline std::shared_ptr<Model> f32_copy(const Model& model) {
  const std::filesystem::path dir = temp_dir("f32-copy");
  model.save_pretrained(dir);
  return Model::load(dir, {.cpu_weights = CpuWeights::f32});
}

/// A model directory (config.json, generation_config.json where it has one, the weights) with every weight converted
/// to f16 — rounded where the files hold values f16 cannot (beyond 11 significant bits or its range) — in a temp
/// folder.
inline std::filesystem::path f16_copy(const std::filesystem::path& dir) {
  const std::filesystem::path out = temp_dir("f16-copy");
  for (const char* name : {"config.json", "generation_config.json"})
    if (std::filesystem::exists(dir / name)) std::filesystem::copy_file(dir / name, out / name);
  const TensorStore store = TensorStore::open_dir(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : store.names()) tensors.emplace_back(name, store.tensor(name).to(DType::f16));
  write_safetensors(out / "model.safetensors", tensors);
  return out;
}

/// Row r of an i32 [rows, n] tensor, optionally only its first n values.
inline std::vector<int32_t> int_row(const Tensor& t, int64_t r, int64_t n = -1) {
  const int64_t w = t.dim(1);
  const int32_t* p = t.data<int32_t>() + r * w;
  return std::vector<int32_t>(p, p + (n < 0 ? w : n));
}

// The shape of a two-layer random model with an untied head (tp_random_model).
struct TpShape {
  int64_t vocab, hidden, ffn, heads, kv_heads, head_dim;
};

// A random model of `shape` written into a fresh folder `name`.
inline std::filesystem::path tp_random_model(const char* name, const TpShape& shape, DType dtype, uint64_t seed) {
  ModelConfig c;
  c.vocab_size = shape.vocab;
  c.hidden_size = shape.hidden;
  c.intermediate_size = shape.ffn;
  c.num_layers = 2;
  c.num_heads = shape.heads;
  c.num_kv_heads = shape.kv_heads;
  c.head_dim = shape.head_dim;
  c.max_position_embeddings = 128;
  c.tie_word_embeddings = false;
  const std::filesystem::path dir = temp_dir(name);
  write_random_model(c, dir, {.dtype = dtype, .seed = seed});
  return dir;
}

// A random model whose heads, KV heads and MLP divide by 4, with a vocabulary that does not (the last rank's slice is
// short).
inline std::filesystem::path four_way_model() {
  static const std::filesystem::path dir = tp_random_model(
      "tp-four", {.vocab = 1001, .hidden = 64, .ffn = 96, .heads = 8, .kv_heads = 4, .head_dim = 8}, DType::f32, 7);
  return dir;
}

}  // namespace wick::test
