// Model::save_pretrained: the weights as they are now, as a Hugging Face directory (used to export a
// model with an adapter merged in).
#include <fstream>
#include <map>
#include <shared_mutex>
#include <system_error>

#include <nlohmann/json.hpp>

#include "model/model_impl.h"
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

}  // namespace

std::vector<std::pair<std::string, Tensor>> Model::state_dict() const {
  require_whole(*impl_, "exporting the weights");
  Backend& b = *impl_->backend;
  const std::shared_lock lock(impl_->weights_mutex);
  const ModelWeights& w = impl_->weights;
  std::map<std::string, const Tensor*> by_name{{"model.embed_tokens.weight", &w.embed},
                                               {"model.norm.weight", &w.final_norm},
                                               {"lm_head.weight", &w.head},
                                               {"score.weight", &w.head}};
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    by_name[p + "input_layernorm.weight"] = &l.input_norm;
    by_name[p + "post_attention_layernorm.weight"] = &l.post_attention_norm;
    for (int k = 0; k < kProjKinds; ++k) {
      const Projection& proj = l.projection(ProjKind(k));
      by_name[p + proj_path(proj.kind) + ".weight"] = &proj.weight;
      if (proj.bias.defined()) by_name[p + proj_path(proj.kind) + ".bias"] = &proj.bias;
    }
  }
  // expected_tensors() is the one list of what a Qwen2 directory holds.
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const TensorSpec& spec : expected_tensors(impl_->config)) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) fail(ErrorKind::internal, "state_dict: no weight for '" + spec.name + "'");
    tensors.emplace_back(spec.name, b.download(*it->second));
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
