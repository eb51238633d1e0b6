// wick generate --model DIR --tokens 1,2,3 --greedy [--max-tokens N] [--ignore-eos] [--json]
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "wick/error.h"
#include "wick/generator.h"

namespace wick::cli {

Action add_generate(CLI::App& app) {
  struct Opts {
    std::string model, tokens, device = "cpu";
    int32_t max_tokens = 16;
    bool greedy = false, ignore_eos = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens with a KV cache");
  cmd->add_option("--model", o->model, "Hugging Face model directory")->required();
  cmd->add_option("--tokens", o->tokens, "prompt token ids, e.g. 1,2,3")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "new tokens at most (default 16)");
  cmd->add_flag("--greedy", o->greedy, "greedy decoding (argmax)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "mask EOS logits to -inf");
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->add_option("--device", o->device, "cpu or cuda");
  return [o]() {
    const auto rows = parse_token_rows(o->tokens, "--tokens");
    if (rows.size() != 1) fail(ErrorKind::bad_input, "--tokens: generate takes one prompt (no ';')");
    if (!o->greedy)
      fail(ErrorKind::unsupported, "generate: only --greedy decoding is implemented so far (sampling comes with the sampler)");
    auto model = Model::load(o->model, {.device = parse_device(o->device)});
    const GenerateResult r = Generator(model).generate(rows[0], {.max_tokens = o->max_tokens, .ignore_eos = o->ignore_eos});
    if (o->json) {
      nlohmann::json j;
      j["prompt_ids"] = r.prompt_ids;
      j["output_ids"] = r.output_ids;
      j["text"] = nullptr;  // no tokenizer is loaded for --tokens input
      j["finish_reason"] = std::string(to_string(r.finish));
      j["timings"] = {{"prefill_ms", r.prefill_ms}, {"decode_ms", r.decode_ms},
                      {"decode_tokens_per_s", r.decode_tokens_per_s()}};
      std::cout << j.dump() << "\n";
    } else {
      for (size_t i = 0; i < r.output_ids.size(); ++i) std::cout << (i ? "," : "") << r.output_ids[i];
      std::cout << "\n";
      std::cerr << "finish: " << to_string(r.finish) << ", prefill " << r.prefill_ms << " ms, decode "
                << r.decode_tokens_per_s() << " tok/s\n";
    }
  };
}

}  // namespace wick::cli
