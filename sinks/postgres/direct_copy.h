// The direct COPY of a part's rows into their table (communications, customer_touchpoints), for the writer.
//
// PostgreSQL batches heap and index inserts only for COPY; `INSERT … SELECT` from a staging table inserts row by
// row, at about twice the cost. So a part's rows go straight into the table by binary COPY when the session may
// COPY into it (may_copy_into). The rows whose keys the writer committed lately (recent_keys) are probed first and
// those stored already left out. The COPY runs inside a savepoint: a unique violation (a row stored by another
// session: a replay, a redelivery) rolls it back, a probe of all rows finds the stored ones, and the rest is
// COPYed; the writer then probes every row first until four parts in a row come clean (no stored row found that
// the hint had not named: repeats of rows the writer committed itself do not keep it probing). A second failure
// says "stage the part": `INSERT … ON CONFLICT DO NOTHING` from the staging table, exactly as when the direct path
// is not available. The rows stored are then exactly the rows copied, which the writer's upkeep (communication metrics,
// the analytics backlog) counts on the client.
//
// Thread ownership: everything here belongs to the writer's thread and its connection.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "sinks/postgres/copy_encoder.h"
#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

class writer_observer;

// A row's key in its table's unique index: (event_id or touchpoint_id, occurred_at).
struct row_key {
  transform::uuid id;
  transform::timestamp_us at = 0;
};

// Fingerprints of the keys of the rows a writer's committed parts held (copied, staged or stored already), 8 MiB:
// 65,536 buckets of 16, each bucket first in, first out, so a key is forgotten only once 16 newer keys fell into its
// bucket — the last ~300,000 keys are known almost surely, ~99.5 % of those 500,000 keys back. (A table of one slot
// per fingerprint forgot ~2 % of the keys sent 10,000 keys before, each a COPY that met a stored row.) Only a hint
// of which rows to probe before a COPY: a key it forgot, or one it remembers that is not stored (a refused row, a
// batch lost in a failover), costs time, never a row. Keys are added after the COMMIT, so that an attempt that did
// not commit (a data error's split, a lost connection) names nothing. Thread ownership: the writer's.
class recent_keys {
 public:
  static constexpr std::size_t ways = 16;
  recent_keys() : slots_(std::size_t{1} << 20, 0) {}
  bool seen(const row_key& k) const noexcept {
    const auto f = fingerprint(k);
    const std::uint64_t* b = bucket(f);
    for (std::size_t i = 0; i < ways; ++i) {
      if (b[i] == f) return true;
    }
    return false;
  }
  void add(const row_key& k) noexcept {
    const auto f = fingerprint(k);
    std::uint64_t* b = bucket(f);
    for (std::size_t i = 0; i < ways; ++i) {
      if (b[i] == f) return;
    }
    std::memmove(b + 1, b, (ways - 1) * sizeof(std::uint64_t));  // the oldest leaves
    b[0] = f;
  }

 private:
  static std::uint64_t fingerprint(const row_key& k) noexcept;
  // The bucket from the fingerprint's top bits (its lowest bit is always 1).
  const std::uint64_t* bucket(std::uint64_t f) const noexcept { return slots_.data() + (f >> 48) * ways; }
  std::uint64_t* bucket(std::uint64_t f) noexcept { return slots_.data() + (f >> 48) * ways; }
  std::vector<std::uint64_t> slots_;
};

// Whether `tx` may COPY into `table` now: the table exists, Row Level Security does not apply to the role
// (PostgreSQL refuses COPY then), and neither it nor any of its partitions has a trigger of the database's (the
// writer's upkeep would count the rows sent, not the rows stored) or an INSERT rule (COPY ignores rules; the
// staging statement's ON CONFLICT refuses them, as it did before the direct path). Asked in every batch transaction, after the
// table's ROW EXCLUSIVE lock, which a CREATE TRIGGER on the table waits for; a trigger created on a partition in
// the moment between the question and the COPY is not seen.
bool may_copy_into(pqxx::dbtransaction& tx, const char* table);

// The positions in `keys` of the rows stored already in `table` (whose unique key is `id_column`, occurred_at),
// in ascending order: one index probe per key, parameters sent in binary.
std::vector<std::size_t> stored_already(pqxx::dbtransaction& tx, const char* table, const char* id_column,
                                        std::span<const row_key> keys);

// Runs `COPY target FROM STDIN (FORMAT binary)` inside `tx` and streams `rows` (copy_encoder's output) in large
// messages. Returns the number of rows the server stored; throws pqxx::sql_error (with its SQLSTATE) or
// pqxx::broken_connection.
std::uint64_t copy_into(pqxx::dbtransaction& tx, const std::string& target, const std::string& rows);

// Elements of a PostgreSQL array literal ("{" … "}", the caller writes the braces): a text element, NULL when
// empty, else double-quoted with \ and " escaped; a number, NULL when it is 0 and `zero_is_null`.
void append_array_text(std::string& out, std::string_view s);
void append_array_number(std::string& out, std::int64_t v, bool zero_is_null);

// The direct COPY's target for touchpoints: the table and its column list (communications:
// communication_insert.h).
std::string touchpoints_copy_target();

// One table's direct COPY for one writer: the part's rows in the table's layout and whether to probe first.
// Thread ownership: the writer's.
class direct_copy {
 public:
  direct_copy(const char* table, const char* id_column, std::string target);

  // The part's rows, encoded for the table by the writer (position k = keys[k]), before its attempts.
  copy_encoder& rows() noexcept { return rows_; }
  const char* table() const noexcept { return table_; }

  // Encodes the row at position k for the table into the encoder (after a probe left rows out).
  using encode_fn = std::function<void(std::uint32_t, copy_encoder&)>;
  // COPYs the part's rows that are not stored yet inside a savepoint of `tx`. True: `copied` rows are stored,
  // exactly the positions copied() lists. False: nothing was stored, stage the part. The writer adds `keys` to
  // `recent` once the transaction committed.
  bool copy(pqxx::dbtransaction& tx, std::span<const row_key> keys, const recent_keys& recent, writer_observer* obs,
            const encode_fn& encode, std::uint64_t& copied);
  const std::vector<std::uint32_t>& copied() const noexcept { return idx_; }

 private:
  std::size_t leave_out_stored(pqxx::dbtransaction& tx, std::span<const row_key> keys, const encode_fn& encode);

  const char* table_;
  const char* id_column_;
  std::string target_;
  copy_encoder rows_, probed_;         // probed_: without the rows a probe found stored
  copy_encoder* sending_ = nullptr;     // rows_ or probed_
  std::vector<std::uint32_t> idx_;      // the positions of the COPY being tried
  std::vector<std::uint32_t> ask_;      // the positions probed
  std::vector<row_key> ask_keys_;
  std::vector<char> hinted_;            // per position of the part: the hint named its key
  bool probe_first_ = false;  // a COPY met a stored row: probe every row before the COPY
  int clean_probes_ = 0;      // parts in a row whose probe found no stored row beyond those the hint named
};

}  // namespace crm::sinks::postgres
