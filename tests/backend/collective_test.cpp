// The collectives of tensor parallelism at the backend level: the staged one (through the host, ranks on any
// backends) against the host one's sums, and NCCL's with one rank on the one GPU a machine may have — its library
// loaded, a communicator made within the timeout, an all-reduce of bf16 and f32, and its teardown.
// (Several GPUs: tests/model/tensor_parallel_test.cpp, scripts/gpu-tp-check.sh.)
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "backend/collective.h"
#include "test_util.h"
#include "wick/error.h"

namespace wick::test {
namespace {

TEST(StagedCollective, SumsAsTheHostOne) {
  constexpr int kRanks = 2;
  std::vector<std::unique_ptr<Backend>> owned;
  std::vector<Backend*> backends;
  for (int r = 0; r < kRanks; ++r) {
    owned.push_back(make_cpu_backend());
    backends.push_back(owned.back().get());
  }
  const auto c = make_staged_collective(backends);
  std::vector<Tensor> x{Tensor::from_floats({1, 2, 3}, {3}), Tensor::from_floats({10, 20, 30}, {3})};
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r)
    threads.emplace_back([&, r] { c->all_reduce(x[size_t(r)], r); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(std::vector<float>(x[size_t(r)].data<float>(), x[size_t(r)].data<float>() + 3),
              (std::vector<float>{11, 22, 33}));
  }
}

TEST(NcclCollective, OneRankOnOneGpu) {
  std::unique_ptr<Backend> gpu;
  try {
    gpu = make_backend(Device::cuda);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  Backend* ranks[] = {gpu.get()};
  std::unique_ptr<Collective> c;
  try {
    c = make_nccl_collective(ranks, 30.0);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::not_found) GTEST_SKIP() << "NCCL is not installed here: " << e.what();
    throw;
  }
  EXPECT_EQ(c->ranks(), 1);
  for (DType dt : {DType::bf16, DType::f32}) {
    Tensor x = gpu->upload(Tensor::from_floats({1.5f, -2.0f, 3.25f, 0.0f}, {4}), dt);
    c->all_reduce(x, 0);  // one rank: the sum is itself
    EXPECT_EQ(std::vector<float>(gpu->download(x).to(DType::f32).data<float>(),
                                 gpu->download(x).to(DType::f32).data<float>() + 4),
              (std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f}));
  }
  c.reset();  // finalized and destroyed before the backend
}

// Two ranks on the one GPU: NCCL refuses a communicator whose ranks share a device (a clear error within the timeout,
// not a hang) — or, where a version accepts it, the two ranks' all-reduce sums both parts.
TEST(NcclCollective, TwoRanksOnOneGpuAreRefusedOrSummedNeverAHang) {
  std::unique_ptr<Backend> a, b;
  try {
    a = make_backend(Device::cuda, CpuWeights::native, 0);
    b = make_backend(Device::cuda, CpuWeights::native, 0);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  Backend* ranks[] = {a.get(), b.get()};
  std::unique_ptr<Collective> c;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    c = make_nccl_collective(ranks, 20.0);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::not_found) GTEST_SKIP() << "NCCL is not installed here: " << e.what();
    EXPECT_NE(std::string(e.what()).find("--tensor-parallel 2"), std::string::npos) << e.what();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30)) << e.what();
    return;
  }
  std::vector<Tensor> x{a->upload(Tensor::from_floats({1, 2}, {2}), DType::f32),
                        b->upload(Tensor::from_floats({10, 20}, {2}), DType::f32)};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) threads.emplace_back([&, r] { c->all_reduce(x[size_t(r)], r); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    const Tensor h = ranks[r]->download(x[size_t(r)]);
    EXPECT_EQ(std::vector<float>(h.data<float>(), h.data<float>() + 2), (std::vector<float>{11, 22}));
  }
}

}  // namespace
}  // namespace wick::test
