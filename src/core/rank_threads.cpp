#include "core/rank_threads.h"

namespace wick {

RankThreads::RankThreads(int ranks, std::function<void(int rank)> init)
    : tasks_(size_t(ranks)), init_(std::move(init)) {
  threads_.reserve(size_t(ranks));
  for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { work(r); });
}

RankThreads::~RankThreads() {
  {
    const std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void RankThreads::work(int rank) {
  std::exception_ptr init_error;
  try {
    if (init_) init_(rank);
  } catch (...) {
    init_error = std::current_exception();
  }
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || tasks_[size_t(rank)]; });
    if (stop_) return;
    std::function<void()> task = std::move(tasks_[size_t(rank)]);
    tasks_[size_t(rank)] = nullptr;
    lock.unlock();
    std::exception_ptr error = init_error;
    if (!error) {
      try {
        task();
      } catch (...) {
        error = std::current_exception();
      }
    }
    std::function<void()> on_failure;
    lock.lock();
    if (error && !error_) {
      error_ = error;
      on_failure = on_failure_;
    }
    if (on_failure) {  // outside the lock: it may wake ranks that then finish and take it
      lock.unlock();
      on_failure();
      lock.lock();
    }
    if (--pending_ == 0) done_.notify_all();
  }
}

void RankThreads::run(const std::function<void(int rank)>& fn, const std::function<void()>& on_failure) {
  const std::lock_guard serial(run_mu_);
  std::exception_ptr error;
  {
    std::unique_lock lock(mu_);
    error_ = nullptr;
    on_failure_ = on_failure;
    pending_ = ranks();
    for (int r = 0; r < ranks(); ++r) tasks_[size_t(r)] = [&fn, r] { fn(r); };
    wake_.notify_all();
    done_.wait(lock, [&] { return pending_ == 0; });
    error = error_;
    on_failure_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void RankThreads::run_on(int rank, const std::function<void()>& fn) {
  const std::lock_guard serial(run_mu_);
  std::exception_ptr error;
  {
    std::unique_lock lock(mu_);
    error_ = nullptr;
    pending_ = 1;
    tasks_[size_t(rank)] = fn;
    wake_.notify_all();
    done_.wait(lock, [&] { return pending_ == 0; });
    error = error_;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace wick
