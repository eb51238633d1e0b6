// Random tensors for wick's own random models (src/model/random_model.cpp, src/embed/random_embedder.cpp): the same
// seed gives the same bits on every machine and thread count.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "wick/tensor.h"

namespace wick {

/// splitmix64's finaliser: a seed for the next tensor, or a counter's random bits.
uint64_t random_mix(uint64_t x);
/// Values uniform in [lo, hi), element i drawn from (seed, i) alone, converted to `dtype`.
Tensor random_uniform(const Shape& shape, DType dtype, float lo, float hi, uint64_t seed);
/// Writes `text` to `path`; bad_input naming the path when it cannot.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace wick
