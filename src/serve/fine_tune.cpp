#include "serve/fine_tune.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <fstream>
#include <random>

#include "core/json_util.h"
#include "wick/error.h"
#include "wick/train.h"

namespace wick::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kKeptCheckpoints = 3;  // as OpenAI: the last three epochs' checkpoints

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "<prefix>-" and 24 hex digits: unique across restarts of a server that keeps its data folder.
std::string new_id(const std::string& prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  const std::lock_guard lock(mu);
  static const char* hex = "0123456789abcdef";
  std::string id = prefix + "-";
  for (int i = 0; i < 24; ++i) id += hex[rng() % 16];
  return id;
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), std::streamsize(content.size()));
  if (!out.flush()) throw ApiError(500, "server_error", "could not write " + path.string());
}

}  // namespace

// --- files -----------------------------------------------------------------------------------------------------------

FileStore::FileStore(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }

json FileStore::add(const std::string& filename, const std::string& purpose, const std::string& content) {
  if (purpose != "fine-tune")
    bad_field("purpose", "'purpose' must be 'fine-tune' (the only purpose this server keeps files for), found '" +
                             purpose + "'");
  // Each non-blank line one JSON object: what a fine-tuning job reads. Its fields are checked when a job starts.
  size_t line_no = 0, lines = 0, start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    ++line_no;
    const std::string_view line(content.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      bad_field("file", "'" + filename + "' line " + std::to_string(line_no) + ": not a JSON object");
    ++lines;
  }
  if (lines == 0) bad_field("file", "'" + filename + "' holds no examples (JSONL: one JSON object per line)");
  return store(filename, purpose, content, ".jsonl");
}

json FileStore::add_result(const std::string& filename, const std::string& content) {
  return store(filename, "fine-tune-results", content, ".csv");
}

json FileStore::store(const std::string& filename, const std::string& purpose, const std::string& content,
                      const std::string& extension) {
  const std::string id = new_id("file");
  const fs::path where = dir_ / (id + extension);
  write_file(where, content);
  json f = {{"id", id},          {"object", "file"},  {"bytes", content.size()}, {"created_at", unix_now()},
            {"filename", filename}, {"purpose", purpose}, {"status", "processed"}};
  const std::lock_guard lock(mu_);
  files_[id] = {f, where};
  return f;
}

const FileStore::Stored& FileStore::stored(const std::string& id) const {
  const auto it = files_.find(id);
  if (it == files_.end()) throw ApiError(404, "invalid_request_error", "No such file: '" + id + "'", "file_id");
  return it->second;
}

json FileStore::get(const std::string& id) const {
  const std::lock_guard lock(mu_);
  return stored(id).object;
}

fs::path FileStore::path(const std::string& id) const {
  const std::lock_guard lock(mu_);
  return stored(id).path;
}

std::string FileStore::content(const std::string& id) const { return read_text_file(path(id)); }

json FileStore::list() const {
  const std::lock_guard lock(mu_);
  json data = json::array();
  for (const auto& [id, f] : files_) data.push_back(f.object);
  return {{"object", "list"}, {"data", std::move(data)}, {"has_more", false}};
}

json FileStore::remove(const std::string& id) {
  const fs::path p = path(id);
  {
    const std::lock_guard lock(mu_);
    files_.erase(id);
  }
  std::error_code ec;
  fs::remove(p, ec);
  return {{"id", id}, {"object", "file"}, {"deleted", true}};
}

// --- jobs ------------------------------------------------------------------------------------------------------------

struct FineTuneJobs::Job {
  std::string id, model, training_file, suffix, fine_tuned_model;
  std::optional<std::string> validation_file;
  std::string status = "validating_files";
  int64_t created_at = 0;
  std::optional<int64_t> finished_at;
  double n_epochs = 3;
  int64_t batch_size = 4;
  double lr_multiplier = 1;
  uint64_t seed = 42;
  int64_t trained_tokens = 0;
  json error = nullptr;
  std::vector<json> events;       // oldest first
  std::vector<json> checkpoints;  // oldest first
  std::vector<std::string> result_files;
  std::atomic<bool> cancel{false};
};

FineTuneJobs::FineTuneJobs(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                           std::string base_name, std::shared_ptr<DeviceTurns> turns, FileStore& files,
                           fs::path dir, ModelPublisher publisher)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      base_name_(std::move(base_name)),
      turns_(std::move(turns)),
      files_(files),
      dir_(std::move(dir)),
      publisher_(std::move(publisher)) {
  fs::create_directories(dir_);
  worker_ = std::thread([this] { work(); });
}

FineTuneJobs::~FineTuneJobs() {
  {
    const std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) job->cancel = true;
  }
  wake_.notify_all();
  worker_.join();
}

