// `recforge serve EXPORT_DIR`: a thin wrapper around serve::Server, plus the signals. SIGTERM and
// SIGINT stop accepting, let the requests in flight finish and exit 0; SIGHUP reloads the export.
#include "cli/serve_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "serve/server.h"

namespace recforge::cli {
namespace {

struct ServeArgs {
  std::string export_dir, listen = "127.0.0.1:8080", admin_token_file;
  std::string key_file, key_env;  // --pseudonym-key-file / --pseudonym-key-env
  int threads = 128;
  double batch_wait_ms = 2.0;
  int64_t max_batch = 256, timeout_ms = 5000, max_body_bytes = 1 << 20, max_k = 1000,
          max_users = 1000, max_items = 10000;
};

ServeArgs g_args;
int g_pipe[2] = {-1, -1};

// Async-signal-safe: one byte into the self-pipe, whichever thread receives the signal.
extern "C" void on_serve_signal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_pipe[1], &c, 1);
  errno = saved;
}

// Replaces main's interrupt cleanup (serve registers no paths) for TERM, INT and HUP.
void install_serve_signals() {
  if (::pipe2(g_pipe, O_CLOEXEC) != 0) fail("serve: cannot create the signal pipe ({})", std::strerror(errno));
  ::fcntl(g_pipe[1], F_SETFL, O_NONBLOCK);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
    struct sigaction sa {};
    sa.sa_handler = on_serve_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(sig, &sa, nullptr);
  }
  std::signal(SIGPIPE, SIG_IGN);
}

// "HOST:PORT" or "[IPv6]:PORT".
void parse_listen(const std::string& s, std::string& host, int& port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    fail("--listen {}: expected HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)", s);
  host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string p = s.substr(colon + 1);
  size_t used = 0;
  long v = -1;
  try {
    v = std::stol(p, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != p.size() || v < 0 || v > 65535)
    fail("--listen {}: the port must be an integer from 0 to 65535, got \"{}\"", s, p);
  port = static_cast<int>(v);
}

int cmd_serve() {
  const ServeArgs& a = g_args;
  serve::ServerOptions o;
  o.export_dir = a.export_dir;
  parse_listen(a.listen, o.host, o.port);
  o.threads = a.threads;
  o.batch_wait = std::chrono::microseconds(static_cast<int64_t>(a.batch_wait_ms * 1000.0));
  o.max_batch = static_cast<size_t>(a.max_batch);
  o.timeout_ms = static_cast<int>(a.timeout_ms);
  o.max_body_bytes = static_cast<size_t>(a.max_body_bytes);
  o.max_k = static_cast<int>(a.max_k);
  o.max_users = static_cast<size_t>(a.max_users);
  o.max_items = static_cast<size_t>(a.max_items);
  if (!a.admin_token_file.empty()) o.admin_token = serve::read_admin_token(a.admin_token_file);
  if (!a.key_file.empty() && !a.key_env.empty())
    fail("--pseudonym-key-file and --pseudonym-key-env: give one of them, not both");
  if (!a.key_file.empty()) {
    o.pseudonym_key = SecretKey::from_file(a.key_file, "--pseudonym-key-file");
    o.key_where = "--pseudonym-key-file " + a.key_file;
  } else if (!a.key_env.empty()) {
    o.pseudonym_key = SecretKey::from_env(a.key_env, "--pseudonym-key-env");
    o.key_where = "--pseudonym-key-env " + a.key_env;
  }
  install_serve_signals();

  serve::Server server(o);
  std::printf("recforge serve: listening on http://%s:%d\n",
              o.host.find(':') != std::string::npos ? ("[" + o.host + "]").c_str() : o.host.c_str(),
              server.port());
  std::fflush(stdout);
  if (!serve::is_loopback(o.host) && o.admin_token.empty())
    log().warn("serve: listening on {} beyond loopback without --admin-token: anyone who reaches "
               "it can reload the export", o.host);

  // The first load's outcome arrives through the same pipe as the signals ('L').
  std::thread waiter([&] {
    server.wait_loaded();
    const char c = 'L';
    [[maybe_unused]] const ssize_t n = ::write(g_pipe[1], &c, 1);
  });
  bool loaded = false;
  for (;;) {
    char c = 0;
    const ssize_t n = ::read(g_pipe[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) break;
    if (c == 'L') {
      if (const std::string load_error = server.wait_loaded(); !load_error.empty()) {
        waiter.join();
        server.stop();
        fail("{}", load_error);
      }
      loaded = true;
      continue;
    }
    if (c == SIGHUP) {
      if (!loaded) {
        log().warn("serve: SIGHUP before the first load finished; ignored");
        continue;
      }
      server.reload();  // logs and counts its outcome
      continue;
    }
    log().info("serve: signal {} ({}): no new connections; finishing the requests in flight", int(c),
               strsignal(c));
    break;
  }
  server.stop();
  waiter.join();
  log().info("serve: stopped");
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app, std::map<std::string, std::function<int()>>& actions) {
  ServeArgs& a = g_args;
  auto* s = app.add_subcommand("serve", "Answer recommendation queries over HTTP from an export");
  s->add_option("export", a.export_dir, "Export directory (written by recforge export)")->required();
  s->add_option("--listen", a.listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  s->add_option("--threads", a.threads, "Worker threads = connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  s->add_option("--batch-wait-ms", a.batch_wait_ms,
                "Longest wait to gather batched requests (GETs, POSTs' users and new users, "
                "similar-items) into one library call (ms); none while no other request is in "
                "the server")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60000.0));
  s->add_option("--max-batch", a.max_batch, "Most users (or similar-items items) answered by one batched library call; one POST's users or new users are never split")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  s->add_option("--timeout-ms", a.timeout_ms, "Each request's timeout (ms)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  s->add_option("--admin-token", a.admin_token_file,
                "File holding the bearer token that /admin/* requires");
  s->add_option("--max-body-bytes", a.max_body_bytes, "Largest request body (bytes)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  s->add_option("--max-k", a.max_k, "Largest k of a request")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  s->add_option("--max-users", a.max_users, "Most users and new users in one POST to /v1/recommend, and most items in one POST to /v1/similar-items")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  s->add_option("--max-items", a.max_items, "Most items of one new (fold-in) user")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  s->add_option("--pseudonym-key-file", a.key_file,
                "File holding the key of a pseudonymised export, so that requests may name users "
                "by raw id (pseudonyms are accepted without it)");
  s->add_option("--pseudonym-key-env", a.key_env,
                "Environment variable holding that key (instead of --pseudonym-key-file)");
  actions["serve"] = cmd_serve;
}

}  // namespace recforge::cli
