// wick tokenize --model DIR --text TEXT      -> JSON array of ids (special tokens in the text recognised)
// wick detokenize --model DIR --ids 1,2,3 [--skip-special]  -> the text
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "wick/error.h"
#include "wick/tokenizer.h"

namespace wick::cli {

Action add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, text;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  cmd->add_option("--model", o->model, "model directory (tokenizer.json) or a tokenizer.json file")->required();
  cmd->add_option("--text", o->text, "the text")->required();
  return [o]() { std::cout << nlohmann::json(Tokenizer::load(resolve_model_arg(o->model)).encode(o->text)).dump() << "\n"; };
}

Action add_detokenize(CLI::App& app) {
  struct Opts {
    std::string model, ids;
    bool skip_special = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("detokenize", "Print the text of token ids");
  cmd->add_option("--model", o->model, "model directory (tokenizer.json) or a tokenizer.json file")->required();
  cmd->add_option("--ids", o->ids, "token ids, e.g. 9707,1879")->required();
  cmd->add_flag("--skip-special", o->skip_special, "leave special tokens out of the text");
  return [o]() {
    const auto rows = parse_token_rows(o->ids, "--ids");
    if (rows.size() != 1) fail(ErrorKind::bad_input, "--ids: one list of ids (no ';')");
    const Tokenizer tok = Tokenizer::load(resolve_model_arg(o->model));
    for (int32_t id : rows[0])
      if (id >= tok.vocab_size())
        fail(ErrorKind::bad_input, "--ids: " + std::to_string(id) + " is outside the vocabulary of " +
                                       std::to_string(tok.vocab_size()));
    std::cout << tok.decode(rows[0], o->skip_special) << "\n";
  };
}

}  // namespace wick::cli
