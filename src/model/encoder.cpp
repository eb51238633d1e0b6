// BERT-family encoders: weights from a Hugging Face folder, and the forward pass over a packed batch, each layer
// read top to bottom as the paper draws it (post-norm: attention → residual + LayerNorm → MLP → residual + LayerNorm).
#include "model/encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {

namespace {

// Host tensors of one row size, one after the other along dim 0: in their dtype when they share one, else f32.
Tensor stack_rows(const std::vector<Tensor>& parts) {
  DType dtype = parts.front().dtype();
  Shape shape = parts.front().shape();
  shape[0] = 0;
  for (const Tensor& t : parts) {
    if (t.dtype() != dtype) dtype = DType::f32;
    shape[0] += t.dim(0);
  }
  Tensor out = Tensor::empty(shape, dtype);
  auto* dst = static_cast<std::byte*>(out.raw());
  for (const Tensor& t : parts) {
    const Tensor same = t.dtype() == dtype ? t : t.to(dtype);
    std::memcpy(dst, same.raw(), same.nbytes());
    dst += same.nbytes();
  }
  return out;
}

// The checkpoint's prefix: "" (AutoModel's save_pretrained) or the task model's base prefix (BertForMaskedLM, ...).
std::string weight_prefix(const TensorStore& store, EncoderKind kind) {
  const char* base = kind == EncoderKind::bert ? "bert." : kind == EncoderKind::roberta ? "roberta." : "mpnet.";
  if (!store.find("embeddings.word_embeddings.weight") &&
      store.find(std::string(base) + "embeddings.word_embeddings.weight"))
    return base;
  return "";
}

// Names of one encoder's tensors as the checkpoint spells them (old BERT checkpoints name LayerNorm's weight and
// bias gamma and beta).
class Names {
 public:
  Names(const TensorStore& store, EncoderKind kind) : store_(store), prefix_(weight_prefix(store, kind)) {}
  std::string operator()(const std::string& name) const {
    const std::string full = prefix_ + name;
    if (store_.find(full)) return full;
    for (const auto& [from, to] :
         {std::pair{"LayerNorm.weight", "LayerNorm.gamma"}, std::pair{"LayerNorm.bias", "LayerNorm.beta"}})
      if (full.ends_with(from)) {
        const std::string old = full.substr(0, full.size() - std::string(from).size()) + to;
        if (store_.find(old)) return old;
      }
    return full;
  }

 private:
  const TensorStore& store_;
  std::string prefix_;
};

struct Spec {
  std::string name;  // as the checkpoint spells it
  Shape shape;
};

// The tensors of layer i: (q, k, v, o, attention norm, intermediate, output, output norm) as the family names them.
struct LayerNames {
  std::string q, k, v, o, attention_norm, up, down, output_norm;
};

LayerNames layer_names(EncoderKind kind, int64_t i) {
  const std::string p = "encoder.layer." + std::to_string(i) + ".";
  if (kind == EncoderKind::mpnet)
    return {p + "attention.attn.q",    p + "attention.attn.k",   p + "attention.attn.v", p + "attention.attn.o",
            p + "attention.LayerNorm", p + "intermediate.dense", p + "output.dense",     p + "output.LayerNorm"};
  return {p + "attention.self.query",
          p + "attention.self.key",
          p + "attention.self.value",
          p + "attention.output.dense",
          p + "attention.output.LayerNorm",
          p + "intermediate.dense",
          p + "output.dense",
          p + "output.LayerNorm"};
}

std::vector<Spec> expected(const EncoderConfig& c, const Names& name) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  std::vector<Spec> specs = {{name("embeddings.word_embeddings.weight"), {c.vocab_size, h}},
                             {name("embeddings.position_embeddings.weight"), {c.max_position_embeddings, h}}};
  if (c.type_vocab_size > 0) specs.push_back({name("embeddings.token_type_embeddings.weight"), {c.type_vocab_size, h}});
  const auto norm = [&](const std::string& n) {
    specs.push_back({name(n + ".weight"), {h}});
    specs.push_back({name(n + ".bias"), {h}});
  };
  const auto linear = [&](const std::string& n, int64_t out, int64_t in) {
    specs.push_back({name(n + ".weight"), {out, in}});
    specs.push_back({name(n + ".bias"), {out}});
  };
  norm("embeddings.LayerNorm");
  if (c.kind == EncoderKind::mpnet)
    specs.push_back({name("encoder.relative_attention_bias.weight"), {c.relative_attention_num_buckets, c.num_heads}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const LayerNames l = layer_names(c.kind, i);
    for (const std::string* p : {&l.q, &l.k, &l.v, &l.o}) linear(*p, h, h);
    norm(l.attention_norm);
    linear(l.up, f, h);
    linear(l.down, h, f);
    norm(l.output_norm);
  }
  return specs;
}

// Validate whole, report all: every missing or misshapen tensor in one message.
void check(const std::vector<Spec>& specs, const TensorStore& store, const std::string& source) {
  std::vector<std::string> problems;
  bool only_missing = true;
  for (const Spec& spec : specs) {
    const SafetensorsEntry* e = store.find(spec.name);
    if (!e) {
      problems.push_back("missing '" + spec.name + "' " + to_string(spec.shape));
      continue;
    }
    if (e->shape != spec.shape)
      problems.push_back("'" + spec.name + "': expected shape " + to_string(spec.shape) + ", found " +
                         to_string(e->shape));
    else if (!e->supported || e->dtype == DType::i32)
      problems.push_back("'" + spec.name + "': dtype " + e->dtype_name + " (expected F32, BF16 or F16)");
    else
      continue;
    only_missing = false;
  }
  if (problems.empty()) return;
  std::string msg = source + ": " + std::to_string(problems.size()) + " tensor" + (problems.size() == 1 ? "" : "s") +
                    " do not fit config.json:";
  for (const auto& p : problems) msg += "\n  " + p;
  msg += "\n  (weights for a different model, or a config.json that does not belong to them?)";
  fail(only_missing ? ErrorKind::not_found : ErrorKind::corrupt, msg);
}

}  // namespace

