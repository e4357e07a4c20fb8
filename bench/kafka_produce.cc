// kafka_produce: writes the lines of a file (or standard input) to a Kafka topic, one message per line,
// with an idempotent producer (acks=all), and waits for every delivery report. For bench/kafka_bench.sh
// and for trying `crm-ingest consume` against crm-kafka-mock.
//
//   kafka_produce --brokers HOST:PORT,... --topic NAME [--key-field lead_id] [FILE]
//
// With --key-field, the message key is the value of that top-level JSON field when the line has it
// (a lead's events then share a partition); otherwise messages carry no key.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

namespace {

std::string field_text(const std::string& line, const std::string& field) {
  const std::string needle = "\"" + field + "\":";
  auto p = line.find(needle);
  if (p == std::string::npos) return {};
  p += needle.size();
  auto end = line.find_first_of(",}", p);
  std::string v = line.substr(p, end == std::string::npos ? std::string::npos : end - p);
  while (!v.empty() && (v.front() == ' ' || v.front() == '"')) v.erase(0, 1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '"')) v.pop_back();
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write lines to a Kafka topic, one message each"};
  std::string brokers, topic, key_field, file = "-";
  app.add_option("--brokers", brokers, "Bootstrap servers")->required();
  app.add_option("--topic", topic, "Topic")->required();
  app.add_option("--key-field", key_field, "JSON field whose value keys the message");
  app.add_option("file", file, "Input ('-' = standard input)");
  CLI11_PARSE(app, argc, argv);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const char* settings[][2] = {{"bootstrap.servers", brokers.c_str()}, {"enable.idempotence", "true"},
                               {"acks", "all"}, {"linger.ms", "20"}, {"batch.num.messages", "10000"}};
  for (auto& kv : settings) {
    if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::cerr << "error: " << err << "\n";
      return 2;
    }
  }
  static std::uint64_t failed = 0;
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err) ++failed;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    std::cerr << "error: " << err << "\n";
    return 1;
  }
  std::ifstream in_file;
  if (file != "-") {
    in_file.open(file);
    if (!in_file) {
      std::cerr << "error: cannot read " << file << "\n";
      return 1;
    }
  }
  std::istream& in = file == "-" ? std::cin : in_file;
  const auto started = std::chrono::steady_clock::now();
  std::uint64_t n = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::string key = key_field.empty() ? std::string() : field_text(line, key_field);
    for (;;) {
      auto e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                 RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(line.data(), line.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (e) {
        std::cerr << "error: " << rd_kafka_err2str(e) << "\n";
        return 1;
      }
      break;
    }
    if (++n % 1000 == 0) rd_kafka_poll(rk, 0);
  }
  if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) ++failed;
  rd_kafka_destroy(rk);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("produced %llu messages in %.2f s (%.0f/s), %llu failed\n", static_cast<unsigned long long>(n), s,
              s > 0 ? static_cast<double>(n) / s : 0.0, static_cast<unsigned long long>(failed));
  return failed ? 1 : 0;
}
