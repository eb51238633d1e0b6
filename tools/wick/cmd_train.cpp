// wick train --model DIR --data FILE.jsonl --out DIR [adapter, optimizer, schedule, data and output flags]
// Fine-tunes a LoRA adapter with wick::Trainer: progress on stderr, the adapter, train_log.csv and loss.svg in --out.
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "sampling_flags.h"
#include "wick/error.h"
#include "wick/safetensors.h"
#include "wick/train.h"

namespace wick::cli {

namespace {

namespace fs = std::filesystem;

// The flags that reach TrainOptions only after parsing (lists, two-form values), and the run's own.
struct TrainFlags {
  TrainOptions o;
  std::string model, device = "cpu", targets, layers, betas, warmup = "0", modules_to_save, dump_grads;
  CpuFlags cpu;
  bool no_shuffle = false, json = false;
  CLI::Option* steps = nullptr;
  CLI::Option* epochs = nullptr;
};

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& item : items) s += (s.empty() ? "" : ",") + item;
  return s;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// "a,b,c" -> {a, b, c}; an empty item ("a,,b") is bad_input naming `flag`.
std::vector<std::string> split_list(const std::string& text, const std::string& flag) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  for (size_t at = 0;;) {
    const size_t comma = std::min(text.find(',', at), text.size());
    out.push_back(text.substr(at, comma - at));
    if (out.back().empty()) fail(ErrorKind::bad_input, flag + ": empty item in '" + text + "'");
    if (comma == text.size()) return out;
    at = comma + 1;
  }
}

// The whole of `text` as a T, or nullopt.
template <typename T>
std::optional<T> parse_all(const std::string& text) {
  T v{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

// --warmup: digits only are a number of steps; a number written with a point is a ratio of the total steps.
void parse_warmup(const std::string& text, TrainOptions& o) {
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  const bool decimal = text.find('.') != std::string::npos && text.find_first_not_of("0123456789.") == std::string::npos &&
                       text.find('.') == text.rfind('.') && text.size() > 1;
  if (digits) {
    const auto steps = parse_all<int64_t>(text);
    if (!steps) fail(ErrorKind::bad_input, "--warmup: " + text + " steps is too many");
    o.warmup_steps = *steps;
  } else if (decimal) {
    const auto ratio = parse_all<double>(text);
    if (!ratio || *ratio > 1) fail(ErrorKind::bad_input, "--warmup: a ratio must be in [0, 1], found " + text);
    o.warmup_ratio = *ratio;
  } else {
    fail(ErrorKind::bad_input, "--warmup: expected a number of steps (10) or a ratio of the steps written with a point "
                               "(0.1), found '" + text + "'");
  }
}

// The flags that need more than CLI11's conversion, into the options; the checks the Trainer cannot make.
void resolve(TrainFlags& f) {
  TrainOptions& o = f.o;
  if (f.steps->count() > 0 && f.epochs->count() > 0)
    fail(ErrorKind::bad_input, "--steps and --epochs: give one or the other (optimizer steps, or passes over the data)");
  o.targets = split_list(f.targets, "--targets");
  o.layers.clear();
  for (const std::string& l : split_list(f.layers, "--layers")) {
    const auto layer = parse_all<int64_t>(l);
    if (!layer || *layer < 0) fail(ErrorKind::bad_input, "--layers: '" + l + "' is not a layer index (0, 1, ...)");
    o.layers.push_back(*layer);
  }
  const std::vector<std::string> betas = split_list(f.betas, "--betas");
  std::optional<double> b1, b2;
  if (betas.size() == 2) b1 = parse_all<double>(betas[0]), b2 = parse_all<double>(betas[1]);
  if (!b1 || !b2) fail(ErrorKind::bad_input, "--betas: expected two numbers B1,B2 (0.9,0.999), found '" + f.betas + "'");
  o.betas = {*b1, *b2};
  parse_warmup(f.warmup, o);
  if (!f.modules_to_save.empty()) o.modules_to_save = split_list(f.modules_to_save, "--modules-to-save");
  o.shuffle = !f.no_shuffle;
  if (!f.dump_grads.empty() && (f.steps->count() == 0 || o.steps != 1))
    fail(ErrorKind::bad_input, "--dump-grads: needs --steps 1 (it writes the gradients of a run's one step)");
  if (!f.dump_grads.empty() && !o.resume.empty())
    fail(ErrorKind::bad_input, "--dump-grads: not with --resume (it writes the gradients of a run's one step)");
}

// Whether files can be made at `path` (a folder, made later if it is missing), before any work and leaving nothing
// behind: an existing folder takes a probe file; otherwise its nearest existing parent takes a probe folder.
void check_writable_folder(const fs::path& path, const std::string& flag) {
  const std::string where = flag + " " + path.string();
  const std::string probe_name = ".wick-write-test-" + std::to_string(getpid());
  std::error_code ec;
  if (fs::exists(path, ec)) {
    if (!fs::is_directory(path, ec)) fail(ErrorKind::bad_input, where + ": is a file, not a folder");
    const fs::path probe = path / probe_name;
    const bool ok = std::ofstream(probe).good();
    fs::remove(probe, ec);
    if (!ok) fail(ErrorKind::bad_input, where + ": the folder is not writable");
    return;
  }
  fs::path parent = fs::absolute(path, ec).parent_path();
  while (!parent.empty() && !fs::exists(parent, ec) && parent != parent.root_path()) parent = parent.parent_path();
  if (!fs::is_directory(parent, ec)) fail(ErrorKind::bad_input, where + ": cannot be made (" + parent.string() + " is a file)");
  const fs::path probe = parent / probe_name;
  if (!fs::create_directory(probe, ec) || ec)
    fail(ErrorKind::bad_input, where + ": cannot make a folder in " + parent.string() + " (" + ec.message() + ")");
  fs::remove(probe, ec);
}

// --dump-grads FILE: a file (not a folder) whose folder can be written.
void check_writable_file(const fs::path& path, const std::string& flag) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(ErrorKind::bad_input, flag + " " + path.string() + ": is a folder, not a file");
  const fs::path parent = fs::absolute(path, ec).parent_path();
  check_writable_folder(parent, flag + " " + path.string() + ": its folder");
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') out += ',';
    out += digits[i];
  }
  return out;
}

