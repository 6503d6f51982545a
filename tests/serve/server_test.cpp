// `recforge serve` through a real HTTP client (httplib::Client): answers equal the recommend
// library's on the same export (single, batch, fold-in, similar items), every bad request gets its
// status and sentence, concurrent keep-alive clients get the sequential answers, reloads under
// load fail no request and a corrupt export is refused, the admin token is required when set, and
// the binary drains in-flight requests on SIGTERM and reloads on SIGHUP.
#include "serve/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "config/config.h"
#include "core/error.h"
#include "core/utf8.h"
#include "pipeline/export.h"
#include "pipeline/train.h"
#include "recommend/recommend.h"
#include "test_util.h"

namespace recforge::serve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using recommend::Options;
using recommend::Recommender;
using recommend::Result;

/// Trains a small synthetic iALS run `name` with `seed` into `dir`.
std::string train_run(const test::TempDir& dir, const std::string& name, int seed) {
  const std::string yaml = "run:\n  name: " + name + "\n  dir: " + dir.str() +
                           "\n  progress: off\n  seed: " + std::to_string(seed) +
                           "\ndata:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                           "split:\n  method: leave_last\n"
                           "model:\n  type: ials\n  factors: 8\n  iterations: 3\n";
  return pipeline::train(config::Config::parse(yaml, name + ".yaml"));
}

