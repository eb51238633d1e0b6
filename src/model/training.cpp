#include "model/training.h"

#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "model/model_impl.h"
#include "wick/error.h"

namespace wick {

namespace {

// The batch checked whole and flattened: spans, ids, positions and the loss's targets, on the host.
struct HostBatch {
  std::vector<Span> spans;
  std::vector<int32_t> ids, positions, targets;
};

HostBatch flatten(const ModelConfig& c, std::span<const TrainSequence> batch) {
  if (batch.empty()) fail(ErrorKind::bad_input, "train: empty batch");
  const bool classify = c.head == ModelHead::sequence_classification;
  const int64_t classes = classify ? c.num_labels : c.vocab_size;
  HostBatch h;
  for (size_t s = 0; s < batch.size(); ++s) {
    const TrainSequence& seq = batch[s];
    const auto where = [s] { return "train: sequence " + std::to_string(s); };
    const int64_t n = int64_t(seq.ids.size());
    if (n < 1 || n > c.max_position_embeddings)
      fail(ErrorKind::bad_input, where() + " has " + std::to_string(n) + " tokens; expected 1 to " +
                                     std::to_string(c.max_position_embeddings) + " (max_position_embeddings)");
    if (int64_t(seq.labels.size()) != (classify ? 1 : n))
      fail(ErrorKind::bad_input, where() + " has " + std::to_string(seq.labels.size()) + " labels for " +
                                     std::to_string(n) + " tokens" + (classify ? " (a classifier takes one)" : ""));
    for (int32_t id : seq.ids)
      if (id < 0 || id >= c.vocab_size)
        fail(ErrorKind::bad_input, where() + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(c.vocab_size) + ")");
    for (int32_t label : seq.labels)
      if (label != -100 && (label < 0 || label >= classes))
        fail(ErrorKind::bad_input, where() + ": label " + std::to_string(label) + " is outside [0, " +
                                       std::to_string(classes) + ") and not -100");
    h.spans.push_back({int64_t(h.ids.size()), n, 0, nullptr});
    h.ids.insert(h.ids.end(), seq.ids.begin(), seq.ids.end());
    for (int64_t i = 0; i < n; ++i) h.positions.push_back(int32_t(i));
    if (classify) {
      h.targets.push_back(seq.labels[0]);
    } else {  // position i is scored on the label of token i + 1
      h.targets.insert(h.targets.end(), seq.labels.begin() + 1, seq.labels.end());
      h.targets.push_back(-100);
    }
  }
  return h;
}

}  // namespace

Backend& ModelTraining::backend(const Model& model) { return *model.impl_->backend; }

namespace {

// Runs `pass(ops, weights, heads, activations)` over `batch` under the model's locks, with the training lowering.
template <class Pass>
double with_train_ops(Model::Impl& impl, std::span<const TrainSequence> batch, const LoraSource& lora,
                      LoraGradients& grads, const TrainOpsOptions& options, Pass&& pass) {
  const ModelConfig& c = impl.config;
  Backend& b = *impl.backend;
  require_whole(impl, "training");
  if (c.head == ModelHead::none)
    fail(ErrorKind::unsupported, "train: this model has no head (a Qwen2Model, or loaded with hidden_states_only)");
  const HostBatch h = flatten(c, batch);
  const int64_t T = int64_t(h.ids.size());

  std::unique_lock<std::mutex> device_lock(impl.device_mutex, std::defer_lock);
  if (b.device() != Device::cpu) device_lock.lock();
  const std::shared_lock weights_lock(impl.weights_mutex);
  if (impl.merged) fail(ErrorKind::bad_input, "train: an adapter is merged into the model's weights; unmerge it first");

  const TrainBatch tb{.spans = h.spans,
                      .ids = b.upload(Tensor::from_ints(h.ids, {T}), DType::i32),
                      .positions = b.upload(Tensor::from_ints(h.positions, {T}), DType::i32),
                      .targets = b.upload(Tensor::from_ints(h.targets, {int64_t(h.targets.size())}), DType::i32),
                      .last_only = c.head == ModelHead::sequence_classification};
  const Heads heads = pick_heads(impl.weights, &lora);
  Activations a(b, c, T);
  TrainOps ops(b, c, tb, &lora, grads, options);
  return pass(ops, impl.weights, heads, a);
}

}  // namespace

double ModelTraining::train_pass(const Model& model, std::span<const TrainSequence> batch, const LoraSource& lora,
                                 LoraGradients& grads, const TrainOpsOptions& options) {
  return with_train_ops(*model.impl_, batch, lora, grads, options,
                        [](TrainOps& ops, const ModelWeights& w, const Heads& heads, Activations& a) {
                          return wick::train_pass(ops, w, heads, a);
                        });
}

double ModelTraining::loss(const Model& model, std::span<const TrainSequence> batch, const LoraSource& lora,
                           int64_t loss_chunk_rows) {
  LoraGradients none;
  // Recomputation's bookkeeping keeps only each layer's input: the forward holds one layer's records at a time.
  const TrainOpsOptions options{.loss_chunk_rows = loss_chunk_rows, .recompute = true, .loss_only = true};
  return with_train_ops(*model.impl_, batch, lora, none, options,
                        [](TrainOps& ops, const ModelWeights& w, const Heads& heads, Activations& a) {
                          Tensor no_logits;
                          forward_pass(ops, w, heads, a, no_logits);
                          return ops.backward_from(int64_t(w.layers.size()));
                        });
}

Tensor ModelTraining::head_weight(const Model& model) {
  const std::shared_lock weights_lock(model.impl_->weights_mutex);
  return model.impl_->backend->download(model.impl_->weights.head);
}

}  // namespace wick
