// `wick serve`: an OpenAI-compatible HTTP server over the batched engine, with per-request adapters and fine-tuning
// jobs that train a LoRA adapter in the same process and publish it as a new model.
//
//   wick::Server server(model, tokenizer, {.port = 8080});
//   server.add_adapter("support", "adapters/support");
//   server.listen();   // blocks until stop() (another thread, or a signal handler's thread)
//
// Endpoints: POST /v1/chat/completions, /v1/completions (SSE streaming or not), POST /v1/embeddings (embedding models
// added with add_embedder), GET /v1/models, POST /v1/adapters,
// DELETE /v1/adapters/{name}, POST/GET /v1/files[/{id}[/content]], POST/GET /v1/fine_tuning/jobs[/{id}[/events]],
// POST /v1/fine_tuning/jobs/{id}/cancel, GET /health, GET /metrics. Errors are OpenAI's error object.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "wick/embedder.h"
#include "wick/engine.h"
#include "wick/model.h"
#include "wick/tokenizer.h"

namespace wick {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 ///< 0: any free port (Server::port() tells which)
  std::string api_key;             ///< when set, every /v1 request needs "Authorization: Bearer <key>"
  std::string model_name;          ///< the base model's id in /v1/models (default: the model folder's name)
  // --- limits ---
  int64_t max_running = 64;        ///< sequences decoded together at most (--max-batch)
  int64_t kv_blocks = 0;           ///< KV pool blocks of 16 positions (--kv-blocks); 0: room for max_running
                                   ///< sequences of 1,024 positions (at most the model's context)
  int64_t max_step_tokens = 2048;  ///< tokens one engine step runs at most (prefill chunks beside decodes)
  int64_t max_queue = 256;         ///< requests waiting for the engine at most; more get 429 (--max-queue)
  int64_t max_tokens = 0;          ///< new tokens a request may ask for at most (--max-tokens; 0: the context)
  size_t max_body_bytes = 16u << 20;  ///< request bodies above this get 413 (--max-body)
  int http_threads = 256;          ///< connections served at once (a streaming request holds one throughout)
  std::chrono::seconds idle_timeout{30};       ///< a connection silent this long while sending a request is closed
  std::chrono::seconds request_timeout{600};   ///< a request still running after this is cancelled (finish "abort")
  std::chrono::seconds shutdown_grace{30};     ///< stop(): in-flight requests may finish within this
  /// Where uploaded files and fine-tuning outputs go (created). Default: a fresh folder under the system's temp dir.
  std::filesystem::path data_dir;
};

/// What the server has done so far (the figures /metrics exports), for tests and embedders.
struct ServerStats {
  int64_t requests = 0;         ///< completions requests answered (any status)
  int64_t in_flight = 0;        ///< completions requests running now
  int64_t prompt_tokens = 0, completion_tokens = 0;
  /// Embeddings requests answered and the batches they ran in: requests that reach an embedding model while it is
  /// busy are embedded together, so embed_batches ≤ embed_requests.
  int64_t embed_requests = 0, embed_batches = 0;
  EngineStats engine;
};

class Server {
 public:
  /// A server over `model` (its tokenizer gives text, chat templates and stop strings). The engine starts here
  /// (its decode steps recorded at once); listen() opens the socket. bad_input for impossible options.
  /// A null `model` makes an embeddings-only server (add_embedder): completions, adapters and fine-tuning jobs
  /// answer 404 model_not_found saying so, and /v1/models lists the embedding models alone.
  Server(std::shared_ptr<Model> model, std::optional<Tokenizer> tokenizer, ServerOptions options = {});
  /// stop() with no grace if still listening.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Loads a PEFT adapter under `name` (the model id requests use); a new version when the name is taken. bad_input on
  /// an embeddings-only server.
  void add_adapter(const std::string& name, const std::filesystem::path& dir);
  /// Loads an embedding model (wick/embedder.h: a sentence-transformers folder or a plain encoder folder) under `name`,
  /// the model id POST /v1/embeddings requests use (a request naming no model gets the only one, when there is one).
  /// bad_input for an empty name or one already taken (the base model's, an adapter's, another embedder's); the
  /// Embedder's load errors as they are.
  void add_embedder(const std::string& name, const std::filesystem::path& dir, const EmbedderOptions& options = {});
  /// Binds host:port (bad_input naming them when it cannot); returns the port (the one picked for port 0).
  int bind();
  /// Serves until stop(); binds first if bind() was not called.
  void listen();
  /// Stops accepting requests (new ones get 503), lets the running ones finish within options.shutdown_grace,
  /// cancels the rest and makes listen() return. Callable from any thread, more than once.
  void stop();
  int port() const;
  ServerStats stats() const;
  const std::filesystem::path& data_dir() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wick