json FineTuneJobs::object_of(const Job& j) {
  return {{"id", j.id},
          {"object", "fine_tuning.job"},
          {"model", j.model},
          {"created_at", j.created_at},
          {"finished_at", j.finished_at ? json(*j.finished_at) : json(nullptr)},
          {"fine_tuned_model", j.fine_tuned_model.empty() ? json(nullptr) : json(j.fine_tuned_model)},
          {"organization_id", "wick"},
          {"result_files", j.result_files},
          {"status", j.status},
          {"training_file", j.training_file},
          {"validation_file", j.validation_file ? json(*j.validation_file) : json(nullptr)},
          {"hyperparameters",
           {{"n_epochs", j.n_epochs}, {"batch_size", j.batch_size}, {"learning_rate_multiplier", j.lr_multiplier}}},
          {"trained_tokens", j.status == "succeeded" ? json(j.trained_tokens) : json(nullptr)},
          {"error", j.error},
          {"seed", j.seed},
          {"suffix", j.suffix.empty() ? json(nullptr) : json(j.suffix)}};
}

FineTuneJobs::Job& FineTuneJobs::find(const std::string& id) const {
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) throw ApiError(404, "invalid_request_error", "No such fine-tuning job: '" + id + "'", "id");
  return *it->second;
}

json FineTuneJobs::create(const FineTuneRequest& r) {
  if (r.model != base_name_)
    throw ApiError(404, "invalid_request_error",
                   "The model '" + r.model + "' cannot be fine-tuned here: this server fine-tunes '" + base_name_ + "'",
                   "model", "model_not_found");
  const auto known = [this](const std::string& id, const char* field) {
    try {
      files_.get(id);
    } catch (const ApiError& e) {
      throw ApiError(e.status, e.type, e.what(), field, e.code);
    }
  };
  known(r.training_file, "training_file");
  if (r.validation_file) known(*r.validation_file, "validation_file");
  auto job = std::make_unique<Job>();
  job->id = new_id("ftjob");
  job->model = r.model;
  job->training_file = r.training_file;
  job->validation_file = r.validation_file;
  job->suffix = r.suffix;
  job->created_at = unix_now();
  if (r.n_epochs) job->n_epochs = *r.n_epochs;
  if (r.batch_size) job->batch_size = *r.batch_size;
  if (r.learning_rate_multiplier) job->lr_multiplier = *r.learning_rate_multiplier;
  if (r.seed) job->seed = *r.seed;
  const std::lock_guard lock(mu_);
  Job& j = *job;
  jobs_[j.id] = std::move(job);
  event(j, "Created fine-tuning job: " + j.id);
  j.status = "queued";
  queue_.push_back(&j);
  wake_.notify_all();
  return object_of(j);
}

json FineTuneJobs::get(const std::string& id) const {
  const std::lock_guard lock(mu_);
  return object_of(find(id));
}

json FineTuneJobs::list() const {
  const std::lock_guard lock(mu_);
  json data = json::array();
  for (const auto& [id, job] : jobs_) data.push_back(object_of(*job));
  return {{"object", "list"}, {"data", std::move(data)}, {"has_more", false}};
}

namespace {

// OpenAI's list object over items kept oldest first: newest first.
json newest_first(const std::vector<json>& items) {
  return {{"object", "list"}, {"data", std::vector<json>(items.rbegin(), items.rend())}, {"has_more", false}};
}

}  // namespace

json FineTuneJobs::events(const std::string& id) const {
  const std::lock_guard lock(mu_);
  return newest_first(find(id).events);
}

json FineTuneJobs::checkpoints(const std::string& id) const {
  const std::lock_guard lock(mu_);
  json out = newest_first(find(id).checkpoints);
  const json& data = out["data"];
  out["first_id"] = data.empty() ? json(nullptr) : data.front()["id"];
  out["last_id"] = data.empty() ? json(nullptr) : data.back()["id"];
  return out;
}

json FineTuneJobs::cancel(const std::string& id) {
  const std::lock_guard lock(mu_);
  Job& j = find(id);
  if (j.status == "succeeded" || j.status == "failed" || j.status == "cancelled")
    throw ApiError(400, "invalid_request_error", "Job " + id + " has already " + j.status + ": nothing to cancel", "id");
  j.cancel = true;
  if (j.status == "queued") {  // never started: cancelled at once
    std::erase(queue_, &j);
    j.status = "cancelled";
    j.finished_at = unix_now();
    event(j, "Fine-tuning job cancelled");
  }
  return object_of(j);
}

// Called with mu_ held.
void FineTuneJobs::event(Job& j, const std::string& message, json data) {
  json e = {{"object", "fine_tuning.job.event"},
            {"id", "ftevent-" + j.id.substr(6) + "-" + std::to_string(j.events.size())},
            {"created_at", unix_now()},
            {"level", "info"},
            {"message", message},
            {"data", data.is_null() ? json::object() : data},
            {"type", data.is_null() ? "message" : "metrics"}};
  j.events.push_back(std::move(e));
}

void FineTuneJobs::work() {
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      job->status = "running";
      event(*job, "Fine-tuning job started");
    }
    run(*job);
  }
}

