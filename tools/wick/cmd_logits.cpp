// wick logits --model DIR|ORG/NAME [--adapter DIR|ORG/NAME] --tokens "1,2,3;4,5,6" --out FILE.safetensors
#include <memory>

#include "cli.h"
#include "wick/adapter.h"
#include "wick/model.h"
#include "wick/safetensors.h"

namespace wick::cli {

Action add_logits(CLI::App& app) {
  struct Opts {
    std::string model, adapter, tokens, out, device = "cpu";
    CpuFlags cpu;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("logits", "One forward pass; writes f32 tensor `logits` to a safetensors file");
  cmd->add_option("--model", o->model, "Hugging Face model directory")->required();
  cmd->add_option("--adapter", o->adapter, "PEFT LoRA adapter directory to apply");
  cmd->add_option("--tokens", o->tokens, "token ids: rows separated by ';', ids by ','")->required();
  cmd->add_option("--out", o->out, "output .safetensors file")->required();
  cmd->add_option("--device", o->device, "cpu or cuda");
  add_cpu_flags(cmd, o->cpu);
  add_tensor_parallel_flag(cmd, o->cpu);
  return [o]() {
    const auto rows = parse_token_rows(o->tokens, "--tokens");
    auto model = Model::load(resolve_model_arg(o->model), load_options(o->device, o->cpu));
    const auto adapter = o->adapter.empty() ? nullptr : LoraAdapter::load(resolve_model_arg(o->adapter), *model);
    Tensor logits = model->logits(rows, adapter ? &adapter->source() : nullptr);
    write_safetensors(o->out, {{"logits", logits}});
  };
}

}  // namespace wick::cli