/// An in-process server, stopped when it goes out of scope (also when a test fails).
struct Running {
  explicit Running(ServerOptions o) {
    o.host = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<Server>(std::move(o));
  }
  ~Running() { server->stop(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(60, 0);
    return c;
  }
  std::unique_ptr<Server> server;
};

/// Status and parsed body of a response (status -1 when the request failed).
struct Reply {
  int status = -1;
  json body;
  std::string text;
};

Reply reply(const httplib::Result& r) {
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.text = r->body;
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

Reply get(httplib::Client& c, const std::string& path) { return reply(c.Get(path.c_str())); }
Reply post(httplib::Client& c, const std::string& path, const std::string& body) {
  return reply(c.Post(path.c_str(), body, "application/json"));
}

/// Expects `items` (the JSON list) to equal `list` of the library: ids, and scores as floats.
void expect_list(const json& items, const recommend::List& list, const std::string& what) {
  ASSERT_TRUE(items.is_array()) << what;
  ASSERT_EQ(items.size(), list.items.size()) << what;
  for (size_t j = 0; j < list.items.size(); ++j) {
    EXPECT_EQ(items[j]["item"].get<std::string>(), list.items[j].id) << what << " rank " << j;
    // The float went out as the double of equal value in its shortest form, which reads back.
    EXPECT_EQ(static_cast<float>(items[j]["score"].get<double>()), list.items[j].score) << what << " rank " << j;
  }
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    run_a_ = new std::string(train_run(*dir_, "a", 7));
    run_b_ = new std::string(train_run(*dir_, "b", 11));
    pipeline::export_run(*run_a_, dir_->file("exp-a"), {});
    pipeline::export_run(*run_b_, dir_->file("exp-b"), {});
    lib_a_ = new Recommender(Recommender::open(dir_->file("exp-a")));
    lib_b_ = new Recommender(Recommender::open(dir_->file("exp-b")));
  }
  static void TearDownTestSuite() {
    delete lib_a_;
    delete lib_b_;
    delete run_a_;
    delete run_b_;
    delete dir_;
  }
  static ServerOptions options(const std::string& export_dir) {
    ServerOptions o;
    o.export_dir = export_dir;
    o.threads = 32;
    return o;
  }
  /// A fresh export directory holding run a (v-1).
  static std::string fresh_export(const std::string& name) {
    const std::string out = dir_->file(name);
    pipeline::export_run(*run_a_, out, {});
    return out;
  }
  static test::TempDir* dir_;
  static std::string *run_a_, *run_b_;
  static Recommender *lib_a_, *lib_b_;
};
test::TempDir* ServeTest::dir_ = nullptr;
std::string* ServeTest::run_a_ = nullptr;
std::string* ServeTest::run_b_ = nullptr;
Recommender* ServeTest::lib_a_ = nullptr;
Recommender* ServeTest::lib_b_ = nullptr;

TEST_F(ServeTest, AnswersEqualTheLibrarys) {
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  auto c = r.client();
  const Recommender& lib = *lib_a_;
  const std::string u0 = lib.user_ids().external(0), u1 = lib.user_ids().external(5), u2 = lib.user_ids().external(77);
  const std::string i0 = lib.item_ids().external(3), i1 = lib.item_ids().external(10), i2 = lib.item_ids().external(42);

  // Single GET, plain and with each option.
  {
    Options o;
    o.k = 7;
    const Reply g = get(c, "/v1/recommend?user=" + u1 + "&k=7");
    ASSERT_EQ(g.status, 200) << g.text;
    EXPECT_EQ(g.body["user"], u1);
    EXPECT_EQ(g.body["export"], "v-1");
    expect_list(g.body["items"], lib.recommend({u1}, o).lists.at(0), "GET");
    const Reply d = get(c, "/v1/recommend?user=" + u1);  // k defaults to 10
    ASSERT_EQ(d.status, 200) << d.text;
    Options o10;
    expect_list(d.body["items"], lib.recommend({u1}, o10).lists.at(0), "GET default k");
  }
  {
    Options o;
    o.k = 5;
    o.exclude = {i0, i1};
    o.include_seen = true;
    const Reply g = get(c, "/v1/recommend?user=" + u2 + "&k=5&exclude=" + i0 + "," + i1 + "&include_seen=true");
    ASSERT_EQ(g.status, 200) << g.text;
    expect_list(g.body["items"], lib.recommend({u2}, o).lists.at(0), "GET exclude include_seen");
    o.exclude.clear();
    o.include_seen = false;
    o.candidates = std::vector<std::string>{i0, i1, i2, "no-such-item"};
    const Reply s = get(c, "/v1/recommend?user=" + u2 + "&k=5&items=" + i0 + "," + i1 + "," + i2 + ",no-such-item");
    ASSERT_EQ(s.status, 200) << s.text;
    expect_list(s.body["items"], lib.recommend({u2}, o).lists.at(0), "GET candidates");
    EXPECT_EQ(s.body["unknown"], json::parse(R"([{"id": "no-such-item", "field": "items"}])"));
  }
  // POST batch: known users in order, the unknown one listed.
  {
    Options o;
    o.k = 4;
    o.exclude = {i2};
    const Reply p = post(c, "/v1/recommend",
                         json{{"users", {u0, "nobody", u1, u2}}, {"k", 4}, {"exclude", {i2}}}.dump());
    ASSERT_EQ(p.status, 200) << p.text;
    const Result lr = lib.recommend({u0, u1, u2}, o);
    ASSERT_EQ(p.body["results"].size(), 3u);
    for (size_t l = 0; l < 3; ++l) {
      EXPECT_EQ(p.body["results"][l]["user"], lr.lists[l].query);
      expect_list(p.body["results"][l]["items"], lr.lists[l], "POST user " + lr.lists[l].query);
    }
    EXPECT_EQ(p.body["unknown"], json::parse(R"([{"id": "nobody", "field": "users"}])"));
    EXPECT_EQ(p.body["export"], "v-1");
  }
  // POST fold-in with weights, after a known user.
  {
    Options o;
    o.k = 6;
    const std::vector<std::string> items{i0, i1, i2};
    const std::vector<float> weights{1.f, 3.f, 0.5f};
    const Reply p = post(c, "/v1/recommend",
                         json{{"users", {u0}}, {"new_users", {{{"items", items}, {"weights", {1, 3, 0.5}}}}}, {"k", 6}}.dump());
    ASSERT_EQ(p.status, 200) << p.text;
    ASSERT_EQ(p.body["results"].size(), 2u);
    expect_list(p.body["results"][0]["items"], lib.recommend({u0}, o).lists.at(0), "POST known");
    EXPECT_TRUE(p.body["results"][1]["user"].is_null());
    EXPECT_EQ(p.body["results"][1]["new_user"], 0) << "a new user's result names its index";
    expect_list(p.body["results"][1]["items"], lib.recommend_new_user(items, weights, o).lists.at(0), "fold-in");
    // Without weights: 1 each, a different answer.
    const Reply q = post(c, "/v1/recommend", json{{"new_users", {{{"items", items}}}}, {"k", 6}}.dump());
    ASSERT_EQ(q.status, 200) << q.text;
    expect_list(q.body["results"][0]["items"], lib.recommend_new_user(items, {}, o).lists.at(0), "fold-in unweighted");
  }
  // Similar items, by the export's metric and by cosine.
  {
    const Reply s = get(c, "/v1/similar-items?item=" + i1 + "&k=8");
    ASSERT_EQ(s.status, 200) << s.text;
    EXPECT_EQ(s.body["item"], i1);
    expect_list(s.body["items"], lib.similar_items(i1, 8).lists.at(0), "similar");
    recommend::SimilarOptions so;
    so.metric = recommend::Metric::kCosine;
    const Reply cs = get(c, "/v1/similar-items?item=" + i1 + "&k=8&metric=cosine");
    ASSERT_EQ(cs.status, 200) << cs.text;
    expect_list(cs.body["items"], lib.similar_items(i1, 8, so).lists.at(0), "similar cosine");
    // POST: several items in one request, an unknown one reported, each list the item's own.
    const Reply ps = post(c, "/v1/similar-items",
                          json{{"items", {i1, "no-such-item", i2}}, {"k", 8}, {"metric", "cosine"}}.dump());
    ASSERT_EQ(ps.status, 200) << ps.text;
    ASSERT_EQ(ps.body["results"].size(), 2u) << ps.text;
    EXPECT_EQ(ps.body["results"][0]["item"], i1);
    EXPECT_EQ(ps.body["results"][1]["item"], i2);
    expect_list(ps.body["results"][0]["items"], lib.similar_items(i1, 8, so).lists.at(0), "POST similar 0");
    expect_list(ps.body["results"][1]["items"], lib.similar_items(i2, 8, so).lists.at(0), "POST similar 1");
    EXPECT_EQ(ps.body["unknown"], (json{{{"id", "no-such-item"}, {"field", "items"}}}));
    EXPECT_EQ(ps.body["export"], "v-1");
  }
  // Info: the manifest summary.
  {
    const Reply i = get(c, "/v1/info");
    ASSERT_EQ(i.status, 200) << i.text;
    EXPECT_EQ(i.body["export"], "v-1");
    EXPECT_EQ(i.body["users"], lib.user_ids().size());
    EXPECT_EQ(i.body["items"], lib.item_ids().size());
    EXPECT_EQ(i.body["dim"], 8);
    EXPECT_EQ(i.body["model"], "ials");
    EXPECT_EQ(i.body["index"], "flat");
    EXPECT_EQ(i.body["path"], dir_->file("exp-a"));
    EXPECT_EQ(get(c, "/healthz").status, 200);
    EXPECT_EQ(get(c, "/readyz").status, 200);
  }
  // HEAD (a load balancer's probe): GET's status and headers, no body; not a method of POST-only
  // paths.
  {
    for (const char* path : {"/healthz", "/readyz", "/v1/info"}) {
      SCOPED_TRACE(path);
      const httplib::Result h = c.Head(path);
      ASSERT_TRUE(h);
      EXPECT_EQ(h->status, 200);
      EXPECT_EQ(h->body, "");
      EXPECT_EQ(h->get_header_value("Content-Type"), "application/json");
    }
    const httplib::Result h = c.Head("/admin/reload");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 405);
    EXPECT_EQ(h->get_header_value("Allow"), "POST");
  }
}

