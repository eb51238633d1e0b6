#include "model/tensor_parallel.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "wick/error.h"

namespace wick {

namespace {

// A CPU matrix of rows [begin, end) of `full` (its first dimension; any dtype the files hold), then zero rows up to
// `rows`.
Tensor padded_rows(const Tensor& full, int64_t begin, int64_t end, int64_t rows) {
  const int64_t width = full.numel() / full.dim(0);
  const size_t row_bytes = full.nbytes() / size_t(full.dim(0));
  Tensor out = Tensor::zeros({rows, width}, full.dtype());
  std::memcpy(out.raw(), static_cast<const std::byte*>(full.raw()) + size_t(begin) * row_bytes,
              size_t(end - begin) * row_bytes);
  return out;
}

// Columns [begin, end) of a CPU matrix.
Tensor columns(const Tensor& full, int64_t begin, int64_t end) {
  const int64_t rows = full.dim(0), width = full.dim(1), n = end - begin;
  const size_t e = full.nbytes() / size_t(full.numel());
  Tensor out = Tensor::empty({rows, n}, full.dtype());
  const auto* src = static_cast<const std::byte*>(full.raw());
  auto* dst = static_cast<std::byte*>(out.raw());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + size_t(r * n) * e, src + size_t(r * width + begin) * e, size_t(n) * e);
  return out;
}

// Rows [begin, end) of a CPU tensor (a matrix or a bias), as a tensor of its own.
Tensor row_range(const Tensor& full, int64_t begin, int64_t end) {
  Shape shape = full.shape();
  shape[0] = end - begin;
  return padded_rows(full, begin, end, end - begin).reshape(shape);
}

void require_divides(int64_t count, int ranks, const char* field) {
  if (count % ranks != 0)
    fail(ErrorKind::bad_input, "--tensor-parallel " + std::to_string(ranks) + ": config.json's " + field + " (" +
                                   std::to_string(count) +
                                   ") is not a multiple of it; each device takes an equal share");
}

// An adapter's factors held by this object (CPU copies, or one rank's share on its device).
class OwnedLora final : public LoraSource {
 public:
  explicit OwnedLora(int64_t layers) : factors_(size_t(layers * kProjKinds)) {}
  const LoraFactors* factors(int layer, ProjKind kind) const override {
    const auto& f = factors_[size_t(lora_slot(layer, kind))];
    return f ? &*f : nullptr;
  }
  const Tensor* head() const override { return head_.defined() ? &head_ : nullptr; }
  const Tensor* embedding() const override { return embed_.defined() ? &embed_ : nullptr; }

  std::vector<std::optional<LoraFactors>> factors_;
  Tensor head_, embed_;
};

// Row blocks of CPU tensors of one width and dtype: rows [0, counts[i]) of each, one after another.
Tensor stacked_rows(std::span<const Tensor> parts, std::span<const int64_t> counts) {
  const int64_t width = parts[0].numel() / parts[0].dim(0);
  const size_t row_bytes = parts[0].nbytes() / size_t(parts[0].dim(0));
  int64_t rows = 0;
  for (const int64_t n : counts) rows += n;
  Shape shape = parts[0].shape();
  shape[0] = rows;
  Tensor out = Tensor::empty({rows, width}, parts[0].dtype());
  auto* dst = static_cast<std::byte*>(out.raw());
  for (size_t i = 0; i < parts.size(); ++i) {
    std::memcpy(dst, parts[i].raw(), size_t(counts[i]) * row_bytes);
    dst += size_t(counts[i]) * row_bytes;
  }
  return out.reshape(shape);
}

}  // namespace

Tensor join_projection(std::span<const Tensor> shares, ProjKind kind) {
  if (shares.size() == 1) return shares[0];
  if (column_parallel(kind)) {
    std::vector<int64_t> counts;
    for (const Tensor& t : shares) counts.push_back(t.dim(0));
    return stacked_rows(shares, counts);
  }
  return join_columns(shares);
}

Tensor join_columns(std::span<const Tensor> parts) {
  const int64_t rows = parts[0].dim(0);
  const size_t e = dtype_size(parts[0].dtype());
  int64_t width = 0;
  for (const Tensor& t : parts) width += t.dim(1);
  Tensor out = Tensor::empty({rows, width}, parts[0].dtype());
  auto* dst = static_cast<std::byte*>(out.raw());
  for (int64_t r = 0; r < rows; ++r)
    for (const Tensor& t : parts) {
      const size_t n = size_t(t.dim(1)) * e;
      std::memcpy(dst, static_cast<const std::byte*>(t.raw()) + size_t(r) * n, n);
      dst += n;
    }
  return out;
}

