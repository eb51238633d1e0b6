// Embedder::Impl: what a loaded embedder holds. Private to src/embed/.
#pragma once

#include <exception>
#include <memory>
#include <optional>

#include "backend/backend.h"
#include "embed/st_folder.h"
#include "model/encoder.h"
#include "wick/embedder.h"
#include "wick/model.h"
#include "wick/tokenizer.h"

namespace wick {

struct Embedder::Impl {
  SentenceFolder folder;
  EmbedderOptions options;
  // The tokenizer, or why it could not be loaded: embed_ids() runs without one, embed() rethrows the error.
  std::optional<Tokenizer> tokenizer;
  std::exception_ptr tokenizer_error;
  // Where the pooling runs: the encoder's backend; for a decoder, a CPU backend over its downloaded hidden states.
  std::unique_ptr<Backend> backend;
  std::optional<Encoder> encoder;  // a BERT-family model, on `backend`
  std::shared_ptr<Model> decoder;  // or a Qwen2 model (its own backend), loaded for its hidden states
  int64_t dimension = 0;
  int64_t max_seq_length = 0;
};

}  // namespace wick
