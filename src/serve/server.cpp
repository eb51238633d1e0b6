// The HTTP side of `wick serve`: routes, authentication, errors as OpenAI's error object, models and adapters,
// files and fine-tuning jobs, health and metrics, and a stop that drains in-flight requests.
#include <chrono>
#include <random>

#include "serve/server_impl.h"
#include "wick/error.h"

namespace wick {

namespace fs = std::filesystem;
using nlohmann::json;
using serve::ApiError;

namespace serve {

void respond_json(httplib::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void respond_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
}

ApiError api_error_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ApiError& a) {
    return a;
  } catch (const Error& w) {
    switch (w.kind()) {
      case ErrorKind::bad_input:
      case ErrorKind::corrupt:
      case ErrorKind::unsupported: return ApiError(400, "invalid_request_error", w.what());
      case ErrorKind::not_found: return ApiError(404, "not_found_error", w.what());
      case ErrorKind::cancelled: return ApiError(499, "cancelled", w.what());
      case ErrorKind::out_of_memory: return ApiError(503, "server_error", w.what());
      case ErrorKind::internal: break;
    }
    return ApiError(500, "server_error", w.what());
  } catch (const std::exception& x) {
    return ApiError(500, "server_error", x.what());
  } catch (...) {
    return ApiError(500, "server_error", "unknown error");
  }
}

}  // namespace serve

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

fs::path default_data_dir() {
  std::mt19937_64 rng{std::random_device{}()};
  return fs::temp_directory_path() / ("wick-serve-" + std::to_string(rng() % 1000000000ull));
}

ServerOptions checked(ServerOptions o, const Model* model) {
  const auto bad = [](const std::string& why) { fail(ErrorKind::bad_input, "serve: " + why); };
  if (o.port < 0 || o.port > 65535) bad("--port must be in [0, 65535], found " + std::to_string(o.port));
  if (o.max_running < 1) bad("--max-batch must be at least 1");
  if (o.kv_blocks < 0) bad("--kv-blocks must be at least 1 (0: sized for --max-batch)");
  if (o.max_step_tokens < 1) bad("--max-step-tokens must be at least 1");
  if (o.max_queue < 0) bad("--max-queue must not be negative");
  if (o.max_tokens < 0) bad("--max-tokens must not be negative (0: up to the context)");
  if (o.max_body_bytes < 1024) bad("--max-body must be at least 1024 bytes");
  if (o.http_threads < 1) bad("--http-threads must be at least 1");
  const int64_t context = model ? model->config().max_position_embeddings : 0;
  if (o.kv_blocks == 0 && model)
    o.kv_blocks = o.max_running * ((std::min<int64_t>(1024, context) + serve::kBlockSize - 1) / serve::kBlockSize);
  if (o.data_dir.empty()) o.data_dir = default_data_dir();
  return o;
}

}  // namespace

Server::Impl::Impl(std::shared_ptr<Model> m, std::optional<Tokenizer> tok, ServerOptions o)
    : model(std::move(m)),
      tokenizer(tok ? std::make_shared<const Tokenizer>(std::move(*tok)) : nullptr),
      options(checked(std::move(o), model.get())),
      started_at(unix_now()) {
  base_name = options.model_name.empty() ? "wick" : options.model_name;
  fs::create_directories(options.data_dir);
  files = std::make_unique<serve::FileStore>(options.data_dir / "files");
  if (model) {
    generator.emplace(model, tokenizer ? std::optional<Tokenizer>(*tokenizer) : std::nullopt);
    registry.emplace(model);
    engine = std::make_unique<Engine>(model, EngineOptions{.block_size = serve::kBlockSize,
                                                           .num_blocks = options.kv_blocks,
                                                           .max_step_tokens = options.max_step_tokens,
                                                           .max_running = options.max_running,
                                                           .turns = turns});
    engine->start();
    jobs = std::make_unique<serve::FineTuneJobs>(
        model, tokenizer, base_name, turns, *files, options.data_dir / "fine_tuning",
        serve::ModelPublisher{.publish = [this](std::shared_ptr<const LoraAdapter> a) { registry->put(std::move(a)); },
                              .retire = [this](const std::string& name) { registry->unload(name); }});
  }
  routes();
}

void Server::Impl::need_model(const std::string& what) const {
  if (!model)
    throw ApiError(404, "invalid_request_error",
                   "This server serves embeddings only: " + what +
                       " need a generative model (start wick serve with --model)",
                   "model", "model_not_found");
}