Encoder::Encoder(Backend& backend, EncoderConfig config, EncoderWeights weights)
    : backend_(&backend), config_(std::move(config)), weights_(std::move(weights)) {}

Encoder Encoder::load(const std::filesystem::path& dir, Backend& backend) {
  EncoderConfig c = EncoderConfig::load(dir);
  const TensorStore store = TensorStore::open_dir(dir);
  const Names name(store, c.kind);
  check(expected(c, name), store, dir.string());

  const DType dt = backend.compute_dtype();
  const auto plain = [&](const std::string& n) { return backend.upload(store.tensor(name(n)), dt); };
  const auto matrix = [&](const std::string& n) {
    try {
      return backend.upload_weight(store.tensor(name(n)));
    } catch (const Error& e) {
      fail(e.kind(), dir.string() + ": tensor '" + name(n) + "': " + e.what());
    }
  };
  const auto projection = [&](const std::string& n, int layer, ProjKind kind) {
    return Projection{.weight = matrix(n + ".weight"), .bias = plain(n + ".bias"), .layer = layer, .kind = kind};
  };
  // q, k and v as one [3 · hidden, hidden] matrix and one bias: one linear_stack a layer.
  const auto stacked = [&](const LayerNames& n, int layer) {
    const auto stack = [&](const std::string& suffix) {
      return stack_rows({store.tensor(name(n.q + suffix)), store.tensor(name(n.k + suffix)),
                         store.tensor(name(n.v + suffix))});
    };
    return Projection{.weight = backend.upload_weight(stack(".weight")),
                      .bias = backend.upload(stack(".bias"), dt),
                      .layer = layer,
                      .kind = ProjKind::q};
  };
  EncoderWeights w;
  w.word = matrix("embeddings.word_embeddings.weight");
  w.position = plain("embeddings.position_embeddings.weight");
  if (c.type_vocab_size > 0) w.token_type = plain("embeddings.token_type_embeddings.weight");
  w.embed_norm_w = plain("embeddings.LayerNorm.weight");
  w.embed_norm_b = plain("embeddings.LayerNorm.bias");
  if (c.kind == EncoderKind::mpnet) w.relative_bias = plain("encoder.relative_attention_bias.weight");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const LayerNames n = layer_names(c.kind, i);
    const int l = int(i);
    w.layers.push_back({.qkv = stacked(n, l),
                        .o = projection(n.o, l, ProjKind::o),
                        .attention_norm_w = plain(n.attention_norm + ".weight"),
                        .attention_norm_b = plain(n.attention_norm + ".bias"),
                        .up = projection(n.up, l, ProjKind::up),
                        .down = projection(n.down, l, ProjKind::down),
                        .output_norm_w = plain(n.output_norm + ".weight"),
                        .output_norm_b = plain(n.output_norm + ".bias")});
  }
  return Encoder(backend, std::move(c), std::move(w));
}

