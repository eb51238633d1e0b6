// wick generate --model DIR (--prompt TEXT... | --tokens "1,2,3;4,5") [--adapter DIR | --adapter NAME=DIR...]
//               [--row-adapters NAME,-,...] [sampling flags] [--stream] [--json]
// One prompt runs the single-sequence loop; several are decoded together by the engine, each with its own adapter.
#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>
#include <sstream>
#include <utility>

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

nlohmann::json result_json(const GenerateResult& r, bool with_text) {
  nlohmann::json j;
  j["prompt_ids"] = r.prompt_ids;
  j["output_ids"] = r.output_ids;
  j["text"] = with_text ? nlohmann::json(r.text) : nlohmann::json(nullptr);
  j["finish_reason"] = std::string(to_string(r.finish));
  j["timings"] = {{"prefill_ms", r.prefill_ms}, {"decode_ms", r.decode_ms},
                  {"decode_tokens_per_s", r.decode_tokens_per_s()}};
  return j;
}

void print_plain(const GenerateResult& r, bool with_text) {
  if (with_text) {
    std::cout << r.text << "\n";
    return;
  }
  for (size_t i = 0; i < r.output_ids.size(); ++i) std::cout << (i ? "," : "") << r.output_ids[i];
  std::cout << "\n";
}

// Each prompt's adapter: from --row-adapters (one name or '-' per prompt), else the one adapter given (or none).
std::vector<std::shared_ptr<const LoraAdapter>> row_adapters(
    const std::vector<std::pair<std::string, std::shared_ptr<const LoraAdapter>>>& loaded, const std::string& rows,
    size_t prompts) {
  if (rows.empty()) {
    if (loaded.size() > 1)
      fail(ErrorKind::bad_input, "--row-adapters: " + std::to_string(loaded.size()) +
                                     " adapters were given; name one (or -) for each of the " +
                                     std::to_string(prompts) + " prompts");
    return std::vector<std::shared_ptr<const LoraAdapter>>(prompts, loaded.empty() ? nullptr : loaded[0].second);
  }
  std::vector<std::shared_ptr<const LoraAdapter>> out;
  std::stringstream in(rows);
  for (std::string name; std::getline(in, name, ',');) {
    if (name == "-") {
      out.push_back(nullptr);
      continue;
    }
    const auto it = std::find_if(loaded.begin(), loaded.end(), [&](const auto& l) { return !l.first.empty() && l.first == name; });
    if (it == loaded.end())
      fail(ErrorKind::bad_input, "--row-adapters: no adapter named '" + name + "' (give it as --adapter " + name + "=DIR)");
    out.push_back(it->second);
  }
  if (out.size() != prompts)
    fail(ErrorKind::bad_input, "--row-adapters: " + std::to_string(out.size()) + " entries for " +
                                   std::to_string(prompts) + " prompts (one name or - each)");
  return out;
}

}  // namespace

