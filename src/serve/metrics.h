// The server's counters and latency histograms, written as Prometheus text (GET /metrics).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "wick/engine.h"

namespace wick::serve {

/// A cumulative histogram over fixed bucket bounds (seconds), as Prometheus reads one.
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1,     2.5,  5,     10,  30};
  void observe(double seconds);
  /// `name`_bucket{le=...}, _sum and _count lines.
  void write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::array<int64_t, kBounds.size() + 1> counts_{};  // the last: above every bound
  double sum_ = 0;
  int64_t count_ = 0;
};

/// Thread-safe: every handler thread reports here.
class Metrics {
 public:
  /// One answered HTTP request on `route` with `status`.
  void request(const std::string& route, int status);
  /// A completions request's figures once it ended: time to first token and mean time per later token (seconds).
  void generation(int64_t prompt_tokens, int64_t completion_tokens, double ttft, double tpot);
  int64_t requests_of(const std::string& route) const;
  int64_t prompt_tokens() const;
  int64_t completion_tokens() const;
  /// Prometheus text: these figures, plus the engine's (queue, running sequences, KV pool) and `in_flight`.
  std::string render(const EngineStats& engine, int64_t in_flight) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  Histogram ttft_, tpot_;
};

}  // namespace wick::serve