std::string duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%ds", int(s));
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  return buf;
}

// Progress on stderr: on a terminal one bar redrawn in place, else one log line per step; a line per eval.
class Progress {
 public:
  Progress(bool tty, int64_t first_step) : tty_(tty), first_step_(first_step) {}

  void step(const StepReport& r) {
    const double elapsed = seconds(), tok_s = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
    const std::string of = std::to_string(r.step) + "/" + std::to_string(r.total_steps);
    if (tty_) {
      constexpr int64_t kWidth = 20;
      const int64_t done = kWidth * r.step / std::max<int64_t>(r.total_steps, 1);
      const double per_step = elapsed / double(std::max<int64_t>(r.step - first_step_, 1));
      std::cerr << "\r\x1b[Kstep " << of << " [" << std::string(size_t(done), '#') << std::string(size_t(kWidth - done), '.')
                << "] loss " << format("%.4f", r.loss) << " lr " << format("%.2e", r.lr) << " "
                << with_commas(int64_t(tok_s)) << " tok/s ETA " << duration(per_step * double(r.total_steps - r.step));
    } else {
      std::cerr << "step " << of << " loss " << format("%.4f", r.loss) << " lr " << format("%.1e", r.lr) << " grad_norm "
                << format("%.3f", r.grad_norm) << " tok/s " << format("%.0f", tok_s) << " elapsed "
                << format("%.1f", elapsed) << "s\n";
    }
    if (r.eval_loss) std::cerr << (tty_ ? "\r\x1b[K" : "") << "eval " << of << " loss " << format("%.4f", *r.eval_loss) << "\n";
    std::cerr.flush();
  }

  void finish() const {
    if (tty_) std::cerr << "\n";
  }

  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  bool tty_;
  int64_t first_step_;  // steps done before this process (a resumed run)
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

nlohmann::json summary(const Trainer& t, const TrainFlags& f, double seconds, double tokens_per_s) {
  nlohmann::json losses = nlohmann::json::array(), evals = nlohmann::json::array();
  for (const StepReport& r : t.history()) {
    losses.push_back(r.loss);
    if (r.eval_loss) evals.push_back({{"step", r.step}, {"loss", *r.eval_loss}});
  }
  return {{"steps", t.steps_done()},
          {"losses", losses},
          {"eval_losses", evals},
          {"tokens_per_s", tokens_per_s},
          {"peak_memory_bytes", t.peak_memory_bytes()},
          {"seconds", seconds},
          {"out", f.o.out.string()}};
}

void train(TrainFlags& f) {
  resolve(f);
  const LoadOptions load = load_options(f.device, f.cpu);
  check_writable_folder(f.o.out, "--out");
  if (!f.dump_grads.empty()) check_writable_file(f.dump_grads, "--dump-grads");
  f.model = resolve_model_arg(f.model);
  if (!f.o.init_adapter.empty()) f.o.init_adapter = resolve_model_arg(f.o.init_adapter.string());

  std::optional<Tokenizer> tokenizer = tokenizer_if_present(f.model);
  auto model = Model::load(f.model, load);
  Trainer trainer(model, tokenizer ? std::make_shared<const Tokenizer>(std::move(*tokenizer)) : nullptr, f.o);
  const int64_t first_step = trainer.steps_done();
  std::cerr << "training on " << trainer.examples() << " examples: steps " << first_step + 1 << " to "
            << trainer.total_steps() << " on " << f.device << "\n";

  Progress progress(isatty(2) != 0, first_step);
  int64_t tokens = 0;
  double busy = 0;
  trainer.run([&](const StepReport& r) {
    tokens += r.tokens, busy += r.seconds;
    progress.step(r);
    return true;
  });
  progress.finish();
  if (!f.dump_grads.empty()) {
    const std::map<std::string, Tensor> grads = trainer.gradients();
    std::error_code ec;
    fs::create_directories(fs::absolute(f.dump_grads, ec).parent_path(), ec);  // checked writable above
    write_safetensors(f.dump_grads, std::vector<std::pair<std::string, Tensor>>(grads.begin(), grads.end()));
  }

  const double tokens_per_s = busy > 0 ? double(tokens) / busy : 0;
  if (f.json) {
    std::cout << summary(trainer, f, progress.seconds(), tokens_per_s).dump() << "\n";
  } else {
    std::cout << "adapter written to " << f.o.out.string() << " (with train_log.csv and loss.svg)\n";
    if (!f.dump_grads.empty()) std::cout << "gradients written to " << f.dump_grads << "\n";
  }
  std::cerr << "done: " << trainer.steps_done() - first_step << " steps in " << duration(progress.seconds()) << ", "
            << with_commas(int64_t(tokens_per_s)) << " tok/s, peak memory "
            << format("%.1f", double(trainer.peak_memory_bytes()) / (1 << 20)) << " MiB\n";
}

}  // namespace

