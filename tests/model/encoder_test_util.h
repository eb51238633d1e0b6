// A tiny random BERT-family encoder written by hand (config.json + model.safetensors, as transformers saves
// BertModel / XLMRobertaModel / MPNetModel), and a straightforward double-precision forward pass over one sequence
// to hold wick's encoder against.
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/safetensors.h"
#include "wick/tensor.h"

namespace wick::test {

struct TinyEncoder {
  std::string model_type = "bert";  // bert, xlm-roberta, mpnet
  std::string hidden_act = "gelu";
  int64_t vocab = 50, hidden = 32, heads = 4, ffn = 48, layers = 2, max_positions = 40, types = 2;
  int64_t buckets = 32;
  int32_t pad = 0;
  double eps = 1e-12;
  std::string prefix;                     // "bert." etc.: as a task model's checkpoint names the tensors
  std::map<std::string, Tensor> tensors;  // by their name without prefix

  bool mpnet() const { return model_type == "mpnet"; }
  // The padding index positions count from: pad_token_id, but 1 for MPNet whatever config.json says (transformers'
  // MPNetEmbeddings hard-codes it).
  int32_t position_pad() const { return mpnet() ? 1 : pad; }
  int64_t offset() const { return model_type == "bert" ? 0 : position_pad() + 1; }

  // Names of layer i's tensors (without .weight/.bias): q k v o attn_norm up down out_norm.
  std::vector<std::string> layer_names(int64_t i) const {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    if (mpnet())
      return {p + "attention.attn.q",    p + "attention.attn.k",   p + "attention.attn.v", p + "attention.attn.o",
              p + "attention.LayerNorm", p + "intermediate.dense", p + "output.dense",     p + "output.LayerNorm"};
    return {p + "attention.self.query",
            p + "attention.self.key",
            p + "attention.self.value",
            p + "attention.output.dense",
            p + "attention.output.LayerNorm",
            p + "intermediate.dense",
            p + "output.dense",
            p + "output.LayerNorm"};
  }

  // Random weights as make_embed_fixtures.py draws them: matrices N(0, 1/fan_in), embeddings N(0, 1), LayerNorm
  // weights in [0.5, 1.5], biases N(0, 0.1).
  void randomize(uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> around_one(0.5f, 1.5f);
    const auto norm = [&](const std::string& n) {
      Tensor w = Tensor::empty({hidden}, DType::f32);
      for (int64_t i = 0; i < hidden; ++i) w.data<float>()[i] = around_one(rng);
      tensors[n + ".weight"] = w;
      tensors[n + ".bias"] = random_normal({hidden}, rng, 0.1f);
    };
    const auto linear = [&](const std::string& n, int64_t out, int64_t in) {
      tensors[n + ".weight"] = random_normal({out, in}, rng, float(1.0 / std::sqrt(double(in))));
      tensors[n + ".bias"] = random_normal({out}, rng, 0.1f);
    };
    tensors["embeddings.word_embeddings.weight"] = random_normal({vocab, hidden}, rng);
    tensors["embeddings.position_embeddings.weight"] = random_normal({max_positions, hidden}, rng);
    if (!mpnet()) tensors["embeddings.token_type_embeddings.weight"] = random_normal({types, hidden}, rng);
    norm("embeddings.LayerNorm");
    if (mpnet()) tensors["encoder.relative_attention_bias.weight"] = random_normal({buckets, heads}, rng);
    for (int64_t i = 0; i < layers; ++i) {
      const auto n = layer_names(i);
      for (int j = 0; j < 4; ++j) linear(n[size_t(j)], hidden, hidden);
      norm(n[4]);
      linear(n[5], ffn, hidden);
      linear(n[6], hidden, ffn);
      norm(n[7]);
    }
    // A pooler, as BertModel saves one: the loader ignores it.
    if (!mpnet()) linear("pooler.dense", hidden, hidden);
  }

  std::string config_json() const {
    nlohmann::json j = {{"model_type", model_type},
                        {"vocab_size", vocab},
                        {"hidden_size", hidden},
                        {"num_attention_heads", heads},
                        {"intermediate_size", ffn},
                        {"num_hidden_layers", layers},
                        {"max_position_embeddings", max_positions},
                        {"layer_norm_eps", eps},
                        {"hidden_act", hidden_act},
                        {"pad_token_id", pad}};
    if (!mpnet()) j["type_vocab_size"] = types;
    if (mpnet()) j["relative_attention_num_buckets"] = buckets;
    j["architectures"] = {model_type == "bert" ? "BertModel" : mpnet() ? "MPNetModel" : "XLMRobertaModel"};
    return j.dump(2);
  }

  // Every tensor rounded to bf16, as a bf16 checkpoint holds it (the reference then computes with the rounded values).
  void round_to_bf16() {
    for (auto& [name, t] : tensors) t = t.to(DType::bf16).to(DType::f32);
  }

  void write(const std::filesystem::path& dir, const std::vector<std::string>& skip = {},
             DType dtype = DType::f32) const {
    std::filesystem::create_directories(dir);
    write_file(dir / "config.json", config_json());
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& [name, t] : tensors)
      if (std::find(skip.begin(), skip.end(), name) == skip.end()) out.emplace_back(prefix + name, t.to(dtype));
    write_safetensors(dir / "model.safetensors", out);
  }

