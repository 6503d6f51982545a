// `recforge serve` and users who opted out (opt_out.txt of a pseudonymised export): their lists
// are the training popularity (counted here from the export's seen lists) with "personalised":
// false, others true; raw ids with --pseudonym-key-* answer as the pseudonyms; /metrics counts
// the non-personalised lists; a wrong key keeps the export from loading, in one sentence without
// the key.
#include <httplib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/hash.h"
#include "pipeline/export.h"
#include "pipeline/train.h"
#include "serve/server.h"
#include "test_util.h"

namespace recforge::serve {
namespace {

using json = nlohmann::json;

const std::string kKey = "serve-privacy-key-Hh31-unlikely-bytes";

/// An in-process server on an ephemeral loopback port, stopped at the end of scope.
struct Served {
  explicit Served(ServerOptions o) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 8;
    server = std::make_unique<Server>(std::move(o));
  }
  ~Served() { server->stop(); }
  json get(const std::string& path) const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(60, 0);
    const auto r = c.Get(path.c_str());
    if (!r) return json();
    return {{"status", r->status}, {"body", json::parse(r->body, nullptr, false)}, {"text", r->body}};
  }
  json post(const std::string& path, const json& body) const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(60, 0);
    const auto r = c.Post(path.c_str(), body.dump(), "application/json");
    if (!r) return json();
    return {{"status", r->status}, {"body", json::parse(r->body, nullptr, false)}};
  }
  std::unique_ptr<Server> server;
};

std::vector<std::pair<std::string, double>> items_of(const json& list) {
  std::vector<std::pair<std::string, double>> out;
  for (const json& x : list["items"]) out.push_back({x["item"], x["score"]});
  return out;
}

TEST(ServePrivacy, OptedOutUsersGetPopularityFlaggedAndCounted) {
  test::TempDir t;
  const std::string key_file = test::write_file(t.file("key"), kKey);
  const std::string opt = test::write_file(t.file("opt-out.txt"), "5\nghost\n");
  const std::string yaml = "run:\n  name: s\n  dir: " + t.str() +
                           "\n  progress: off\n  seed: 5\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                           "split:\n  method: leave_last\n"
                           "model:\n  type: ials\n  factors: 8\n  iterations: 3\n"
                           "privacy:\n  opt_out: " + opt +
                           "\nexport:\n  pseudonymize: true\n  pseudonym_key_file: " + key_file +
                           "\n";
  const std::string run = pipeline::train(config::Config::parse(yaml, "s.yaml"));
  const std::string exp = t.file("exp");
  pipeline::export_run(run, exp, {});

  // The expected popularity lists, from the export's training items.
  const artifact::Artifact a = artifact::load(exp);
  std::map<data::index_t, int> count;
  for (data::index_t i : a.seen.indices) ++count[i];
  auto popular = [&](const std::string& raw, size_t k) {
    std::set<data::index_t> own;
    if (const auto r = a.user_ids.find(hmac_sha256_hex(kKey, raw)))
      for (auto e = a.seen.indptr[*r]; e < a.seen.indptr[*r + 1]; ++e) own.insert(a.seen.indices[e]);
    std::vector<data::index_t> order;
    for (data::index_t i = 0; i < a.seen.cols; ++i)
      if (!own.count(i)) order.push_back(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](data::index_t x, data::index_t y) { return count[x] > count[y]; });
    std::vector<std::pair<std::string, double>> out;
    for (size_t j = 0; j < k; ++j) out.push_back({a.item_ids.external(order[j]), count[order[j]]});
    return out;
  };

  ServerOptions o;
  o.export_dir = exp;
  o.pseudonym_key = SecretKey::from_file(key_file, "--pseudonym-key-file");
  o.key_where = "--pseudonym-key-file " + key_file;
  Served s(o);
  ASSERT_EQ(s.server->wait_loaded(), "");

  const json raw = s.get("/v1/recommend?user=3&k=5");
  const json pseudo = s.get("/v1/recommend?user=" + hmac_sha256_hex(kKey, "3") + "&k=5");
  ASSERT_EQ(raw["status"], 200) << raw;
  ASSERT_EQ(pseudo["status"], 200) << pseudo;
  EXPECT_EQ(raw["body"]["user"], "3");
  EXPECT_EQ(raw["body"]["personalised"], true);
  EXPECT_EQ(pseudo["body"]["personalised"], true);
  EXPECT_EQ(items_of(raw["body"]).size(), 5u);
  EXPECT_EQ(items_of(raw["body"]), items_of(pseudo["body"]));

  const json five = s.get("/v1/recommend?user=5&k=5");
  ASSERT_EQ(five["status"], 200) << five;
  EXPECT_EQ(five["body"]["personalised"], false);
  EXPECT_EQ(items_of(five["body"]), popular("5", 5));

  const json batch = s.post("/v1/recommend", {{"users", {"ghost", "3", "nobody", "5"}}, {"k", 4}});
  ASSERT_EQ(batch["status"], 200) << batch;
  const json& results = batch["body"]["results"];
  ASSERT_EQ(results.size(), 3u) << batch;
  EXPECT_EQ(results[0]["user"], "ghost");
  EXPECT_EQ(results[0]["personalised"], false);
  EXPECT_EQ(items_of(results[0]), popular("ghost", 4));
  EXPECT_EQ(results[1]["personalised"], true);
  EXPECT_EQ(results[2]["user"], "5");
  EXPECT_EQ(results[2]["personalised"], false);
  EXPECT_EQ(items_of(results[2]), popular("5", 4));
  ASSERT_EQ(batch["body"]["unknown"].size(), 1u);
  EXPECT_EQ(batch["body"]["unknown"][0]["id"], "nobody");

  const json info = s.get("/v1/info");
  EXPECT_EQ(info["body"]["pseudonymized"], true) << info;
  EXPECT_EQ(info["body"]["opted_out"], 2) << info;

  // Three lists were not personalised: one GET, two in the POST.
  const json metrics = s.get("/metrics");
  EXPECT_NE(metrics["text"].get<std::string>().find("\nrecforge_not_personalised_lists_total 3\n"),
            std::string::npos)
      << metrics["text"];

  // A wrong key: the export is not loaded; the sentence names the flag, not the key.
  ServerOptions w;
  w.export_dir = exp;
  w.pseudonym_key = SecretKey::from_bytes("Wrong-serve-key-0000", "test");
  w.key_where = "--pseudonym-key-env RF_KEY";
  Served bad(w);
  const std::string err = bad.server->wait_loaded();
  EXPECT_EQ(err.rfind("--pseudonym-key-env RF_KEY: the key is not the one", 0), 0u) << err;
  EXPECT_EQ(err.find("Wrong-serve-key"), std::string::npos) << err;
  EXPECT_EQ(bad.get("/v1/recommend?user=3")["status"], 503);
}

}  // namespace
}  // namespace recforge::serve
