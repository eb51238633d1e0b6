#include "backend/backend.h"

#include "wick/error.h"

namespace wick {

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::cpu) return make_cpu_backend();
  fail(ErrorKind::unsupported, "--device cuda: this build of wick has no CUDA backend yet (use --device cpu)");
}

}  // namespace wick