TEST_F(ServeTest, EveryBadRequestGetsItsStatusAndSentence) {
  ServerOptions o = options(dir_->file("exp-a"));
  o.max_users = 3;
  o.max_items = 2;
  o.max_body_bytes = 4096;
  Running r(o);
  ASSERT_EQ(r.server->wait_loaded(), "");
  const std::string u = lib_a_->user_ids().external(0), i = lib_a_->item_ids().external(0), i2 = lib_a_->item_ids().external(1);
  struct Case {
    std::string method, path, body;
    int status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/recommend", "{\"users\": [", 400, "not valid JSON"},
      {"POST", "/v1/recommend", "[1, 2]", 400, "must be a JSON object"},
      {"GET", "/v1/recommend?user=" + u + "&kk=3", "", 400, "unknown query parameter 'kk'"},
      {"GET", "/v1/recommend?user=" + u + "&k=3&k=4", "", 400, "more than once"},
      {"GET", "/v1/info?verbose=1", "", 400, "unknown query parameter 'verbose'"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"topk\": 3}", 400, "unknown body field 'topk'"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"" + i + "\"], \"w\": [1]}]}", 400, "unknown field 'w' in new_users[0]"},
      {"GET", "/v1/recommend?user=" + u + "&k=0", "", 400, "'k' must be an integer from 1 to 1000"},
      {"GET", "/v1/recommend?user=" + u + "&k=1001", "", 400, "'k' must be an integer from 1 to 1000"},
      {"GET", "/v1/recommend?user=" + u + "&k=5x", "", 400, "got \"5x\""},
      {"GET", "/v1/similar-items?item=" + i + "&k=-1", "", 400, "'k' must be an integer from 1 to 1000"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": 0}", 400, "'k' must be an integer from 1 to 1000"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": \"5\"}", 400, "'k' must be an integer"},
      {"GET", "/v1/recommend?user=" + u + "&include_seen=yes", "", 400, "'include_seen' must be true or false, got \"yes\""},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"include_seen\": 1}", 400, "'include_seen' must be true or false"},
      {"POST", "/v1/recommend", "{\"users\": [5]}", 400, "'users' must be an array of strings"},
      {"POST", "/v1/recommend", "{\"users\": \"" + u + "\"}", 400, "'users' must be an array of strings"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"" + i + "\"], \"weights\": [-1]}]}", 400, "finite numbers >= 0"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"" + i + "\"], \"weights\": [1, 2]}]}", 400, "an array of 1 numbers"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": []}, {\"items\": [\"" + i + "\"]}]}", 400, "new_users[0].items is empty"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"" + i + "\", \"" + i2 + "\"], \"weights\": [1e38, 1e38]}]}", 400, "expected smaller weights"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": 3, \"k\": 5}", 400, "body field 'k' is given twice"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"" + i + "\"], \"items\": [\"" + i2 + "\"]}]}", 400, "body field 'items' is given twice"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": " + std::string(20, '[') + "1" + std::string(20, ']') + "}", 400, "nested deeper than 16 levels"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": [" + std::string(500, '1') + "]}", 400, "not valid JSON ([json.exception.out_of_range.406] number overflow"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": [" + [] { std::string a; for (int j = 0; j < 200; ++j) a += "1, "; return a; }() + "1]}", 400, "got [1,1,1,1,1"},
      {"GET", "/v1/similar-items?item=" + i + "&metric=l2", "", 400, "'metric' must be dot or cosine"},
      {"GET", "/v1/recommend?k=3", "", 400, "'user' is required"},
      {"GET", "/v1/recommend?user=&k=3", "", 400, "'user' is empty"},
      {"GET", "/v1/similar-items?item=%20", "", 400, "'item' is empty"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + u + "\"], \"items\": []}", 400, "'items' (the candidate items) is empty"},
      {"POST", "/v1/recommend", "{}", 400, "names no user"},
      {"POST", "/v1/recommend", "{\"users\": [\"a\", \"b\", \"c\", \"d\"]}", 400, "4 users and new users, over the limit of 3 (--max-users)"},
      {"POST", "/v1/recommend", "{\"new_users\": [{\"items\": [\"a\", \"b\", \"c\"]}]}", 400, "3 items, over the limit of 2 (--max-items)"},
      {"POST", "/v1/recommend", "{\"users\": [\"" + std::string(5000, 'x') + "\"]}", 400, "over the limit of 4096 bytes (--max-body-bytes)"},
      {"GET", "/v1/recommend?user=" + std::string(9000, 'x'), "", 400, "URI is over the limit of 8192 bytes"},
      {"GET", "/v1/recommend?user=no-such-user", "", 404, "unknown user 'no-such-user'"},
      {"GET", "/v1/similar-items?item=no-such-item", "", 404, "unknown item 'no-such-item'"},
      {"GET", "/v1/recommend?user=" + u + "&items=x,y", "", 404, "none of the 2 candidate items"},
      {"POST", "/v1/recommend", "{\"users\": [\"x\"], \"new_users\": [{\"items\": [\"y\"]}]}", 404, "none of the 2 users and new users is known"},
      {"GET", "/v2/recommend", "", 404, "no such path /v2/recommend"},
      {"DELETE", "/v1/recommend", "", 405, "/v1/recommend does not take DELETE; it takes GET, HEAD, POST"},
      {"GET", "/admin/reload", "", 405, "it takes POST"},
      {"DELETE", "/v1/similar-items", "", 405, "/v1/similar-items does not take DELETE; it takes GET, HEAD, POST"},
      {"POST", "/v1/similar-items?item=" + i, "{\"items\": [\"" + i + "\"]}", 400, "unknown query parameter 'item'"},
      {"POST", "/v1/similar-items", "{\"k\": 3}", 400, "body field 'items' is required"},
      {"POST", "/v1/similar-items", "{\"items\": []}", 400, "body field 'items' is empty"},
      {"POST", "/v1/similar-items", "{\"items\": [\"" + i + "\"], \"n\": 3}", 400, "unknown body field 'n'; the fields are items, k, metric"},
      {"POST", "/v1/similar-items", "{\"items\": [\"" + i + "\"], \"metric\": \"l2\"}", 400, "body field 'metric' must be dot or cosine, got \"l2\""},
      {"POST", "/v1/similar-items", "{\"items\": [\"" + i + "\"], \"k\": 0}", 400, "'k' must be an integer from 1 to 1000"},
      {"POST", "/v1/similar-items", "{\"items\": [\"a\", \"b\", \"c\", \"d\"]}", 400, "4 items, over the limit of 3 (--max-users)"},
      {"POST", "/v1/similar-items", "{\"items\": [\"x\", \"y\"]}", 404, "none of the 2 items is known"},
  };
  auto c = r.client();
  for (const Case& k : cases) {
    SCOPED_TRACE(k.method + " " + k.path.substr(0, 100) + " " + k.body.substr(0, 100));
    httplib::Result res = k.method == "GET"    ? c.Get(k.path.c_str())
                          : k.method == "POST" ? c.Post(k.path.c_str(), k.body, "application/json")
                                               : c.Delete(k.path.c_str());
    const Reply rep = reply(res);
    EXPECT_EQ(rep.status, k.status) << rep.text;
    ASSERT_TRUE(rep.body.is_object() && rep.body.contains("error")) << rep.text;
    EXPECT_NE(rep.body["error"].get<std::string>().find(k.message), std::string::npos) << rep.text;
    // A sentence quotes at most 60 characters of a bad value (the 500-digit k above).
    EXPECT_LT(rep.body["error"].get<std::string>().size(), 400u) << rep.text;
  }
  // A header line over the library's 8192 bytes.
  {
    const Reply rep = reply(c.Get("/healthz", {{"X-Big", std::string(9000, 'h')}}));
    EXPECT_EQ(rep.status, 400) << rep.text;
    EXPECT_NE(rep.text.find("header line over 8192 bytes"), std::string::npos) << rep.text;
  }
  // A chunked body over the limit (the library bounds only a declared Content-Length).
  {
    const std::string big(10000, ' ');
    const Reply rep = reply(c.Post("/v1/recommend", [&](size_t offset, httplib::DataSink& sink) {
      if (offset < big.size()) sink.write(big.data() + offset, std::min<size_t>(1000, big.size() - offset));
      else sink.done();
      return true;
    }, "application/json"));
    EXPECT_EQ(rep.status, 400) << rep.text;
    EXPECT_NE(rep.text.find("over the limit of 4096 bytes"), std::string::npos) << rep.text;
  }
  // The server still answers normally afterwards.
  auto c2 = r.client();
  EXPECT_EQ(get(c2, "/v1/recommend?user=" + u).status, 200);
}

