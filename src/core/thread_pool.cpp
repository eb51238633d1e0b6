#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "wick/error.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace wick {

namespace {

// How long a worker that finished a loop keeps polling for the next before it sleeps, and how long the caller polls
// for the workers' last chunks before it sleeps: a model's pass runs its loops microseconds apart (a decode step of
// the 0.5B model on the CPU runs some 400), and a wake-up through the kernel costs tens of microseconds each.
constexpr auto kSpin = std::chrono::microseconds(200);

// The CPU's hint that this is a polling loop.
inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Calls done() until it is true or kSpin has passed; returns whether it became true.
template <class Done>
bool poll(const Done& done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    relax();
    if (i % 64 == 63 && std::chrono::steady_clock::now() > until) return false;
  }
}

// One parallel loop: workers that come late to an old job find its counter exhausted and leave.
struct Job {
  const std::function<void(int64_t)>* body = nullptr;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> pending{0};
  std::exception_ptr error;  // guarded by ThreadPool::mu_
};

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    generation_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return int(workers_.size()) + 1; }

  void run(int64_t chunks, const std::function<void(int64_t)>& body) {
    std::lock_guard serial(run_mu_);  // one loop at a time; nested calls run inline (see parallel_for)
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->chunks = chunks;
    job->pending.store(chunks, std::memory_order_relaxed);
    {
      std::lock_guard lock(mu_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);  // polling workers see it without the lock
    }
    wake_.notify_all();  // and sleeping ones are woken
    drain(*job);
    const auto finished = [&] { return job->pending.load(std::memory_order_acquire) == 0; };
    if (!poll(finished)) {
      std::unique_lock lock(mu_);
      done_.wait(lock, finished);
    }
    std::lock_guard lock(mu_);
    job_.reset();
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void drain(Job& job) {
    for (;;) {
      const int64_t c = job.next.fetch_add(1);
      if (c >= job.chunks) return;
      try {
        (*job.body)(c);
      } catch (...) {
        std::lock_guard lock(mu_);
        if (!job.error) job.error = std::current_exception();
      }
      if (job.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mu_);  // the caller checks pending under the lock before it sleeps: no lost wake-up
        done_.notify_all();
      }
    }
  }
  void work() {
    uint64_t seen = 0;
    for (;;) {
      const auto moved = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      std::shared_ptr<Job> job;
      poll(moved);
      {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [&] { return stop_ || (moved() && job_); });
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
      }
      drain(*job);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> job_;  // the loop in progress, if any (guarded by mu_)
  std::atomic<uint64_t> generation_{0};  // changed (under mu_) by every new loop and by stop
  bool stop_ = false;
};

int configured_threads() {
  if (const char* env = std::getenv("WICK_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> requested_threads{0};  // set_thread_count's, before the pool starts
std::atomic<bool> pool_started{false};

ThreadPool& pool() {
  static ThreadPool p([] {
    pool_started = true;
    const int n = requested_threads.load();
    return n > 0 ? n : configured_threads();
  }());
  return p;
}

thread_local bool inside_loop = false;

}  // namespace

int thread_count() { return pool().size(); }

void set_thread_count(int n) {
  if (n < 1) fail(ErrorKind::bad_input, "--threads: expected a thread count ≥ 1, got " + std::to_string(n));
  if (!pool_started.load()) {
    requested_threads = n;
    return;
  }
  if (pool().size() != n)
    fail(ErrorKind::bad_input, "--threads: the CPU thread pool already runs " + std::to_string(pool().size()) +
                                   " threads (the count is set before the first CPU work of the process)");
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t(pool().size()) * 4);
  if (max_chunks <= 1 || inside_loop || pool().size() == 1) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + max_chunks - 1) / max_chunks;
  const int64_t chunks = (n + per - 1) / per;
  pool().run(chunks, [&](int64_t c) {
    struct Mark {
      Mark() { inside_loop = true; }
      ~Mark() { inside_loop = false; }
    } mark;
    fn(c * per, std::min(n, (c + 1) * per));
  });
}

}  // namespace wick
