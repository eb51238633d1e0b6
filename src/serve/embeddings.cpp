// POST /v1/embeddings: a request parsed, the embedding model it names found, its inputs embedded (with those of the
// requests waiting for the model meanwhile: embed_batch.h) and answered in OpenAI's shape, floats or base64.
#include "serve/server_impl.h"
#include "wick/error.h"

namespace wick {

using serve::ApiError;

void Server::Impl::embeddings(const httplib::Request& req, httplib::Response& res) {
  ++requests;
  if (draining) throw ApiError(503, "server_error", "the server is shutting down");
  serve::EmbeddingRequest r = serve::parse_embedding_request(req.body);
  std::shared_ptr<serve::EmbedBatcher> batcher;
  std::string name = r.model;
  {
    const std::lock_guard lock(embed_mu);
    if (embedders.empty())
      throw ApiError(404, "invalid_request_error",
                     "This server has no embedding model (start it with --embed-model NAME=DIR)", "model",
                     "model_not_found");
    if (name.empty()) {
      if (embedders.size() > 1)
        serve::bad_field("model", "'model' is required: this server has several embedding models");
      name = embedders.begin()->first;
    }
    const auto it = embedders.find(name);
    if (it == embedders.end())
      throw ApiError(404, "invalid_request_error",
                     "The model '" + name + "' is not an embedding model of this server (GET /v1/models lists them)",
                     "model", "model_not_found");
    batcher = it->second;
  }
  const Embedder& embedder = batcher->embedder();
  if (r.dimensions > embedder.dimension())
    serve::bad_field("dimensions", "'dimensions' must be at most the model's " + std::to_string(embedder.dimension()) +
                                       ", found " + std::to_string(r.dimensions));
  {
    const std::lock_guard lock(mu);
    ++handlers;
  }
  struct HandlerDone {  // stop() waits for handlers to return
    Server::Impl& im;
    ~HandlerDone() {
      const std::lock_guard lock(im.mu);
      --im.handlers;
      im.idle.notify_all();
    }
  } done{*this};

  int64_t tokens = 0;
  Tensor out;
  try {
    const EmbedOptions options{.dimensions = r.dimensions};
    for (const std::string& t : r.texts) tokens += int64_t(embedder.tokenize(t, options).size());
    for (const auto& ids : r.token_ids) tokens += int64_t(ids.size());
    serve::EmbedJob job{.texts = std::move(r.texts), .token_ids = std::move(r.token_ids), .dimensions = r.dimensions};
    out = batcher->embed(job);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::bad_input) throw ApiError(400, "invalid_request_error", e.what(), "input");
    throw;
  }
  serve::respond_json(res, serve::embedding_response(name, out, r.base64, tokens));
}

}  // namespace wick
