#include "wick/device_turns.h"

namespace wick {

void DeviceTurns::lock() {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  turn_.wait(lock, [&] { return serving_ == ticket; });
}

void DeviceTurns::unlock() {
  {
    const std::lock_guard lock(mu_);
    ++serving_;
  }
  turn_.notify_all();
}

}  // namespace wick
