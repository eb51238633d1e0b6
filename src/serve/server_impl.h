// The server's state, shared by its routes (server.cpp) and the completions flow (completions.cpp).
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "serve/embed_batch.h"
#include "serve/fine_tune.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "wick/adapter.h"
#include "wick/device_turns.h"
#include "wick/engine.h"
#include "wick/generator.h"
#include "wick/server.h"

namespace wick {

namespace serve {
/// Positions per KV block of the server's pool (--kv-blocks counts these).
constexpr int64_t kBlockSize = 16;
}  // namespace serve

struct Server::Impl {
  Impl(std::shared_ptr<Model> model, std::optional<Tokenizer> tokenizer, ServerOptions options);

  std::shared_ptr<Model> model;  // null: an embeddings-only server (no generator, registry, engine or jobs)
  std::shared_ptr<const Tokenizer> tokenizer;  // null: prompts must be token ids; no text, no chat
  ServerOptions options;
  std::string base_name;
  int64_t started_at = 0;  // Unix seconds, the models' "created"
  std::shared_ptr<DeviceTurns> turns = std::make_shared<DeviceTurns>();
  std::optional<Generator> generator;
  std::optional<AdapterRegistry> registry;
  std::unique_ptr<Engine> engine;
  serve::Metrics metrics;
  std::unique_ptr<serve::FileStore> files;
  std::unique_ptr<serve::FineTuneJobs> jobs;
  httplib::Server http;
  // Embedding models by name, each with the requests waiting for it (add_embedder; read by the route under embed_mu).
  mutable std::mutex embed_mu;
  std::map<std::string, std::shared_ptr<serve::EmbedBatcher>> embedders;

  // Requests in the engine now, for stop(): guarded by `mu`.
  std::mutex mu;
  std::condition_variable idle;
  std::set<uint64_t> live;
  int64_t handlers = 0;  // completions handlers (and stream providers) not yet returned
  std::atomic<bool> draining{false};
  std::atomic<int64_t> requests{0};
  std::once_flag stopped;
  bool bound = false;
  int port = -1;
  socket_t listen_socket = -1;  // the listening socket (set while binding)

  void routes();
  /// POST /v1/completions and /v1/chat/completions (completions.cpp).
  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  /// POST /v1/embeddings (embeddings.cpp).
  void embeddings(const httplib::Request& req, httplib::Response& res);
  /// The adapter a request's `model` names: null for the base model; 404 model_not_found for an unknown id.
  std::shared_ptr<const LoraSource> adapter_of(const std::string& model_id) const;
  /// 404 model_not_found, naming `what`, on an embeddings-only server.
  void need_model(const std::string& what) const;
  void stop();
};

namespace serve {
/// Writes `e` as the response: its status and OpenAI's error object.
void respond_error(httplib::Response& res, const ApiError& e);
/// The exception in flight as an ApiError: an ApiError as it is, wick's bad input / not found / unsupported as 400
/// or 404, anything else 500.
ApiError api_error_of(std::exception_ptr e);
/// `j` as the response body (invalid UTF-8 from token fragments replaced).
void respond_json(httplib::Response& res, const nlohmann::json& j, int status = 200);
}  // namespace serve

}  // namespace wick
