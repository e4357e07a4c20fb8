#include "ingest/runtime/signals.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace crm::ingest::runtime {

signal_waiter::signal_waiter(bool reload, bool second_stop_exits) : second_stop_exits_(second_stop_exits) {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  if (reload) sigaddset(&signals_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

void signal_waiter::start(std::function<void(int)> on_stop, std::function<void()> on_reload) {
  int early_stop = 0;
  {
    std::lock_guard lock(handlers_mu_);
    on_stop_ = std::move(on_stop);
    on_reload_ = std::move(on_reload);
    early_stop = received_.load();
    if (early_stop != 0 && on_stop_) on_stop_(early_stop);  // a stop during start-up: given to the command now
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void signal_waiter::start_early(std::function<void(int)> on_early_stop) {
  {
    std::lock_guard lock(handlers_mu_);
    on_stop_ = std::move(on_early_stop);
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void signal_waiter::run() {
  pthread_setname_np(pthread_self(), "crm-signals");
  for (;;) {
    int sig = 0;
    sigwait(&signals_, &sig);
    if (closing_.load()) return;
    if (sig == SIGHUP) {
      std::function<void()> reload;
      {
        std::lock_guard lock(handlers_mu_);
        reload = on_reload_;
      }
      if (reload) reload();
      continue;
    }
    if (received_.load() != 0) {  // the second stop signal (second_stop_exits_)
      std::fprintf(stderr, "crm-ingest: a second %s: stopping now\n", signal_name(sig));
      std::_Exit(128 + sig);
    }
    // Set and handled under the lock, so that a start() swapping the handlers meanwhile either sees the stop (and
    // gives it to its on_stop) or is waited for (and its on_stop takes it here): the command's on_stop runs once.
    {
      std::lock_guard lock(handlers_mu_);
      received_ = sig;
      if (on_stop_) on_stop_(sig);
    }
    if (!second_stop_exits_) return;
  }
}

void signal_waiter::close() {
  if (!thread_.joinable()) return;
  closing_ = true;
  // The thread still waits unless it returned after a stop signal (it never does with second_stop_exits_);
  // it sees closing_ before it would take this signal for a stop.
  if (received_.load() == 0 || second_stop_exits_) pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

const char* signal_name(int signal) noexcept {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
  }
  return "signal";
}

stop_event::stop_event() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::runtime_error(std::string("cannot create an eventfd: ") + std::strerror(errno));
}

stop_event::~stop_event() { ::close(fd_); }

void stop_event::set() noexcept {
  flag_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);  // fails only when the counter is full: readable
}

}  // namespace crm::ingest::runtime