std::shared_ptr<const LoraSource> Server::Impl::adapter_of(const std::string& id) const {
  need_model("completions");
  if (id == base_name) return nullptr;
  std::shared_ptr<const LoraAdapter> a = registry->get(id);
  if (!a)
    throw ApiError(404, "invalid_request_error", "The model '" + id + "' does not exist (GET /v1/models lists them)",
                   "model", "model_not_found");
  return LoraAdapter::shared_source(a);
}

void Server::Impl::routes() {
  http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(size_t(n)); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(options.idle_timeout);
  http.set_write_timeout(options.idle_timeout);
  http.set_keep_alive_max_count(1000);
  // SO_REUSEADDR, not httplib's SO_REUSEPORT (a second server on a port in use must fail, not share it); the socket
  // is kept to deepen its listen backlog after the bind (httplib's is 5: a burst of clients would be refused).
  http.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket = sock;
  });

  // Every /v1 route checks the key first; answers are counted by route and status.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + options.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    serve::respond_error(res, ApiError(401, "authentication_error",
                                       "Incorrect or missing API key: send 'Authorization: Bearer <key>'", "",
                                       "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_post_routing_handler([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.request(req.matches.empty() ? req.path : std::string(req.matches[0]), res.status);
  });
  // What no handler answered (unknown route, a body over the limit, a request httplib could not read).
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      serve::respond_error(res, ApiError(404, "invalid_request_error", "Unknown route: " + req.method + " " + req.path));
    else if (res.status == 413)
      serve::respond_error(res, ApiError(413, "invalid_request_error", "The request body is too large"));
    else
      serve::respond_error(res, ApiError(res.status, "invalid_request_error", "The request could not be read"));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    serve::respond_error(res, serve::api_error_of(e));
  });

  // Each handler's errors become the error object (the exception handler above catches what escapes).
  const auto guard = [](auto body) {
    return [body](const httplib::Request& req, httplib::Response& res) {
      try {
        body(req, res);
      } catch (...) {
        serve::respond_error(res, serve::api_error_of(std::current_exception()));
      }
    };
  };

  http.Post("/v1/completions", guard([this](const auto& req, auto& res) { completions(req, res, false); }));
  http.Post("/v1/chat/completions", guard([this](const auto& req, auto& res) { completions(req, res, true); }));
  http.Post("/v1/embeddings", guard([this](const auto& req, auto& res) { embeddings(req, res); }));

  const auto model_object = [this](const std::string& id, const std::string& parent) {
    json m = {{"id", id}, {"object", "model"}, {"created", started_at}, {"owned_by", "wick"},
              {"max_model_len", model ? model->config().max_position_embeddings : 0}};
    m["root"] = id;
    m["parent"] = parent.empty() ? json(nullptr) : json(parent);
    return m;
  };
  const auto embedder_object = [model_object](const std::string& id, const serve::EmbedBatcher& e) {
    json m = model_object(id, "");
    m["max_model_len"] = e.embedder().max_seq_length();
    m["dimension"] = e.embedder().dimension();
    return m;
  };
  http.Get("/v1/models", guard([this, model_object, embedder_object](const auto&, auto& res) {
             json data = json::array();
             if (model) {
               data.push_back(model_object(base_name, ""));
               for (const AdapterInfo& a : registry->list()) data.push_back(model_object(a.name, base_name));
             }
             const std::lock_guard lock(embed_mu);
             for (const auto& [name, e] : embedders) data.push_back(embedder_object(name, *e));
             serve::respond_json(res, {{"object", "list"}, {"data", std::move(data)}});
           }));
  http.Get(R"(/v1/models/(.+))", guard([this, model_object, embedder_object](const auto& req, auto& res) {
             const std::string id = req.matches[1];
             {
               const std::lock_guard lock(embed_mu);
               if (const auto it = embedders.find(id); it != embedders.end())
                 return serve::respond_json(res, embedder_object(id, *it->second));
             }
             if (!model)
               throw ApiError(404, "invalid_request_error",
                              "The model '" + id + "' does not exist: this server serves embeddings only (GET "
                                                   "/v1/models lists them)",
                              "model", "model_not_found");
             adapter_of(id);  // 404 when unknown
             serve::respond_json(res, model_object(id, id == base_name ? "" : base_name));
           }));

  // Adapters: a name already loaded gets a new version (requests in flight keep theirs).
  http.Post("/v1/adapters", guard([this](const auto& req, auto& res) {
              need_model("adapters");
              const serve::AdapterLoadRequest r = serve::parse_adapter_request(req.body);
              if (r.name == base_name) serve::bad_field("name", "'" + r.name + "' is the base model's name");
              std::shared_ptr<const LoraAdapter> a;
              try {
                const std::lock_guard turn(*turns);
                a = LoraAdapter::load(r.path, *model, r.name);
              } catch (const Error& e) {
                throw ApiError(400, "invalid_request_error", e.what(), "path");
              }
              const bool replaced = registry->put(a) != nullptr;
              const AdapterInfo& info = a->info();
              serve::respond_json(res, {{"object", "adapter"},
                                        {"id", r.name},
                                        {"path", r.path},
                                        {"rank", info.max_rank},
                                        {"replaced", replaced}});
            }));
  http.Get("/v1/adapters", guard([this](const auto&, auto& res) {
             json data = json::array();
             if (registry)
               for (const AdapterInfo& a : registry->list())
               data.push_back({{"object", "adapter"}, {"id", a.name}, {"rank", a.max_rank}});
             serve::respond_json(res, {{"object", "list"}, {"data", std::move(data)}});
           }));
  http.Delete(R"(/v1/adapters/(.+))", guard([this](const auto& req, auto& res) {
                const std::string name = req.matches[1];
                need_model("adapters");
                if (!registry->unload(name))
                  throw ApiError(404, "invalid_request_error", "No adapter named '" + name + "'", "name");
                serve::respond_json(res, {{"object", "adapter"}, {"id", name}, {"deleted", true}});
              }));

  // Files (purpose fine-tune): multipart uploads as OpenAI's clients send them.
  http.Post("/v1/files", guard([this](const httplib::Request& req, auto& res) {
              if (!req.is_multipart_form_data())
                serve::bad_field("file", "upload the file as multipart/form-data with fields 'file' and 'purpose'");
              if (!req.has_file("file")) serve::bad_field("file", "'file' is required");
              if (!req.has_file("purpose")) serve::bad_field("purpose", "'purpose' is required");
              const httplib::MultipartFormData f = req.get_file_value("file");
              serve::respond_json(res, files->add(f.filename.empty() ? "upload.jsonl" : f.filename,
                                                  req.get_file_value("purpose").content, f.content));
            }));
  http.Get("/v1/files", guard([this](const auto&, auto& res) { serve::respond_json(res, files->list()); }));
  http.Get(R"(/v1/files/([^/]+))",
           guard([this](const auto& req, auto& res) { serve::respond_json(res, files->get(req.matches[1])); }));
  http.Get(R"(/v1/files/([^/]+)/content)", guard([this](const auto& req, auto& res) {
             res.set_content(files->content(req.matches[1]), "application/octet-stream");
           }));
  http.Delete(R"(/v1/files/([^/]+))",
              guard([this](const auto& req, auto& res) { serve::respond_json(res, files->remove(req.matches[1])); }));

  // Fine-tuning jobs (a generative model's: none on an embeddings-only server).
  const auto job_route = [this, guard](auto body) {
    return guard([this, body](const httplib::Request& req, httplib::Response& res) {
      need_model("fine-tuning jobs");
      serve::respond_json(res, body(req));
    });
  };
  http.Post("/v1/fine_tuning/jobs",
            job_route([this](const auto& req) { return jobs->create(serve::parse_fine_tune_request(req.body)); }));
  http.Get("/v1/fine_tuning/jobs", job_route([this](const auto&) { return jobs->list(); }));
  http.Get(R"(/v1/fine_tuning/jobs/([^/]+))", job_route([this](const auto& req) { return jobs->get(req.matches[1]); }));
  http.Get(R"(/v1/fine_tuning/jobs/([^/]+)/events)",
           job_route([this](const auto& req) { return jobs->events(req.matches[1]); }));
  http.Get(R"(/v1/fine_tuning/jobs/([^/]+)/checkpoints)",
           job_route([this](const auto& req) { return jobs->checkpoints(req.matches[1]); }));
  http.Post(R"(/v1/fine_tuning/jobs/([^/]+)/cancel)",
            job_route([this](const auto& req) { return jobs->cancel(req.matches[1]); }));

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining) serve::respond_error(res, ApiError(503, "server_error", "the server is shutting down"));
    else serve::respond_json(res, {{"status", "ok"}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    int64_t in_flight;
    {
      const std::lock_guard lock(mu);
      in_flight = handlers;
    }
    res.set_content(metrics.render(engine ? engine->stats() : EngineStats{}, in_flight), "text/plain; version=0.0.4");
  });
}

