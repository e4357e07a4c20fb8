// The writer's monthly partitions (declared in writer.h): the months a batch needs, made before its transaction.
#include "sinks/postgres/writer.h"

#include <algorithm>
#include <cstdio>

#include "sinks/postgres/copy_encoder.h"

namespace crm::sinks::postgres {

namespace {

std::string month_start(std::int32_t month) {
  char buf[32];
  int y = month / 12, m = month % 12 + 1;
  std::snprintf(buf, sizeof buf, "%04d-%02d-01", y, m);
  return buf;
}

}  // namespace

// Creating a partition takes an ACCESS EXCLUSIVE lock on its parent, which waits for every transaction that reads
// or writes the table (the other writers' batches, the analytics stage) and holds up every one that comes after it
// until the CREATE commits. A history read in time order meets a new month every few batches, and each one was such a
// stall of the whole pipeline. So the months a batch needs that this session has not ensured are ensured in one
// transaction (up to `months_per_transaction` at a time, so that one transaction's locks stay few), and when one of
// them has no partition yet (a history being read, not a month this session just had not met), `premake_months`
// more in the direction the months run (after the newest, or before the oldest when it is older than any this
// session ensured): one stall per several months instead of one per month. Communications' partitions first, then
// touchpoints': the order every transaction that touches both takes them (schemas/0022_parent_lock_order.sql), or
// a batch holding one and asking for the other deadlocks with this transaction holding the other's exclusive lock.
// A month that stays in the DEFAULT partition or lies before the retention cutoff is left alone by the function
// (false) and counts as ensured, as before.
void writer::ensure_month_partitions(const view& v) {
  constexpr std::size_t months_per_transaction = 12;
  missing_months_.clear();
  std::int32_t last = -1;
  auto need = [&](transform::timestamp_us t) {
    std::int32_t m = month_index(t);
    if (m == last || known_months_.count(m)) return;
    last = m;
    missing_months_.push_back(m);
  };
  for (const auto& c : v.communications) need(c.occurred_at);
  for (const auto& t : v.touchpoints) need(t.occurred_at);
  if (missing_months_.empty()) return;
  std::sort(missing_months_.begin(), missing_months_.end());
  missing_months_.erase(std::unique(missing_months_.begin(), missing_months_.end()), missing_months_.end());
  if (options_.premake_months > 0) {
    std::string months = "{";
    for (std::int32_t m : missing_months_) months.append(months.size() > 1 ? "," : "").append(month_start(m));
    months.push_back('}');
    // Read from the catalog tables, not by name (to_regclass): a name looked up and not found stays cached as
    // missing in this session until it next reads the catalog's invalidations (a new transaction, a new table
    // lock), so the function's own check after its advisory lock would miss a partition another writer made while
    // it waited there, and its CREATE meet it (42P07; since 0022 the function returns false then too).
    pqxx::nontransaction look(*conn_);
    const bool creating =
        // The partition's name as crm_ensure_month_partition makes it: parent_YYYY_MM.
        look.exec_params("SELECT EXISTS (SELECT 1 FROM unnest($1::date[]) AS m(first_day),"
                         " unnest(ARRAY['communications', 'customer_touchpoints']) AS p(parent)"
                         " WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                         "                   WHERE i.inhparent = p.parent::regclass"
                         "                     AND c.relname = p.parent || '_' || to_char(m.first_day, 'YYYY_MM')))",
                         months)[0][0]
            .as<bool>();
    if (creating) {
      const std::int32_t oldest = missing_months_.front(), newest = missing_months_.back();
      const bool backwards = !known_months_.empty() &&
                             oldest < *std::min_element(known_months_.begin(), known_months_.end());
      for (int k = 1; k <= options_.premake_months; ++k) {
        std::int32_t m = backwards ? oldest - k : newest + k;
        if (!known_months_.count(m)) missing_months_.push_back(m);
      }
      std::sort(missing_months_.begin(), missing_months_.end());
    }
  }
  for (std::size_t from = 0; from < missing_months_.size(); from += months_per_transaction) {
    const std::size_t to = std::min(missing_months_.size(), from + months_per_transaction);
    pqxx::work tx(*conn_);
    for (const char* parent : {"communications", "customer_touchpoints"})
      for (std::size_t k = from; k < to; ++k)
        tx.exec_params("SELECT crm_ensure_month_partition($1::regclass, $2::date)", parent,
                       month_start(missing_months_[k]));
    tx.commit();
    known_months_.insert(missing_months_.begin() + static_cast<std::ptrdiff_t>(from),
                         missing_months_.begin() + static_cast<std::ptrdiff_t>(to));
  }
}

}  // namespace crm::sinks::postgres
