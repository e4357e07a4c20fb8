#include "ingest/runtime/embedded_postgres.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <sys/wait.h>
#include <unistd.h>

namespace crm::ingest {

namespace fs = std::filesystem;

std::string default_embedded_data_dir() {
  if (const char* d = std::getenv("CRM_INGEST_DATA_DIR"); d && *d) return d;
  if (geteuid() == 0) return "/var/lib/crm-ingest/postgres";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/crm-ingest/postgres";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/share/crm-ingest/postgres";
  return "/tmp/crm-ingest-" + std::to_string(geteuid()) + "/postgres";
}

std::string local_postgres_script() {
  if (const char* s = std::getenv("CRM_INGEST_LOCAL_PG_SCRIPT"); s && *s) return s;
#ifdef CRM_INGEST_SOURCE_DIR
  {
    fs::path p = fs::path(CRM_INGEST_SOURCE_DIR) / "deploy" / "local-postgres.sh";
    if (fs::exists(p)) return p.string();
  }
#endif
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto p = exe.parent_path() / ".." / "share" / "crm-ingest" / "local-postgres.sh";
    if (fs::exists(p)) return fs::canonical(p).string();
  }
  throw embedded_postgres_error(
      "cannot find deploy/local-postgres.sh for the embedded database; set CRM_INGEST_LOCAL_PG_SCRIPT or pass --dsn");
}

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

}  // namespace

std::string local_postgres(const std::string& action, const std::string& data_dir) {
  std::string cmd = "bash " + shell_quote(local_postgres_script()) + " " + shell_quote(action) + " " +
                    shell_quote(data_dir) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw embedded_postgres_error("cannot run " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (status != 0 && !(action == "status" && WIFEXITED(status) && WEXITSTATUS(status) == 3)) {
    throw embedded_postgres_error("the embedded PostgreSQL could not " + action + " in " + data_dir + ": " + out);
  }
  if (action == "status" && WIFEXITED(status) && WEXITSTATUS(status) == 3) return {};
  // The DSN is the last line; anything before it is the script's commentary.
  auto nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

}  // namespace crm::ingest
