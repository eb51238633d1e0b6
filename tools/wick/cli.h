// Shared pieces of the wick command line: subcommand registration and argument parsing.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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

/// "1,2,3;4,5,6" -> {{1,2,3},{4,5,6}}; bad_input naming `flag` on anything else.
std::vector<std::vector<int32_t>> parse_token_rows(const std::string& text, const std::string& flag);
/// "cpu" / "cuda".
Device parse_device(const std::string& text);

}  // namespace wick::cli
