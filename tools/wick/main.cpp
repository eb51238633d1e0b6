// wick: command-line frontend. Parses, validates, prints; the engine does the math.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli.h"
#include "wick/error.h"

namespace wick::cli {

std::vector<std::vector<int32_t>> parse_token_rows(const std::string& text, const std::string& flag) {
  std::vector<std::vector<int32_t>> rows(1);
  std::string tok;
  auto flush = [&]() {
    size_t a = tok.find_first_not_of(" \t"), b = tok.find_last_not_of(" \t");
    const std::string t = a == std::string::npos ? "" : tok.substr(a, b - a + 1);
    tok.clear();
    if (t.empty()) fail(ErrorKind::bad_input, flag + ": empty token id in '" + text + "' (expected e.g. 1,2,3;4,5,6)");
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != t.size() || v < 0 || v > INT32_MAX)
      fail(ErrorKind::bad_input, flag + ": '" + t + "' is not a token id (a non-negative integer)");
    rows.back().push_back(int32_t(v));
  };
  for (char ch : text) {
    if (ch == ',') flush();
    else if (ch == ';') flush(), rows.emplace_back();
    else tok += ch;
  }
  flush();
  return rows;
}

std::pair<std::string, std::string> named_dir(const std::string& value) {
  const size_t eq = value.find('=');
  if (eq == std::string::npos || eq == 0) return {"", value};
  const std::string name = value.substr(0, eq);
  const bool plain = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
  return plain ? std::pair{name, value.substr(eq + 1)} : std::pair{std::string(), value};
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda") return Device::cuda;
  fail(ErrorKind::bad_input, "--device: expected cpu or cuda, found '" + text + "'");
}

void add_cpu_flags(CLI::App* cmd, CpuFlags& flags) {
  cmd->add_option("--compute", flags.compute,
                  "auto (CPU: the file's bf16 weights kept as they are; with AVX512_BF16 the activations they meet rounded "
                  "to bf16) or f32 (every weight widened, every product f32: the reference)")
      ->capture_default_str();
  cmd->add_option("--weights", flags.weights,
                  "auto (as the file holds them) or int8 (CPU: weight matrices quantised at load to 8 bits, blocks of "
                  "32 sharing an f16 scale: about half of bf16's memory; not with --compute f32)")
      ->capture_default_str();
  cmd->add_option("--threads", flags.threads, "CPU threads (0: $WICK_NUM_THREADS, else the CPUs this process may use)")
      ->capture_default_str();
}

void add_tensor_parallel_flag(CLI::App* cmd, CpuFlags& flags) {
  cmd->add_option("--tensor-parallel", flags.tensor_parallel,
                  "split the model over N devices (cuda: GPUs 0..N-1 over NCCL; cpu: N ranks, the reference); N must "
                  "divide the attention heads, KV heads and MLP width")
      ->capture_default_str();
}

LoadOptions load_options(const std::string& device, const CpuFlags& cpu) {
  if (cpu.compute != "auto" && cpu.compute != "f32")
    fail(ErrorKind::bad_input, "--compute: expected auto or f32, found '" + cpu.compute + "'");
  if (cpu.weights != "auto" && cpu.weights != "int8")
    fail(ErrorKind::bad_input, "--weights: expected auto or int8, found '" + cpu.weights + "'");
  if (cpu.compute == "f32" && cpu.weights == "int8")
    fail(ErrorKind::bad_input, "--compute f32 and --weights int8 exclude each other (f32 widens every weight to f32, "
                               "int8 quantises them to 8 bits): give one");
  if (cpu.threads < 0) fail(ErrorKind::bad_input, "--threads: expected a count ≥ 0, found " + std::to_string(cpu.threads));
  if (cpu.tensor_parallel < 1)
    fail(ErrorKind::bad_input, "--tensor-parallel: expected a count ≥ 1, found " + std::to_string(cpu.tensor_parallel));
  return {.device = parse_device(device),
          .cpu_weights = cpu.compute == "f32"    ? CpuWeights::f32
                         : cpu.weights == "int8" ? CpuWeights::int8
                                                 : CpuWeights::native,
          .cpu_threads = cpu.threads,
          .tensor_parallel = cpu.tensor_parallel};
}

}  // namespace wick::cli

int main(int argc, char** argv) {
  CLI::App app{"wick: Qwen2 inference, LoRA adapters and LoRA training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "wick 0.1.0");
  std::map<CLI::App*, wick::cli::Action> actions;
  auto add = [&](wick::cli::Action (*make)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    wick::cli::Action act = make(app);
    actions[app.get_subcommands({})[before]] = std::move(act);
  };
  add(wick::cli::add_logits);
  add(wick::cli::add_generate);
  add(wick::cli::add_chat);
  add(wick::cli::add_random_model);
  add(wick::cli::add_adapters);
  add(wick::cli::add_tokenize);
  add(wick::cli::add_detokenize);
  add(wick::cli::add_train);
  add(wick::cli::add_pull);
  add(wick::cli::add_serve);
  add(wick::cli::add_embed);
  auto is_command = [&](const std::string& name) {
    for (const auto& entry : actions)
      if (entry.first->check_name(name)) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::string known;
    for (const auto& [sub, act] : actions) known += (known.empty() ? "" : ", ") + sub->get_name();
    std::cerr << "wick: unknown command '" << argv[1] << "' (expected one of: " << known << ")\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, act] : actions)
      if (sub->parsed()) act();
    return 0;
  } catch (const wick::Error& e) {
    std::cerr << "wick: " << e.what() << "\n";
    switch (e.kind()) {
      case wick::ErrorKind::bad_input:
      case wick::ErrorKind::not_found:
      case wick::ErrorKind::corrupt:
      case wick::ErrorKind::unsupported: return 2;
      default: return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "wick: internal error: " << e.what() << "\n";
    return 1;
  }
}
