#pragma once
/// @file server.h
/// `recforge serve`: an HTTP/1.1 server (cpp-httplib) over an export, answering through the
/// recommend library. The CLI verb (src/cli/serve_command.cpp) is a thin wrapper around Server;
/// tests run one in-process on 127.0.0.1 port 0. docs/serving.md describes the endpoints.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "core/secret.h"
#include "serve/metrics.h"

namespace recforge::serve {

/// The command's options and limits (defaults as documented in docs/serving.md).
struct ServerOptions {
  std::string export_dir;                     ///< EXPORT_DIR
  std::string host = "127.0.0.1";             ///< --listen HOST
  int port = 8080;                            ///< --listen PORT; 0 = an ephemeral port
  int threads = 128;                          ///< --threads: connections served at once
  std::chrono::microseconds batch_wait{2000};  ///< --batch-wait-ms
  size_t max_batch = 256;                     ///< --max-batch
  int timeout_ms = 5000;                      ///< --timeout-ms: each request's deadline
  std::string admin_token;                    ///< the token of --admin-token FILE; "" = none
  size_t max_body_bytes = 1 << 20;            ///< --max-body-bytes
  int max_k = 1000;                           ///< --max-k
  size_t max_users = 1000;                    ///< --max-users: users + new users per POST
  size_t max_items = 10000;                   ///< --max-items: items per fold-in user
  int keep_alive_seconds = 5;                 ///< idle time before a keep-alive connection closes
  /// --pseudonym-key-file / --pseudonym-key-env: the key of a pseudonymised export, so that
  /// requests may name users by raw id; checked against the manifest at each load.
  std::optional<SecretKey> pseudonym_key;
  std::string key_where = "pseudonym key";    ///< the key's source, for the refusal
};

/// What a reload did.
struct ReloadOutcome {
  bool ok = false;
  std::string version;   ///< the version now in service
  std::string previous;  ///< the version before
  std::string message;   ///< the refusal's sentence when !ok
  double load_seconds = 0;
};

/// The token of an --admin-token FILE: its contents without trailing whitespace. Throws
/// recforge::Error when the file cannot be read or holds no token.
std::string read_admin_token(const std::string& path);

/// True when `host` is a loopback address (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& host);

class Server {
 public:
  /// Binds host:port (throws recforge::Error naming the address when it cannot) and starts
  /// answering: /healthz at once, everything else 503 until the export is loaded. The export is
  /// loaded in the background; wait_loaded() tells how that went.
  explicit Server(ServerOptions o);
  /// Stops (as stop()).
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The bound address (the port is the real one when 0 was asked for).
  const std::string& host() const;
  int port() const;

  /// Blocks until the first load has finished. Returns "" when the export is loaded, else the
  /// sentence of the failure (the server then keeps answering 503).
  std::string wait_loaded();

  /// Loads EXPORT_DIR again and swaps it in; one reload at a time. A load that throws is
  /// refused: the old export keeps serving, the sentence is logged and counted.
  ReloadOutcome reload();

  /// Stops accepting connections, lets the requests in flight finish, and returns when every
  /// worker has ended. Idempotent.
  void stop();

  const Metrics& metrics() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace recforge::serve
