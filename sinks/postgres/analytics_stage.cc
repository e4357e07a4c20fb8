#include "sinks/postgres/analytics_stage.h"

#include <pthread.h>
#include <algorithm>
#include <vector>

#include <spdlog/spdlog.h>

namespace crm::sinks::postgres {

analytics_lag read_analytics_lag(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  auto row = tx.exec("SELECT pending_batches, pending_touchpoints, lag_seconds FROM crm_analytics_lag()")[0];
  analytics_lag l;
  l.known = true;
  l.pending_batches = row[0].as<long long>();
  l.pending_touchpoints = row[1].as<long long>();
  l.lag_seconds = row[2].as<double>();
  return l;
}

analytics_stage::analytics_stage(analytics_stage_options options)
    : options_(std::move(options)), backoff_(options_.backoff_base, options_.backoff_cap) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "crm-stage");
    main();
  });
}

analytics_stage::~analytics_stage() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  done_cv_.notify_all();
  thread_.join();
}

void analytics_stage::wake() noexcept {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

std::string analytics_stage::last_error() const {
  std::lock_guard lock(mu_);
  return error_;
}

bool analytics_stage::catch_up(std::chrono::milliseconds timeout, std::chrono::milliseconds give_up_after) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  const std::uint64_t mine = ++requested_;
  woken_ = true;
  cv_.notify_one();
  for (;;) {
    if (done_ >= mine) return true;
    if (stopping_) return false;
    if (failing_ && std::chrono::steady_clock::now() - failing_since_ >= give_up_after) return false;
    if (done_cv_.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(200))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= until) {
      return done_ >= mine;
    }
  }
}

int analytics_stage::run_once(bool& busy) {
  const auto started = std::chrono::steady_clock::now();
  pqxx::work tx(*conn_);
  // The argument of the migration (every statement sees what committed before it) needs READ COMMITTED,
  // whatever the role's or the database's default.
  tx.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
  auto row = tx.exec_params("SELECT busy, batches, touchpoints, delays FROM crm_analytics_stage_run($1, $2)",
                            options_.max_batches, options_.max_touchpoints)[0];
  busy = row[0].as<bool>();
  const int batches = busy ? 0 : row[1].as<int>();
  const auto touchpoints = busy ? 0ULL : row[2].as<unsigned long long>();
  std::vector<double> delays;
  if (batches > 0) {
    auto arr = row[3].as_array();
    for (auto [kind, text] = arr.get_next(); kind != pqxx::array_parser::done; std::tie(kind, text) = arr.get_next()) {
      if (kind == pqxx::array_parser::string_value) delays.push_back(std::stod(text));
    }
  }
  tx.commit();
  if (batches > 0 && options_.observer) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    options_.observer->analytics_applied(static_cast<std::size_t>(batches), touchpoints, seconds, delays);
  }
  return batches;
}

void analytics_stage::refresh_lag() {
  auto l = read_analytics_lag(*conn_);
  {
    std::lock_guard lock(mu_);
    lag_ = l;
  }
  if (options_.observer) options_.observer->analytics_lag(l.pending_batches, l.lag_seconds);
}

// For the catch_up() requests: fixes a target for new ones, reports them done once nothing at or below their
// target is left (rows of other processes' batches still in flight are not waited for: not yet visible).
bool analytics_stage::catch_up_done() {
  std::uint64_t requested;
  {
    std::lock_guard lock(mu_);
    requested = requested_;
  }
  if (requested == done_) return true;
  pqxx::read_transaction tx(*conn_);
  if (targeted_ < requested) {
    target_seq_ = tx.exec("SELECT coalesce(max(seq), 0) FROM analytics_backlog")[0][0].as<long long>();
    targeted_ = requested;
  }
  const bool left = tx.exec_params("SELECT EXISTS (SELECT 1 FROM analytics_backlog WHERE seq <= $1)", target_seq_)[0][0]
                        .as<bool>();
  if (left) return false;
  {
    std::lock_guard lock(mu_);
    done_ = targeted_;
  }
  done_cv_.notify_all();
  return true;
}

void analytics_stage::main() {
  auto next_look = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // A wake (a writer committed) starts a run at once, except during a failure's backoff: the stage then
      // retries no sooner than its backoff says, however busy the writers are.
      cv_.wait_until(lock, next_look, [&] { return stopping_ || (woken_ && std::chrono::steady_clock::now() >= not_before_); });
      if (stopping_) return;
      woken_ = false;
    }
    next_look = std::chrono::steady_clock::now() + options_.idle_poll;
    try {
      if (!conn_) conn_ = connect_primary(options_.dsn, options_.application_name);
      bool busy = false;
      // While there is work, keep at it (new batches keep arriving meanwhile); a catch_up() request is checked
      // after every run, so that a waiting command returns as soon as its rows are applied even while other
      // processes keep the backlog from ever being empty.
      bool caught_up = true;
      for (;;) {
        const int applied = run_once(busy);
        refresh_lag();
        caught_up = catch_up_done();
        if (applied == 0) break;
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      if (!caught_up || busy) {
        // Another process's stage holds the lock, or rows are left: look again soon.
        next_look = std::min(next_look, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
      }
      backoff_.reset();
      std::lock_guard lock(mu_);
      failing_ = false;
      not_before_ = {};
      error_.clear();
    } catch (const std::exception& e) {
      const failure f = classify(e);
      try {
        conn_.reset();
      } catch (...) {
      }
      bool first = false;
      {
        std::lock_guard lock(mu_);
        if (!failing_) {
          failing_ = true;
          failing_since_ = std::chrono::steady_clock::now();
          first = true;
        }
        error_ = f.message;
      }
      if (options_.observer) options_.observer->analytics_failed(f.reason);
      // The backlog stays in the database: nothing is lost, the tables only fall behind.
      if (first) {
        spdlog::warn("The analytics stage failed; the attribution and A/B tables fall behind until it works again. "
                     "reason={} error={}",
                     f.reason, f.message);
      }
      const auto delay = f.kind == failure_kind::fatal ? std::chrono::milliseconds(5000) : backoff_.next();
      next_look = std::chrono::steady_clock::now() + delay;
      // While failing, the tables fall further behind: the lag reported is at least the time since the first
      // failure, so that an alert on it fires when the stage cannot work at all.
      analytics_lag l;
      {
        std::lock_guard lock(mu_);
        not_before_ = next_look;
        lag_.lag_seconds = std::max(
            lag_.lag_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - failing_since_).count());
        l = lag_;
      }
      if (options_.observer) options_.observer->analytics_lag(l.pending_batches, l.lag_seconds);
    }
  }
}

}  // namespace crm::sinks::postgres
