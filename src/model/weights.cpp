#include "model/weights.h"

#include <functional>

#include "wick/error.h"

namespace wick {

namespace {

std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }

bool has_bias(ProjKind k) { return k == ProjKind::q || k == ProjKind::k || k == ProjKind::v; }

constexpr ProjKind kAllProj[] = {ProjKind::q, ProjKind::k, ProjKind::v, ProjKind::o,
                                 ProjKind::gate, ProjKind::up, ProjKind::down};

std::string head_name(const ModelConfig& c) {
  return c.head == ModelHead::sequence_classification ? "score.weight" : "lm_head.weight";
}

}  // namespace

Shape proj_shape(const ModelConfig& c, ProjKind k) {
  switch (k) {
    case ProjKind::q: return {c.q_dim(), c.hidden_size};
    case ProjKind::k:
    case ProjKind::v: return {c.kv_dim(), c.hidden_size};
    case ProjKind::o: return {c.hidden_size, c.q_dim()};
    case ProjKind::gate:
    case ProjKind::up: return {c.intermediate_size, c.hidden_size};
    case ProjKind::down: return {c.hidden_size, c.intermediate_size};
  }
  return {};
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix(i);
    specs.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    specs.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
    for (ProjKind k : kAllProj) {
      const Shape s = proj_shape(c, k);
      specs.push_back({p + proj_path(k) + ".weight", s});
      if (has_bias(k)) specs.push_back({p + proj_path(k) + ".bias", {s[0]}});
    }
  }
  specs.push_back({"model.norm.weight", {c.hidden_size}});
  if (c.head == ModelHead::sequence_classification)
    specs.push_back({"score.weight", {c.num_labels, c.hidden_size}});
  else if (c.head == ModelHead::causal_lm && !c.tie_word_embeddings)
    specs.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return specs;
}

ModelWeights load_weights(const ModelConfig& c, const TensorStore& store, Backend& backend, const std::string& source,
                          Shard shard) {
  // A headless Qwen2Model saves its body without the "model." prefix of the task models (embedders ship it so).
  const bool bare = c.head == ModelHead::none && !store.find("model.embed_tokens.weight") &&
                    store.find("embed_tokens.weight");
  const auto file_name = [bare](const std::string& name) {
    return bare && name.starts_with("model.") ? name.substr(6) : name;
  };
  // Validate whole, report all: every problem in one message before any allocation.
  std::vector<std::string> problems;
  bool only_missing = true;
  for (const TensorSpec& canonical : expected_tensors(c)) {
    const TensorSpec spec{file_name(canonical.name), canonical.shape};
    const SafetensorsEntry* e = store.find(spec.name);
    if (!e) {
      problems.push_back("missing '" + spec.name + "' " + to_string(spec.shape));
      continue;
    }
    if (e->shape != spec.shape)
      problems.push_back("'" + spec.name + "': expected shape " + to_string(spec.shape) + ", found " +
                         to_string(e->shape));
    else if (!e->supported || e->dtype == DType::i32)
      problems.push_back("'" + spec.name + "': dtype " + e->dtype_name + " (expected F32, BF16 or F16)");
    else
      continue;
    only_missing = false;
  }
  if (!problems.empty()) {
    std::string msg = source + ": " + std::to_string(problems.size()) + " tensor" +
                      (problems.size() == 1 ? "" : "s") + " do not fit config.json:";
    for (const auto& p : problems) msg += "\n  " + p;
    msg += "\n  (weights for a different model, or a config.json that does not belong to them?)";
    fail(only_missing ? ErrorKind::not_found : ErrorKind::corrupt, msg);
  }

  const DType dt = backend.compute_dtype();
  const bool split = shard.ranks > 1;
  auto get = [&](const std::string& name) { return backend.upload(store.tensor(file_name(name)), dt); };
  // `cut` takes the rank's share of the file's tensor (the whole of it on one device).
  auto matrix = [&](const std::string& canonical, const std::function<Tensor(const Tensor&)>& cut) {
    const std::string name = file_name(canonical);
    const Tensor file = store.tensor(name);
    Tensor w;
    try {
      w = backend.upload_weight(split ? cut(file) : file);
    } catch (const Error& e) {
      fail(e.kind(), source + ": tensor '" + name + "': " + e.what());
    }
    // A copy of its own (f32, q8_0, device memory): the file's pages need not stay in this process's memory; a view
    // (the CPU's bf16) keeps them. The other ranks still need a split model's.
    if (!split && w.raw() != file.raw()) store.release(name);
    return w;
  };
  const auto vocab_rows = [&](const Tensor& t) { return shard_embedding(t, shard); };
  ModelWeights w;
  w.embed = matrix("model.embed_tokens.weight", vocab_rows);
  w.layers.resize(size_t(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[size_t(i)];
    const std::string p = layer_prefix(i);
    l.input_norm = get(p + "input_layernorm.weight");
    l.post_attention_norm = get(p + "post_attention_layernorm.weight");
    for (const ProjKind k : kAllProj) {
      Projection& proj = l.projection(k);
      proj.layer = int(i);
      proj.kind = k;
      proj.weight = matrix(p + proj_path(k) + ".weight", [&](const Tensor& t) { return shard_projection(t, k, shard); });
      if (has_bias(k)) {
        const std::string name = p + proj_path(k) + ".bias";
        proj.bias = split ? backend.upload(shard_projection(store.tensor(file_name(name)), k, shard), dt) : get(name);
      }
    }
  }
  w.final_norm = get("model.norm.weight");
  if (c.head == ModelHead::causal_lm && c.tie_word_embeddings)  // split: the embedding's slice, without its padding
    w.head = split ? w.embed.rows(0, vocab_slice(c.vocab_size, shard).count) : w.embed;
  else if (c.head == ModelHead::causal_lm)
    w.head = matrix(head_name(c), [&](const Tensor& t) { return shard_head(t, shard); });
  else if (c.head != ModelHead::none)  // a classifier's head: whole on every rank
    w.head = matrix(head_name(c), [](const Tensor& t) { return t; });
  return w;
}

}  // namespace wick