void Server::Impl::stop() {
  std::call_once(stopped, [this] {
    draining = true;
    std::unique_lock lock(mu);
    // Running requests may finish within the grace period; then the rest are cancelled and their answers end.
    if (!idle.wait_for(lock, options.shutdown_grace, [&] { return live.empty(); }))
      for (uint64_t id : live) engine->cancel(id);
    idle.wait_for(lock, std::chrono::seconds(10), [&] { return live.empty() && handlers == 0; });
    lock.unlock();
    http.stop();
  });
}

Server::Server(std::shared_ptr<Model> model, std::optional<Tokenizer> tokenizer, ServerOptions options) {
  impl_ = std::make_unique<Impl>(std::move(model), std::move(tokenizer), std::move(options));
}

Server::~Server() {
  if (impl_->http.is_running()) impl_->http.stop();
  impl_->jobs.reset();    // cancels a running job, joins its thread
  impl_->engine.reset();  // cancels what is left; every flow ends
}

void Server::add_adapter(const std::string& name, const fs::path& dir) {
  if (!impl_->model)
    fail(ErrorKind::bad_input, "--adapter '" + name + "': an embeddings-only server has no model to adapt (--model)");
  if (name.empty() || name == impl_->base_name)
    fail(ErrorKind::bad_input, "--adapter: the name '" + name + "' is empty or the base model's");
  const std::lock_guard turn(*impl_->turns);
  impl_->registry->put(LoraAdapter::load(dir, *impl_->model, name));
}

