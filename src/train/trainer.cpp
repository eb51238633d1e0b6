// The Trainer: options checked, data read, the adapter made (new, from an adapter folder, or from a checkpoint),
// then optimizer steps as transformers' Trainer with PEFT takes them.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <set>
#include <system_error>

#include "core/json_util.h"
#include "train/checkpoint.h"
#include "train/dataset.h"
#include "train/schedule.h"
#include "train/train_report.h"
#include "train/trainable.h"
#include "wick/error.h"
#include "wick/safetensors.h"
#include "wick/train.h"

namespace wick {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTargets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

void check_options(const TrainOptions& o) {
  auto bad = [](const std::string& msg) { fail(ErrorKind::bad_input, msg); };
  if (o.data.empty()) bad("--data: required (a JSONL file)");
  if (o.out.empty()) bad("--out: required (the folder the adapter is written to)");
  if (o.rank < 1) bad("--rank: expected an integer ≥ 1, found " + std::to_string(o.rank));
  if (!std::isfinite(o.alpha) || o.alpha <= 0) bad("--alpha: expected a positive number");
  if (!(o.dropout >= 0 && o.dropout < 1)) bad("--dropout: expected a number in [0, 1)");
  if (o.targets.empty()) bad("--targets: expected at least one projection");
  for (const std::string& t : o.targets)
    if (t != "all-linear" && std::find(std::begin(kTargets), std::end(kTargets), t) == std::end(kTargets))
      bad("--targets: unknown module '" + t +
          "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or all-linear)");
  if (o.batch_size < 1) bad("--batch-size: expected an integer ≥ 1, found " + std::to_string(o.batch_size));
  if (o.grad_accum < 1) bad("--grad-accum: expected an integer ≥ 1, found " + std::to_string(o.grad_accum));
  if (o.seq_len < 2) bad("--seq-len: expected an integer ≥ 2, found " + std::to_string(o.seq_len));
  if (o.steps < 0) bad("--steps: expected an integer ≥ 1, found " + std::to_string(o.steps));
  if (o.steps == 0 && (!std::isfinite(o.epochs) || o.epochs <= 0)) bad("--epochs: expected a positive number");
  if (!std::isfinite(o.max_grad_norm) || o.max_grad_norm < 0) bad("--max-grad-norm: expected a number ≥ 0 (0: off)");
  if (o.checkpoint_every < 0) bad("--checkpoint-every: expected an integer ≥ 0");
  if (o.eval_every < 0) bad("--eval-every: expected an integer ≥ 0");
  if (o.eval_every > 0 && o.eval_data.empty()) bad("--eval-every: needs --eval FILE");
  validate(AdamWConfig{.betas = o.betas, .eps = o.eps, .weight_decay = o.weight_decay});
}

// The output folder exists (made) and takes a file; nothing in it is touched.
void check_out(const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) fail(ErrorKind::bad_input, "--out " + out.string() + ": is a file, not a folder");
  fs::create_directories(out, ec);
  if (ec) fail(ErrorKind::bad_input, "--out " + out.string() + ": cannot create the folder (" + ec.message() + ")");
  const fs::path probe = out / (".wick-write-test-" + std::to_string(getpid()));
  {
    std::ofstream f(probe);
    if (!f) fail(ErrorKind::bad_input, "--out " + out.string() + ": the folder is not writable");
  }
  fs::remove(probe, ec);
}

LoraConfig config_from(const TrainOptions& o, const ModelConfig& c) {
  LoraConfig config;
  config.r = o.rank;
  config.lora_alpha = o.alpha;
  config.use_rslora = o.rslora;
  const bool all = std::find(o.targets.begin(), o.targets.end(), "all-linear") != o.targets.end();
  config.all_linear = all;
  if (!all) config.target_modules = o.targets;
  config.layers_to_transform = o.layers;
  const bool classify = c.head == ModelHead::sequence_classification;
  config.modules_to_save = o.modules_to_save ? *o.modules_to_save : classify ? std::vector<std::string>{"score"}
                                                                             : std::vector<std::string>{};
  config.task_type = classify ? "SEQ_CLS" : "CAUSAL_LM";
  return config;
}