Tensor join_vocabulary(std::span<const Tensor> shares, int64_t vocab) {
  std::vector<int64_t> counts;
  for (int r = 0; r < int(shares.size()); ++r) counts.push_back(vocab_slice(vocab, {r, int(shares.size())}).count);
  return stacked_rows(shares, counts);
}

ModelConfig shard_config(const ModelConfig& full, int ranks) {
  if (ranks < 1) fail(ErrorKind::bad_input, "--tensor-parallel " + std::to_string(ranks) + ": at least 1");
  require_divides(full.num_heads, ranks, "num_attention_heads");
  require_divides(full.num_kv_heads, ranks, "num_key_value_heads");
  require_divides(full.intermediate_size, ranks, "intermediate_size");
  ModelConfig c = full;
  c.num_heads /= ranks;
  c.num_kv_heads /= ranks;
  c.intermediate_size /= ranks;
  return c;
}

VocabSlice vocab_slice(int64_t vocab, Shard s) {
  const int64_t per = (vocab + s.ranks - 1) / s.ranks, begin = std::min(vocab, per * s.rank);
  return {.begin = begin, .count = std::min(per, vocab - begin), .per_rank = per};
}

Tensor shard_projection(const Tensor& full, ProjKind kind, Shard s) {
  if (column_parallel(kind)) {  // the weight's rows, and the bias's
    const int64_t per = full.dim(0) / s.ranks;
    return row_range(full, per * s.rank, per * (s.rank + 1));
  }
  // A row-split projection's bias is added once, by rank 0, before the sum (Qwen2 has none).
  if (full.rank() == 1) return s.rank == 0 ? full : Tensor::zeros(full.shape(), full.dtype());
  const int64_t per = full.dim(1) / s.ranks;
  return columns(full, per * s.rank, per * (s.rank + 1));
}

Tensor shard_embedding(const Tensor& full, Shard s) {
  const VocabSlice v = vocab_slice(full.dim(0), s);
  return padded_rows(full, v.begin, v.begin + v.count, v.per_rank + 1);
}

Tensor shard_head(const Tensor& full, Shard s) {
  const VocabSlice v = vocab_slice(full.dim(0), s);
  return row_range(full, v.begin, v.begin + v.count);
}

void shard_ids(std::span<const int32_t> ids, Shard s, int64_t vocab, std::span<int32_t> out) {
  const VocabSlice v = vocab_slice(vocab, s);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t local = int64_t(ids[i]) - v.begin;
    out[i] = int32_t(local >= 0 && local < v.count ? local : v.per_rank);
  }
}

std::unique_ptr<LoraSource> host_lora_copy(const LoraSource& lora, int64_t layers, Backend& from) {
  auto out = std::make_unique<OwnedLora>(layers);
  const auto host = [&](const Tensor& t) {
    return t.device() == Device::cpu ? t.to(DType::f32) : from.download(t).to(DType::f32);
  };
  for (int64_t l = 0; l < layers; ++l)
    for (int k = 0; k < kProjKinds; ++k)
      if (const LoraFactors* f = lora.factors(int(l), ProjKind(k)))
        out->factors_[size_t(lora_slot(l, ProjKind(k)))] =
            LoraFactors{.a = host(f->a), .b = host(f->b), .scale = f->scale};
  if (const Tensor* h = lora.head()) out->head_ = host(*h);
  if (const Tensor* e = lora.embedding()) out->embed_ = host(*e);
  return out;
}

std::unique_ptr<LoraSource> shard_lora(const LoraSource& host_full, const ModelConfig& c, Shard s, Backend& backend) {
  auto out = std::make_unique<OwnedLora>(c.num_layers);
  const DType dt = backend.compute_dtype();
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int k = 0; k < kProjKinds; ++k) {
      const ProjKind kind = ProjKind(k);
      const LoraFactors* f = host_full.factors(int(l), kind);
      if (!f) continue;
      // Column-split: A whole, B's rows; row-split: A's columns, B whole.
      const Tensor a = column_parallel(kind) ? f->a : columns(f->a, f->a.dim(1) / s.ranks * s.rank,
                                                              f->a.dim(1) / s.ranks * (s.rank + 1));
      const Tensor b = column_parallel(kind) ? row_range(f->b, f->b.dim(0) / s.ranks * s.rank,
                                                         f->b.dim(0) / s.ranks * (s.rank + 1))
                                             : f->b;
      out->factors_[size_t(lora_slot(l, kind))] =
          LoraFactors{.a = backend.upload(a, dt), .b = backend.upload(b, dt), .scale = f->scale};
    }
  if (const Tensor* e = host_full.embedding()) out->embed_ = backend.upload(shard_embedding(*e, s), dt);
  if (const Tensor* h = host_full.head())
    out->head_ = backend.upload(c.head == ModelHead::causal_lm ? shard_head(*h, s) : *h, dt);
  return out;
}

}  // namespace wick
