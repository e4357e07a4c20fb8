// Runs crm-kafka-mock (librdkafka's mock cluster) as a child process for integration tests, talks to
// it over its standard input/output (topics, broker down/up, injected request errors, committed
// offsets), and produces test messages with a librdkafka producer of the test's own.
#pragma once

#include <librdkafka/rdkafka.h>

#include <csignal>
#include <memory>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace crm_test {

class kafka_mock {
 public:
  explicit kafka_mock(int brokers = 3) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      close(in[0]), close(in[1]), close(out[0]), close(out[1]);
      const std::string n = std::to_string(brokers);
      execl(CRM_KAFKA_MOCK_EXE, CRM_KAFKA_MOCK_EXE, "--brokers", n.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    std::string first = read_line();
    const std::string prefix = "bootstrap.servers=";
    if (first.rfind(prefix, 0) != 0) throw std::runtime_error("crm-kafka-mock said: " + first);
    bootstrap_ = first.substr(prefix.size());
  }

  ~kafka_mock() {
    terminate();
    if (to_) fclose(to_);
    if (from_) fclose(from_);
  }

  // Stops the cluster now (a test that must end its program early: the child would keep ctest's pipes open).
  void terminate() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

  const std::string& bootstrap() const { return bootstrap_; }

  // Sends one command line; returns the reply line.
  std::string command(const std::string& line) {
    std::fputs((line + "\n").c_str(), to_);
    std::fflush(to_);
    return read_line();
  }

  // "p0=12 p1=-1 ..." -> offsets
  std::vector<long long> committed(const std::string& group, const std::string& topic, int partitions) {
    std::string reply = command("committed " + group + " " + topic + " " + std::to_string(partitions));
    std::vector<long long> out;
    std::size_t pos = 0;
    while ((pos = reply.find('=', pos)) != std::string::npos) out.push_back(std::stoll(reply.substr(++pos)));
    if (static_cast<int>(out.size()) != partitions) throw std::runtime_error("committed: " + reply);
    return out;
  }

 private:
  std::string read_line() {
    std::string s;
    for (int c = std::fgetc(from_); c != EOF && c != '\n'; c = std::fgetc(from_)) s.push_back(static_cast<char>(c));
    return s;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string bootstrap_;
};

// A producer that waits for every delivery report; records where each message landed.
class test_producer {
 public:
  struct placed {
    int partition = -1;
    long long offset = -1;
  };

  explicit test_producer(const std::string& bootstrap) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      auto* p = static_cast<placed*>(m->_private);
      if (!m->err) *p = placed{m->partition, m->offset};
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk_) throw std::runtime_error(err);
  }
  ~test_producer() { rd_kafka_destroy(rk_); }

  // Queues a message (key may be empty); its placement is known after flush().
  std::size_t produce(const std::string& topic, const std::string& key, const std::string& value) {
    places_.emplace_back(new placed);
    for (;;) {
      auto e = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()),
                                 RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(places_.back().get()),
                                 RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk_, 10);
        continue;
      }
      if (e) throw std::runtime_error(rd_kafka_err2str(e));
      return places_.size() - 1;
    }
  }
  void flush() {
    if (rd_kafka_flush(rk_, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error("flush timed out");
    for (const auto& p : places_) {
      if (p->offset < 0) throw std::runtime_error("a test message was not delivered");
    }
  }
  const placed& where(std::size_t i) const { return *places_[i]; }
  // The end offset of each partition (one past the last message).
  std::vector<long long> end_offsets(const std::string& topic, int partitions) const {
    std::vector<long long> out(static_cast<std::size_t>(partitions), 0);
    for (int p = 0; p < partitions; ++p) {
      int64_t lo = 0, hi = 0;
      if (rd_kafka_query_watermark_offsets(rk_, topic.c_str(), p, &lo, &hi, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        throw std::runtime_error("watermarks");
      }
      out[static_cast<std::size_t>(p)] = hi;
    }
    return out;
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::vector<std::unique_ptr<placed>> places_;
};

}  // namespace crm_test
