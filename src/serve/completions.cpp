// POST /v1/completions and /v1/chat/completions: a request parsed, its prompt tokenised (through the model's chat
// template for chat), submitted to the engine with its adapter, and answered whole or streamed as server-sent events
// while the engine's thread hands tokens over. A client gone mid-stream cancels its sequence (its KV blocks return).
#include <chrono>
#include <deque>

#include "serve/server_impl.h"
#include "wick/error.h"

namespace wick {

using nlohmann::json;
using serve::ApiError;
using serve::bad_field;
using clock_type = std::chrono::steady_clock;

namespace {

// One request's hand-over from the engine's thread (tokens, the end) to the HTTP thread that answers it.
struct Flow {
  std::mutex mu;
  std::condition_variable changed;
  std::deque<StreamToken> tokens;  // chosen, not yet sent
  bool ended = false;
  SequenceEnd end = SequenceEnd::finished;
  GenerateResult result;
  std::atomic<bool> abandoned{false};  // the client left: the next token stops the sequence
  clock_type::time_point start = clock_type::now(), first_token{}, last_token{};
  std::optional<uint64_t> id;  // the engine's id (guarded by Server::Impl::mu)
  bool gone = false;           // left the engine (guarded by Server::Impl::mu)
};

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// The prompt's token ids: chat messages through the chat template, a text prompt through the tokenizer.
std::vector<int32_t> prompt_ids(const serve::CompletionRequest& r, const Tokenizer* tokenizer) {
  if (!r.chat && !r.prompt) return r.prompt_ids;
  if (!tokenizer)
    bad_field(r.chat ? "messages" : "prompt", "this model has no tokenizer.json: send 'prompt' as token ids");
  if (!r.chat) return tokenizer->encode(*r.prompt);
  if (!tokenizer->has_chat_template())
    bad_field("messages", "this model has no chat template (tokenizer_config.json): use /v1/completions");
  return tokenizer->encode(tokenizer->apply_chat_template(r.messages, {.add_generation_prompt = true}));
}

}  // namespace

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res, bool chat) {
  ++requests;
  if (draining) throw ApiError(503, "server_error", "the server is shutting down");
  serve::CompletionRequest r = serve::parse_completion_request(req.body, chat);
  if (r.model.empty()) r.model = base_name;
  const std::shared_ptr<const LoraSource> lora = adapter_of(r.model);

  BatchRequest batch{.prompt = prompt_ids(r, tokenizer.get()), .lora = lora};
  const int64_t context = model->config().max_position_embeddings;
  const int64_t prompt_len = int64_t(batch.prompt.size());
  const std::string prompt_field = chat ? "messages" : "prompt";
  if (prompt_len >= context)
    throw ApiError(400, "invalid_request_error",
                   "This model's maximum context length is " + std::to_string(context) + " tokens; the prompt has " +
                       std::to_string(prompt_len),
                   prompt_field, "context_length_exceeded");
  const int64_t limit = options.max_tokens > 0 ? options.max_tokens : context;
  const char* max_field = "max_tokens";
  if (r.max_tokens && *r.max_tokens > limit)
    bad_field(max_field, "'max_tokens' is " + std::to_string(*r.max_tokens) + "; this server allows at most " +
                             std::to_string(limit));
  if (r.max_tokens && prompt_len + *r.max_tokens > context)
    throw ApiError(400, "invalid_request_error",
                   "This model's maximum context length is " + std::to_string(context) + " tokens: the prompt's " +
                       std::to_string(prompt_len) + " plus max_tokens " + std::to_string(*r.max_tokens) +
                       " exceed it",
                   max_field, "context_length_exceeded");
  // Unset: OpenAI's defaults, 16 for completions (its legacy default), the rest of the context for chat; either
  // within what the KV pool holds.
  const int64_t pool_positions = options.kv_blocks * serve::kBlockSize;
  const int64_t room = std::min({limit, context - prompt_len, pool_positions - prompt_len});
  if (!r.max_tokens && room < 1)
    bad_field(prompt_field, "The prompt's " + std::to_string(prompt_len) + " tokens leave no room in this server's KV "
                            "cache (" + std::to_string(pool_positions) + " positions in all, --kv-blocks)");
  batch.params.max_tokens = int32_t(r.max_tokens.value_or(chat ? room : std::min<int64_t>(16, room)));
  if (prompt_len + batch.params.max_tokens > pool_positions)
    bad_field(max_field, "The prompt's " + std::to_string(prompt_len) + " tokens plus max_tokens " +
                             std::to_string(batch.params.max_tokens) + " need more KV cache than this server holds (" +
                             std::to_string(pool_positions) + " positions in all, --kv-blocks): ask for fewer tokens");
  batch.params.sampling = r.sampling;
  batch.params.stop = r.stop;
  batch.params.ignore_eos = r.ignore_eos;
  for (int32_t id : batch.prompt)
    if (id >= model->config().vocab_size)
      bad_field(prompt_field, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(model->config().vocab_size));
  if (engine->stats().waiting >= options.max_queue)
    throw ApiError(429, "rate_limit_error",
                   "The server's queue is full (" + std::to_string(options.max_queue) + " requests waiting): retry later");

  auto flow = std::make_shared<Flow>();
  EngineCallbacks callbacks{
      .on_token =
          [flow](const StreamToken& t) {
            const std::lock_guard lock(flow->mu);
            flow->last_token = clock_type::now();
            if (flow->first_token == clock_type::time_point{}) flow->first_token = flow->last_token;
            flow->tokens.push_back(t);
            flow->changed.notify_all();
            return !flow->abandoned.load();
          },
      .on_end =
          [this, flow](GenerateResult&& result, SequenceEnd end) {
            {
              const std::lock_guard lock(mu);
              flow->gone = true;
              if (flow->id) live.erase(*flow->id);
              idle.notify_all();
            }
            const std::lock_guard lock(flow->mu);
            flow->result = std::move(result);
            flow->end = end;
            flow->ended = true;
            flow->changed.notify_all();
          }};
  uint64_t id = 0;
  try {
    id = generator->submit(*engine, batch, std::move(callbacks));
  } catch (const Error& e) {  // the checks above leave only what the engine itself refuses (its pool's size)
    if (e.kind() == ErrorKind::bad_input) throw ApiError(400, "invalid_request_error", e.what(), prompt_field);
    throw;
  }
  {
    const std::lock_guard lock(mu);
    flow->id = id;
    if (!flow->gone) live.insert(id);
    ++handlers;
  }
  const auto handler_done = [this] {
    const std::lock_guard lock(mu);
    --handlers;
    idle.notify_all();
  };
  const auto record = [this, flow, prompt_len] {  // flow->mu held, the request ended
    const GenerateResult& g = flow->result;
    const int64_t n = int64_t(g.output_ids.size());
    const double ttft = std::chrono::duration<double>(flow->first_token - flow->start).count();
    const double tpot = n > 1 ? std::chrono::duration<double>(flow->last_token - flow->first_token).count() / double(n - 1) : 0;
    metrics.generation(prompt_len, n, ttft, tpot);
  };
  const auto error_of = [this, id, flow] {  // flow->mu held, the sequence failed
    std::exception_ptr e = engine->error(id);
    return serve::api_error_of(e ? e : std::make_exception_ptr(Error(ErrorKind::internal, "the sequence failed")));
  };
  const clock_type::time_point deadline = flow->start + options.request_timeout;
  const serve::ResponseHead head{.id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(id) + "-" +
                                       std::to_string(started_at),
                                 .model = r.model,
                                 .created = std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count(),
                                 .chat = chat};

  if (!r.stream) {
    std::unique_lock lock(flow->mu);
    if (!flow->changed.wait_until(lock, deadline, [&] { return flow->ended; })) {
      engine->cancel(id);  // too long: ended as cancelled, answered with what it has
      flow->changed.wait(lock, [&] { return flow->ended; });
    }
    record();
    std::vector<StreamToken> all(flow->tokens.begin(), flow->tokens.end());
    if (flow->end == SequenceEnd::failed) {
      const ApiError e = error_of();
      lock.unlock();
      handler_done();
      throw e;
    }
    serve::respond_json(res, serve::completion_response(head, r, tokenizer.get(), all, flow->result));
    lock.unlock();
    handler_done();
    return;
  }

  // Streaming: one event per token as the engine chooses it; the provider runs on this connection's thread.
  struct StreamState {
    bool first = true;
    int64_t text_offset = 0;
  };
  auto state = std::make_shared<StreamState>();
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, flow, state, r, head, id, deadline, record, error_of](size_t, httplib::DataSink& sink) {
        std::vector<StreamToken> batch;
        bool ended = false;
        std::optional<ApiError> failure;
        {
          std::unique_lock lock(flow->mu);
          // Wakes at least once a second: a request past its deadline is cancelled, and the loop in httplib sees a
          // server that is stopping.
          flow->changed.wait_until(lock, std::min(deadline, clock_type::now() + std::chrono::seconds(1)),
                                   [&] { return flow->ended || !flow->tokens.empty(); });
          if (clock_type::now() >= deadline && !flow->ended) engine->cancel(id);
          batch.assign(flow->tokens.begin(), flow->tokens.end());
          flow->tokens.clear();
          ended = flow->ended;
          if (ended) {
            record();
            if (flow->end == SequenceEnd::failed) failure = error_of();
          }
        }
        std::string out;
        if (state->first && r.chat) {  // the role first, as OpenAI streams it
          out += sse(serve::stream_chunk(head, r, tokenizer.get(), {}, 0, true));
          state->first = false;
        }
        for (const StreamToken& t : batch) {
          out += sse(serve::stream_chunk(head, r, tokenizer.get(), {t}, state->text_offset, false));
          state->text_offset += int64_t(t.text.size());
        }
        if (ended) {
          if (failure) {
            out += sse(json::parse(serve::error_body(*failure)));
          } else {
            const GenerateResult& g = flow->result;
            if (g.finish == FinishReason::cancelled) {  // cancelled by the deadline: say so in a last chunk
              StreamToken last;
              last.finish = FinishReason::cancelled;
              out += sse(serve::stream_chunk(head, r, tokenizer.get(), {last}, state->text_offset, false));
            }
            if (r.include_usage)
              out += sse(serve::usage_chunk(head, int64_t(g.prompt_ids.size()), int64_t(g.output_ids.size())));
          }
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client left
        if (ended) sink.done();
        return true;
      },
      [this, flow, id](bool success) {
        if (!success) {  // the client disconnected (or the server stopped): the sequence goes, its blocks with it
          flow->abandoned = true;
          engine->cancel(id);
        }
        const std::lock_guard lock(mu);
        --handlers;
        idle.notify_all();
      });
}

}  // namespace wick
