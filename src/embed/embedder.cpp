// The embedder: a sentence-transformers folder loaded onto an encoder or a Qwen2 decoder, texts tokenized as
// SentenceTransformer.encode does (prompt prepended, special tokens, truncation at max_seq_length), sorted by length
// and packed into passes without padding, pooled (and normalised) on the model's backend, returned in input order.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "core/json_util.h"
#include "core/thread_pool.h"
#include "embed/embedder_impl.h"
#include "embed/python_text.h"
#include "embed/tokenize.h"
#include "wick/error.h"

namespace wick {

namespace {

PoolMode pool_mode(EmbedPooling p) {
  switch (p) {
    case EmbedPooling::mean:
      return PoolMode::mean;
    case EmbedPooling::max:
      return PoolMode::max;
    case EmbedPooling::cls:
      return PoolMode::cls;
    case EmbedPooling::last_token:
      return PoolMode::last;
  }
  return PoolMode::mean;
}

std::string model_type_of(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  const auto j = parse_json(read_text_file(path), path.string());
  if (!j.is_object()) fail(ErrorKind::corrupt, path.string() + ": expected a JSON object");
  return json_string(j, "model_type", path.string()).value_or("");
}

}  // namespace

Embedder::Embedder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Embedder::~Embedder() = default;
Embedder::Embedder(Embedder&&) noexcept = default;
Embedder& Embedder::operator=(Embedder&&) noexcept = default;

Embedder Embedder::load(const std::filesystem::path& dir, const EmbedderOptions& options) {
  if (options.batch_tokens < 1)
    fail(ErrorKind::bad_input, "embedder: batch_tokens " + std::to_string(options.batch_tokens) + " (expected ≥ 1)");
  if (options.cpu_threads != 0) set_thread_count(options.cpu_threads);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->folder = read_sentence_folder(dir);
  const std::filesystem::path& model_dir = impl->folder.model_dir;
  int64_t positions = 0;  // the longest sequence the model takes
  if (model_type_of(model_dir) == "qwen2") {
    impl->decoder = Model::load(
        model_dir, {.device = options.device, .cpu_weights = options.cpu_weights, .hidden_states_only = true});
    impl->backend = make_cpu_backend();
    impl->dimension = impl->decoder->config().hidden_size;
    positions = impl->decoder->config().max_position_embeddings;
  } else {
    impl->backend = make_backend(options.device, options.cpu_weights);
    impl->encoder.emplace(Encoder::load(model_dir, *impl->backend));
    impl->dimension = impl->encoder->config().hidden_size;
    positions = impl->encoder->config().max_sequence_length();
  }
  // sentence-transformers: sentence_bert_config.json's max_seq_length, else the least of the model's positions and
  // the tokenizer's model_max_length. Beyond the model's positions it would fail mid-pass; wick keeps to them.
  int64_t max_len =
      impl->folder.max_seq_length.value_or(std::min(positions, tokenizer_max_length(model_dir).value_or(positions)));
  impl->max_seq_length = std::min(max_len, positions);
  try {
    impl->tokenizer = Tokenizer::load(model_dir);
  } catch (const Error&) {
    impl->tokenizer_error = std::current_exception();
  }
  return Embedder(std::move(impl));
}

Device Embedder::device() const { return impl_->options.device; }
int64_t Embedder::dimension() const { return impl_->dimension; }
int64_t Embedder::max_seq_length() const { return impl_->max_seq_length; }
EmbedPooling Embedder::pooling() const { return impl_->folder.pooling; }
bool Embedder::normalizes() const { return impl_->folder.normalize; }
const std::map<std::string, std::string>& Embedder::prompts() const { return impl_->folder.prompts; }
const std::optional<std::string>& Embedder::default_prompt_name() const { return impl_->folder.default_prompt_name; }

namespace {

// The prompt of these options, as encode() picks it: a literal prompt, else the named one, else the default.
std::string prompt_of(const Embedder::Impl& impl, const EmbedOptions& o) {
  if (o.prompt) return *o.prompt;
  const std::optional<std::string>& name = o.prompt_name ? o.prompt_name : impl.folder.default_prompt_name;
  if (!name) return "";
  const auto it = impl.folder.prompts.find(*name);
  if (it == impl.folder.prompts.end()) {
    std::string known;
    for (const auto& [k, v] : impl.folder.prompts) known += (known.empty() ? "" : ", ") + k;
    fail(ErrorKind::bad_input, "prompt_name '" + *name + "' is not among the model's prompts (" +
                                   (known.empty() ? "it has none" : known) + "; config_sentence_transformers.json)");
  }
  return it->second;
}

const Tokenizer& tokenizer_of(const Embedder::Impl& impl) {
  if (!impl.tokenizer) std::rethrow_exception(impl.tokenizer_error);
  return *impl.tokenizer;
}

// One text's ids as sentence-transformers 6 makes them: prompt + text as it is (releases before 6 stripped the
// whitespace around it; 6 keeps it, and tokenizers that see whitespace give it tokens), lowercased when the folder
// says so, tokenized with the special tokens and truncated.
EmbedTokens tokens_of(const Embedder::Impl& impl, const std::string& prompt, const std::string& text, size_t index,
                      bool truncate) {
  const std::string where = "text " + std::to_string(index);
  EmbedTokens t;
  try {
    const std::string full = impl.folder.do_lower_case ? python_lower(prompt + text) : prompt + text;
    t = embed_tokenize(tokenizer_of(impl), full, impl.max_seq_length);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::bad_input) throw;
    fail(ErrorKind::bad_input, where + ": " + e.what());
  }
  if (!truncate && t.full_length > impl.max_seq_length)
    fail(ErrorKind::bad_input, where + " has " + std::to_string(t.full_length) +
                                   " tokens (prompt and special tokens "
                                   "included), over max_seq_length " +
                                   std::to_string(impl.max_seq_length) + " (truncation is off)");
  return t;
}

// With include_prompt false, mean and max leave out the prompt's tokens, counted as sentence-transformers 6 counts
// them: the prompt tokenized with its special tokens, less those the post-processor puts after it ([SEP], </s>;
// none for a tokenizer that adds none). The split comes from where the prompt's own tokens sit among them; a prompt
// with no tokens of its own (whitespace to a BERT tokenizer) counts as releases before 6 counted: all but the last.
int64_t prompt_tokens(const Embedder::Impl& impl, const std::string& prompt) {
  const std::vector<int32_t> with = tokens_of(impl, "", prompt, 0, true).ids;
  const std::vector<int32_t> own =
      tokenizer_of(impl).encode(impl.folder.do_lower_case ? python_lower(prompt) : prompt);
  const auto at = std::search(with.begin(), with.end(), own.begin(), own.end());
  if (own.empty() || at == with.end()) return std::max<int64_t>(0, int64_t(with.size()) - 1);
  return int64_t(at - with.begin()) + int64_t(own.size());
}

// Embeddings of token sequences in input order, f32 [n, dimension]: sorted by length (longest first), packed into
// passes of at most batch_tokens rows, pooled over rows [skip, len) of each (mean and max; skip: prompt tokens left
// out), scattered back. A sequence of no tokens embeds as zeros.
Tensor run(const Embedder::Impl& impl, const std::vector<std::vector<int32_t>>& seqs, int64_t skip) {
  const int64_t n = int64_t(seqs.size()), dim = impl.dimension;
  Backend& b = *impl.backend;
  const PoolMode mode = pool_mode(impl.folder.pooling);
  Tensor result = Tensor::zeros({n, dim}, DType::f32);
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t c) { return seqs[a].size() > seqs[c].size(); });
  while (!order.empty() && seqs[order.back()].empty()) order.pop_back();  // zeros
  for (size_t first = 0; first < order.size();) {
    std::vector<int32_t> ids, starts = {0}, spans;
    std::vector<std::span<const int32_t>> sequences;
    size_t last = first;
    while (last < order.size() &&
           (last == first || int64_t(ids.size() + seqs[order[last]].size()) <= impl.options.batch_tokens)) {
      const std::vector<int32_t>& s = seqs[order[last]];
      const int32_t begin = starts.back(), end = begin + int32_t(s.size());
      const bool skips = (mode == PoolMode::mean || mode == PoolMode::max) && skip > 0;
      spans.push_back(skips ? std::min<int32_t>(begin + int32_t(skip), end) : begin);
      spans.push_back(end);
      ids.insert(ids.end(), s.begin(), s.end());
      starts.push_back(end);
      sequences.emplace_back(s);
      ++last;
    }
    const Tensor hidden = impl.encoder ? impl.encoder->forward(ids, starts)
                                       : b.upload(impl.decoder->hidden_states(sequences), b.compute_dtype());
    const int64_t count = int64_t(last - first);
    Tensor pooled = b.alloc({count, dim}, DType::f32);
    b.encoder_pool(hidden, b.upload(Tensor::from_ints(spans, {count, 2}), DType::i32), mode, impl.folder.normalize,
                   pooled);
    const Tensor host = b.download(pooled);
    for (int64_t i = 0; i < count; ++i)
      std::copy_n(host.data<float>() + i * dim, dim, result.data<float>() + int64_t(order[first + size_t(i)]) * dim);
    first = last;
  }
  return result;
}

