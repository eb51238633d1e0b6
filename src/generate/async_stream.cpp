// AsyncStream: the decode loop on a worker thread (worker_threads.h), tokens through a bounded channel.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "generate/decode_loop.h"
#include "generate/worker_threads.h"
#include "wick/generator.h"

namespace wick {

struct AsyncStream::State {
  std::mutex mutex;
  std::condition_variable token_ready;  // consumer waits: a token or the end
  std::condition_variable space_ready;  // worker waits: room in the channel or cancellation
  std::deque<StreamToken> channel;
  size_t capacity = 0;                  // 0 = unbounded
  // Set by the consumer (under the mutex, so a waiting worker sees it), read by the worker before each step
  // without the mutex: the worker never waits for a consumer that is busy taking a token.
  std::atomic<bool> cancel{false};
  bool finished = false;                // the worker ended and freed its cache
  std::exception_ptr error;
  std::promise<GenerateResult> promise;
  std::shared_future<GenerateResult> future = promise.get_future().share();
  std::unique_ptr<DecodeLoop> loop;     // the worker's, until it ends

  // The worker's body: step, hand over, repeat; the loop (and its KV cache) dies before `finished`. The job
  // holding this State keeps it alive until run() has returned, even once the AsyncStream is gone.
  void run() {
    try {
      StreamToken t;
      for (;;) {
        if (cancel.load(std::memory_order_acquire)) break;
        if (!loop->step(t)) break;
        {
          std::unique_lock lock(mutex);
          space_ready.wait(lock, [&] { return cancel || capacity == 0 || channel.size() < capacity; });
          if (cancel) {
            loop->retract(t);  // produced after the consumer stopped listening: never delivered
            break;
          }
          channel.push_back(std::move(t));
        }
        token_ready.notify_one();  // after unlocking: the woken consumer does not block on the mutex at once
      }
      loop->cancel();  // no-op when generation ended by itself
      GenerateResult result = std::move(loop->result());
      loop.reset();
      promise.set_value(std::move(result));
    } catch (...) {
      loop.reset();
      error = std::current_exception();
      promise.set_exception(error);
    }
    std::lock_guard lock(mutex);
    finished = true;
    token_ready.notify_all();
  }
};

AsyncStream Generator::stream_async(std::span<const int32_t> prompt, const GenerateParams& params,
                                    size_t capacity) const {
  // Validation and cache allocation happen here, on the caller's thread, so errors throw here.
  auto state = std::make_shared<AsyncStream::State>();
  state->loop = std::make_unique<DecodeLoop>(model_, tokenizer(), eos_, nullptr, prompt, params);
  state->capacity = capacity;
  run_on_worker([state] { state->run(); });
  return AsyncStream(std::move(state));
}

AsyncStream::AsyncStream(std::shared_ptr<State> state) : state_(std::move(state)) {}
AsyncStream::AsyncStream(AsyncStream&&) noexcept = default;
AsyncStream& AsyncStream::operator=(AsyncStream&& other) noexcept {
  if (this != &other) {
    if (state_) cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

AsyncStream::~AsyncStream() {
  if (state_) cancel();
}

AsyncStream::Status AsyncStream::next(StreamToken& out, std::chrono::milliseconds timeout) {
  State& s = *state_;
  std::unique_lock lock(s.mutex);
  if (!s.token_ready.wait_for(lock, timeout, [&] { return !s.channel.empty() || s.finished; })) return Status::timeout;
  if (s.channel.empty()) {
    if (s.error) std::rethrow_exception(s.error);
    return Status::finished;
  }
  out = std::move(s.channel.front());
  s.channel.pop_front();
  lock.unlock();
  s.space_ready.notify_one();
  return Status::token;
}

std::optional<StreamToken> AsyncStream::next() {
  State& s = *state_;
  std::unique_lock lock(s.mutex);
  s.token_ready.wait(lock, [&] { return !s.channel.empty() || s.finished; });
  if (s.channel.empty()) {
    if (s.error) std::rethrow_exception(s.error);
    return std::nullopt;
  }
  StreamToken t = std::move(s.channel.front());
  s.channel.pop_front();
  lock.unlock();
  s.space_ready.notify_one();
  return t;
}

std::shared_future<GenerateResult> AsyncStream::result() const { return state_->future; }

void AsyncStream::cancel() {
  State& s = *state_;
  std::unique_lock lock(s.mutex);
  s.cancel = true;
  s.space_ready.notify_all();
  s.token_ready.wait(lock, [&] { return s.finished; });  // the worker's last act, after freeing the cache
}

}  // namespace wick
