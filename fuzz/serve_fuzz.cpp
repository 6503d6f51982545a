// Fuzz target: `recforge serve` (src/serve/server.cpp), its request parsing, routing, query and
// body checks and the library calls behind them, through a real loopback socket, so that the
// HTTP library's own parsing of the request line, headers and body is fuzzed with it. At
// start-up two small synthetic iALS runs (300 users, 200 items, 8 factors; ids "0", "1", ...) are
// trained and exported into the scratch directory, one plainly and one pseudonymised with users
// "5" and "7" opted out (its server holds the key, so raw ids work besides the pseudonyms), and a
// Server is started over each on 127.0.0.1, port 0, with an admin token and small limits; both
// are stopped at exit.
//
// An input is one request. Its first byte picks the form: low nibble 0-8, a well-formed request
// to that route (kRoutes: method and path), whose query string is the input up to its first
// "\n" and whose body is the rest (with Content-Length when not empty), and which carries the
// admin token when bit 0x10 is set; low nibble 9-15, the rest of the input is sent verbatim (any
// bytes, pipelined requests included). Bit 0x20 sends it to the pseudonymised export's server.
// The client reads until the server closes; it first shuts
// its sending side when the request may be cut short (raw bytes, a query with a space or a
// control byte), and the library then drops the answers (see exchange()), so only crashes,
// sanitizer reports and hangs are found there.
//
// Findings (besides crashes and sanitizer reports): a status of 500 or above other than 503 (an
// internal error), a response that is not HTTP or whose body is not what its status promises (an
// error: a JSON object with an "error" sentence; a JSON answer: a JSON object), a well-formed
// request that gets no response, and a server that does not answer within 8 s.
// RECFORGE_FUZZ_SEED_DIR=DIR writes one valid request per route to DIR (the seed corpus);
// RECFORGE_FUZZ_VERBOSE=1 prints each response's status and body.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/secret.h"
#include "fuzz_common.h"
#include "pipeline/export.h"
#include "pipeline/train.h"
#include "serve/server.h"

namespace {

using namespace recforge;

constexpr const char* kToken = "fuzz-admin-token";

struct Route {
  const char* method;
  const char* path;
};
constexpr Route kRoutes[] = {
    {"GET", "/healthz"},          {"GET", "/readyz"},
    {"GET", "/metrics"},          {"GET", "/v1/info"},
    {"GET", "/v1/recommend"},     {"POST", "/v1/recommend"},
    {"GET", "/v1/similar-items"}, {"POST", "/v1/similar-items"},
    {"POST", "/admin/reload"},
};
constexpr int kRouteCount = static_cast<int>(sizeof kRoutes / sizeof kRoutes[0]);

[[noreturn]] void finding(const std::string& what, const std::string& request,
                          const std::string& response) {
  std::fprintf(stderr,
               "serve_fuzz: %s\n--- request (%zu bytes)\n%s\n--- response (%zu bytes)\n%s\n",
               what.c_str(), request.size(), request.c_str(), response.size(), response.c_str());
  std::abort();
}

/// The server, started once; stopped by its destructor at exit (before the scratch directory,
/// registered earlier, is removed).
struct Served {
  explicit Served(std::unique_ptr<serve::Server> s) : server(std::move(s)) {}
  Served(const Served&) = delete;
  Served& operator=(const Served&) = delete;
  std::unique_ptr<serve::Server> server;
  ~Served() {
    if (server) server->stop();
  }
};

/// Starts a server over a freshly trained and exported small run `name`; `privacy` makes the
/// export pseudonymised (its key given to the server, so that raw ids work too) with users "5"
/// and "7" opted out.
std::unique_ptr<serve::Server> start(const std::string& name, bool privacy) {
  const std::string dir = fuzz::scratch().string();
  std::string yaml = "run:\n  name: " + name + "\n  dir: " + dir +
                     "\n  progress: off\n  seed: 3\n"
                     "data:\n  format: synthetic\n  cache: false\n"
                     "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                     "split:\n  method: leave_last\n"
                     "model:\n  type: ials\n  factors: 8\n  iterations: 2\n"
                     "train:\n  threads: 1\n";
  serve::ServerOptions o;
  if (privacy) {
    const std::string key = dir + "/pseudonym.key", opt_out = dir + "/opt-out.txt";
    fuzz::write_file(key, "serve-fuzz-pseudonym-key-0123456789");
    fuzz::write_file(opt_out, "5\n7\n");
    yaml += "privacy:\n  opt_out: " + opt_out + "\nexport:\n  pseudonymize: true\n" +
            "  pseudonym_key_file: " + key + "\n";
    o.pseudonym_key = SecretKey::from_file(key, "the fuzz target's key");
  }
  const std::string run = pipeline::train(config::Config::parse(yaml, name + ".yaml"));
  o.export_dir = pipeline::export_run(run, dir + "/" + name + "-export", {});
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 4;
  o.batch_wait = std::chrono::microseconds(0);  // the fuzzer sends one request at a time
  o.timeout_ms = 4000;
  o.admin_token = kToken;
  o.max_body_bytes = 2048;  // libFuzzer's inputs reach it (-max_len 4096 by default)
  o.max_k = 50;
  o.max_users = 20;
  o.max_items = 50;
  o.keep_alive_seconds = 1;
  auto out = std::make_unique<serve::Server>(std::move(o));
  const std::string failed = out->wait_loaded();
  if (!failed.empty()) {
    std::fprintf(stderr, "serve_fuzz: the export %s did not load: %s\n", name.c_str(),
                 failed.c_str());
    std::abort();
  }
  return out;
}

/// The plain server (`privacy` false) or the pseudonymised one, each started once.
const serve::Server& server(bool privacy) {
  static const Served plain(start("serve-fuzz", false));
  static const Served pseudonymised(start("serve-fuzz-privacy", true));
  return privacy ? *pseudonymised.server : *plain.server;
}

/// Sends `request` to the server and returns all it answered until it closed the connection (a
/// reset ends the answer too: the server may close with part of a garbled request unread). With
/// `half_close` the client then shuts its sending side, so that a request cut short ends at once
/// instead of at the server's read timeout; the HTTP library then runs the handlers but drops
/// their answers (it writes nothing to a peer that has closed its side).
std::string exchange(const std::string& request, bool half_close, bool privacy) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    std::perror("serve_fuzz: socket");
    std::abort();
  }
  timeval tv{8, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server(privacy).port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's -timeout alarm interrupts system calls (EINTR). An interrupted connect goes on
  // in the background: wait until the socket is writable and read its outcome.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == EINTR) {
      pollfd p{fd, POLLOUT, 0};
      while (::poll(&p, 1, 8000) < 0 && errno == EINTR) {
      }
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err != 0) {
      std::fprintf(stderr, "serve_fuzz: connect: %s\n", std::strerror(err));
      std::abort();
    }
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed early (it answered a bad request): read its answer
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string response;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ::close(fd);
      finding("the server did not answer or close within 8 s", request, response);
    }
    break;  // 0: closed; ECONNRESET: reset
  }
  ::close(fd);
  return response;
}