void FineTuneJobs::run(Job& job) {
  const fs::path out = dir_ / job.id;
  try {
    TrainOptions o;
    o.data = files_.path(job.training_file);
    if (job.validation_file) o.eval_data = files_.path(*job.validation_file);
    o.targets = {"all-linear"};
    o.rank = 8;
    o.alpha = 16;
    o.lr = 2e-4 * job.lr_multiplier;
    o.epochs = job.n_epochs;
    o.batch_size = job.batch_size;
    o.seed = job.seed;
    o.seq_len = std::min<int64_t>(1024, model_->config().max_position_embeddings);
    o.out = out;
    o.turns = turns_;
    std::unique_ptr<Trainer> trainer;
    {  // reading the data and placing the adapter on the device: a turn of its own
      const std::lock_guard turn(*turns_);
      trainer = std::make_unique<Trainer>(model_, tokenizer_, o);
    }
    {
      const std::lock_guard lock(mu_);
      event(job, "Training " + std::to_string(trainer->examples()) + " examples for " +
                     std::to_string(trainer->total_steps()) + " steps");
    }
    const std::string name = "ft:" + base_name_ + ":" + job.suffix + ":" + job.id;
    // A checkpoint at the end of each of the last epochs but the final one (that one is the job's model), as OpenAI
    // keeps them; earlier epochs make none (a checkpoint is written whole, the optimizer state with it).
    const int64_t per_epoch =
        std::max<int64_t>(1, std::llround(double(trainer->total_steps()) / std::max(job.n_epochs, 1.0)));
    trainer->run([&](const StepReport& r) {
      const bool kept = r.step + int64_t(kKeptCheckpoints) * per_epoch >= r.total_steps;
      if (r.step % per_epoch == 0 && r.step < r.total_steps && kept && !job.cancel) {
        const std::string checkpoint = name + ":ckpt-step-" + std::to_string(r.step);
        {
          const std::lock_guard turn(*turns_);
          trainer->save_checkpoint(out / ("checkpoint-" + std::to_string(r.step)));
          publisher_.publish(trainer->adapter(checkpoint));
        }
        json metrics = {{"step", r.step}, {"train_loss", r.loss}};
        if (r.eval_loss) metrics["valid_loss"] = *r.eval_loss;
        std::optional<json> retired;
        {
          const std::lock_guard lock(mu_);
          if (job.checkpoints.size() == kKeptCheckpoints) {
            retired = job.checkpoints.front();
            job.checkpoints.erase(job.checkpoints.begin());
          }
        }
        if (retired) {
          publisher_.retire((*retired)["fine_tuned_model_checkpoint"].get<std::string>());
          std::error_code ec;
          fs::remove_all(out / ("checkpoint-" + std::to_string((*retired)["step_number"].get<int64_t>())), ec);
        }
        const std::lock_guard lock(mu_);
        job.checkpoints.push_back({{"object", "fine_tuning.job.checkpoint"},
                                   {"id", "ftckpt-" + job.id.substr(6) + "-" + std::to_string(r.step)},
                                   {"created_at", unix_now()},
                                   {"fine_tuned_model_checkpoint", checkpoint},
                                   {"fine_tuning_job_id", job.id},
                                   {"step_number", r.step},
                                   {"metrics", std::move(metrics)}});
      }
      const std::lock_guard lock(mu_);
      job.trained_tokens += r.tokens;
      json data = {{"step", r.step}, {"total_steps", r.total_steps}, {"train_loss", r.loss}, {"learning_rate", r.lr}};
      if (r.eval_loss) data["valid_loss"] = *r.eval_loss;
      event(job, "Step " + std::to_string(r.step) + "/" + std::to_string(r.total_steps) + ": training loss=" +
                     std::to_string(r.loss),
            std::move(data));
      return !job.cancel.load();
    });
    if (job.cancel) {
      const std::lock_guard lock(mu_);
      job.status = "cancelled";
      job.finished_at = unix_now();
      event(job, "Fine-tuning job cancelled");
      return;
    }
    {
      const std::lock_guard turn(*turns_);
      publisher_.publish(trainer->adapter(name));
    }
    const json results = files_.add_result("step_metrics.csv", read_text_file(out / "train_log.csv"));
    const std::lock_guard lock(mu_);
    job.result_files.push_back(results["id"]);
    job.fine_tuned_model = name;
    job.status = "succeeded";
    job.finished_at = unix_now();
    event(job, "New fine-tuned model created: " + name);
    event(job, "The job has successfully completed");
  } catch (const std::exception& e) {
    const std::lock_guard lock(mu_);
    const Error* we = dynamic_cast<const Error*>(&e);
    const bool user = we && we->kind() != ErrorKind::internal && we->kind() != ErrorKind::out_of_memory;
    job.status = "failed";
    job.finished_at = unix_now();
    job.error = {{"code", user ? "invalid_training_file" : "server_error"},
                 {"message", e.what()},
                 {"param", user ? json("training_file") : json(nullptr)}};
    event(job, std::string("Fine-tuning job failed: ") + e.what());
  }
}

}  // namespace wick::serve