void check_dimensions(const Embedder::Impl& impl, int64_t dims) {
  if (dims < 0 || dims > impl.dimension)
    fail(ErrorKind::bad_input,
         "dimensions " + std::to_string(dims) + " outside [0, " + std::to_string(impl.dimension) + "] (0: all)");
}

// Matryoshka: the first `dims` of each row, renormalised when the model normalises.
Tensor keep_dimensions(const Embedder::Impl& impl, const Tensor& full, int64_t dims) {
  check_dimensions(impl, dims);
  if (dims == 0 || dims == impl.dimension) return full;
  const int64_t n = full.dim(0);
  Tensor out = Tensor::empty({n, dims}, DType::f32);
  for (int64_t r = 0; r < n; ++r) {
    const float* src = full.data<float>() + r * impl.dimension;
    float* dst = out.data<float>() + r * dims;
    double ss = 0.0;
    for (int64_t i = 0; i < dims; ++i) ss += double(src[i]) * src[i];
    const double inv = impl.folder.normalize ? 1.0 / std::max(std::sqrt(ss), 1e-12) : 1.0;
    for (int64_t i = 0; i < dims; ++i) dst[i] = float(src[i] * inv);
  }
  return out;
}

}  // namespace

std::vector<int32_t> Embedder::tokenize(const std::string& text, const EmbedOptions& options) const {
  return tokens_of(*impl_, prompt_of(*impl_, options), text, 0, options.truncate).ids;
}

Tensor Embedder::embed(const std::vector<std::string>& texts, const EmbedOptions& options) const {
  const Impl& impl = *impl_;
  check_dimensions(impl, options.dimensions);
  tokenizer_of(impl);
  const std::string prompt = prompt_of(impl, options);
  const int64_t skip = !prompt.empty() && !impl.folder.include_prompt ? prompt_tokens(impl, prompt) : 0;
  std::vector<std::vector<int32_t>> seqs;
  seqs.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) seqs.push_back(tokens_of(impl, prompt, texts[i], i, options.truncate).ids);
  return keep_dimensions(impl, run(impl, seqs, skip), options.dimensions);
}

Tensor Embedder::embed_ids(const std::vector<std::vector<int32_t>>& ids, int64_t dimensions) const {
  const Impl& impl = *impl_;
  check_dimensions(impl, dimensions);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (int64_t(ids[i].size()) > impl.max_seq_length)
      fail(ErrorKind::bad_input, "sequence " + std::to_string(i) + " has " + std::to_string(ids[i].size()) +
                                     " tokens, over max_seq_length " + std::to_string(impl.max_seq_length));
  }
  return keep_dimensions(impl, run(impl, ids, 0), dimensions);
}

}  // namespace wick