/// Checks every response in `text` (pipelined requests get several); returns how many there were.
size_t check_responses(const std::string& text, const std::string& request) {
  size_t pos = 0, count = 0;
  while (pos < text.size()) {
    const size_t head_end = text.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) {
      // A reset may cut an answer short; what arrived must still start as one.
      if (text.compare(pos, 9, "HTTP/1.1 ", 0, std::min<size_t>(9, text.size() - pos)) != 0)
        finding("the server's bytes are not an HTTP response", request, text);
      break;
    }
    const std::string head = text.substr(pos, head_end - pos);
    if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12)
      finding("the server's bytes are not an HTTP response", request, text);
    const int status = std::atoi(head.substr(9, 3).c_str());
    if (status < 100 || status > 599) finding("a response with an invalid status", request, text);
    if (status >= 500 && status != 503)
      finding("an internal error (status " + std::to_string(status) + ")", request, text);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t cl = lower.find("\r\ncontent-length: ");
    const size_t length =
        cl == std::string::npos ? 0 : std::strtoull(lower.c_str() + cl + 18, nullptr, 10);
    const bool json_body = lower.find("\r\ncontent-type: application/json") != std::string::npos;
    const size_t body_at = head_end + 4;
    if (body_at + length > text.size()) {  // cut short by a reset
      ++count;
      break;
    }
    const std::string body = text.substr(body_at, length);
    static const bool verbose = std::getenv("RECFORGE_FUZZ_VERBOSE") != nullptr;
    if (verbose)  // what the seed inputs reach
      std::fprintf(stderr, "serve_fuzz: %d %.200s\n", status, body.c_str());
    if (status != 200 || json_body) {
      const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        finding("a response body that is not a JSON object", request, text);
      if (status != 200) {
        const auto e = j.find("error");
        if (e == j.end() || !e->is_string() || e->get<std::string>().empty())
          finding("an error response without its \"error\" sentence", request, text);
      }
    }
    ++count;
    pos = body_at + length;
  }
  return count;
}

std::string structured(int route, bool token, const std::string& query, const std::string& body) {
  const Route& r = kRoutes[route];
  std::string req = std::string(r.method) + " " + r.path + (query.empty() ? "" : "?" + query) +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (token) req += std::string("Authorization: Bearer ") + kToken + "\r\n";
  if (!body.empty())
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return req + "\r\n" + body;
}

