// OpenAI's files and fine-tuning jobs, answered by training a LoRA adapter in the server's process: uploaded JSONL
// files kept under the data folder, a queue of jobs run one at a time on a thread of their own (each training step
// in a turn of the device shared with the engine), per-step events, cancellation, and on success the adapter
// published to the server's registry as model `ft:<base>:<suffix>:<job id>`.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/openai.h"
#include "wick/adapter.h"
#include "wick/device_turns.h"
#include "wick/model.h"
#include "wick/tokenizer.h"

namespace wick::serve {

/// Uploaded files (purpose fine-tune): JSONL checked line by line at upload.
class FileStore {
 public:
  explicit FileStore(std::filesystem::path dir);
  /// Stores an upload; 400 naming the line when a line is not a JSON object; returns the file object.
  nlohmann::json add(const std::string& filename, const std::string& purpose, const std::string& content);
  /// Stores a job's results file (purpose fine-tune-results: its train_log.csv); returns the file object.
  nlohmann::json add_result(const std::string& filename, const std::string& content);
  /// The file object; 404 when unknown.
  nlohmann::json get(const std::string& id) const;
  std::filesystem::path path(const std::string& id) const;  ///< 404 when unknown
  std::string content(const std::string& id) const;          ///< 404 when unknown
  nlohmann::json list() const;
  nlohmann::json remove(const std::string& id);              ///< the deletion object; 404 when unknown

 private:
  struct Stored {
    nlohmann::json object;
    std::filesystem::path path;
  };
  const Stored& stored(const std::string& id) const;  // 404 when unknown; mu_ held
  nlohmann::json store(const std::string& filename, const std::string& purpose, const std::string& content,
                       const std::string& extension);

  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<std::string, Stored> files_;  // by id
};

/// How a job's models reach the server: `publish` registers an adapter under its name (the job's model, or one of its
/// checkpoints), `retire` unregisters a checkpoint that is no longer kept.
struct ModelPublisher {
  std::function<void(std::shared_ptr<const LoraAdapter>)> publish;
  std::function<void(const std::string& name)> retire;
};

class FineTuneJobs {
 public:
  FineTuneJobs(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, std::string base_name,
               std::shared_ptr<DeviceTurns> turns, FileStore& files, std::filesystem::path dir,
               ModelPublisher publisher);
  /// Cancels the running job and waits for its thread.
  ~FineTuneJobs();
  /// Queues a job (400 / 404 for a bad model or file id); returns the job object.
  nlohmann::json create(const FineTuneRequest& request);
  nlohmann::json get(const std::string& id) const;  ///< 404 when unknown
  nlohmann::json list() const;
  /// Events newest first, as OpenAI lists them (404 when unknown).
  nlohmann::json events(const std::string& id) const;
  /// The checkpoints of the last three epochs but the final one, newest first (404 when unknown), as OpenAI keeps
  /// them. Each is also a model (`fine_tuned_model_checkpoint`) requests can use; older ones are retired.
  nlohmann::json checkpoints(const std::string& id) const;
  /// Marks the job cancelled (a running one stops after its current step); returns the job object.
  nlohmann::json cancel(const std::string& id);

 private:
  struct Job;
  void work();
  void run(Job& job);
  void event(Job& job, const std::string& message, nlohmann::json data = nullptr);
  static nlohmann::json object_of(const Job& job);
  Job& find(const std::string& id) const;

  std::shared_ptr<Model> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string base_name_;
  std::shared_ptr<DeviceTurns> turns_;
  FileStore& files_;
  std::filesystem::path dir_;
  ModelPublisher publisher_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::deque<Job*> queue_;
  uint64_t next_ = 1;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace wick::serve
