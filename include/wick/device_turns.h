// Turns on one device for work from several threads: a server's engine steps and a fine-tuning job's training steps.
//
// Each holds the turn for one step and hands it back; waiting threads get it in the order they asked (a ticket
// queue), so while both are busy they alternate step by step and neither starves the other.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace wick {

/// A first-come, first-served lock (BasicLockable: std::lock_guard<DeviceTurns> works).
class DeviceTurns {
 public:
  /// Waits for this caller's turn (after every caller that asked before it).
  void lock();
  /// Ends the turn; the longest waiting caller goes next.
  void unlock();

 private:
  std::mutex mu_;
  std::condition_variable turn_;
  uint64_t next_ticket_ = 0;  // the ticket the next lock() draws
  uint64_t serving_ = 0;      // the ticket whose turn it is
};

}  // namespace wick
