#include "backend/collective.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "wick/error.h"

namespace wick {

namespace {

// A barrier that a failed rank can break: waiters then throw instead of waiting for it.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock lock(mu_);
    if (broken_) throw_broken();
    const int64_t generation = generation_;
    if (++waiting_ == n_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || broken_; });
    if (generation_ == generation) throw_broken();
  }
  void abort() {
    const std::lock_guard lock(mu_);
    broken_ = true;
    cv_.notify_all();
  }

 private:
  [[noreturn]] static void throw_broken() {
    fail(ErrorKind::internal, "tensor parallelism: another rank failed during a collective");
  }
  std::mutex mu_;
  std::condition_variable cv_;
  const int n_;
  int waiting_ = 0;
  int64_t generation_ = 0;
  bool broken_ = false;
};

class HostCollective final : public Collective {
 public:
  explicit HostCollective(int ranks) : ranks_(ranks), barrier_(ranks), out_(size_t(ranks)) {}
  int ranks() const override { return ranks_; }

  // Each rank sums one slice of the elements over every rank's tensor, in rank order, and writes the sum into all
  // of them: no element is touched by two threads, and every rank ends with the same values.
  void all_reduce(Tensor& x, int rank) override {
    expect_f32(x, "all_reduce");
    out_[size_t(rank)] = x.data<float>();
    size_of_[size_t(rank)] = x.numel();
    barrier_.arrive_and_wait();
    const int64_t n = x.numel(), begin = n * rank / ranks_, end = n * (rank + 1) / ranks_;
    for (int r = 0; r < ranks_; ++r)
      if (size_of_[size_t(r)] != n)
        fail(ErrorKind::internal, "all_reduce: ranks passed tensors of different sizes");
    for (int64_t i = begin; i < end; ++i) {
      float sum = 0.0f;
      for (int r = 0; r < ranks_; ++r) sum += out_[size_t(r)][i];
      for (int r = 0; r < ranks_; ++r) out_[size_t(r)][i] = sum;
    }
    barrier_.arrive_and_wait();
  }

  void abort() override { barrier_.abort(); }

 private:
  void expect_f32(const Tensor& t, const char* op) {
    if (t.device() != Device::cpu || t.dtype() != DType::f32)
      fail(ErrorKind::internal, std::string(op) + ": the host collective takes CPU f32 tensors");
  }

  const int ranks_;
  Barrier barrier_;
  std::vector<float*> out_;
  std::vector<int64_t> size_of_{std::vector<int64_t>(size_t(ranks_), 0)};
};

class StagedCollective final : public Collective {
 public:
  explicit StagedCollective(std::span<Backend* const> ranks)
      : backends_(ranks.begin(), ranks.end()), host_(int(ranks.size())) {}
  int ranks() const override { return host_.ranks(); }
  void all_reduce(Tensor& x, int rank) override {
    Tensor h = on_host(x, rank);
    host_.all_reduce(h, rank);
    put_back(h, x, rank);
  }
  void abort() override { host_.abort(); }

 private:
  Tensor on_host(const Tensor& t, int rank) {
    const Tensor h = t.device() == Device::cpu ? t : backends_[size_t(rank)]->download(t);
    return h.dtype() == DType::f32 ? (h.raw() == t.raw() ? h.clone() : h) : h.to(DType::f32);
  }
  void put_back(const Tensor& h, Tensor& t, int rank) {
    const Tensor typed = h.dtype() == t.dtype() ? h : h.to(t.dtype());
    backends_[size_t(rank)]->write(t, typed.raw(), typed.nbytes());
  }
  std::vector<Backend*> backends_;
  HostCollective host_;
};

}  // namespace

std::unique_ptr<Collective> make_staged_collective(std::span<Backend* const> ranks) {
  return std::make_unique<StagedCollective>(ranks);
}

std::unique_ptr<Collective> make_host_collective(int ranks) {
  if (ranks < 1) fail(ErrorKind::bad_input, "collective: " + std::to_string(ranks) + " ranks (at least 1)");
  return std::make_unique<HostCollective>(ranks);
}

#ifndef WICK_WITH_CUDA
std::unique_ptr<Collective> make_nccl_collective(std::span<Backend* const>, double) {
  fail(ErrorKind::unsupported, "tensor parallelism on GPUs: this build of wick has no CUDA backend");
}
#endif

}  // namespace wick
