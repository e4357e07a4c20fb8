// Typed options per component, built from the one settings registry (settings.cc): the only place where
// a setting is mapped to the option it configures, so every command configures a component the same way
// and every default lives in the registry (or, for what has no setting, in the component's header).
#pragma once

#include <memory>
#include <string>

#include "ingest/config/settings.h"
#include "sinks/kafka/kafka_sink.h"
#include "ingest/kafka/kafka_source.h"
#include "sinks/postgres/startup.h"
#include "sinks/postgres/writer_pool.h"
#include "sinks/spool/durable_log.h"
#include "transform/normalize/normalize.h"

namespace crm::ingest::config {

transform::normalize_options normalize_options_from(const settings& cfg);

// [postgres] writers, batches_in_flight, batch_rows, batch_bytes, linger_ms, retry_for_s, confirm,
// confirm_min_standbys, max_unconfirmed_mb; [attribution] maintain. `automatic_in_flight`: the command's
// batches in flight when postgres.batches_in_flight is 0 (automatic).
sinks::postgres::pool_options pool_options_from(const settings& cfg, const std::string& dsn,
                                                std::shared_ptr<sinks::postgres::writer_observer> observer,
                                                std::size_t automatic_in_flight = 4);

// [postgres] confirm, confirm_min_standbys: when a batch is safe on the cluster (sinks/postgres/confirmation.md).
sinks::postgres::confirm_policy confirm_policy_from(const settings& cfg);

// [postgres] allow_superuser, months_back, months_ahead: the start-up of a command that does not wait for
// the database (serve, consume, write).
sinks::postgres::startup_options startup_options_from(const settings& cfg, const std::string& dsn, bool embedded,
                                                      const std::string& command);

// [log]; `data_dir`: the embedded database's, beside which the log lives when log.dir is empty.
sinks::spool::durable_log_options log_options_from(const settings& cfg, const std::string& data_dir);

// [kafka] brokers, properties, session_timeout_ms and group/topics (consume) or log_group/log_topic
// (write), with the write path of pool_options_from(). Throws std::invalid_argument on a mistake.
kafka_source_options kafka_source_options_from(const settings& cfg, bool log_topic, const std::string& dsn,
                                               std::shared_ptr<sinks::postgres::writer_observer> observer);

// [kafka] brokers, log_topic, properties, delivery_timeout_ms: `serve --log kafka`.
sinks::kafka::kafka_sink_options kafka_sink_options_from(const settings& cfg);

}  // namespace crm::ingest::config