Tensor Encoder::forward(std::span<const int32_t> ids, std::span<const int32_t> starts) const {
  const EncoderConfig& c = config_;
  Backend& b = *backend_;
  const int64_t T = int64_t(ids.size()), S = int64_t(starts.size()) - 1;
  if (S < 1 || starts[0] != 0 || starts[size_t(S)] != T)
    fail(ErrorKind::bad_input, "encoder: sequence starts must run from 0 to the " + std::to_string(T) + " ids");
  // Positions as transformers makes them: BERT from 0; RoBERTa and MPNet from pad + 1, counting non-pad tokens
  // (create_position_ids_from_input_ids: a pad token inside a sequence sits at position pad).
  std::vector<int32_t> positions(static_cast<size_t>(T));
  int64_t max_len = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t len = int64_t(starts[size_t(s + 1)]) - starts[size_t(s)];
    if (len < 1 || len > c.max_sequence_length())
      fail(ErrorKind::bad_input, "encoder: sequence " + std::to_string(s) + " has " + std::to_string(len) +
                                     " tokens (expected 1 to " + std::to_string(c.max_sequence_length()) +
                                     ", the position table of config.json's max_position_embeddings)");
    max_len = std::max(max_len, len);
    int32_t counted = 0;
    for (int64_t t = starts[size_t(s)]; t < starts[size_t(s + 1)]; ++t) {
      const int32_t id = ids[size_t(t)];
      if (id < 0 || id >= c.vocab_size)
        fail(ErrorKind::bad_input, "encoder: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(c.vocab_size) + ")");
      if (c.kind == EncoderKind::bert)
        positions[size_t(t)] = int32_t(t - starts[size_t(s)]);
      else
        positions[size_t(t)] = id == c.pad_token_id ? c.pad_token_id : c.pad_token_id + ++counted;
    }
  }
  const auto ints = [&](std::span<const int32_t> v) {
    return b.upload(Tensor::from_ints(std::vector<int32_t>(v.begin(), v.end()), {int64_t(v.size())}), DType::i32);
  };
  const Tensor ids_d = ints(ids), positions_d = ints(positions);
  const EncoderSpans spans{.starts = ints(starts), .max_len = max_len};
  const RelativeBias bias{.table = weights_.relative_bias,
                          .num_buckets = c.relative_attention_num_buckets,
                          .max_distance = 128};  // transformers' MPNet: relative_position_bucket's default
  const AttentionParams attention{.num_heads = c.num_heads,
                                  .num_kv_heads = c.num_heads,
                                  .head_dim = c.head_dim,
                                  .scale = float(1.0 / std::sqrt(double(c.head_dim)))};
  const float eps = float(c.layer_norm_eps);
  const DType dt = b.compute_dtype();
  const int64_t H = c.hidden_size;
  Tensor x = b.alloc({T, H}, dt);    // the residual stream
  Tensor tmp = b.alloc({T, H}, dt);  // an embedding to add; a projection before its residual LayerNorm
  Tensor qkv = b.alloc({3 * T, H}, dt);  // q, k, v one after the other
  const Tensor q = qkv.rows(0, T), k = qkv.rows(T, 2 * T), v = qkv.rows(2 * T, 3 * T);
  Tensor ctx = b.alloc({T, H}, dt);  // attention output, o's input
  Tensor h = b.alloc({T, c.intermediate_size}, dt);

  // Embeddings: (word + token type 0) + position, then LayerNorm (the order of transformers' sums).
  b.embedding(weights_.word, ids_d, x);
  if (weights_.token_type.defined()) {
    const Tensor types = b.upload(Tensor::zeros({T}, DType::i32), DType::i32);  // one sentence: type 0 throughout
    b.embedding(weights_.token_type, types, tmp);
    b.add(x, tmp, x);
  }
  b.embedding(weights_.position, positions_d, tmp);
  b.add(x, tmp, x);
  b.layer_norm(x, Tensor(), weights_.embed_norm_w, weights_.embed_norm_b, eps, x);

  for (const EncoderLayerWeights& l : weights_.layers) {
    b.linear_stack(x, l.qkv.weight, l.qkv.bias, qkv);  // q, k, v
    b.encoder_attention(q.reshape({T, c.num_heads, c.head_dim}), k.reshape({T, c.num_heads, c.head_dim}),
                        v.reshape({T, c.num_heads, c.head_dim}), spans, bias, ctx, attention);  // within each sequence
    linear(b, ctx, l.o, nullptr, tmp);                                                          // o(attention)
    b.layer_norm(tmp, x, l.attention_norm_w, l.attention_norm_b, eps, x);                       // x = LN(x + o)
    b.linear_gelu(x, l.up.weight, l.up.bias, c.gelu_tanh, h);                                  // gelu(W1·x)
    linear(b, h, l.down, nullptr, tmp);                              // W2·h
    b.layer_norm(tmp, x, l.output_norm_w, l.output_norm_b, eps, x);  // x = LN(x + W2·h)
  }
  return x;
}

}  // namespace wick
