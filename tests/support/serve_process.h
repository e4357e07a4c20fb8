// Runs `crm-ingest serve` as a child process for integration tests: writes its TOML config, starts
// it, learns its port from the "listening on port N" line, and stops it with a signal of the test's
// choosing (SIGTERM for a graceful stop, SIGKILL for a crash).
#pragma once

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace crm_test {

class serve_process {
 public:
  // `extra_toml` is appended to the generated config (sections other than [http] listen / [postgres] dsn /
  // [log] dir, or overrides of other keys in those sections after them).
  // `allow_superuser`: the test cluster's role is a superuser, which serve refuses unless told.
  serve_process(const std::string& dsn, const std::filesystem::path& dir, const std::string& extra_toml = "",
                const std::string& http_extra = "", bool allow_superuser = true)
      : dir_(dir) {
    std::filesystem::create_directories(dir_);
    config_ = (dir_ / "serve.toml").string();
    std::ofstream cfg(config_);
    cfg << "[http]\nlisten = \"127.0.0.1:0\"\n" << http_extra << "\n[postgres]\ndsn = \"" << dsn
        << "\"\nlinger_ms = 20\n" << (allow_superuser ? "allow_superuser = true\n" : "")
        << "\n[log]\ndir = \"" << (dir_ / "log").string() << "\"\n"
        << extra_toml;
  }

  ~serve_process() { stop(SIGKILL); }

  // The largest file the process may write (RLIMIT_FSIZE), from the next start(); 0 = no limit.
  void limit_file_size(rlim_t bytes) { file_size_limit_ = bytes; }
  // Lifts that limit from the running process (its hard limit is left as the test's): room again.
  bool lift_file_size_limit() {
    rlimit limit{};
    getrlimit(RLIMIT_FSIZE, &limit);
    return prlimit(pid_, RLIMIT_FSIZE, &limit, nullptr) == 0;
  }

  // Starts the process and waits for its port.
  void start() {
    launch();
    const std::string out = (dir_ / "stdout.txt").string(), err = (dir_ / "stderr.txt").string();
    // Wait for the port line.
    for (int i = 0; i < 300; ++i) {
      std::ifstream in(out);
      std::string word;
      while (in >> word) {
        if (word == "port" && (in >> port_)) return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("crm-ingest serve exited at start; see " + err);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("crm-ingest serve did not report its port within 15 s");
  }

  // Starts the process without waiting for anything (a test of its start-up).
  void launch() {
    std::string out = (dir_ / "stdout.txt").string(), err = (dir_ / "stderr.txt").string();
    std::remove(out.c_str());
    pid_ = fork();
    if (pid_ == 0) {
      std::freopen(out.c_str(), "w", stdout);
      std::freopen(err.c_str(), "a", stderr);
      if (file_size_limit_ > 0) {  // writes past it fail with EFBIG (SIGXFSZ ignored), as on a full disk
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit limit{};  // the hard limit stays, so that lift_file_size_limit() can raise the soft one again
        getrlimit(RLIMIT_FSIZE, &limit);
        limit.rlim_cur = file_size_limit_;
        setrlimit(RLIMIT_FSIZE, &limit);
      }
      execl(CRM_INGEST_EXE, CRM_INGEST_EXE, "serve", "--config", config_.c_str(), nullptr);
      _exit(127);
    }
  }

  // Sends `sig` and waits for the process; returns its exit status (-1 if it was not running).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    status_ = status;
    return status;
  }

  // Sends `sig` and waits up to `limit` for the process to exit; returns the seconds waited (running() says
  // whether it exited, status() how).
  double signal_and_wait(int sig, std::chrono::seconds limit) {
    const auto sent = std::chrono::steady_clock::now();
    kill(pid_, sig);
    while (running() && std::chrono::steady_clock::now() - sent < limit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  }

  // True while the process has not exited (reaps it when it has).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = status;
      return false;
    }
    return true;
  }

  // The wait status of the process once stop() or running() reaped it (-1 before).
  int status() const noexcept { return status_; }
  unsigned short port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  const std::string& config_path() const noexcept { return config_; }
  std::string stderr_text() const {
    std::ifstream in(dir_ / "stderr.txt");
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

 private:
  std::filesystem::path dir_;
  std::string config_;
  int status_ = -1;
  rlim_t file_size_limit_ = 0;
  pid_t pid_ = -1;
  unsigned short port_ = 0;
};

}  // namespace crm_test
