#include "wick/random_model.h"

#include <cmath>
#include <algorithm>
#include <fstream>
#include <vector>

#include "core/thread_pool.h"
#include "model/random_fill.h"
#include "model/weights.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {

// splitmix64: a counter-based generator, so each block of a tensor is filled independently.
uint64_t random_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Tensor random_uniform(const Shape& shape, DType dtype, float lo, float hi, uint64_t seed) {
  Tensor out = Tensor::empty(shape, dtype);
  const int64_t n = out.numel();
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> buf(static_cast<size_t>(kBlock));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t begin = blk * kBlock, count = std::min(kBlock, n - begin);
      for (int64_t i = 0; i < count; ++i) {
        const uint64_t r = random_mix(seed ^ random_mix(uint64_t(begin + i)));
        buf[size_t(i)] = lo + (hi - lo) * float(double(r >> 40) * 0x1.0p-24);
      }
      convert_from_f32(buf.data(), dtype, static_cast<std::byte*>(out.raw()) + size_t(begin) * dtype_size(dtype),
                       size_t(count));
    }
  });
  return out;
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) fail(ErrorKind::bad_input, path.string() + ": cannot write");
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}


}  // namespace

void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, const RandomModelOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(ErrorKind::bad_input, "--out " + dir.string() + ": cannot create directory (" + ec.message() + ")");
  ModelConfig c = config;
  c.dtype = options.dtype;
  std::vector<std::pair<std::string, Tensor>> tensors;
  uint64_t seed = random_mix(options.seed);
  for (const TensorSpec& spec : expected_tensors(c)) {
    seed = random_mix(seed);
    Tensor t;
    if (ends_with(spec.name, "norm.weight")) {
      t = random_uniform(spec.shape, options.dtype, 0.5f, 1.5f, seed);
    } else if (ends_with(spec.name, ".bias")) {
      const float a = 0.1f * std::sqrt(3.0f);
      t = random_uniform(spec.shape, options.dtype, -a, a, seed);
    } else {
      const float fan_in = spec.name == "model.embed_tokens.weight" ? 1.0f : float(spec.shape[1]);
      const float a = std::sqrt(3.0f / fan_in);
      t = random_uniform(spec.shape, options.dtype, -a, a, seed);
    }
    tensors.emplace_back(spec.name, std::move(t));
  }
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_text_file(dir / "config.json", c.to_json());
  std::string gen = "{\n";
  if (c.bos_token_id) gen += "  \"bos_token_id\": " + std::to_string(*c.bos_token_id) + ",\n";
  gen += "  \"eos_token_id\": [";
  for (size_t i = 0; i < c.eos_token_ids.size(); ++i) gen += (i ? ", " : "") + std::to_string(c.eos_token_ids[i]);
  gen += "]\n}\n";
  write_text_file(dir / "generation_config.json", gen);
}

}  // namespace wick
