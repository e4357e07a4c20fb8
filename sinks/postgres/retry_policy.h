// How long a batch keeps trying to reach the database: the one retry policy of every command that writes
// (serve's drainer, consume, write, import, rejected replay).
//
//   for_ever()        the source holds the data (the local log, Kafka): never give up on a batch; failures
//                     the database may recover from are retried with backoff, refusals after a pause.
//   for_at_most(N)    reconnectable failures are retried for N seconds, then the batch fails; a refusal no
//                     retry can fix (schema, permissions) fails it at once.
//   give_up()         the first failure of any kind fails the batch.
//
// Settings and flags say "0 = for ever": from_seconds() maps them.
#pragma once

#include <chrono>
#include <string>

namespace crm::sinks::postgres {

class retry_policy {
 public:
  static constexpr retry_policy for_ever() noexcept { return retry_policy(mode::for_ever, std::chrono::seconds(0)); }
  static constexpr retry_policy for_at_most(std::chrono::seconds limit) noexcept {
    return retry_policy(mode::bounded, limit);
  }
  static constexpr retry_policy give_up() noexcept { return retry_policy(mode::give_up, std::chrono::seconds(0)); }
  // The settings' convention: 0 = for ever, N > 0 = for at most N seconds.
  static constexpr retry_policy from_seconds(long long seconds) noexcept {
    return seconds <= 0 ? for_ever() : for_at_most(std::chrono::seconds(seconds));
  }

  bool forever() const noexcept { return mode_ == mode::for_ever; }
  // May a batch that has been failing (for reconnectable reasons) for `waited` be tried again?
  bool may_retry(std::chrono::steady_clock::duration waited) const noexcept {
    switch (mode_) {
      case mode::for_ever: return true;
      case mode::bounded: return waited <= limit_;
      case mode::give_up: return false;
    }
    return false;
  }
  // Is a refusal that no reconnect can fix (failure_kind::fatal) tried again after a pause?
  bool retries_refusals() const noexcept { return mode_ == mode::for_ever; }
  std::chrono::seconds limit() const noexcept { return limit_; }
  std::string describe() const {
    switch (mode_) {
      case mode::for_ever: return "for ever";
      case mode::bounded: return "for " + std::to_string(limit_.count()) + " s";
      case mode::give_up: return "no retries";
    }
    return "?";
  }

 private:
  enum class mode { for_ever, bounded, give_up };
  constexpr retry_policy(mode m, std::chrono::seconds limit) noexcept : mode_(m), limit_(limit) {}
  mode mode_;
  std::chrono::seconds limit_;
};

}  // namespace crm::sinks::postgres