Action add_generate(CLI::App& app) {
  struct Opts {
    std::string model, tokens, device = "cpu", row_adapters;
    CpuFlags cpu;
    std::vector<std::string> prompts, adapters;
    int32_t max_tokens = 16;
    bool ignore_eos = false, json = false, stream = false;
    SamplingFlags sampling;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens with a KV cache");
  cmd->add_option("--model", o->model, "Hugging Face model directory")->required();
  cmd->add_option("--adapter", o->adapters, "PEFT LoRA adapter directory to apply, or NAME=DIR (repeatable) for "
                                           "--row-adapters")
      ->allow_extra_args(false);
  cmd->add_option("--row-adapters", o->row_adapters, "each prompt's adapter by name, '-' for none: NAME,-,NAME");
  auto* prompt = cmd->add_option("--prompt", o->prompts, "prompt text (needs tokenizer.json); repeat for a batch")
                     ->allow_extra_args(false);
  auto* tokens = cmd->add_option("--tokens", o->tokens, "prompt token ids, e.g. 1,2,3; several prompts: \"1,2;3,4\"");
  prompt->excludes(tokens);
  cmd->add_option("--max-tokens", o->max_tokens, "new tokens at most (default 16)");
  o->sampling.add_to(cmd);
  cmd->add_flag("--ignore-eos", o->ignore_eos, "mask EOS logits to -inf");
  cmd->add_flag("--stream", o->stream, "print tokens as they are generated");
  cmd->add_flag("--json", o->json, "print one JSON object (with --stream: one per token, then the summary)");
  cmd->add_option("--device", o->device, "cpu or cuda");
  add_cpu_flags(cmd, o->cpu);
  add_tensor_parallel_flag(cmd, o->cpu);
  return [o]() {
    if (o->prompts.empty() == o->tokens.empty())
      fail(ErrorKind::bad_input, "generate: give the prompt as --prompt TEXT or --tokens 1,2,3");
    const LoadOptions load = load_options(o->device, o->cpu);
    const std::string model_dir = resolve_model_arg(o->model);
    std::optional<Tokenizer> tokenizer = tokenizer_if_present(model_dir);
    std::vector<std::vector<int32_t>> prompt_ids;
    if (!o->tokens.empty()) {
      prompt_ids = parse_token_rows(o->tokens, "--tokens");
    } else {
      if (!tokenizer) fail(ErrorKind::bad_input, "--prompt: " + model_dir + " has no tokenizer.json (use --tokens)");
      for (const std::string& p : o->prompts) prompt_ids.push_back(tokenizer->encode(p));
    }
    if (o->stream && prompt_ids.size() > 1)
      fail(ErrorKind::bad_input, "--stream: streams one prompt; " + std::to_string(prompt_ids.size()) + " were given");
    if (!o->row_adapters.empty() && o->adapters.empty())
      fail(ErrorKind::bad_input, "--row-adapters: give the adapters it names as --adapter NAME=DIR");
    auto model = Model::load(model_dir, load);
    std::vector<std::pair<std::string, std::shared_ptr<const LoraAdapter>>> loaded;
    for (const std::string& a : o->adapters) {
      const auto [name, dir] = named_dir(a);
      for (const auto& l : loaded)
        if (!name.empty() && l.first == name) fail(ErrorKind::bad_input, "--adapter: the name '" + name + "' is given twice");
      loaded.emplace_back(name, LoraAdapter::load(resolve_model_arg(dir), *model, name));
    }
    const std::vector<std::shared_ptr<const LoraAdapter>> per_row = row_adapters(loaded, o->row_adapters, prompt_ids.size());
    const Generator gen(model, tokenizer);
    const GenerateParams params{.max_tokens = o->max_tokens, .ignore_eos = o->ignore_eos,
                                .sampling = o->sampling.resolve(*model), .stop = o->sampling.stop};
    const bool has_text = tokenizer.has_value();
    if (prompt_ids.size() > 1) {  // the engine: every prompt with its own adapter, decoded together
      std::vector<BatchRequest> requests;
      for (size_t i = 0; i < prompt_ids.size(); ++i) {
        requests.push_back({.prompt = prompt_ids[i], .params = params, .lora = LoraAdapter::shared_source(per_row[i])});
      }
      for (const GenerateResult& r : gen.generate_batch(requests)) {
        if (o->json) std::cout << result_json(r, has_text).dump() << "\n";
        else print_plain(r, has_text);
      }
      return;
    }
    if (per_row[0]) model->apply_adapter(per_row[0]);
    const std::vector<int32_t>& prompt = prompt_ids[0];
    GenerateResult r;
    if (o->stream) {
      r = gen.generate_stream(prompt, params, [&](const StreamToken& t) {
        if (o->json) std::cout << token_json(t, has_text).dump() << "\n";
        else if (has_text) std::cout << t.text;
        else std::cout << (t.index ? "," : "") << t.id;
        std::cout.flush();
        return true;
      });
      if (!o->json) std::cout << "\n";
    } else {
      r = gen.generate(prompt, params);
    }
    if (o->json) {
      std::cout << result_json(r, has_text).dump() << "\n";
    } else {
      if (!o->stream) print_plain(r, has_text);
      std::cerr << "finish: " << to_string(r.finish) << ", prefill " << r.prefill_ms << " ms, decode "
                << r.decode_tokens_per_s() << " tok/s\n";
    }
  };
}

}  // namespace wick::cli
