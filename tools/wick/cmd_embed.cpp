// wick embed --model DIR (--text T... | --file F.txt|F.jsonl) [--prompt-name NAME | --prompt TEXT] [--dimensions N]
//            [--no-truncate] [--out F.safetensors] [--device cpu|cuda]
// One embedding per text, in order, as sentence-transformers' encode gives it: `--out` writes f32 tensor
// `embeddings` [n, dim]; without it, one JSON array per line on stdout.
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "wick/embedder.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick::cli {

namespace {

// The texts of --file: .txt one per line (a trailing newline ends the last line; "\r\n" ends a line too), .jsonl one
// {"text": ...} object per non-blank line. bad_input naming the file and line.
std::vector<std::string> read_texts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::not_found, "--file: cannot open '" + path + "'");
  const bool jsonl = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  const bool txt = path.size() >= 4 && path.compare(path.size() - 4, 4, ".txt") == 0;
  if (!jsonl && !txt) fail(ErrorKind::bad_input, "--file: expected a .txt or .jsonl file, found '" + path + "'");
  std::vector<std::string> texts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (txt) {
      texts.push_back(line);
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(ErrorKind::bad_input, where + ": not valid JSON");
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      fail(ErrorKind::bad_input, where + ": expected an object with a string \"text\"");
    texts.push_back(j["text"].get<std::string>());
  }
  return texts;
}

}  // namespace

Action add_embed(CLI::App& app) {
  struct Opts {
    std::string model, file, prompt_name, prompt, out, device = "cpu";
    std::vector<std::string> texts;
    bool no_truncate = false;
    int64_t dimensions = 0, batch_tokens = 16384;
    CpuFlags cpu;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Embed texts with a sentence-transformers model (BERT, MPNet, XLM-R or Qwen2 folders)");
  cmd->add_option("--model", o->model, "sentence-transformers or Hugging Face model directory (or ORG/NAME)")
      ->required();
  cmd->add_option("--text", o->texts, "a text to embed (repeatable)");
  cmd->add_option("--file", o->file, "texts to embed: F.txt (one per line) or F.jsonl ({\"text\"} a line)");
  cmd->add_option("--prompt-name", o->prompt_name, "a prompt of config_sentence_transformers.json (e.g. query)");
  cmd->add_option("--prompt", o->prompt, "a prompt given literally, prepended to every text");
  cmd->add_option("--dimensions", o->dimensions,
                  "keep the first N dimensions (Matryoshka), renormalised when the model normalises (0: all)");
  cmd->add_flag("--no-truncate", o->no_truncate,
                "a text longer than the model's max_seq_length is an error (default: truncated, as "
                "sentence-transformers does)");
  cmd->add_option("--batch-tokens", o->batch_tokens, "the most tokens one forward pass packs")->capture_default_str();
  cmd->add_option("--out", o->out, "write f32 tensor `embeddings` [n, dim] to this .safetensors file");
  cmd->add_option("--device", o->device, "cpu or cuda");
  add_cpu_flags(cmd, o->cpu);
  return [o]() {
    if (o->texts.empty() == o->file.empty())
      fail(ErrorKind::bad_input, "embed: give --text (repeatable) or --file, not both");
    if (!o->prompt_name.empty() && !o->prompt.empty())
      fail(ErrorKind::bad_input, "--prompt-name and --prompt exclude each other: give one");
    if (o->dimensions < 0) fail(ErrorKind::bad_input, "--dimensions: expected a count ≥ 0, found " +
                                                          std::to_string(o->dimensions));
    if (o->batch_tokens < 1) fail(ErrorKind::bad_input, "--batch-tokens: expected a count ≥ 1, found " +
                                                            std::to_string(o->batch_tokens));
    const std::vector<std::string> texts = o->file.empty() ? o->texts : read_texts(o->file);
    if (texts.empty()) fail(ErrorKind::bad_input, "--file: '" + o->file + "' holds no text");
    const LoadOptions load = load_options(o->device, o->cpu);
    const Embedder embedder = Embedder::load(resolve_model_arg(o->model),
                                             {.device = load.device,
                                              .cpu_weights = load.cpu_weights,
                                              .cpu_threads = load.cpu_threads,
                                              .batch_tokens = o->batch_tokens});
    EmbedOptions options{.truncate = !o->no_truncate, .dimensions = o->dimensions};
    if (!o->prompt_name.empty()) options.prompt_name = o->prompt_name;
    if (!o->prompt.empty()) options.prompt = o->prompt;
    const Tensor embeddings = embedder.embed(texts, options);
    if (!o->out.empty()) {
      write_safetensors(o->out, {{"embeddings", embeddings}});
      return;
    }
    const int64_t n = embeddings.dim(0), dim = embeddings.dim(1);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = embeddings.data<float>() + i * dim;
      std::cout << nlohmann::json(std::vector<float>(row, row + dim)).dump() << "\n";
    }
  };
}

}  // namespace wick::cli
