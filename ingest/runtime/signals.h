// Signal handling of every long-running command, in one place: SIGTERM and SIGINT stop, SIGHUP reloads
// (serve). The constructor blocks the signals in the calling thread, so construct it on the main thread
// before any other thread starts (threads inherit the mask); one thread of its own takes them with
// sigwait and calls the command's handlers there, never in a signal context.
//
// Thread ownership: the signal thread belongs to this object (started by start() or start_early(), joined by
// close() or the destructor). on_stop runs at most once, on that thread (or on the thread calling start() when
// the stop came during start-up); on_reload once per SIGHUP.
#pragma once

#include <boost/noncopyable.hpp>

#include <atomic>
#include <csignal>
#include <functional>
#include <mutex>
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

  // Takes the signals with the command's handlers. After start_early(), swaps them in for the early one; a stop
  // signal that came during start-up is then given to on_stop at once, on the calling thread.
  void start(std::function<void(int signal)> on_stop, std::function<void()> on_reload = {});
  // Start-up: takes the signals from now on, while the command starts (before start()), so that a stop during a
  // long start-up (recovering a log, reaching a database) is not left pending until it ends. A stop signal then
  // sets received() (for the start-up steps that look at it) and calls `on_early_stop` on the signal thread;
  // SIGHUP is ignored until start().
  void start_early(std::function<void(int signal)> on_early_stop);
  // Ends the signal thread without calling on_stop when no stop signal came. Idempotent.
  void close();
  // The stop signal received (SIGTERM, SIGINT), 0 before one.
  int received() const noexcept { return received_.load(); }

 private:
  void run();

  sigset_t signals_;
  std::thread thread_;
  std::mutex handlers_mu_;  // on_stop_, on_reload_ and received_'s first setting
  std::function<void(int)> on_stop_;
  std::function<void()> on_reload_;
  bool second_stop_exits_ = false;
  std::atomic<bool> closing_{false};
  std::atomic<int> received_{0};
};

const char* signal_name(int signal) noexcept;

// A stop that a thread blocked in poll() can see: set() raises the flag and makes fd() readable (an eventfd),
// so that a read from a pipe that delivers nothing waits for its bytes or the stop, whichever comes first.
// set() is safe from any thread (a signal_waiter's handler); fd() stays readable once set.
class stop_event : boost::noncopyable {
 public:
  stop_event();
  ~stop_event();

  void set() noexcept;
  bool is_set() const noexcept { return flag_.load(); }
  const std::atomic<bool>& flag() const noexcept { return flag_; }
  int fd() const noexcept { return fd_; }

 private:
  std::atomic<bool> flag_{false};
  int fd_ = -1;
};

}  // namespace crm::ingest::runtime
