// The cluster, the probe and the load sources of the fault tests (fault_cluster.h).
#include "fault_cluster.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace crm_fault {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stod(v) : fallback;
}

std::string confirm_mode() {
  const char* v = std::getenv("CRM_FAULT_CONFIRM");
  return v && *v ? std::string(v) : std::string("standbys");
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string last_line(const std::string& text) {
  auto t = trim(text);
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

std::string cluster(const std::string& command) {
  const auto space = command.find(' ');
  const std::string verb = command.substr(0, space), args = space == std::string::npos ? "" : command.substr(space);
  return run(fmt::format("bash {} {} {}{} 2>&1", CRM_CLUSTER_SH, verb, CRM_CLUSTER_DIR, args));
}

std::string leader_now() {
  int st = 0;
  return trim(run(fmt::format("bash {} leader {} 2>/dev/null", CRM_CLUSTER_SH, CRM_CLUSTER_DIR), &st));
}

bool wait_for_leader(const std::string& node, std::chrono::seconds timeout) {
  for (const auto end = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < end;) {
    if (leader_now() == node) return true;
    std::this_thread::sleep_for(250ms);
  }
  return leader_now() == node;
}

cluster_dsns read_dsns() {
  cluster_dsns d;
  std::istringstream in(run(fmt::format("bash {} dsn {}", CRM_CLUSTER_SH, CRM_CLUSTER_DIR)));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("PRIMARY_DSN=", 0) == 0) d.primary = line.substr(12);
    if (line.rfind("ADMIN_DSN=", 0) == 0) d.admin = line.substr(10);
    if (line.rfind("REPLICA_DSN=", 0) == 0) d.replica = line.substr(12);
  }
  if (d.primary.empty() || d.admin.empty()) throw std::runtime_error("cluster.sh dsn printed no DSN");
  return d;
}

std::string with_database(const std::string& dsn, const std::string& db) {
  auto slash = dsn.find('/', dsn.find("://") + 3);
  auto q = dsn.find('?', slash);
  return dsn.substr(0, slash + 1) + db + (q == std::string::npos ? "" : dsn.substr(q));
}

std::string with_user(const std::string& dsn, const std::string& user, const std::string& password) {
  auto scheme = dsn.find("://") + 3;
  auto at = dsn.find('@', scheme);
  return dsn.substr(0, scheme) + user + ":" + password + dsn.substr(at);
}

std::string status_reader_dsn(const cluster_dsns& dsns, const std::string& db, bool may_read_stats) {
  pqxx::connection admin(dsns.admin);
  pqxx::nontransaction tx(admin);
  tx.exec("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_status_reader') THEN"
          " CREATE ROLE crm_status_reader LOGIN PASSWORD 'local-status-reader'; END IF; END $$");
  tx.exec(may_read_stats ? "GRANT pg_read_all_stats TO crm_status_reader"
                         : "REVOKE pg_read_all_stats FROM crm_status_reader");
  return with_user(with_database(dsns.primary, db), "crm_status_reader", "local-status-reader");
}

crm::sinks::postgres::replication_status commit_and_read_status(pqxx::connection& c) {
  {
    pqxx::work tx(c);
    tx.exec("CREATE TEMP TABLE IF NOT EXISTS crm_status_probe (v int)");
    tx.exec("INSERT INTO crm_status_probe VALUES (1)");
    tx.commit();
  }
  pqxx::nontransaction tx(c);
  return crm::sinks::postgres::read_replication_status(tx);
}

void primary_probe::loop() {
  while (!stop_) {
    sample s{0, now_s(), false, 0};
    try {
      pqxx::connection c(dsn_);
      pqxx::nontransaction tx(c);
      auto r = tx.exec("SELECT NOT pg_is_in_recovery(), inet_server_port()");
      s.primary = r[0][0].as<bool>();
      s.port = r[0][1].as<int>();
    } catch (const std::exception&) {
    }
    s.at = now_s();
    {
      std::lock_guard lock(mu_);
      samples_.push_back(s);
    }
    std::this_thread::sleep_for(100ms);
  }
}

// ---------------------------------------------------------------------------------------------------
// Load sources

void import_loop::loop() {
  while (!stop_) {
    int seed = seed_++;
    auto file = dir_ / fmt::format("import-{}.ndjson", seed);
    run(fmt::format("{} --count {} --seed {} --duplicates 0 --invalid 0 --months 1 > {}", GEN_EVENTS_EXE,
                    records_per_file, seed, file.string()));
    child c({CRM_INGEST_EXE, "import", "--dsn", dsn_, "--allow-superuser", "--retry-for", "120", "--no-progress",
             "--confirm", confirm_mode(), file.string()},
            dir_ / fmt::format("import-{}.out", seed), dir_ / fmt::format("import-{}.err", seed));
    auto st = c.wait_for(180s);
    runs_.push_back({seed, st ? *st : -999, c.out(), c.err()});
    for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(100ms);
  }
}

