// POST /v1/completions and /v1/chat/completions: a request parsed, its prompt tokenised (through the model's chat
// template for chat), submitted to the engine with its adapter, and answered whole or streamed as server-sent events
// while the engine's thread hands tokens over. A client gone mid-stream cancels its sequence (its KV blocks return).
#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <vector>

#include "serve/server_impl.h"
#include "wick/error.h"

namespace wick {

using nlohmann::json;
using serve::ApiError;
using serve::bad_field;
using clock_type = std::chrono::steady_clock;

namespace {

// One choice's hand-over from the engine's thread (tokens, the end) to the HTTP thread that answers the request.
struct Choice {
  std::deque<StreamToken> tokens;  // chosen, not yet sent (not yet answered, when not streaming)
  bool ended = false;
  SequenceEnd end = SequenceEnd::finished;
  GenerateResult result;
  clock_type::time_point first_token{}, last_token{};
  bool announced = false;      // streaming: its first chunk (chat: the role) sent
  bool closed = false;         // streaming: its end seen and answered
  int64_t text_offset = 0;     // streaming: the characters sent
  std::optional<uint64_t> id;  // the engine's id (guarded by Server::Impl::mu)
  bool gone = false;           // left the engine (guarded by Server::Impl::mu)
};

// A request's choices (OpenAI's n: each its own sequence, the prompt's blocks shared), under one lock.
struct Flow {
  explicit Flow(size_t n) : choices(n) {}
  std::mutex mu;
  std::condition_variable changed;
  std::vector<Choice> choices;
  std::atomic<bool> abandoned{false};  // the client left: the next token stops every sequence
  clock_type::time_point start = clock_type::now();

  bool all_ended() const {
    return std::all_of(choices.begin(), choices.end(), [](const Choice& c) { return c.ended; });
  }
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

  // Choice i samples with seed + i: a seeded request repeats itself, and its choices differ from one another.
  const size_t n = size_t(r.n);
  auto flow = std::make_shared<Flow>(n);
  std::vector<uint64_t> ids;
  const auto cancel_all = [this, &ids] {
    for (uint64_t id : ids) engine->cancel(id);
  };
  for (size_t i = 0; i < n; ++i) {
    EngineCallbacks callbacks{
        .on_token =
            [flow, i](const StreamToken& t) {
              const std::lock_guard lock(flow->mu);
              Choice& c = flow->choices[i];
              c.last_token = clock_type::now();
              if (c.first_token == clock_type::time_point{}) c.first_token = c.last_token;
              c.tokens.push_back(t);
              flow->changed.notify_all();
              return !flow->abandoned.load();
            },
        .on_end =
            [this, flow, i](GenerateResult&& result, SequenceEnd end) {
              {
                const std::lock_guard lock(mu);
                Choice& c = flow->choices[i];
                c.gone = true;
                if (c.id) live.erase(*c.id);
                idle.notify_all();
              }
              const std::lock_guard lock(flow->mu);
              Choice& c = flow->choices[i];
              c.result = std::move(result);
              c.end = end;
              c.ended = true;
              flow->changed.notify_all();
            }};
    BatchRequest one = batch;
    if (r.sampling.seed) one.params.sampling->seed = *r.sampling.seed + i;
    uint64_t id = 0;
    try {
      id = generator->submit(*engine, one, std::move(callbacks));
    } catch (const Error& e) {  // the checks above leave only what the engine itself refuses (its pool's size)
      cancel_all();
      if (e.kind() == ErrorKind::bad_input) throw ApiError(400, "invalid_request_error", e.what(), prompt_field);
      throw;
    } catch (...) {
      cancel_all();
      throw;
    }
    ids.push_back(id);
    const std::lock_guard lock(mu);
    flow->choices[i].id = id;
    if (!flow->choices[i].gone) live.insert(id);
  }
  {
    const std::lock_guard lock(mu);
    ++handlers;
  }
  const auto handler_done = [this] {
    const std::lock_guard lock(mu);
    --handlers;
    idle.notify_all();
  };
  const auto record = [this, flow, prompt_len](const Choice& c) {  // flow->mu held, the choice ended
    const int64_t tokens = int64_t(c.result.output_ids.size());
    const double ttft = tokens > 0 ? std::chrono::duration<double>(c.first_token - flow->start).count() : 0;
    const double tpot =
        tokens > 1 ? std::chrono::duration<double>(c.last_token - c.first_token).count() / double(tokens - 1) : 0;
    metrics.generation(prompt_len, tokens, ttft, tpot);
  };
  const auto error_of = [this, ids](const Flow& f) -> std::optional<ApiError> {  // flow->mu held, every choice ended
    for (size_t i = 0; i < f.choices.size(); ++i) {
      if (f.choices[i].end != SequenceEnd::failed) continue;
      std::exception_ptr e = engine->error(ids[i]);
      return serve::api_error_of(e ? e : std::make_exception_ptr(Error(ErrorKind::internal, "the sequence failed")));
    }
    return std::nullopt;
  };
  const clock_type::time_point deadline = flow->start + options.request_timeout;
  const serve::ResponseHead head{.id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(ids[0]) + "-" +
                                       std::to_string(started_at),
                                 .model = r.model,
                                 .created = std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count(),
                                 .chat = chat};

