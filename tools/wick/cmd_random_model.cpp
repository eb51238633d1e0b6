// wick random-model --like qwen2.5-0.5b|qwen2.5-7b|tiny|minilm-l6|bert-base|tiny-bert --dtype bf16|f16|f32 --out DIR
#include <iostream>
#include <memory>

#include "cli.h"
#include "wick/error.h"
#include "wick/random_model.h"

namespace wick::cli {

Action add_random_model(CLI::App& app) {
  struct Opts {
    std::string like, dtype = "bf16", out;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("random-model", "Write a Qwen2 model, or a sentence-transformers encoder, with random weights (for tests and speed work)");
  cmd->add_option("--like", o->like,
                  "qwen2.5-0.5b, qwen2.5-7b or tiny (Qwen2); minilm-l6, bert-base or tiny-bert (a sentence-transformers "
                  "BertModel folder)")
      ->required();
  cmd->add_option("--dtype", o->dtype, "bf16, f16 or f32 (default bf16)");
  cmd->add_option("--out", o->out, "output directory")->required();
  cmd->add_option("--seed", o->seed, "random seed (default 0)");
  return [o]() {
    const DType dtype = parse_dtype(o->dtype, "--dtype");
    if (dtype == DType::i32) fail(ErrorKind::bad_input, "--dtype: weights must be bf16, f16 or f32");
    if (is_random_embedder_shape(o->like)) {
      write_random_embedder(o->like, o->out, {.dtype = dtype, .seed = o->seed});
      std::cerr << "wrote " << o->out << ": a sentence-transformers folder (" << o->like << ", " << o->dtype << ")\n";
      return;
    }
    const ModelConfig config = ModelConfig::preset(o->like);
    write_random_model(config, o->out, {.dtype = dtype, .seed = o->seed});
    std::cerr << "wrote " << o->out << ": " << config.parameter_count() << " parameters (" << o->like << ", " << o->dtype
              << ")\n";
  };
}

}  // namespace wick::cli