// What an adapter computes, for comparing a checkpoint with the run that resumes it: each module's key, rank and
// scale, and the saved modules.
std::string plan_fingerprint(const AdapterPlan& plan) {
  std::string s;
  for (const LoraModulePlan& m : plan.lora) s += m.key + " r" + std::to_string(m.rank) + " s" + std::to_string(m.scale) + ";";
  for (const SavedModulePlan& m : plan.saved) s += m.key + ";";
  return s;
}

int64_t targets_of(const Example& e) {
  if (e.class_label >= 0) return 1;
  return std::count_if(e.labels.begin() + 1, e.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
}

std::vector<TrainSequence> sequences(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
                                     std::vector<int32_t>& class_labels) {
  std::vector<TrainSequence> out;
  class_labels.resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    const Example& e = examples[size_t(indices[i])];
    class_labels[i] = e.class_label;
    out.push_back({.ids = e.ids, .labels = e.class_label >= 0 ? std::span<const int32_t>(&class_labels[i], 1)
                                                               : std::span<const int32_t>(e.labels)});
  }
  return out;
}

uint64_t mix_seed(uint64_t seed, uint64_t step, uint64_t micro) {
  uint64_t z = seed ^ (step * 0x9E3779B97F4A7C15ull) ^ (micro * 0xC2B2AE3D27D4EB4Full);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

struct Trainer::Impl {
  std::shared_ptr<Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  TrainOptions options;
  std::vector<Example> train, eval;
  std::unique_ptr<TrainableAdapter> adapter;
  AdamW adamw{{}};
  ScheduleConfig schedule;
  std::unique_ptr<Batcher> batcher;
  int64_t done = 0;
  std::vector<StepReport> history;
  std::map<std::string, Tensor> last_grads;

  std::vector<Example> load(const fs::path& file) const {
    const ModelConfig& c = model->config();
    DatasetOptions d{.seq_len = options.seq_len, .vocab_size = int32_t(c.vocab_size)};
    if (c.head == ModelHead::sequence_classification) d.num_labels = c.num_labels;
    return load_jsonl(file, tokenizer.get(), d);
  }

  // The adapter to start from and, when resuming, the checkpoint's state.
  void make_adapter(const std::optional<Checkpoint>& ck) {
    const ModelConfig& c = model->config();
    std::map<std::string, Tensor> tensors;
    LoraConfig config;
    std::string source;
    if (!options.init_adapter.empty()) {
      const auto loaded = LoraAdapter::load(options.init_adapter, *model);
      config = loaded->config();
      const auto file = SafetensorsFile::open(options.init_adapter / "adapter_model.safetensors");
      for (const SafetensorsEntry& e : file->entries()) tensors[e.name] = file->tensor(e.name).to(DType::f32);
      source = "--adapter " + options.init_adapter.string();
    } else {
      config = config_from(options, c);
      source = "the adapter of --rank/--targets/--layers";
      tensors = init_adapter_tensors(plan_adapter(config, c, source), ModelTraining::head_weight(*model), options.seed);
    }
    if (ck) {
      const std::string here = plan_fingerprint(plan_adapter(config, c, source));
      const std::string there = plan_fingerprint(plan_adapter(ck->config, c, "--resume " + options.resume.string()));
      if (here != there)
        fail(ErrorKind::bad_input, "--resume " + options.resume.string() +
                                       ": the checkpoint's adapter has another shape (rank, alpha, targets, layers or "
                                       "saved modules) than this run's; give the flags it was trained with");
      config = ck->config;
      tensors = ck->tensors;
      source = "--resume " + options.resume.string();
    }
    config.lora_dropout = options.dropout;  // a training setting, saved with the adapter as PEFT does
    adapter = std::make_unique<TrainableAdapter>(model, config, tensors, source);
  }

  Checkpoint checkpoint() const {
    return {.config = adapter->config(),
            .tensors = adapter->tensors(),
            .optimizer = adamw.state(),
            .step = done,
            .position = batcher->position(),
            .seed = options.seed,
            .model = model_fingerprint(model->config()),
            .data = data_fingerprint(train),
            .history = history};
  }
};

Trainer::Trainer(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, TrainOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (!model) fail(ErrorKind::bad_input, "Trainer: no model");
  check_options(options);
  m.model = std::move(model);
  m.tokenizer = std::move(tokenizer);
  m.options = std::move(options);
  const TrainOptions& o = m.options;
  m.schedule = {.kind = parse_schedule_kind(o.schedule), .base_lr = o.lr, .warmup_steps = o.warmup_steps,
                .warmup_ratio = o.warmup_ratio, .total_steps = 1};
  validate(m.schedule);  // --lr and --warmup before any file is read
  m.train = m.load(o.data);
  if (!o.eval_data.empty()) m.eval = m.load(o.eval_data);
  std::optional<Checkpoint> ck;
  if (!o.resume.empty()) {
    ck = read_checkpoint(o.resume);
    const std::string model_here = model_fingerprint(m.model->config()), data_here = data_fingerprint(m.train);
    if (ck->model != model_here)
      fail(ErrorKind::bad_input, "--resume " + o.resume.string() + ": the checkpoint was made for another model (" +
                                     ck->model + "), not this one (" + model_here + ")");
    if (ck->data != data_here)
      fail(ErrorKind::bad_input, "--resume " + o.resume.string() + ": the checkpoint was made on other data (" +
                                     ck->data + "), not --data's (" + data_here + ")");
  }
  m.make_adapter(ck);
  const int64_t batches = (int64_t(m.train.size()) + o.batch_size - 1) / o.batch_size;
  const int64_t per_epoch = std::max<int64_t>(batches / o.grad_accum, 1);  // transformers' num_update_steps_per_epoch
  m.schedule.total_steps = o.steps > 0 ? o.steps : int64_t(std::ceil(o.epochs * double(per_epoch)));
  validate(m.schedule);
  m.adamw = AdamW({.betas = o.betas, .eps = o.eps, .weight_decay = o.weight_decay});
  m.batcher = std::make_unique<Batcher>(int64_t(m.train.size()),
                                        Batcher::Options{.batch_size = o.batch_size, .shuffle = o.shuffle, .seed = o.seed});
  if (ck) {
    m.adamw.load_state(ck->optimizer);
    m.batcher->set_position(ck->position);
    m.done = ck->step;
    m.history = ck->history;
  }
  check_out(o.out);
}

Trainer::~Trainer() = default;

int64_t Trainer::total_steps() const { return impl_->schedule.total_steps; }
int64_t Trainer::steps_done() const { return impl_->done; }
int64_t Trainer::examples() const { return int64_t(impl_->train.size()); }
const std::vector<StepReport>& Trainer::history() const { return impl_->history; }

int64_t Trainer::peak_memory_bytes() const {
  if (const int64_t device = ModelTraining::backend(*impl_->model).peak_memory_bytes()) return device;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;
}

StepReport Trainer::step() {
  Impl& m = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> micro(size_t(m.options.grad_accum));
  int64_t targets = 0, tokens = 0, epoch = 0;
  for (auto& batch : micro) {
    epoch = m.batcher->position().epoch;
    batch = m.batcher->next();
    for (int64_t i : batch) {
      targets += targets_of(m.train[size_t(i)]);
      tokens += int64_t(m.train[size_t(i)].ids.size());
    }
  }
  // The gradient of the mean over the step's target tokens (transformers ≥ 4.46, num_items_in_batch).
  TrainOpsOptions pass{.loss_scale = float(1.0 / double(targets)),
                       .recompute = m.options.gradient_checkpointing,
                       .lora_dropout = float(m.options.dropout)};
  m.adapter->zero_grad();
  double loss = 0;
  std::vector<int32_t> class_labels;
  for (size_t i = 0; i < micro.size(); ++i) {
    // Masks from (seed, step, micro-batch): a resumed run draws the same ones without saving generator state.
    pass.dropout_seed = mix_seed(m.options.seed, uint64_t(m.done), i);
    loss += ModelTraining::train_pass(*m.model, sequences(m.train, micro[i], class_labels), *m.adapter,
                                      m.adapter->gradients(), pass);
  }
  m.adapter->gather_grads();
  m.last_grads.clear();
  for (const Param& p : m.adapter->params()) m.last_grads[p.name] = p.grad.clone();
  const double norm = clip_grad_norm(m.adapter->params(), m.options.max_grad_norm);
  const double lr = lr_at(m.schedule, m.done);
  m.adamw.step(m.adapter->params(), lr);
  m.adapter->refresh();
  ++m.done;
  StepReport r{.step = m.done, .total_steps = total_steps(), .epoch = epoch, .loss = loss / double(targets), .lr = lr,
               .grad_norm = norm, .tokens = tokens, .seconds = seconds_since(t0)};
  m.history.push_back(r);
  return r;
}

double Trainer::evaluate() {
  Impl& m = *impl_;
  if (m.eval.empty()) fail(ErrorKind::bad_input, "evaluate: no eval set (--eval FILE)");
  double loss = 0;
  int64_t targets = 0;
  std::vector<int32_t> class_labels;
  for (size_t begin = 0; begin < m.eval.size(); begin += size_t(m.options.batch_size)) {
    std::vector<int64_t> batch;
    for (size_t i = begin; i < std::min(m.eval.size(), begin + size_t(m.options.batch_size)); ++i) {
      batch.push_back(int64_t(i));
      targets += targets_of(m.eval[i]);
    }
    loss += ModelTraining::loss(*m.model, sequences(m.eval, batch, class_labels), *m.adapter);
  }
  return loss / double(targets);
}

void Trainer::run(const std::function<bool(const StepReport&)>& on_step) {
  Impl& m = *impl_;
  const TrainOptions& o = m.options;
  bool go_on = true;
  const auto device_turn = [&] {
    return o.turns ? std::unique_lock(*o.turns) : std::unique_lock<DeviceTurns>();
  };
  while (go_on && m.done < total_steps()) {
    std::unique_lock turn = device_turn();
    StepReport r = step();
    const bool last = m.done == total_steps();
    if (!m.eval.empty() && ((o.eval_every > 0 && m.done % o.eval_every == 0) || last)) {
      r.eval_loss = evaluate();
      m.history.back().eval_loss = r.eval_loss;
    }
    if (o.checkpoint_every > 0 && m.done % o.checkpoint_every == 0)
      save_checkpoint(o.out / ("checkpoint-" + std::to_string(m.done)));
    if (turn.owns_lock()) turn.unlock();
    if (on_step) go_on = on_step(r);
  }
  const std::unique_lock turn = device_turn();
  adapter()->save(o.out);
  write_train_log(o.out / "train_log.csv", m.history);
  write_loss_svg(o.out / "loss.svg", m.history);
}

std::shared_ptr<const LoraAdapter> Trainer::adapter(std::string name) const {
  return LoraAdapter::from_tensors(std::move(name), impl_->adapter->config(), impl_->adapter->tensors(), *impl_->model);
}

void Trainer::publish(AdapterRegistry& registry, const std::string& name) const { registry.put(adapter(name)); }

void Trainer::save_checkpoint(const fs::path& dir) const { write_checkpoint(dir, impl_->checkpoint()); }

std::map<std::string, Tensor> Trainer::tensors() const { return impl_->adapter->tensors(); }

std::map<std::string, Tensor> Trainer::gradients() const { return impl_->last_grads; }

}  // namespace wick
