#include "serve/metrics.h"

#include <cstdio>

namespace wick::serve {

namespace {

std::string number(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

void gauge(std::string& out, const std::string& name, const std::string& type, const std::string& help, double v) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + number(v) + "\n";
}

}  // namespace

void Histogram::observe(double seconds) {
  size_t b = 0;
  while (b < kBounds.size() && seconds > kBounds[b]) ++b;
  ++counts_[b];
  sum_ += seconds;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  int64_t cumulative = 0;
  for (size_t b = 0; b < kBounds.size(); ++b) {
    cumulative += counts_[b];
    out += name + "_bucket{le=\"" + number(kBounds[b]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

void Metrics::request(const std::string& route, int status) {
  const std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::generation(int64_t prompt_tokens, int64_t completion_tokens, double ttft, double tpot) {
  const std::lock_guard lock(mu_);
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
  if (completion_tokens > 0) ttft_.observe(ttft);
  if (completion_tokens > 1) tpot_.observe(tpot);
}

int64_t Metrics::requests_of(const std::string& route) const {
  const std::lock_guard lock(mu_);
  int64_t n = 0;
  for (const auto& [key, count] : requests_)
    if (key.first == route) n += count;
  return n;
}

int64_t Metrics::prompt_tokens() const {
  const std::lock_guard lock(mu_);
  return prompt_tokens_;
}

int64_t Metrics::completion_tokens() const {
  const std::lock_guard lock(mu_);
  return completion_tokens_;
}

std::string Metrics::render(const EngineStats& e, int64_t in_flight) const {
  const std::lock_guard lock(mu_);
  std::string out = "# HELP wick_requests_total HTTP requests answered, by route and status\n"
                    "# TYPE wick_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out += "wick_requests_total{route=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(count) + "\n";
  gauge(out, "wick_prompt_tokens_total", "counter", "Prompt tokens of finished completions", double(prompt_tokens_));
  gauge(out, "wick_generation_tokens_total", "counter", "Tokens generated", double(completion_tokens_));
  gauge(out, "wick_requests_running", "gauge", "Completions requests in flight", double(in_flight));
  gauge(out, "wick_queue_length", "gauge", "Sequences waiting for the engine", double(e.waiting));
  gauge(out, "wick_sequences_running", "gauge", "Sequences the engine decodes", double(e.running));
  gauge(out, "wick_kv_blocks_total", "gauge", "KV cache blocks in the pool", double(e.blocks_total));
  gauge(out, "wick_kv_blocks_used", "gauge", "KV cache blocks held by sequences", double(e.blocks_held));
  gauge(out, "wick_kv_blocks_cached", "gauge", "KV cache blocks kept for prefix sharing", double(e.blocks_cached));
  gauge(out, "wick_kv_usage_ratio", "gauge", "Share of the KV pool held by sequences",
        e.blocks_total ? double(e.blocks_held) / double(e.blocks_total) : 0.0);
  gauge(out, "wick_engine_steps_total", "counter", "Engine steps", double(e.steps));
  gauge(out, "wick_prefix_hit_tokens_total", "counter", "Prompt tokens taken from shared KV blocks",
        double(e.prefix_hit_tokens));
  gauge(out, "wick_prefix_waits_total", "counter", "Steps a request waited for a prefix block another was computing",
        double(e.prefix_waits));
  gauge(out, "wick_preemptions_total", "counter", "Sequences preempted for KV room", double(e.preemptions));
  ttft_.write(out, "wick_time_to_first_token_seconds", "Time from request to first token");
  tpot_.write(out, "wick_time_per_output_token_seconds", "Mean time per token after the first, per request");
  return out;
}

}  // namespace wick::serve
