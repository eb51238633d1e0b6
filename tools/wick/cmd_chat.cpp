// wick chat --model DIR [--system TEXT] [sampling flags]: an interactive ChatML conversation that keeps
// its KV cache across turns (each turn re-renders the conversation; only the new part is computed).
#include <iostream>
#include <memory>

#include "cli.h"
#include "sampling_flags.h"
#include "wick/error.h"

namespace wick::cli {

Action add_chat(CLI::App& app) {
  struct Opts {
    std::string model, system, device = "cpu";
    CpuFlags cpu;
    int32_t max_tokens = 512;
    int64_t context = 4096;
    SamplingFlags sampling;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("chat", "Interactive chat (one user message per line; /reset, /exit)");
  cmd->add_option("--model", o->model, "Hugging Face model directory with tokenizer.json")->required();
  cmd->add_option("--system", o->system, "system prompt (default: the chat template's)");
  cmd->add_option("--max-tokens", o->max_tokens, "new tokens per reply at most (default 512)");
  cmd->add_option("--context", o->context, "KV cache positions for the whole conversation (default 4096)");
  o->sampling.add_to(cmd);
  cmd->add_option("--device", o->device, "cpu or cuda");
  add_cpu_flags(cmd, o->cpu);
  add_tensor_parallel_flag(cmd, o->cpu);
  return [o]() {
    const LoadOptions load = load_options(o->device, o->cpu);
    const std::string model_dir = resolve_model_arg(o->model);
    std::optional<Tokenizer> tokenizer = tokenizer_if_present(model_dir);
    if (!tokenizer) fail(ErrorKind::bad_input, "chat: " + model_dir + " has no tokenizer.json");
    if (!tokenizer->has_chat_template()) fail(ErrorKind::bad_input, "chat: " + model_dir + " has no chat template");
    auto model = Model::load(model_dir, load);
    const Generator gen(model, tokenizer);
    Session session = gen.make_session(std::min<int64_t>(o->context, model->config().max_position_embeddings));
    // <|im_end|> closes a turn even where generation_config.json does not list it as EOS.
    GenerateParams params{.max_tokens = o->max_tokens, .sampling = o->sampling.resolve(*model),
                          .stop = o->sampling.stop, .skip_special_tokens = false};
    params.stop.push_back("<|im_end|>");

    std::vector<ChatMessage> messages;
    auto start = [&] {
      messages.clear();
      if (!o->system.empty()) messages.push_back({.role = "system", .content = o->system});
    };
    start();
    std::string line;
    for (;;) {
      std::cerr << "> " << std::flush;
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line.empty()) continue;
      if (line == "/reset") {
        start();
        session.reset();
        continue;
      }
      messages.push_back({.role = "user", .content = line});
      const std::vector<int32_t> prompt = tokenizer->encode(tokenizer->apply_chat_template(messages, true));
      const int64_t room = session.capacity() - int64_t(prompt.size());
      if (room < 1) {
        messages.pop_back();
        std::cerr << "wick: the conversation fills --context " << session.capacity() << "; /reset to start over\n";
        continue;
      }
      GenerateParams turn = params;
      turn.max_tokens = int32_t(std::min<int64_t>(params.max_tokens, room));
      const GenerateResult r = gen.generate_stream(session, prompt, turn, [](const StreamToken& t) {
        std::cout << t.text << std::flush;
        return true;
      });
      std::cout << "\n";
      messages.push_back({.role = "assistant", .content = r.text});
      std::cerr << "[" << r.output_ids.size() << " tokens, " << to_string(r.finish) << ", " << r.cached_tokens << " of "
                << prompt.size() << " prompt tokens from the cache, " << r.decode_tokens_per_s() << " tok/s]\n";
    }
  };
}

}  // namespace wick::cli