/// The seed corpus: one valid request per route, in the input format above.
void write_seeds(const std::string& out) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"healthz", std::string(1, '\x00') + "\n"},
      {"readyz", std::string(1, '\x01') + "\n"},
      {"metrics", std::string(1, '\x02') + "\n"},
      {"info", std::string(1, '\x03') + "\n"},
      {"recommend_get", std::string(1, '\x04') + "user=5&k=5&exclude=1,2&include_seen=false\n"},
      {"recommend_get_items", std::string(1, '\x04') + "user=7&k=3&items=1,2,3,999\n"},
      {"recommend_post",
       std::string(1, '\x05') + "\n" +
           R"({"users":["1","2","nobody"],"k":4,"exclude":["3"],"include_seen":true})"},
      {"recommend_post_new",
       std::string(1, '\x05') + "\n" +
           R"({"new_users":[{"items":["1","4","9"],"weights":[1,2.5,0]},{"items":["x"]}],"k":3})"},
      {"similar_get", std::string(1, '\x06') + "item=3&k=4&metric=cosine\n"},
      {"similar_post",
       std::string(1, '\x07') + "\n" + R"({"items":["3","4","zz"],"k":2,"metric":"dot"})"},
      {"reload", std::string(1, '\x18') + "\n"},
      {"raw_pipelined",
       std::string(1, '\x09') +
           "GET /v1/recommend?user=1 HTTP/1.1\r\nHost: a\r\n\r\n"
           "POST /v1/recommend HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n{\"users\":[1]}"
           "GET /v1/info HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
           "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
  };
  // Longer inputs: libFuzzer grows its length limit from the longest seed, so these let it reach
  // batches at --max-users and bodies over --max-body-bytes early.
  std::string users = "\"0\"", items = "\"1\"", weights = "1";
  for (int k = 1; k < 18; ++k) users += fmt::format(",\"{}\"", k * 13 % 300);
  for (int k = 1; k < 30; ++k) {
    items += fmt::format(",\"{}\"", k * 7 % 200);
    weights += fmt::format(",{}", k % 4);
  }
  const std::string new_user = "{\"items\":[" + items + "],\"weights\":[" + weights + "]}";
  std::vector<std::pair<std::string, std::string>> longer = {
      {"recommend_post_batch", std::string(1, '\x05') + "\n{\"users\":[" + users +
                                   "],\"new_users\":[" + new_user + "," + new_user +
                                   "],\"k\":50,\"exclude\":[" + items + "]}"},
      {"body_over_limit", std::string(1, '\x07') + "\n{\"items\":[" + items + "," + items + "," +
                              items + "," + items + "," + items + "," + items + "," + items + "," +
                              items + "," + items + "],\"k\":3," + "\"metric\":\"" +
                              std::string(1200, 'x') + "\"}"}};
  for (const auto& [name, bytes] : longer) fuzz::write_file(out + "/" + name, bytes);
  // The pseudonymised export: opted-out and other users by raw id, and one by its pseudonym (the
  // first line of the export's user_ids.txt).
  std::string pseudonym;
  {
    std::ifstream ids(fuzz::scratch() / "serve-fuzz-privacy-export" / "current" / "user_ids.txt");
    std::getline(ids, pseudonym);
  }
  const std::vector<std::pair<std::string, std::string>> privacy = {
      {"privacy_get_opted_out", std::string(1, '\x24') + "user=5&k=4\n"},
      {"privacy_get_pseudonym", std::string(1, '\x24') + "user=" + pseudonym + "&k=4\n"},
      {"privacy_post",
       std::string(1, '\x25') + "\n" + R"({"users":["5","6","7",")" + pseudonym + R"("],"k":3})"},
      {"privacy_info", std::string(1, '\x23') + "\n"}};
  for (const auto& [name, bytes] : privacy) fuzz::write_file(out + "/" + name, bytes);
  for (const auto& [name, bytes] : seeds) fuzz::write_file(out + "/" + name, bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool seeded = [] {
    if (const char* dir = std::getenv("RECFORGE_FUZZ_SEED_DIR")) {
      server(true);  // its export holds the pseudonym of a seed
      write_seeds(dir);
    }
    return true;
  }();
  (void)seeded;
  if (size == 0) return 0;
  const int form = data[0] & 0x0f;
  const bool privacy = (data[0] & 0x20) != 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (form >= kRouteCount) {
    check_responses(exchange(rest, true, privacy), rest);
    return 0;
  }
  const size_t nl = rest.find('\n');
  const std::string query = rest.substr(0, nl);
  const std::string body = nl == std::string::npos ? "" : rest.substr(nl + 1);
  const std::string request = structured(form, (data[0] & 0x10) != 0, query, body);
  // A query of visible ASCII keeps the request well-formed, and such a request must be answered
  // (other bytes may end the request line early, and the library may then close unanswered).
  const bool well_formed = std::all_of(query.begin(), query.end(),
                                       [](char c) { return c > 0x20 && c < 0x7f && c != '#'; });
  if (check_responses(exchange(request, !well_formed, privacy), request) == 0 && well_formed)
    finding("a well-formed request got no response", request, "");
  return 0;
}
