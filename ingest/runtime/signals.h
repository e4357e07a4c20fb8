// Signal handling of every long-running command, in one place: SIGTERM and SIGINT stop, SIGHUP reloads
// (serve). The constructor blocks the signals in the calling thread, so construct it on the main thread
// before any other thread starts (threads inherit the mask); one thread of its own takes them with
// sigwait and calls the command's handlers there, never in a signal context.
//
// Thread ownership: the signal thread belongs to this object (started by start(), joined by close() or
// the destructor). on_stop runs at most once, on that thread; on_reload once per SIGHUP.
#pragma once

#include <atomic>
#include <csignal>
#include <functional>
#include <thread>

namespace crm::ingest::runtime {

class signal_waiter {
 public:
  // `reload`: SIGHUP is taken too (and given to on_reload); otherwise it keeps its default action.
  // `second_stop_exits`: after on_stop, a second stop signal ends the process at once (exit 128 + signal), for a
  // command whose orderly stop may wait long (import: the batches in flight, the database's retry policy).
  explicit signal_waiter(bool reload = false, bool second_stop_exits = false);
  ~signal_waiter() { close(); }
  signal_waiter(const signal_waiter&) = delete;
  signal_waiter& operator=(const signal_waiter&) = delete;

  void start(std::function<void(int signal)> on_stop, std::function<void()> on_reload = {});
  // Ends the signal thread without calling on_stop when no stop signal came. Idempotent.
  void close();
  // The stop signal received (SIGTERM, SIGINT), 0 before one.
  int received() const noexcept { return received_.load(); }

 private:
  sigset_t signals_;
  std::thread thread_;
  bool second_stop_exits_ = false;
  std::atomic<bool> closing_{false};
  std::atomic<int> received_{0};
};

const char* signal_name(int signal) noexcept;

}  // namespace crm::ingest::runtime