  if (!r.stream) {
    std::unique_lock lock(flow->mu);
    if (!flow->changed.wait_until(lock, deadline, [&] { return flow->all_ended(); })) {
      cancel_all();  // too long: ended as cancelled, answered with what they have
      flow->changed.wait(lock, [&] { return flow->all_ended(); });
    }
    std::vector<serve::ChoiceAnswer> answers;
    for (const Choice& c : flow->choices) {
      record(c);
      answers.push_back({.tokens = std::vector<StreamToken>(c.tokens.begin(), c.tokens.end()), .result = &c.result});
    }
    if (const std::optional<ApiError> e = error_of(*flow)) {
      lock.unlock();
      handler_done();
      throw *e;
    }
    serve::respond_json(res, serve::completion_response(head, r, tokenizer.get(), answers));
    lock.unlock();
    handler_done();
    return;
  }

  // Streaming: one event per token as the engine chooses it, each naming its choice; the provider runs on this
  // connection's thread.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, flow, r, head, ids, deadline, record, error_of](size_t, httplib::DataSink& sink) {
        std::string out;
        bool ended = false;
        {
          std::unique_lock lock(flow->mu);
          // Wakes at least once a second: a request past its deadline is cancelled, and the loop in httplib sees a
          // server that is stopping.
          const auto news = [&] {
            return std::any_of(flow->choices.begin(), flow->choices.end(), [](const Choice& c) {
              return !c.tokens.empty() || (c.ended && !c.closed) || !c.announced;
            });
          };
          flow->changed.wait_until(lock, std::min(deadline, clock_type::now() + std::chrono::seconds(1)), news);
          if (clock_type::now() >= deadline && !flow->all_ended())
            for (uint64_t id : ids) engine->cancel(id);
          bool failed = false;
          for (size_t i = 0; i < flow->choices.size(); ++i) {
            Choice& c = flow->choices[i];
            if (!c.announced && r.chat)  // the role first, as OpenAI streams it
              out += sse(serve::stream_chunk(head, r, tokenizer.get(), {}, 0, true, int64_t(i)));
            c.announced = true;
            for (const StreamToken& t : c.tokens) {
              out += sse(serve::stream_chunk(head, r, tokenizer.get(), {t}, c.text_offset, false, int64_t(i)));
              c.text_offset += int64_t(t.text.size());
            }
            c.tokens.clear();
            if (c.ended && !c.closed) {
              c.closed = true;
              record(c);
              failed = failed || c.end == SequenceEnd::failed;
              if (c.end != SequenceEnd::failed && c.result.finish == FinishReason::cancelled) {
                StreamToken last;  // cancelled by the deadline: say so in a last chunk
                last.finish = FinishReason::cancelled;
                out += sse(serve::stream_chunk(head, r, tokenizer.get(), {last}, c.text_offset, false, int64_t(i)));
              }
            }
          }
          if (failed && !flow->all_ended())
            for (uint64_t id : ids) engine->cancel(id);  // one choice failed: the request fails, the others go
          ended = flow->all_ended();
          if (ended) {
            if (const std::optional<ApiError> e = error_of(*flow)) {
              out += sse(json::parse(serve::error_body(*e)));
            } else if (r.include_usage) {
              int64_t completion = 0;
              for (const Choice& c : flow->choices) completion += int64_t(c.result.output_ids.size());
              out += sse(serve::usage_chunk(head, int64_t(flow->choices[0].result.prompt_ids.size()), completion));
            }
            out += "data: [DONE]\n\n";
          }
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client left
        if (ended) sink.done();
        return true;
      },
      [this, flow, ids](bool success) {
        if (!success) {  // the client disconnected (or the server stopped): the sequences go, their blocks with them
          flow->abandoned = true;
          for (uint64_t id : ids) engine->cancel(id);
        }
        const std::lock_guard lock(mu);
        --handlers;
        idle.notify_all();
      });
}

}  // namespace wick