TEST_F(ServeTest, ADeeplyNestedBodyIsRefusedAndTheServerStaysUp) {
  // 200,000 nested arrays in 400 KB, under the default 1 MiB body limit. The parser took them,
  // and the sentence that quoted the value (dump(), one call per level) overflowed the worker
  // thread's stack: the whole server died. Now the parse stops at 16 levels.
  ServerOptions o = options(dir_->file("exp-a"));
  Running r(o);
  ASSERT_EQ(r.server->wait_loaded(), "");
  const std::string u = lib_a_->user_ids().external(0);
  const int depth = 200000;
  for (const std::string field : {"k", "exclude"}) {
    const std::string body = "{\"users\": [\"" + u + "\"], \"" + field + "\": " +
                             std::string(depth, '[') + std::string(depth, ']') + "}";
    auto c = r.client();
    const Reply rep = reply(c.Post("/v1/recommend", body, "application/json"));
    EXPECT_EQ(rep.status, 400) << rep.text.substr(0, 300);
    EXPECT_NE(rep.text.find("nested deeper than 16 levels"), std::string::npos) << rep.text.substr(0, 300);
  }
  auto c = r.client();
  EXPECT_EQ(get(c, "/v1/recommend?user=" + u).status, 200);
}

/// A plain TCP socket connected to 127.0.0.1:port, or -1.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Sends `request` on a new connection and returns the first response (its headers, and its
/// body by Content-Length: the library may keep the connection open after an error).
std::string exchange(int port, const std::string& request) {
  const int fd = connect_to(port);
  if (fd < 0) return "(no connection)";
  std::string response;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
      response.append(buf, static_cast<size_t>(n));
      const size_t end = response.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      std::smatch m;
      const std::string head = response.substr(0, end);
      const size_t length = std::regex_search(head, m, std::regex("Content-Length: ([0-9]+)", std::regex::icase))
                                ? std::stoul(m[1].str())
                                : 0;
      if (response.size() >= end + 4 + length) break;
    }
  }
  ::close(fd);
  return response;
}

/// Waits until /metrics says `n` requests are in flight (the scrape included).
bool in_flight(httplib::Client& c, int n) {
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(std::chrono::milliseconds(1)))
    if (get(c, "/metrics").text.find("recforge_requests_in_flight " + std::to_string(n) + "\n") !=
        std::string::npos)
      return true;
  return false;
}

