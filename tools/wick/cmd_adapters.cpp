// wick adapters inspect DIR [--model M]
// wick adapters merge --model M --adapter A --out DIR
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/model.h"
#include "wick/safetensors.h"

namespace wick::cli {

namespace {

std::string read_config(const std::filesystem::path& dir) {
  const auto path = dir / "adapter_config.json";
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorKind::not_found, path.string() + ": missing (not a PEFT adapter directory?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The adapter as its files describe it; with a model, also what it does to that model.
nlohmann::json inspect(const std::string& dir, const std::string& model_dir) {
  const LoraConfig c = LoraConfig::parse(read_config(dir), dir + "/adapter_config.json");
  nlohmann::json j;
  j["dir"] = dir;
  j["peft_type"] = "LORA";
  j["base_model_name_or_path"] = c.base_model_name_or_path;
  j["task_type"] = c.task_type;
  j["r"] = c.r;
  j["lora_alpha"] = c.lora_alpha;
  j["use_rslora"] = c.use_rslora;
  if (c.all_linear) j["target_modules"] = "all-linear";
  else if (!c.target_regex.empty()) j["target_modules"] = c.target_regex;
  else j["target_modules"] = c.target_modules;
  j["layers_to_transform"] = c.layers_to_transform;
  j["rank_pattern"] = nlohmann::json::object();
  for (const auto& [k, v] : c.rank_pattern) j["rank_pattern"][k] = v;
  j["alpha_pattern"] = nlohmann::json::object();
  for (const auto& [k, v] : c.alpha_pattern) j["alpha_pattern"][k] = v;
  j["modules_to_save"] = c.modules_to_save;

  const auto file = SafetensorsFile::open(std::filesystem::path(dir) / "adapter_model.safetensors");
  int64_t params = 0;
  std::map<std::string, int64_t> dtypes;
  for (const auto& e : file->entries()) {
    params += shape_numel(e.shape);
    ++dtypes[e.dtype_name];
  }
  j["tensors"] = file->entries().size();
  j["parameters"] = params;
  j["dtypes"] = dtypes;

  if (!model_dir.empty()) {
    auto model = Model::load(model_dir);
    const AdapterInfo info = LoraAdapter::load(dir, *model)->info();
    j["model"] = model_dir;
    j["fits_model"] = true;
    j["targets"] = info.targets;
    j["lora_modules"] = info.lora_modules;
    j["max_rank"] = info.max_rank;
    j["saved_modules"] = info.saved_modules;
    j["device_bytes"] = info.bytes;
  }
  return j;
}

}  // namespace

Action add_adapters(CLI::App& app) {
  struct Opts {
    std::string inspect_dir, inspect_model, model, adapter, out, device = "cpu";
    CpuFlags cpu;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("adapters", "Inspect PEFT LoRA adapters, or merge one into a model");
  cmd->require_subcommand(1);
  CLI::App* ins = cmd->add_subcommand("inspect", "Print an adapter's configuration and size as JSON");
  ins->add_option("dir", o->inspect_dir, "PEFT adapter directory")->required();
  ins->add_option("--model", o->inspect_model, "also check the adapter against this model directory");
  CLI::App* merge = cmd->add_subcommand("merge", "Fold an adapter into a model and write a Hugging Face directory");
  merge->add_option("--model", o->model, "base model directory")->required();
  merge->add_option("--adapter", o->adapter, "PEFT adapter directory")->required();
  merge->add_option("--out", o->out, "output model directory (f32 weights)")->required();
  merge->add_option("--device", o->device, "cpu or cuda");
  add_cpu_flags(merge, o->cpu);
  return [o, ins, merge]() {
    if (ins->parsed()) {
      std::cout << inspect(resolve_model_arg(o->inspect_dir), resolve_model_arg(o->inspect_model)).dump(2) << "\n";
    } else if (merge->parsed()) {
      if (o->cpu.weights == "int8")  // the merged sums would be written quantised, in f32 files that claim otherwise
        fail(ErrorKind::bad_input, "adapters merge: --weights int8 would write the merged model's 8-bit rounding into "
                                   "its f32 files; merge with --weights auto and load the merged model with --weights "
                                   "int8 instead");
      auto model = Model::load(resolve_model_arg(o->model), load_options(o->device, o->cpu));
      model->merge_adapter(LoraAdapter::load(resolve_model_arg(o->adapter), *model));
      model->save_pretrained(o->out);
      std::cerr << "merged " << o->adapter << " into " << o->model << " -> " << o->out << "\n";
    }
  };
}

}  // namespace wick::cli
