// `crm-ingest rejected replay`: re-normalizes dead-lettered records (rejected_events) with the current
// rules, after a fix, and writes the ones that now pass.
//
// Exactly once: the events get the same deterministic ids as any other path (UUIDv5 of their content),
// and the writer inserts ON CONFLICT DO NOTHING; a dead letter is marked (replayed_at) or deleted only
// after its events are committed. A run that dies between the two re-writes the same events (counted as
// duplicates) on the next run and then marks them. Records that still fail are kept as they are.
// Runs on the calling thread, one page of rows at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "transform/normalize.h"

namespace crm::ingest {

struct replay_options {
  std::string dsn;
  std::string source_like;  // SQL LIKE pattern on rejected_events.source; empty = any
  std::string reason_like;  // SQL LIKE pattern on rejected_events.reason; empty = any
  std::string since;        // received_at >= since (timestamptz text); empty = open
  std::string until;        // received_at <  until; empty = open
  long long limit = 0;      // most dead letters examined; 0 = all
  std::size_t page_rows = 20000;
  bool remove = false;      // delete replayed dead letters instead of setting replayed_at
  bool dry_run = false;     // normalize and count, write nothing
  transform::normalize_options normalize;
};

struct replay_result {
  long long examined = 0;
  long long replayed = 0;        // dead letters that now pass (marked or deleted)
  long long inserted = 0;        // events newly stored
  long long duplicates = 0;      // events already stored (an earlier replay or the original path)
  long long still_failing = 0;   // kept
  long long not_replayable = 0;  // kept: a provider payload that cannot be re-read on its own
  std::map<std::string, long long> still_failing_reasons;  // reason -> count (first 20 distinct)
};

// Throws std::invalid_argument on bad options, sinks::postgres::write_error / libpqxx errors when the
// database refuses.
replay_result replay_rejected(const replay_options& options);

}  // namespace crm::ingest
