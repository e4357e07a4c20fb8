#include "ingest/runtime/signals.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

namespace crm::ingest::runtime {

signal_waiter::signal_waiter(bool reload, bool second_stop_exits) : second_stop_exits_(second_stop_exits) {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  if (reload) sigaddset(&signals_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

void signal_waiter::start(std::function<void(int)> on_stop, std::function<void()> on_reload) {
  thread_ = std::thread([this, on_stop = std::move(on_stop), on_reload = std::move(on_reload)] {
    pthread_setname_np(pthread_self(), "crm-signals");
    for (;;) {
      int sig = 0;
      sigwait(&signals_, &sig);
      if (closing_.load()) return;
      if (sig == SIGHUP) {
        if (on_reload) on_reload();
        continue;
      }
      if (received_.load() != 0) {  // the second stop signal (second_stop_exits_)
        std::fprintf(stderr, "crm-ingest: a second %s: stopping now\n", signal_name(sig));
        std::_Exit(128 + sig);
      }
      received_ = sig;
      if (on_stop) on_stop(sig);
      if (!second_stop_exits_) return;
    }
  });
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

}  // namespace crm::ingest::runtime