/// A connected socket, closed when it goes out of scope (a failed assertion included), so that
/// the server never waits on a half-sent request of a test that ended.
struct Socket {
  int fd;
  explicit Socket(int port) : fd(connect_to(port)) {}
  ~Socket() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

TEST_F(ServeTest, NotReadyAnswers503UntilAnExportLoadsAndTimeoutsAre503) {
  // An export that cannot be loaded: the first load fails, /healthz still answers, the rest 503.
  {
    Running r(options(dir_->file("no-such-export")));
    EXPECT_EQ(r.server->wait_loaded(),
              dir_->file("no-such-export") +
                  ": no such export directory; recforge serve answers from an export: write one "
                  "with `recforge export RUN_DIR --out EXPORT_DIR`");
    auto c = r.client();
    EXPECT_EQ(get(c, "/healthz").status, 200);
    for (const std::string path : {"/readyz", "/v1/info", "/v1/recommend?user=1"}) {
      const Reply rep = get(c, path);
      EXPECT_EQ(rep.status, 503) << path;
      EXPECT_NE(rep.text.find("not loaded yet"), std::string::npos) << rep.text;
    }
  }
  // A request whose batch waits longer than its timeout. It waits for company only while
  // another request is in the server: a POST whose body is still coming, on a plain socket, a
  // byte every 20 ms (the server's read timeout is --timeout-ms too: a POST silent for 100 ms
  // would end, and the waiting request would go).
  {
    ServerOptions o = options(dir_->file("exp-a"));
    o.batch_wait = std::chrono::milliseconds(3000);
    o.timeout_ms = 100;
    Running r(o);
    ASSERT_EQ(r.server->wait_loaded(), "");
    const int fd = connect_to(r.server->port());
    ASSERT_GE(fd, 0);
    const std::string partial = "POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
    std::atomic<bool> trickling{true};
    std::thread trickle([&] {
      for (int n = 0; trickling && n < 900; ++n) {
        if (::send(fd, " ", 1, MSG_NOSIGNAL) != 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    struct EndPost {  // stops the trickle, then closes the socket (also when a test fails)
      std::atomic<bool>& flag;
      std::thread& t;
      int fd;
      void operator()() {
        flag = false;
        if (t.joinable()) t.join();
        if (fd >= 0) ::close(fd);
        fd = -1;
      }
      ~EndPost() { (*this)(); }
    } end_post{trickling, trickle, fd};
    auto c = r.client();
    // Two in flight: the POST and this scrape of /metrics.
    ASSERT_TRUE(in_flight(c, 2)) << "the POST was never in flight";
    const Reply rep = get(c, "/v1/recommend?user=" + lib_a_->user_ids().external(0));
    end_post();
    EXPECT_EQ(rep.status, 503) << rep.text;
    EXPECT_NE(rep.text.find("timeout of 100 ms (--timeout-ms)"), std::string::npos) << rep.text;
  }
  // Alone in the server, the same request does not wait for company and is answered (within
  // a timeout that waiting for company would still exceed).
  {
    ServerOptions o = options(dir_->file("exp-a"));
    o.batch_wait = std::chrono::milliseconds(3000);
    o.timeout_ms = 2000;
    Running r(o);
    ASSERT_EQ(r.server->wait_loaded(), "");
    auto c = r.client();
    EXPECT_EQ(get(c, "/v1/recommend?user=" + lib_a_->user_ids().external(0)).status, 200);
  }
}

// A Range header would have the library cut a JSON answer to a fragment sent as 200; the method
// of a request the library refuses would have become a metrics label of its own, kept for the
// server's life (memory and /metrics without bound, bytes that are not UTF-8).
TEST_F(ServeTest, RangeHeadersLeaveAnswersWholeAndOddMethodsShareOneMetricsLabel) {
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  auto c = r.client();
  const std::string path = "/v1/recommend?user=" + lib_a_->user_ids().external(0) + "&k=2";
  const Reply whole = get(c, path);
  ASSERT_EQ(whole.status, 200) << whole.text;
  for (const char* range : {"bytes=0-10", "bytes=0-10,20-30"}) {
    const auto res = c.Get(path.c_str(), {{"Range", range}});
    ASSERT_TRUE(res) << range;
    EXPECT_EQ(res->status, 200) << range;
    EXPECT_EQ(res->body, whole.text) << range;
    EXPECT_FALSE(res->has_header("Content-Range")) << range;
  }
  for (int i = 0; i < 50; ++i) {
    const std::string method = "M" + std::to_string(i) + std::string(200, 'X');
    EXPECT_EQ(exchange(r.server->port(), method + " /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                  .rfind("HTTP/1.1 400 ", 0),
              0u);
  }
  exchange(r.server->port(), "G\xFFT /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string metrics = get(c, "/metrics").text;
  EXPECT_EQ(metrics.find("XXXX"), std::string::npos);
  EXPECT_EQ(first_non_utf8(metrics), std::string_view::npos);
  EXPECT_NE(metrics.find("recforge_http_requests_total{endpoint=\"other\",method=\"other\",code=\"400\"} 51"),
            std::string::npos)
      << metrics;
}

TEST_F(ServeTest, APostOfUnknownIdsListsThemAndAnEmptyIdOrAHugeKIsSaidAsSent) {
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  auto c = r.client();
  Reply rep = post(c, "/v1/recommend", R"({"users": ["zz", "yy"]})");
  EXPECT_EQ(rep.status, 404) << rep.text;
  EXPECT_EQ(rep.body["error"], "none of the 2 users and new users is known (listed in 'unknown')");
  EXPECT_EQ(rep.body["unknown"], json::parse(R"([{"id": "zz", "field": "users"}, {"id": "yy", "field": "users"}])"));
  rep = post(c, "/v1/similar-items", R"({"items": ["zz"]})");
  EXPECT_EQ(rep.status, 404) << rep.text;
  EXPECT_EQ(rep.body["unknown"], json::parse(R"([{"id": "zz", "field": "items"}])"));
  rep = post(c, "/v1/recommend", R"({"users": [""]})");
  EXPECT_EQ(rep.status, 400) << rep.text;
  EXPECT_EQ(rep.body["error"], "body field 'users' holds an empty id; expected user ids");
  const std::string u = lib_a_->user_ids().external(0);
  for (const std::string k : {"18446744073709551615", "9223372036854775808"}) {
    rep = post(c, "/v1/recommend", "{\"users\": [\"" + u + "\"], \"k\": " + k + "}");
    EXPECT_EQ(rep.status, 400) << rep.text;
    EXPECT_NE(rep.text.find("got \\\"" + k + "\\\""), std::string::npos) << rep.text;
  }
}

// A request that waits for company while another request is in the server stops waiting when
// that one ends, not at --batch-wait-ms.
TEST_F(ServeTest, ARequestWaitingForCompanyGoesWhenTheOtherRequestEnds) {
  ServerOptions o = options(dir_->file("exp-a"));
  o.batch_wait = std::chrono::milliseconds(60000);
  o.timeout_ms = 120000;
  Running r(o);
  ASSERT_EQ(r.server->wait_loaded(), "");
  Socket post(r.server->port());
  ASSERT_GE(post.fd, 0);
  const std::string partial = "POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
  ASSERT_EQ(::send(post.fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  auto c = r.client();
  ASSERT_TRUE(in_flight(c, 2)) << "the POST was never in flight";
  auto waiting = std::async(std::launch::async, [&] {
    auto mine = r.client();
    mine.set_read_timeout(20, 0);  // a third of --batch-wait-ms
    return get(mine, "/v1/recommend?user=" + lib_a_->user_ids().external(0));
  });
  if (!in_flight(c, 3)) post.close();  // the GET is then answered; the failure is said below
  ASSERT_TRUE(post.fd >= 0) << "the GET was never in flight";
  post.close();  // the POST ends (its body never completes)
  const Reply rep = waiting.get();
  EXPECT_EQ(rep.status, 200) << rep.text;
}

TEST_F(ServeTest, ABodyThatStopsComingPastTheReadTimeoutSaysSo) {
  ServerOptions o = options(dir_->file("exp-a"));
  o.timeout_ms = 300;
  Running r(o);
  ASSERT_EQ(r.server->wait_loaded(), "");
  const std::string response = exchange(
      r.server->port(), "POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        "application/json\r\nContent-Length: 100\r\n\r\n{\"users\"");
  EXPECT_EQ(response.rfind("HTTP/1.1 400 ", 0), 0u) << response;
  EXPECT_NE(response.find("the request body was not received within the read timeout of 300 ms "
                          "(--timeout-ms)"),
            std::string::npos)
      << response;
}

TEST_F(ServeTest, SixteenConcurrentKeepAliveClientsGetTheSequentialAnswers) {
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  std::vector<std::string> paths;
  for (int u = 0; u < 40; ++u) {
    paths.push_back("/v1/recommend?user=" + lib_a_->user_ids().external(u * 7) + "&k=" + std::to_string(1 + u % 12));
    if (u % 5 == 0) paths.push_back("/v1/similar-items?item=" + lib_a_->item_ids().external(u) + "&k=5");
  }
  std::vector<std::string> sequential;
  {
    auto c = r.client();
    for (const auto& p : paths) {
      const Reply rep = get(c, p);
      ASSERT_EQ(rep.status, 200) << p << ": " << rep.text;
      sequential.push_back(rep.text);
    }
  }
  std::atomic<int> mismatches{0}, requests{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&, t] {
      auto c = r.client();
      c.set_keep_alive(true);
      for (int round = 0; round < 2; ++round)
        for (size_t j = 0; j < paths.size(); ++j) {
          const size_t q = (j + static_cast<size_t>(t) * 5) % paths.size();  // clients out of step
          const auto res = c.Get(paths[q].c_str());
          ++requests;
          if (!res || res->status != 200 || res->body != sequential[q]) ++mismatches;
        }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(requests.load(), static_cast<int>(16 * 2 * paths.size()));
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(ServeTest, ReloadUnderLoadFailsNoRequestAndACorruptExportIsRefused) {
  const std::string out = fresh_export("exp-reload");  // v-1: run a
  Running r(options(out));
  ASSERT_EQ(r.server->wait_loaded(), "");
  // v-N holds run a for odd N, run b for even N.
  std::vector<std::string> users;
  for (int u = 0; u < 12; ++u) users.push_back(lib_a_->user_ids().external(u * 11));
  Options o;
  o.k = 5;
  const Result want_a = lib_a_->recommend(users, o), want_b = lib_b_->recommend(users, o);
  ASSERT_EQ(lib_a_->user_ids().size(), lib_b_->user_ids().size());

  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, answered{0}, from_new{0};
  std::mutex mu;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      auto c = r.client();
      c.set_keep_alive(true);
      for (size_t j = static_cast<size_t>(t); !done; j = (j + 1) % users.size()) {
        const Reply rep = get(c, "/v1/recommend?user=" + users[j] + "&k=5");
        ++answered;
        std::string problem;
        if (rep.status != 200) {
          problem = std::to_string(rep.status) + " " + rep.text;
        } else {
          const std::string v = rep.body["export"];
          const int n = std::stoi(v.substr(2));
          if (n > 1) ++from_new;
          const recommend::List& want = (n % 2 ? want_a : want_b).lists[j];
          bool same = rep.body["items"].size() == want.items.size();
          for (size_t i = 0; same && i < want.items.size(); ++i)
            same = rep.body["items"][i]["item"] == want.items[i].id &&
                   static_cast<float>(rep.body["items"][i]["score"].get<double>()) == want.items[i].score;
          if (!same) problem = "answer of " + v + " differs from its export's library answer: " + rep.text;
        }
        if (!problem.empty()) {
          ++failures;
          std::lock_guard<std::mutex> lock(mu);
          if (first_failure.empty()) first_failure = problem;
        }
      }
    });
  auto admin = r.client();
  for (int n = 2; n <= 5; ++n) {
    pipeline::export_run(n % 2 ? *run_a_ : *run_b_, out, {});
    const Reply rep = post(admin, "/admin/reload", "");
    ASSERT_EQ(rep.status, 200) << rep.text;
    EXPECT_EQ(rep.body["export"], "v-" + std::to_string(n));
    EXPECT_EQ(rep.body["previous"], "v-" + std::to_string(n - 1));
  }
  // Clients see the last export before they stop.
  const int before = from_new;
  while (from_new == before && failures == 0) std::this_thread::yield();
  done = true;
  for (auto& th : clients) th.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_GT(answered.load(), 0);

  // A corrupt new version (one flipped byte in its item factors) is refused; v-5 keeps serving.
  pipeline::export_run(*run_a_, out, {});
  const std::string npy = out + "/v-6/item_factors.npy";
  ASSERT_TRUE(fs::exists(npy));
  {
    std::fstream f(npy, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    char ch = 0;
    f.get(ch);
    f.seekp(-5, std::ios::end);
    f.put(static_cast<char>(ch ^ 0x40));
  }
  const Reply refused = post(admin, "/admin/reload", "");
  EXPECT_EQ(refused.status, 500) << refused.text;
  EXPECT_NE(refused.text.find("reload refused, still serving v-5"), std::string::npos) << refused.text;
  EXPECT_NE(refused.text.find("item_factors.npy"), std::string::npos) << refused.text;
  const Reply metrics = get(admin, "/metrics");
  EXPECT_NE(metrics.text.find("recforge_reloads_total{result=\"refused\"} 1\n"), std::string::npos) << metrics.text;
  EXPECT_NE(metrics.text.find("recforge_reloads_total{result=\"ok\"} 4\n"), std::string::npos) << metrics.text;
  EXPECT_NE(metrics.text.find("recforge_export_info{version=\"v-5\"} 1\n"), std::string::npos) << metrics.text;
  for (size_t j = 0; j < users.size(); ++j) {
    const Reply rep = get(admin, "/v1/recommend?user=" + users[j] + "&k=5");
    ASSERT_EQ(rep.status, 200) << rep.text;
    EXPECT_EQ(rep.body["export"], "v-5");
    expect_list(rep.body["items"], want_a.lists[j], "after the refused reload");
  }
}

TEST_F(ServeTest, AdminTokenIsRequiredWhenGiven) {
  ServerOptions o = options(dir_->file("exp-a"));
  const std::string token_file = test::write_file(dir_->file("token"), "s3cret-token\n");
  o.admin_token = read_admin_token(token_file);
  EXPECT_EQ(o.admin_token, "s3cret-token");
  Running r(o);
  ASSERT_EQ(r.server->wait_loaded(), "");
  auto c = r.client();
  Reply rep = post(c, "/admin/reload", "");
  EXPECT_EQ(rep.status, 401) << rep.text;
  EXPECT_NE(rep.text.find("Authorization: Bearer TOKEN"), std::string::npos) << rep.text;
  rep = reply(c.Post("/admin/reload", {{"Authorization", "Bearer s3cret-tokeX"}}, "", "application/json"));
  EXPECT_EQ(rep.status, 401) << rep.text;
  rep = reply(c.Post("/admin/reload", {{"Authorization", "Bearer s3cret-token"}}, "", "application/json"));
  EXPECT_EQ(rep.status, 200) << rep.text;
  // The scheme's name is case-insensitive (RFC 9110 11.1); the token is not.
  rep = reply(c.Post("/admin/reload", {{"Authorization", "bearer s3cret-token"}}, "", "application/json"));
  EXPECT_EQ(rep.status, 200) << rep.text;
  rep = reply(c.Post("/admin/reload", {{"Authorization", "BEARER S3CRET-TOKEN"}}, "", "application/json"));
  EXPECT_EQ(rep.status, 401) << rep.text;
  EXPECT_EQ(get(c, "/v1/info").status, 200);  // the other endpoints need no token

  const std::string empty = test::write_file(dir_->file("empty-token"), "\n");
  try {
    read_admin_token(empty);
    ADD_FAILURE() << "an empty token file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds no token"), std::string::npos) << e.what();
  }
  try {
    read_admin_token(dir_->file("no-such-token"));
    ADD_FAILURE() << "a missing token file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read"), std::string::npos) << e.what();
  }
}

TEST_F(ServeTest, APostWithoutContentLengthHasNoBody) {
  // HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding has an empty body
  // (`curl -X POST .../admin/reload` sends such a request). cpp-httplib would read one until the
  // connection closed, and the request ended in a read timeout. httplib::Client always sends
  // Content-Length, so the request is written on a plain socket.
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  const int fd = connect_to(r.server->port());
  ASSERT_GE(fd, 0);
  const std::string request = "POST /admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(response.rfind("HTTP/1.1 200 ", 0), 0u) << response;
  EXPECT_NE(response.find("\"reloaded\":true"), std::string::npos) << response;
}

TEST_F(ServeTest, APortInUseIsRefused) {
  // cpp-httplib's default socket options set SO_REUSEPORT, with which a second server bound the
  // same port and silently took a share of its connections.
  Running first(options(dir_->file("exp-a")));
  ServerOptions o = options(dir_->file("exp-a"));
  o.host = "127.0.0.1";
  o.port = first.server->port();
  try {
    Server second(o);
    ADD_FAILURE() << "a second server bound port " << o.port;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen there"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(o.port)), std::string::npos) << e.what();
  }
}

/// The sockets of this process whose local port is `port`: (fd, listening) pairs.
std::vector<std::pair<int, bool>> sockets_on_port(int port) {
  std::vector<std::pair<int, bool>> out;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    int fd = -1;
    try {
      fd = std::stoi(e.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.sin_family != AF_INET ||
        ntohs(a.sin_port) != port)
      continue;
    int listening = 0;
    socklen_t l2 = sizeof listening;
    ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l2);
    out.emplace_back(fd, listening != 0);
  }
  return out;
}

TEST_F(ServeTest, ConnectionsHaveNoDelayAndTheBacklogIsRaised) {
  // An answer's headers and body are separate writes: with Nagle's algorithm the body waited
  // for the client's delayed ACK (40 ms per request). The server runs in this process, so its
  // accepted socket is one of ours: it must have TCP_NODELAY.
  Running r(options(dir_->file("exp-a")));
  ASSERT_EQ(r.server->wait_loaded(), "");
  httplib::Client c = r.client();
  c.set_keep_alive(true);  // the connection stays open after the answer
  ASSERT_EQ(get(c, "/healthz").status, 200);
  int accepted = 0;
  for (const auto& [fd, listening] : sockets_on_port(r.server->port())) {
    if (listening) continue;
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_NE(nodelay, 0) << "accepted socket " << fd << " has Nagle's algorithm on";
    ++accepted;
  }
  EXPECT_EQ(accepted, 1);
  // Debian's cpp-httplib listens with a backlog of 5; 64 clients connecting at once lost SYNs
  // and waited a second for the retry. The backlog of a listening socket is visible through
  // the kernel's socket diagnostics (`ss`, column Send-Q), not through getsockopt.
  if (std::system("command -v ss >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "ss (iproute2) is not installed: the backlog cannot be read";
  }
  const std::string cmd = "ss -ltnH 'sport = :" + std::to_string(r.server->port()) + "'";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[512] = {0};
  const bool got = std::fgets(line, sizeof line, p) != nullptr;
  pclose(p);
  ASSERT_TRUE(got) << cmd << " printed nothing";
  char state[64] = {0};
  long recv_q = -1, backlog = -1;
  ASSERT_EQ(std::sscanf(line, "%63s %ld %ld", state, &recv_q, &backlog), 3) << line;
  EXPECT_GE(backlog, 64) << line;
}

// ---- The binary -----------------------------------------------------------------------------

/// `recforge serve ARGS` as a child process; its first stdout line gives the port. Killed (and
/// reaped) when the object goes out of scope unless it already exited.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args, const std::string& stderr_path) {
    // Everything the child needs is prepared before fork: after it, only async-signal-safe
    // calls (the test process has other threads, which may hold malloc's lock).
    std::vector<char*> argv{const_cast<char*>(RECFORGE_BINARY), const_cast<char*>("serve")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int out[2];
    if (err < 0 || ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe or stderr file");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);  // dup2 clears FD_CLOEXEC on the copy
      ::dup2(err, 2);
      ::execv(RECFORGE_BINARY, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err);
    out_ = ::fdopen(out[0], "r");
    char line[512] = {};
    if (std::fgets(line, sizeof line, out_)) first_line_ = line;
    std::smatch m;
    const std::regex re(R"(^recforge serve: listening on http://127\.0\.0\.1:(\d+)\n$)");
    if (std::regex_match(first_line_, m, re)) port_ = std::stoi(m[1]);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_) std::fclose(out_);
  }
  int port() const { return port_; }
  const std::string& first_line() const { return first_line_; }
  void signal(int sig) const { ::kill(pid_, sig); }
  /// Waits for the exit; returns the exit status (-1 when killed by a signal).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string first_line_;
  int port_ = 0;
  bool reaped_ = false;
};

/// Polls `path` until `pred` holds for its reply; false after `max_tries` (a hang guard only).
template <class Pred>
bool poll_until(const Child& child, const std::string& path, Pred pred, int max_tries = 3000) {
  for (int i = 0; i < max_tries; ++i) {
    auto c = child.client();
    if (pred(get(c, path))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_F(ServeTest, SigtermDrainsTheRequestsInFlightAndExitsZero) {
  Child child({dir_->file("exp-a"), "--listen", "127.0.0.1:0", "--batch-wait-ms", "1500"},
              dir_->file("sigterm.err"));
  ASSERT_GT(child.port(), 0) << "first line: " << child.first_line();
  ASSERT_TRUE(poll_until(child, "/readyz", [](const Reply& r) { return r.status == 200; }));
  const std::string user = lib_a_->user_ids().external(9);
  // A POST whose body is held back until the server has stopped accepting: it is in flight
  // (counted from before its body is read) for as long as the test wants.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  const std::string body = json{{"users", {user}}, {"k", 5}}.dump();
  auto in_flight = std::async(std::launch::async, [&] {
    auto c = child.client();
    return reply(c.Post("/v1/recommend", body.size(), [&](size_t offset, size_t, httplib::DataSink& sink) {
      if (offset == 0) {
        sink.write(body.data(), 3);
        return true;
      }
      released.wait();
      sink.write(body.data() + offset, body.size() - offset);
      return true;
    }, "application/json"));
  });
  // Whatever fails below, the POST's body is released before its future is waited for.
  struct Release {
    std::promise<void>& p;
    bool done = false;
    void now() {
      if (!done) p.set_value(), done = true;
    }
    ~Release() { now(); }
  } release_body{release};
  // The POST is in flight (the metrics request itself is the second one) before the GET
  // comes, so the GET waits in the batcher (1.5 s) for company when the signal comes: a request
  // alone in the server would be answered at once.
  ASSERT_TRUE(poll_until(child, "/metrics", [](const Reply& r) {
    return r.text.find("recforge_requests_in_flight 2\n") != std::string::npos;
  }));
  auto batched = std::async(std::launch::async, [&] {
    auto c = child.client();
    return get(c, "/v1/recommend?user=" + user + "&k=5");
  });
  ASSERT_TRUE(poll_until(child, "/metrics", [](const Reply& r) {
    return r.text.find("recforge_requests_in_flight 3\n") != std::string::npos;
  }));
  child.signal(SIGTERM);
  // New connections are refused once the listening socket is closed.
  const bool refused = poll_until(child, "/healthz", [](const Reply& r) { return r.status == -1; });
  release_body.now();
  EXPECT_TRUE(refused) << "the server kept accepting connections after SIGTERM";
  Options o;
  o.k = 5;
  const recommend::List want = lib_a_->recommend({user}, o).lists.at(0);
  const Reply p = in_flight.get();
  ASSERT_EQ(p.status, 200) << p.text;
  expect_list(p.body["results"][0]["items"], want, "POST in flight at SIGTERM");
  const Reply g = batched.get();
  ASSERT_EQ(g.status, 200) << g.text;
  expect_list(g.body["items"], want, "GET batched at SIGTERM");
  EXPECT_EQ(child.wait(), 0) << test::read_file(dir_->file("sigterm.err"));
  auto after = child.client();
  EXPECT_FALSE(after.Get("/healthz")) << "a connection was accepted after the exit";
}

TEST_F(ServeTest, SighupReloadsTheExport) {
  const std::string out = fresh_export("exp-hup");
  const std::string token = test::write_file(dir_->file("hup-token"), "t0k3n");
  Child child({out, "--listen", "127.0.0.1:0", "--admin-token", token}, dir_->file("sighup.err"));
  ASSERT_GT(child.port(), 0) << "first line: " << child.first_line();
  ASSERT_TRUE(poll_until(child, "/readyz", [](const Reply& r) { return r.status == 200; }));
  auto c = child.client();
  EXPECT_EQ(get(c, "/v1/info").body["export"], "v-1");
  pipeline::export_run(*run_b_, out, {});
  child.signal(SIGHUP);
  ASSERT_TRUE(poll_until(child, "/v1/info", [](const Reply& r) { return r.status == 200 && r.body["export"] == "v-2"; }))
      << test::read_file(dir_->file("sighup.err"));
  Options o;
  o.k = 3;
  const std::string user = lib_b_->user_ids().external(4);
  const Reply rep = get(c, "/v1/recommend?user=" + user + "&k=3");
  ASSERT_EQ(rep.status, 200) << rep.text;
  expect_list(rep.body["items"], lib_b_->recommend({user}, o).lists.at(0), "after SIGHUP");
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(), 0) << test::read_file(dir_->file("sighup.err"));
}

TEST_F(ServeTest, AnExportThatCannotLoadEndsTheBinaryWithStatusOne) {
  Child child({dir_->file("no-such-export"), "--listen", "127.0.0.1:0"}, dir_->file("noload.err"));
  EXPECT_GT(child.port(), 0) << "first line: " << child.first_line();
  EXPECT_EQ(child.wait(), 1);
  EXPECT_NE(test::read_file(dir_->file("noload.err")).find(": no such export directory"), std::string::npos)
      << test::read_file(dir_->file("noload.err"));
}

}  // namespace
}  // namespace recforge::serve
