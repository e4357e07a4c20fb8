// A child process for integration tests: runs argv[0] (an absolute path) with stdout and stderr going
// to files, and is SIGKILLed if still running when the object is destroyed.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace crm_test {

class child {
 public:
  child(const std::vector<std::string>& argv, const std::filesystem::path& out, const std::filesystem::path& err)
      : out_(out), err_(err) {
    pid_ = fork();
    if (pid_ == 0) {
      int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~child() {
    if (running()) {
      signal(SIGKILL);
      wait_for(std::chrono::seconds(10));
    }
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  bool running() const { return pid_ > 0 && !status_; }
  pid_t pid() const { return pid_; }
  void signal(int sig) const {
    if (running()) ::kill(pid_, sig);
  }
  // Exit code, or -signal; nullopt when still running after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_;
  }
  std::string out() const { return read(out_); }
  std::string err() const { return read(err_); }

 private:
  static std::string read(const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path out_, err_;
};

}  // namespace crm_test