void Server::add_embedder(const std::string& name, const fs::path& dir, const EmbedderOptions& options) {
  Impl& im = *impl_;
  const auto taken = [&] {
    const std::lock_guard lock(im.embed_mu);
    return (im.model && (name == im.base_name || im.registry->get(name) != nullptr)) || im.embedders.count(name) > 0;
  };
  if (name.empty() || taken())
    fail(ErrorKind::bad_input, "--embed-model: the name '" + name + "' is empty or taken (the base model's, an "
                                                                    "adapter's or another embedding model's)");
  // A GPU embedder takes the device's turns with the engine's steps and training; a CPU one has its own.
  auto e = std::make_shared<serve::EmbedBatcher>(
      std::make_shared<const Embedder>(Embedder::load(dir, options)),
      options.device == Device::cpu ? std::make_shared<DeviceTurns>() : im.turns);
  const std::lock_guard lock(im.embed_mu);
  im.embedders.emplace(name, std::move(e));
}

int Server::bind() {
  Impl& im = *impl_;
  if (im.bound) return im.port;
  im.port = im.options.port == 0 ? im.http.bind_to_any_port(im.options.host)
                                 : (im.http.bind_to_port(im.options.host, im.options.port) ? im.options.port : -1);
  if (im.port < 0)
    fail(ErrorKind::bad_input, "serve: cannot listen on " + im.options.host + ":" + std::to_string(im.options.port) +
                                   " (--host / --port: address in use or not this machine's?)");
  if (im.listen_socket >= 0) ::listen(im.listen_socket, SOMAXCONN);  // Linux: a second listen() sets the backlog
  im.bound = true;
  return im.port;
}

void Server::listen() {
  bind();
  if (!impl_->draining) impl_->http.listen_after_bind();
}

void Server::stop() { impl_->stop(); }

int Server::port() const { return impl_->port; }

ServerStats Server::stats() const {
  ServerStats s;
  s.requests = impl_->requests;
  {
    const std::lock_guard lock(impl_->mu);
    s.in_flight = impl_->handlers;
  }
  s.prompt_tokens = impl_->metrics.prompt_tokens();
  s.completion_tokens = impl_->metrics.completion_tokens();
  if (impl_->engine) s.engine = impl_->engine->stats();
  const std::lock_guard lock(impl_->embed_mu);
  for (const auto& [name, e] : impl_->embedders) {
    s.embed_requests += e->requests();
    s.embed_batches += e->batches();
  }
  return s;
}

const fs::path& Server::data_dir() const { return impl_->options.data_dir; }

}  // namespace wick
