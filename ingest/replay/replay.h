// `crm-ingest rejected replay`: re-normalizes dead-lettered records (rejected_events) with the current
// rules, after a fix, and writes the ones that now pass. A row the database still refuses (the rules let through
// what a column does not accept; the writer finds it by splitting the page) leaves its dead letter as it was
// and is reported with the database's reason, never counted as stored.
//
// Exactly once: the events get the same deterministic ids as any other path (UUIDv5 of their content),
// and the writer inserts ON CONFLICT DO NOTHING; a dead letter is marked (replayed_at) or deleted only
// after its events are committed. A run that dies between the two re-writes the same events (counted as
// duplicates) on the next run and then marks them. Records that still fail are kept as they are. A dead letter
// that keeps the idempotency key its event would have had (a webhook source's declared key, a standard source's
// webhook-id) gets the id derived from it, as a redelivery of its request does, not one derived from its content.
// Runs on the calling thread, one page of rows at a time: at most page_rows rows, and no more once the rows read
// hold page_bytes of raw (at least one row).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "transform/normalize/normalize.h"

namespace crm::ingest {

struct replay_options {
  std::string dsn;
  std::string source_like;  // SQL LIKE pattern on rejected_events.source; empty = any
  std::string reason_like;  // SQL LIKE pattern on rejected_events.reason; empty = any
  std::string since;        // received_at >= since (timestamptz text: utc_time_bound's); empty = open
  std::string until;        // received_at <  until; empty = open
  long long limit = 0;      // most dead letters examined; 0 = all
  std::size_t page_rows = 20000;
  std::size_t page_bytes = 64 << 20;  // raw bytes of a page (a longer row is a page of its own)
  bool remove = false;      // delete replayed dead letters instead of setting replayed_at
  bool dry_run = false;     // normalize and count, write nothing
  transform::normalize_options normalize;
};

struct replay_result {
  long long examined = 0;
  long long pages = 0;           // pages read
  long long replayed = 0;        // dead letters that now pass and whose events are stored (marked or deleted)
  long long inserted = 0;        // events newly stored
  long long duplicates = 0;      // events already stored (an earlier replay or the original path)
  long long refused = 0;         // events the database refused: their dead letters are kept as they were
  std::map<std::string, long long> refused_reasons;        // the database's reason -> count (first 20 distinct)
  long long still_failing = 0;   // kept
  long long not_replayable = 0;  // kept: a provider payload that cannot be re-read on its own
  std::map<std::string, long long> still_failing_reasons;  // reason -> count (first 20 distinct)
};

// Throws std::invalid_argument on bad options, sinks::postgres::write_error / libpqxx errors when the
// database refuses.
replay_result replay_rejected(const replay_options& options);

// A --since / --until value as an RFC 3339 time in UTC: an RFC 3339 time, or one without its offset, or a bare date
// (YYYY-MM-DD: its midnight), both read in UTC whatever the database session's time zone. Throws
// std::invalid_argument saying what is wrong.
std::string utc_time_bound(std::string_view text);

}  // namespace crm::ingest
