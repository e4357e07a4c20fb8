// Runs a shell command for integration tests and captures its standard output and exit status.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace crm_test {

struct command_result {
  int status = -1;  // exit status, -1 when it did not exit normally
  std::string out;
};

inline command_result run_command(const std::string& cmd) {
  command_result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Single-quotes `s` for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  return out + "'";
}

// Runs `cmd`; its standard output. Its exit status goes to `status` when asked for; otherwise a status
// other than 0 throws, with the output.
inline std::string command_output(const std::string& cmd, int* status = nullptr) {
  auto r = run_command(cmd);
  if (status) *status = r.status;
  else if (r.status != 0) {
    throw std::runtime_error("command failed (" + std::to_string(r.status) + "): " + cmd + "\n" + r.out);
  }
  return r.out;
}

// `crm-ingest ARGS` (CRM_INGEST_EXE; ARGS are shell words), stderr merged into the output. The test
// PostgreSQL's role is a superuser, which every command that writes refuses unless allowed: `allow_superuser`
// allows it (CRM_INGEST_POSTGRES_ALLOW_SUPERUSER).
inline command_result run_ingest(const std::string& args, bool allow_superuser = true) {
  return run_command((allow_superuser ? "CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true " : "") + std::string(CRM_INGEST_EXE) +
                     " " + args + " 2>&1");
}

}  // namespace crm_test
