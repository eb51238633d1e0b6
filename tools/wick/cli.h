// Shared pieces of the wick command line: subcommand registration and argument parsing.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "wick/hub.h"
#include "wick/model.h"
#include "wick/tensor.h"

namespace wick::cli {

/// Each subcommand adds itself to the app; the returned action runs when it was chosen.
using Action = std::function<void()>;
Action add_logits(CLI::App& app);
Action add_generate(CLI::App& app);
Action add_chat(CLI::App& app);
Action add_random_model(CLI::App& app);
Action add_adapters(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_detokenize(CLI::App& app);
Action add_train(CLI::App& app);
Action add_pull(CLI::App& app);
Action add_serve(CLI::App& app);
Action add_embed(CLI::App& app);

/// A --model / --adapter value as a path: a file or directory as given, or ORG/NAME[@REVISION] from the Hugging
/// Face cache, pulled first (progress on stderr) when the cache lacks it and HF_HUB_OFFLINE is not set.
/// (Only the DIR part of a NAME=DIR value is a model path.)
std::string resolve_model_arg(const std::string& spec);
/// Hub download progress on stderr: a bar per file on a terminal, else a line when a file starts and ends.
hub::ProgressFn pull_progress();

/// "1,2,3;4,5,6" -> {{1,2,3},{4,5,6}}; bad_input naming `flag` on anything else.
std::vector<std::vector<int32_t>> parse_token_rows(const std::string& text, const std::string& flag);
/// "NAME=DIR" -> {NAME, DIR} when NAME is a plain name (letters, digits, '_', '-', '.'); else {"", value}: a
/// directory, which may itself hold '='.
std::pair<std::string, std::string> named_dir(const std::string& value);
/// "cpu" / "cuda".
Device parse_device(const std::string& text);
/// The CPU flags of a command that loads a model, which together choose wick/dtype.h's CpuWeights: --compute (auto or
/// f32: every weight widened, the reference) and --weights (auto: as the file holds them; int8: weight matrices
/// quantised to 8 bits at load; not with --compute f32); and --threads (the CPU backend's threads; 0, the default:
/// WICK_NUM_THREADS or the affinity mask). The GPU ignores --compute and --weights (it keeps bf16).
struct CpuFlags {
  std::string compute = "auto";
  std::string weights = "auto";
  int threads = 0;
  int tensor_parallel = 1;  ///< --tensor-parallel, on the commands that run a model (add_tensor_parallel_flag)
};
void add_cpu_flags(CLI::App* cmd, CpuFlags& flags);
/// --tensor-parallel N: the model split over N devices (LoadOptions::tensor_parallel), for generate, chat, logits
/// and serve.
void add_tensor_parallel_flag(CLI::App* cmd, CpuFlags& flags);
/// The load options of --device and the CPU flags; bad_input naming the flag on anything else.
LoadOptions load_options(const std::string& device, const CpuFlags& cpu);

}  // namespace wick::cli