Action add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  TrainOptions& o = f->o;
  f->targets = join(o.targets);
  f->betas = format("%g", o.betas[0]) + "," + format("%g", o.betas[1]);
  CLI::App* cmd = app.add_subcommand("train", "Fine-tune a LoRA adapter (PEFT format) on a JSONL file");
  // Data and output.
  cmd->add_option("--model", f->model, "Hugging Face model directory (its tokenizer.json, if any, reads text)")->required();
  cmd->add_option("--data", o.data, "JSONL: {text} | {prompt, completion} | {messages} | {input_ids, labels?} a line")
      ->required();
  cmd->add_option("--out", o.out, "folder for the adapter, train_log.csv, loss.svg and checkpoint-N/")->required();
  cmd->add_option("--eval", o.eval_data, "held-out JSONL: its loss every --eval-every steps and at the end");
  cmd->add_option("--eval-every", o.eval_every, "steps between evaluations (0: at the end only)")->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: none)")->capture_default_str();
  cmd->add_option("--resume", o.resume, "a checkpoint-N folder of this run to continue from");
  cmd->add_option("--seq-len", o.seq_len, "examples are cut to their first L tokens")->capture_default_str();
  cmd->add_flag("--no-shuffle", f->no_shuffle, "batches in file order (default: shuffled each epoch by --seed)");
  // The adapter (PEFT LoraConfig).
  cmd->add_option("--adapter", o.init_adapter, "continue training this PEFT adapter (its shape wins)");
  cmd->add_option("--rank", o.rank, "LoRA rank r")->capture_default_str();
  cmd->add_option("--alpha", o.alpha, "lora_alpha: scale alpha/r (alpha/sqrt(r) with --rslora)")->capture_default_str();
  cmd->add_flag("--rslora", o.rslora, "rank-stabilised scale alpha/sqrt(r)");
  cmd->add_option("--targets", f->targets, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear")
      ->capture_default_str();
  cmd->add_option("--layers", f->layers, "layers_to_transform, e.g. 0,1,2 (default: every layer)");
  cmd->add_option("--dropout", o.dropout, "lora_dropout, in [0, 1)")->capture_default_str();
  cmd->add_option("--modules-to-save", f->modules_to_save,
                  "modules trained whole, e.g. lm_head (default: score for a classifier, none for a causal LM)");
  // Optimizer and schedule.
  cmd->add_option("--lr", o.lr, "peak learning rate (> 0)")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  cmd->add_option("--betas", f->betas, "AdamW B1,B2")->capture_default_str();
  cmd->add_option("--eps", o.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--schedule", o.schedule, "constant | constant_with_warmup | linear | cosine")->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "warm-up: N steps (10), or a ratio of the steps with a point (0.1)")
      ->capture_default_str();
  f->steps = cmd->add_option("--steps", o.steps, "optimizer steps (0: from --epochs)")->capture_default_str();
  f->epochs = cmd->add_option("--epochs", o.epochs, "passes over the data, when --steps is not given")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "sequences per micro-batch")->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--max-grad-norm", o.max_grad_norm, "global-norm clipping (0: off)")->capture_default_str();
  cmd->add_option("--seed", o.seed, "the adapter's initialisation, the data order and dropout masks")->capture_default_str();
  cmd->add_flag("--gradient-checkpointing", o.gradient_checkpointing, "recompute each layer in the backward (less memory)");
  // The run.
  cmd->add_option("--dump-grads", f->dump_grads, "with --steps 1: write each trained tensor's gradient (safetensors)");
  cmd->add_flag("--json", f->json, "print one JSON summary on stdout at the end");
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  add_cpu_flags(cmd, f->cpu);
  return [f]() { train(*f); };
}

}  // namespace wick::cli
