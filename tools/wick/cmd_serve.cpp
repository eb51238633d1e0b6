// wick serve [--model DIR|ORG/NAME] [--adapter NAME=DIR]... [--embed-model NAME=DIR]... [--host H] [--port P] [--api-key KEY] [--device cpu|cuda]
//            [--compute auto|f32] [--threads N] [--max-batch N] [--kv-blocks N] [--max-queue N] [--max-tokens N]
//            [--max-body BYTES] [--timeout S] [--data-dir DIR] [--served-model-name NAME]
// An OpenAI-compatible server (wick/server.h). Prints "wick serve: listening on http://HOST:PORT" on stdout once the
// socket is bound; SIGTERM or SIGINT stops accepting, lets in-flight requests finish within --shutdown-grace and
// exits 0. Without --model (and with --embed-model) it serves embeddings only. A wick configured without cpp-httplib
// (WICK_SERVE=OFF, or AUTO without it) says so.
#include <csignal>
#include <iostream>
#include <memory>
#include <thread>

#include "cli.h"
#include "sampling_flags.h"
#include "wick/error.h"
#if WICK_WITH_SERVE
#include <atomic>
#include <chrono>

#include "wick/server.h"
#endif

namespace wick::cli {

#if WICK_WITH_SERVE
namespace {

// The model's id in /v1/models when --served-model-name is not given: ORG/NAME as given, else the folder's name.
std::string default_model_name(const std::string& spec, const std::string& dir) {
  if (!std::filesystem::exists(spec)) return spec;
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string().empty() ? "wick" : p.filename().string();
}

// SIGTERM / SIGINT set a flag (a handler, not a blocked mask: OpenBLAS starts its threads before main, and a signal
// may land on any thread); one thread polls it and stops the server.
volatile std::sig_atomic_t stop_signal = 0;

void on_stop_signal(int sig) { stop_signal = sig; }

void catch_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not the process's end
}

// The thread that watches the flag; declared after the server so that it is joined before the server goes.
class SignalWatch {
 public:
  explicit SignalWatch(Server& server)
      : thread_([this, &server] {
          while (!done_.load()) {
            if (const int sig = stop_signal) {
              std::cerr << "wick serve: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT")
                        << ": draining in-flight requests, then exiting\n";
              server.stop();
              return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }) {}
  ~SignalWatch() {
    done_ = true;
    thread_.join();
  }
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace
#endif

Action add_serve(CLI::App& app) {
  struct Opts {
    std::string model, device = "cpu", host = "127.0.0.1", api_key, data_dir, served_name;
    CpuFlags cpu;
    std::vector<std::string> adapters, embed_models;
    int port = 8080, http_threads = 256;
    int64_t max_batch = 64, kv_blocks = 0, max_queue = 256, max_tokens = 0, max_step_tokens = 2048;
    int64_t max_body = 16 << 20, timeout = 600, idle_timeout = 30, grace = 30;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with per-request adapters and "
                                              "fine-tuning jobs");
  cmd->add_option("--model", o->model, "Hugging Face model directory, or ORG/NAME from the Hub cache (without it, "
                                       "only embeddings: --embed-model)");
  cmd->add_option("--adapter", o->adapters, "NAME=DIR: a PEFT LoRA adapter requests pick with model=NAME "
                                            "(repeatable)");
  cmd->add_option("--embed-model", o->embed_models,
                  "NAME=DIR: an embedding model (sentence-transformers folder) POST /v1/embeddings requests pick "
                  "with model=NAME (repeatable; on --device, with the CPU flags)");
  cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "port to listen on (0: any free port)")->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /v1 requests "
                                           "(default: $WICK_API_KEY, else none)");
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  add_cpu_flags(cmd, o->cpu);
  add_tensor_parallel_flag(cmd, o->cpu);
  cmd->add_option("--served-model-name", o->served_name, "the base model's id (default: the model folder's name)");
  cmd->add_option("--max-batch", o->max_batch, "sequences decoded together at most")->capture_default_str();
  cmd->add_option("--kv-blocks", o->kv_blocks, "KV pool size in blocks of 16 positions (0: room for --max-batch "
                                               "sequences of 1,024 positions)")->capture_default_str();
  cmd->add_option("--max-step-tokens", o->max_step_tokens, "tokens one engine step runs at most")
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue, "requests waiting for the engine at most (more get 429)")
      ->capture_default_str();
  cmd->add_option("--max-tokens", o->max_tokens, "new tokens a request may ask for at most (0: the context)")
      ->capture_default_str();
  cmd->add_option("--max-body", o->max_body, "request body size limit in bytes (more get 413)")->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "connections served at once")->capture_default_str();
  cmd->add_option("--timeout", o->timeout, "seconds a request may run before it is cancelled")->capture_default_str();
  cmd->add_option("--idle-timeout", o->idle_timeout, "seconds a connection may stay silent mid-request")
      ->capture_default_str();
  cmd->add_option("--shutdown-grace", o->grace, "seconds in-flight requests may take to finish after SIGTERM")
      ->capture_default_str();
  cmd->add_option("--data-dir", o->data_dir, "where uploaded files and fine-tuned adapters go (default: a new "
                                             "folder under the temp dir)");
  return [o] {
#if WICK_WITH_SERVE
    catch_stop_signals();
    const LoadOptions load = load_options(o->device, o->cpu);
    const auto positive = [](int64_t v, const char* flag) {
      if (v < 1) fail(ErrorKind::bad_input, std::string(flag) + " must be at least 1, found " + std::to_string(v));
    };
    positive(o->timeout, "--timeout");
    positive(o->idle_timeout, "--idle-timeout");
    if (o->grace < 0) fail(ErrorKind::bad_input, "--shutdown-grace must not be negative");
    if (o->max_body < 1024) fail(ErrorKind::bad_input, "--max-body must be at least 1024 bytes");
    if (o->model.empty() && o->embed_models.empty())
      fail(ErrorKind::bad_input, "serve: give --model (a model to generate with), --embed-model NAME=DIR (embeddings "
                                 "only), or both");
    if (o->model.empty() && !o->adapters.empty())
      fail(ErrorKind::bad_input, "--adapter needs --model: an embeddings-only server has no model to adapt");
    const std::string model_dir = o->model.empty() ? std::string() : resolve_model_arg(o->model);
    // NAME=DIR values of a repeatable flag, each name once.
    const auto named_dirs = [](const std::vector<std::string>& values, const std::string& flag) {
      std::vector<std::pair<std::string, std::string>> out;
      for (const std::string& a : values) {
        auto [name, dir] = named_dir(a);
        if (name.empty())
          fail(ErrorKind::bad_input, flag + ": expected NAME=DIR (the name requests use as 'model'), found '" + a + "'");
        for (const auto& seen : out)
          if (seen.first == name) fail(ErrorKind::bad_input, flag + ": the name '" + name + "' is given twice");
        out.emplace_back(name, resolve_model_arg(dir));
      }
      return out;
    };
    const auto adapters = named_dirs(o->adapters, "--adapter");
    const auto embed_models = named_dirs(o->embed_models, "--embed-model");
    ServerOptions options{.host = o->host,
                          .port = o->port,
                          .api_key = o->api_key,
                          .model_name = !o->served_name.empty() ? o->served_name
                                        : o->model.empty()         ? std::string()
                                                                   : default_model_name(o->model, model_dir),
                          .max_running = o->max_batch,
                          .kv_blocks = o->kv_blocks,
                          .max_step_tokens = o->max_step_tokens,
                          .max_queue = o->max_queue,
                          .max_tokens = o->max_tokens,
                          .max_body_bytes = size_t(o->max_body),
                          .http_threads = o->http_threads,
                          .idle_timeout = std::chrono::seconds(o->idle_timeout),
                          .request_timeout = std::chrono::seconds(o->timeout),
                          .shutdown_grace = std::chrono::seconds(o->grace),
                          .data_dir = o->data_dir};
    if (options.api_key.empty())
      if (const char* env = std::getenv("WICK_API_KEY")) options.api_key = env;
    Server server(model_dir.empty() ? nullptr : Model::load(model_dir, load),
                  model_dir.empty() ? std::nullopt : tokenizer_if_present(model_dir), options);
    for (const auto& [name, dir] : adapters) server.add_adapter(name, dir);
    for (const auto& [name, dir] : embed_models)
      server.add_embedder(name, dir, {.device = load.device, .cpu_weights = load.cpu_weights,
                                      .cpu_threads = load.cpu_threads});
    const int port = server.bind();
    std::cout << "wick serve: listening on http://" << o->host << ":" << port << " ("
              << (model_dir.empty() ? std::string("no generative model") : "model '" + options.model_name + "'")
              << ", " << adapters.size() << " adapter" << (adapters.size() == 1 ? "" : "s") << ", "
              << embed_models.size() << " embedding model" << (embed_models.size() == 1 ? "" : "s") << ", data in "
              << server.data_dir().string() << ")" << std::endl;
    SignalWatch watch(server);
    server.listen();
    std::cerr << "wick serve: stopped\n";
#else
    (void)o;
    fail(ErrorKind::unsupported, "serve: this wick was built without the server (cpp-httplib was not found when it "
                                 "was configured; install libcpp-httplib-dev and configure again)");
#endif
  };
}

}  // namespace wick::cli
