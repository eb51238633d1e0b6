// wick generate --model DIR (--prompt TEXT | --tokens 1,2,3) [sampling flags] [--stream] [--json]
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "sampling_flags.h"
#include "wick/adapter.h"
#include "wick/error.h"

namespace wick::cli {

namespace {

nlohmann::json token_json(const StreamToken& t, bool with_text) {
  nlohmann::json j = {{"id", t.id}, {"index", t.index}, {"logprob", t.logprob}, {"logit", t.logit}};
  j["text"] = with_text ? nlohmann::json(t.text) : nlohmann::json(nullptr);
  if (!t.top.empty()) {
    nlohmann::json top = nlohmann::json::array();
    for (const TokenLogprob& a : t.top) top.push_back({{"id", a.id}, {"logprob", a.logprob}});
    j["top_logprobs"] = top;
  }
  if (t.finish) j["finish_reason"] = std::string(to_string(*t.finish));
  return j;
}

}  // namespace

Action add_generate(CLI::App& app) {
  struct Opts {
    std::string model, prompt, tokens, device = "cpu";
    std::string adapter;
    int32_t max_tokens = 16;
    bool ignore_eos = false, json = false, stream = false;
    SamplingFlags sampling;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens with a KV cache");
  cmd->add_option("--model", o->model, "Hugging Face model directory")->required();
  cmd->add_option("--adapter", o->adapter, "PEFT LoRA adapter directory to apply");
  auto* prompt = cmd->add_option("--prompt", o->prompt, "prompt text (needs tokenizer.json in the model directory)");
  auto* tokens = cmd->add_option("--tokens", o->tokens, "prompt token ids, e.g. 1,2,3");
  prompt->excludes(tokens);
  cmd->add_option("--max-tokens", o->max_tokens, "new tokens at most (default 16)");
  o->sampling.add_to(cmd);
  cmd->add_flag("--ignore-eos", o->ignore_eos, "mask EOS logits to -inf");
  cmd->add_flag("--stream", o->stream, "print tokens as they are generated");
  cmd->add_flag("--json", o->json, "print one JSON object (with --stream: one per token, then the summary)");
  cmd->add_option("--device", o->device, "cpu or cuda");
  return [o]() {
    if (o->prompt.empty() == o->tokens.empty())
      fail(ErrorKind::bad_input, "generate: give the prompt as --prompt TEXT or --tokens 1,2,3");
    const Device device = parse_device(o->device);
    const std::string model_dir = resolve_model_arg(o->model);
    std::optional<Tokenizer> tokenizer = tokenizer_if_present(model_dir);
    std::vector<int32_t> prompt_ids;
    if (!o->tokens.empty()) {
      const auto rows = parse_token_rows(o->tokens, "--tokens");
      if (rows.size() != 1) fail(ErrorKind::bad_input, "--tokens: generate takes one prompt (no ';')");
      prompt_ids = rows[0];
    } else {
      if (!tokenizer) fail(ErrorKind::bad_input, "--prompt: " + model_dir + " has no tokenizer.json (use --tokens)");
      prompt_ids = tokenizer->encode(o->prompt);
    }
    auto model = Model::load(model_dir, {.device = device});
    if (!o->adapter.empty()) model->apply_adapter(LoraAdapter::load(resolve_model_arg(o->adapter), *model));
    const Generator gen(model, tokenizer);
    const GenerateParams params{.max_tokens = o->max_tokens, .ignore_eos = o->ignore_eos,
                                .sampling = o->sampling.resolve(*model), .stop = o->sampling.stop};
    const bool has_text = tokenizer.has_value();
    GenerateResult r;
    if (o->stream) {
      r = gen.generate_stream(prompt_ids, params, [&](const StreamToken& t) {
        if (o->json) std::cout << token_json(t, has_text).dump() << "\n";
        else if (has_text) std::cout << t.text;
        else std::cout << (t.index ? "," : "") << t.id;
        std::cout.flush();
        return true;
      });
      if (!o->json) std::cout << "\n";
    } else {
      r = gen.generate(prompt_ids, params);
    }
    if (o->json) {
      nlohmann::json j;
      j["prompt_ids"] = r.prompt_ids;
      j["output_ids"] = r.output_ids;
      j["text"] = has_text ? nlohmann::json(r.text) : nlohmann::json(nullptr);
      j["finish_reason"] = std::string(to_string(r.finish));
      j["timings"] = {{"prefill_ms", r.prefill_ms}, {"decode_ms", r.decode_ms},
                      {"decode_tokens_per_s", r.decode_tokens_per_s()}};
      std::cout << j.dump() << "\n";
    } else {
      if (!o->stream) {
        if (has_text) std::cout << r.text << "\n";
        else {
          for (size_t i = 0; i < r.output_ids.size(); ++i) std::cout << (i ? "," : "") << r.output_ids[i];
          std::cout << "\n";
        }
      }
      std::cerr << "finish: " << to_string(r.finish) << ", prefill " << r.prefill_ms << " ms, decode "
                << r.decode_tokens_per_s() << " tok/s\n";
    }
  };
}

}  // namespace wick::cli