kafka_feed::kafka_feed(const fs::path& dir, const std::string& dsn, int seed, int rate) : seed_(seed), rate_(rate) {
  if (mock_.command(fmt::format("topic events {}", partitions)) != "ok") throw std::runtime_error("topic");
  config_ = dir / "consume.toml";
  std::ofstream(config_) << "[postgres]\ndsn = \"" << dsn << "\"\nbatch_rows = 500\nlinger_ms = 20\nconfirm = \""
                         << confirm_mode() << "\"\n\n[kafka]\nbrokers = \""
                         << mock_.bootstrap() << "\"\ngroup = \"fault\"\ntopics = \"events=canonical\"\n"
                         << "session_timeout_ms = 6000\n";
  consumer_ = std::make_unique<child>(std::vector<std::string>{CRM_INGEST_EXE, "consume", "--config", config_.string()},
                                      dir / "consume.out", dir / "consume.err");
  producer_ = std::make_unique<crm_test::test_producer>(mock_.bootstrap());
  thread_ = std::thread([this] { produce(); });
}

std::string kafka_feed::prefix() const { return fmt::format("kf-{}-", seed_); }

long long kafka_feed::stop_producing() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
    producer_->flush();
  }
  return produced_;
}

bool kafka_feed::wait_consumed(std::chrono::seconds timeout) {
  const auto end = producer_->end_offsets("events", partitions);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (mock_.committed("fault", "events", partitions) == end) return true;
    if (!consumer_->running()) return false;
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

int kafka_feed::stop_consumer() {
  consumer_->signal(SIGTERM);
  auto st = consumer_->wait_for(60s);
  return st ? *st : -999;
}

void kafka_feed::produce() {
  // Paced in 20 ms ticks; occurred_at is now, so the month's partition exists.
  long long n = 0;
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    next += 20ms;
    const long long due = n + std::max(1, rate_ / 50);
    const auto t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (; n < due; ++n) {
      producer_->produce(
          "events", std::to_string(n % 997),
          fmt::format(R"({{"kind":"communication","occurred_at":"{}","lead_id":{},"channel":"email","status":"sent",)"
                      R"("provider":"sendgrid","provider_message_id":"{}{}","email":"lead{}@example.com"}})",
                      when, 5000 + n % 997, prefix(), n, n % 997));
    }
    produced_ = n;
    std::this_thread::sleep_until(next);
  }
}

std::unique_ptr<child> start_load(const fs::path& dir, unsigned port, double seconds, unsigned seed,
                                  const std::string& tag, int rate) {
  crm_test::load_args a;
  a.rate = rate;
  a.duration_s = seconds;
  a.events_per_request = 20;
  a.connections = 8;
  a.seed = seed;
  a.timeout_s = 5;
  a.drain_timeout_s = 5;
  return crm_test::start_load(dir, port, a, tag);
}

// ---------------------------------------------------------------------------------------------------
// The write path driven directly

std::shared_ptr<crm::transform::event_batch> events_batch(std::uint32_t seed, std::uint32_t n) {
  auto b = std::make_shared<crm::transform::event_batch>();
  const auto now = crm::transform::now_us();
  for (std::uint32_t i = 0; i < n; ++i) {
    crm::transform::communication c;
    std::uint64_t hi = (std::uint64_t{seed} << 32) | i, lo = 0x5eed5eed00000000ULL | i;
    std::memcpy(c.event_id.data(), &hi, 8);
    std::memcpy(c.event_id.data() + 8, &lo, 8);
    c.event_id[6] = static_cast<std::uint8_t>((c.event_id[6] & 0x0F) | 0x40);
    c.event_id[8] = static_cast<std::uint8_t>((c.event_id[8] & 0x3F) | 0x80);
    c.occurred_at = now;
    c.received_at = now;
    c.lead_id = static_cast<std::int64_t>(i % 7 + 1);
    c.channel_ = crm::transform::channel::email;
    c.status = crm::transform::comm_status::delivered;
    c.provider = "fault";
    b->communications.push_back(c);
  }
  return b;
}

crm::sinks::postgres::pool_options write_path(const std::string& dsn, std::shared_ptr<confirm_observer> obs) {
  crm::sinks::postgres::pool_options o;
  o.writer.dsn = dsn;
  o.writer.retry = crm::sinks::postgres::retry_policy::for_ever();
  o.writer.observer = std::move(obs);
  o.writers = 2;
  o.max_in_flight = 4;
  return o;
}

}  // namespace crm_fault