  // transformers' MPNet relative_position_bucket (max_distance 128), in its f32 arithmetic.
  int64_t bucket(int64_t relative) const {
    int64_t ret = 0, n = -relative, half = buckets / 2;
    ret += n < 0 ? half : 0;
    n = std::abs(n);
    const int64_t exact = half / 2;
    if (n < exact) return ret + n;
    const float large =
        std::log(float(n) / float(exact)) / float(std::log(128.0 / double(exact))) * float(half - exact);
    return ret + std::min<int64_t>(exact + int64_t(large), half - 1);
  }

  // The last hidden states of one sequence, [len, hidden], in double, as transformers computes them.
  std::vector<std::vector<double>> reference(const std::vector<int32_t>& ids) const {
    using Mat = std::vector<std::vector<double>>;
    const int64_t len = int64_t(ids.size()), d = hidden / heads;
    const auto at = [&](const std::string& n, int64_t i) { return double(tensors.at(n).data<float>()[i]); };
    const auto layer_norm = [&](Mat& x, const std::string& n) {
      for (auto& row : x) {
        double mean = 0, var = 0;
        for (double v : row) mean += v / double(hidden);
        for (double v : row) var += (v - mean) * (v - mean) / double(hidden);
        for (int64_t i = 0; i < hidden; ++i)
          row[size_t(i)] = (row[size_t(i)] - mean) / std::sqrt(var + eps) * at(n + ".weight", i) + at(n + ".bias", i);
      }
    };
    const auto linear = [&](const Mat& x, const std::string& n, int64_t out) {
      const int64_t in = int64_t(x[0].size());
      Mat y(x.size(), std::vector<double>(static_cast<size_t>(out)));
      for (size_t t = 0; t < x.size(); ++t)
        for (int64_t o = 0; o < out; ++o) {
          double s = at(n + ".bias", o);
          for (int64_t i = 0; i < in; ++i) s += x[t][size_t(i)] * at(n + ".weight", o * in + i);
          y[t][size_t(o)] = s;
        }
      return y;
    };
    Mat x(static_cast<size_t>(len), std::vector<double>(static_cast<size_t>(hidden)));
    int32_t counted = 0;
    for (int64_t t = 0; t < len; ++t) {
      const int32_t p = position_pad();
      const int64_t pos = model_type == "bert" ? t : ids[size_t(t)] == p ? p : p + ++counted;
      for (int64_t i = 0; i < hidden; ++i) {
        x[size_t(t)][size_t(i)] = at("embeddings.word_embeddings.weight", ids[size_t(t)] * hidden + i) +
                                  (mpnet() ? 0.0 : at("embeddings.token_type_embeddings.weight", i)) +
                                  at("embeddings.position_embeddings.weight", pos * hidden + i);
      }
    }
    layer_norm(x, "embeddings.LayerNorm");
    for (int64_t l = 0; l < layers; ++l) {
      const auto n = layer_names(l);
      const Mat q = linear(x, n[0], hidden), k = linear(x, n[1], hidden), v = linear(x, n[2], hidden);
      Mat ctx(static_cast<size_t>(len), std::vector<double>(static_cast<size_t>(hidden)));
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < len; ++i) {
          std::vector<double> s(static_cast<size_t>(len));
          double max = -1e300, sum = 0;
          for (int64_t j = 0; j < len; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e) dot += q[size_t(i)][size_t(h * d + e)] * k[size_t(j)][size_t(h * d + e)];
            s[size_t(j)] = dot / std::sqrt(double(d)) +
                           (mpnet() ? at("encoder.relative_attention_bias.weight", bucket(j - i) * heads + h) : 0.0);
            max = std::max(max, s[size_t(j)]);
          }
          for (double& e : s) sum += (e = std::exp(e - max));
          for (int64_t e = 0; e < d; ++e) {
            double acc = 0;
            for (int64_t j = 0; j < len; ++j) acc += s[size_t(j)] / sum * v[size_t(j)][size_t(h * d + e)];
            ctx[size_t(i)][size_t(h * d + e)] = acc;
          }
        }
      Mat o = linear(ctx, n[3], hidden);
      for (int64_t t = 0; t < len; ++t)
        for (int64_t i = 0; i < hidden; ++i) o[size_t(t)][size_t(i)] += x[size_t(t)][size_t(i)];
      layer_norm(o, n[4]);
      x = o;
      Mat hmid = linear(x, n[5], ffn);
      for (auto& row : hmid)
        for (double& e : row)
          e = hidden_act == "gelu"
                  ? 0.5 * e * (1 + std::erf(e / std::numbers::sqrt2))
                  : 0.5 * e * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (e + 0.044715 * e * e * e)));
      Mat out = linear(hmid, n[6], hidden);
      for (int64_t t = 0; t < len; ++t)
        for (int64_t i = 0; i < hidden; ++i) out[size_t(t)][size_t(i)] += x[size_t(t)][size_t(i)];
      layer_norm(out, n[7]);
      x = out;
    }
    return x;
  }
};

inline TinyEncoder tiny_encoder(const std::string& model_type, uint32_t seed = 7) {
  TinyEncoder e;
  e.model_type = model_type;
  if (model_type != "bert") {
    e.pad = 1;
    e.hidden_act = "gelu_new";
    e.eps = 1e-5;
    e.types = 1;
    e.max_positions = 42;
  }
  e.randomize(seed);
  return e;
}

}  // namespace wick::test
