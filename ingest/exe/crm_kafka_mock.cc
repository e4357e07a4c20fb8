// crm-kafka-mock: a Kafka cluster for tests and local use, made of librdkafka's mock brokers (the real
// Kafka protocol over TCP, in this process). There is no Kafka broker package on Debian, and this is
// enough for crm-ingest, kcat and the tests, each in its own process.
//
//   crm-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
//
// Prints "bootstrap.servers=HOST:PORT,..." on the first line of standard output, then runs until SIGTERM,
// SIGINT (the end of standard input only ends the commands). Standard input takes one command per line; each is answered
// with one line, "ok" or "error: ...":
//   topic NAME PARTITIONS                create a topic (replication factor min(3, N))
//   down BROKER_ID | up BROKER_ID        take a broker (1..N) off the network / bring it back
//   errors API_KEY COUNT ERROR_CODE      the next COUNT requests of that API fail with ERROR_CODE
//                                        (API keys: Produce=0, Fetch=1, OffsetCommit=8, OffsetFetch=9,
//                                        JoinGroup=11, Heartbeat=12, SyncGroup=14)
//   committed GROUP TOPIC PARTITIONS     print the group's committed offset of each partition
//                                        ("p0=17 p1=-1 ..."; -1 = none), through a client of its own
//
// The mock keeps about the last 5 MB of each partition (librdkafka's fixed limit): older messages are
// dropped as retention would drop them, so size topics with enough partitions for what they must hold.
//
// Threads: the main thread reads commands; the mock brokers run on librdkafka's threads.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }

int usage() {
  std::cerr << "usage: crm-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n";
  return 2;
}

std::string committed_offsets(const std::string& bootstraps, const std::string& group, const std::string& topic,
                              int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) return std::string("error: ") + err;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  std::string out;
  if (auto e = rd_kafka_committed(rk, list, 10000); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out = std::string("error: ") + rd_kafka_err2str(e);
  } else {
    for (int i = 0; i < list->cnt; ++i) {
      if (i) out.push_back(' ');
      out += "p" + std::to_string(list->elems[i].partition) + "=" +
             std::to_string(list->elems[i].offset < 0 ? -1 : list->elems[i].offset);
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int brokers = 3;
  std::vector<std::pair<std::string, int>> topics;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) {
      brokers = std::atoi(argv[++i]);
      if (brokers < 1 || brokers > 64) return usage();
    } else if (a == "--topic" && i + 1 < argc) {
      std::string t = argv[++i];
      auto colon = t.rfind(':');
      int parts = colon == std::string::npos ? 0 : std::atoi(t.c_str() + colon + 1);
      if (parts < 1) return usage();
      topics.emplace_back(t.substr(0, colon), parts);
    } else {
      return usage();
    }
  }

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    std::cerr << "error: " << err << "\n";
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (!cluster) {
    std::cerr << "error: the mock cluster could not be created\n";
    rd_kafka_destroy(rk);
    return 1;
  }
  const int replication = brokers < 3 ? brokers : 3;
  for (const auto& [name, parts] : topics) {
    if (auto e = rd_kafka_mock_topic_create(cluster, name.c_str(), parts, replication)) {
      std::cerr << "error: topic " << name << ": " << rd_kafka_err2str(e) << "\n";
      return 1;
    }
  }
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);
  std::cout << "bootstrap.servers=" << bootstraps << std::endl;

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::string pending;
  bool input_open = true;
  while (!stop_requested) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    if (!input_open) {
      pause();
      continue;
    }
    if (poll(&pfd, 1, 500) <= 0) continue;
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) {
      input_open = false;  // no more commands (e.g. started with </dev/null): run until a signal
      continue;
    }
    pending.append(buf, static_cast<std::size_t>(n));
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      std::istringstream line(pending.substr(0, nl));
      pending.erase(0, nl + 1);
      std::string cmd;
      line >> cmd;
      std::string reply = "ok";
      if (cmd.empty()) continue;
      if (cmd == "topic") {
        std::string name;
        int parts = 0;
        line >> name >> parts;
        if (name.empty() || parts < 1) reply = "error: topic NAME PARTITIONS";
        else if (auto e = rd_kafka_mock_topic_create(cluster, name.c_str(), parts, replication))
          reply = std::string("error: ") + rd_kafka_err2str(e);
      } else if (cmd == "down" || cmd == "up") {
        int id = 0;
        line >> id;
        auto e = cmd == "down" ? rd_kafka_mock_broker_set_down(cluster, id) : rd_kafka_mock_broker_set_up(cluster, id);
        if (e) reply = std::string("error: ") + rd_kafka_err2str(e);
      } else if (cmd == "errors") {
        int api = -1, count = 0, code = 0;
        line >> api >> count >> code;
        if (api < 0 || count < 1) {
          reply = "error: errors API_KEY COUNT ERROR_CODE";
        } else {
          std::vector<rd_kafka_resp_err_t> errs(static_cast<std::size_t>(count), static_cast<rd_kafka_resp_err_t>(code));
          rd_kafka_mock_push_request_errors_array(cluster, static_cast<int16_t>(api), errs.size(), errs.data());
        }
      } else if (cmd == "committed") {
        std::string group, topic;
        int parts = 0;
        line >> group >> topic >> parts;
        reply = parts < 1 ? "error: committed GROUP TOPIC PARTITIONS" : committed_offsets(bootstraps, group, topic, parts);
      } else {
        reply = "error: unknown command " + cmd;
      }
      std::cout << reply << std::endl;
    }
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
