// Model::save_pretrained: the weights as they are now, as a Hugging Face directory (used to export a
// model with an adapter merged in); a split model's shares joined back into whole tensors.
#include <fstream>
#include <map>
#include <shared_mutex>
#include <system_error>

#include <nlohmann/json.hpp>

#include "model/model_impl.h"
#include "model/tensor_parallel.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) fail(ErrorKind::bad_input, path.string() + ": cannot write");
}

std::string generation_json(const GenerationDefaults& g) {
  nlohmann::json j = nlohmann::json::object();
  if (g.eos_token_ids.size() == 1) j["eos_token_id"] = g.eos_token_ids[0];
  else if (!g.eos_token_ids.empty()) j["eos_token_id"] = g.eos_token_ids;
  if (g.bos_token_id) j["bos_token_id"] = *g.bos_token_id;
  if (g.pad_token_id) j["pad_token_id"] = *g.pad_token_id;
  if (g.do_sample) j["do_sample"] = *g.do_sample;
  if (g.temperature) j["temperature"] = *g.temperature;
  if (g.top_p) j["top_p"] = *g.top_p;
  if (g.top_k) j["top_k"] = *g.top_k;
  if (g.min_p) j["min_p"] = *g.min_p;
  if (g.repetition_penalty) j["repetition_penalty"] = *g.repetition_penalty;
  if (g.max_new_tokens) j["max_new_tokens"] = *g.max_new_tokens;
  return j.dump(2) + "\n";
}

// How a tensor of a split model is joined from its ranks' shares.
enum class Join { whole, projection, vocabulary };
struct Named {
  const Tensor* tensor;
  Join join = Join::whole;
  ProjKind kind = ProjKind::q;
};

// Every tensor of `w` by its name in a Hugging Face directory.
std::map<std::string, Named> by_name(const ModelWeights& w, bool split_head) {
  std::map<std::string, Named> out{{"model.embed_tokens.weight", {&w.embed, Join::vocabulary}},
                                   {"model.norm.weight", {&w.final_norm}},
                                   {"lm_head.weight", {&w.head, split_head ? Join::vocabulary : Join::whole}},
                                   {"score.weight", {&w.head}}};
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out[p + "input_layernorm.weight"] = {&l.input_norm};
    out[p + "post_attention_layernorm.weight"] = {&l.post_attention_norm};
    for (int k = 0; k < kProjKinds; ++k) {
      const Projection& proj = l.projection(ProjKind(k));
      out[p + proj_path(proj.kind) + ".weight"] = {&proj.weight, Join::projection, proj.kind};
      // A row-split projection's bias is rank 0's alone: whole.
      if (proj.bias.defined())
        out[p + proj_path(proj.kind) + ".bias"] = {
            &proj.bias, column_parallel(proj.kind) ? Join::projection : Join::whole, proj.kind};
    }
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> Model::state_dict() const {
  const std::shared_lock lock(impl_->weights_mutex);
  const TensorParallel* tp = impl_->tp.get();
  const int ranks = tp ? tp->ranks() : 1;
  const bool split_head = tp && impl_->config.head == ModelHead::causal_lm;
  // expected_tensors() is the one list of what a Qwen2 directory holds; each rank downloads its shares of them (a
  // split model's on the rank's thread, its GPU current there).
  const std::vector<TensorSpec> specs = expected_tensors(impl_->config);
  std::vector<std::vector<Tensor>> shares(specs.size(), std::vector<Tensor>(size_t(ranks)));
  std::vector<Named> named(specs.size());
  const auto download = [&](int r) {
    Backend& b = tp ? *tp->backends[size_t(r)] : *impl_->backend;
    if (tp) b.bind_thread();
    const std::map<std::string, Named> names = by_name(tp ? tp->weights[size_t(r)] : impl_->weights, split_head);
    for (size_t i = 0; i < specs.size(); ++i) {
      auto it = names.find(specs[i].name);
      if (it == names.end()) fail(ErrorKind::internal, "state_dict: no weight for '" + specs[i].name + "'");
      if (r == 0) named[i] = it->second;
      if (r == 0 || it->second.join != Join::whole) shares[i][size_t(r)] = b.download(*it->second.tensor);
    }
  };
  if (tp) tp->threads->run(download);
  else download(0);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::vector<Tensor>& s = shares[i];
    const Join join = tp ? named[i].join : Join::whole;
    tensors.emplace_back(specs[i].name, join == Join::whole        ? s[0]
                                        : join == Join::projection ? join_projection(s, named[i].kind)
                                                                   : join_vocabulary(s, impl_->config.vocab_size));
  }
  return tensors;
}

void Model::save_pretrained(const fs::path& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::bad_input, dir.string() + ": cannot create directory (" + ec.message() + ")");
  write_safetensors(dir / "model.safetensors", state_dict(), {{"format", "pt"}});
  ModelConfig out = impl_->config;
  out.dtype = DType::f32;
  write_text(dir / "config.json", out.to_json());
  const GenerationDefaults& g = impl_->generation;
  if (!g.eos_token_ids.empty() || g.bos_token_id || g.pad_token_id)
    write_text(dir / "generation_config.json", generation_json(g));
}

}  // namespace wick
