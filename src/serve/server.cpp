#include "serve/server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "artifact/artifact.h"
#include "core/error.h"
#include "core/log.h"
#include "core/text.h"
#include "pipeline/run.h"
#include "recommend/recommend.h"
#include "serve/batcher.h"

namespace recforge::serve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// An answer other than 200, with its sentence.
struct HttpError {
  int status;
  std::string message;
  json extra;  // further fields of the error's body (an object), or null
};

[[noreturn]] void http_fail(int status, std::string message, json extra = nullptr) {
  throw HttpError{status, std::move(message), std::move(extra)};
}

/// The deepest nesting a request body may have. The bodies this server reads are at most four
/// levels deep (object, new_users array, object, items array); nlohmann's parser takes any depth,
/// but its dump() recurses once per level, so a body nested 100,000 deep (200 KB) overflowed a
/// worker thread's stack when a sentence quoted it, and took the server down.
constexpr int kMaxBodyDepth = 16;

/// A body parsed as JSON, refused (400, with a sentence) when it is not JSON, is nested deeper
/// than kMaxBodyDepth, or gives one key twice in an object (nlohmann keeps the last silently).
json parse_body(const std::string& text) {
  std::vector<std::set<std::string>> keys;  // the keys seen, per open object
  const json::parser_callback_t check = [&keys](int depth, json::parse_event_t event,
                                               json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxBodyDepth)
          http_fail(400, fmt::format("the request body is nested deeper than {} levels",
                                     kMaxBodyDepth));
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        // A set: an object of 100,000 distinct keys fits in the body limit, and a list would
        // compare each new key with every earlier one.
        if (!keys.empty() && !keys.back().insert(key).second)
          http_fail(400, fmt::format("body field '{}' is given twice", key));
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, check);
  } catch (const json::exception& e) {
    std::string what = e.what();  // quotes the offending token, which may be long
    if (what.size() > 160) what = what.substr(0, 157) + "...";
    http_fail(400, fmt::format("the request body is not valid JSON ({})", what));
  }
}

/// A JSON value as a sentence quotes it: its text, cut at 60 characters.
std::string quoted(const json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

/// A request that ran past its deadline (--timeout-ms).
struct DeadlinePassed {};

/// The loaded export: what every request takes once (requests in flight keep theirs).
struct State {
  std::shared_ptr<const recommend::Recommender> rec;
  std::string version;  // "v-3"; "" for an export of the flat layout
  double load_seconds = 0;
  double loaded_unix = 0;
  json manifest;
};

/// The version `current` names ("" for a flat export).
std::string current_version(const std::string& dir) {
  std::error_code ec;
  const fs::path link = fs::path(dir) / artifact::kCurrentLink;
  if (!fs::is_symlink(link, ec)) return "";
  return fs::read_symlink(link, ec).filename().string();
}

/// Loads and verifies the export in `dir` (recommend::Recommender::open), with its version and
/// manifest. `current` is read before and after the load; versions only grow, so equal reads
/// mean the load read that version. Throws recforge::Error.
std::shared_ptr<const State> load_state(const std::string& dir, const ServerOptions& o) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (const std::string aside = artifact::export_left_aside(dir); !aside.empty())
      fail("{}: no such export directory; an interrupted export left the previous one at {} "
           "(rename it back, or export again)",
           dir, aside);
    fail("{}: no such export directory; recforge serve answers from an export: write one with "
         "`recforge export RUN_DIR --out EXPORT_DIR`",
         dir);
  }
  if (!artifact::is_artifact(dir))
    fail("{} is not an export (it holds neither manifest.json nor a `current` link); recforge "
         "serve answers from exports only: write one with `recforge export RUN_DIR --out EXPORT_DIR`",
         dir);
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::string before = current_version(dir);
    const auto t0 = Clock::now();
    recommend::OpenOptions open;
    open.pseudonym_key = o.pseudonym_key;
    open.key_where = o.key_where;
    auto rec = std::make_shared<const recommend::Recommender>(recommend::Recommender::open(dir, open));
    rec->prepare();  // the first requests do not pay for the item norm or the fold-in Gram matrix
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (current_version(dir) != before) continue;  // a newer export arrived meanwhile
    auto s = std::make_shared<State>();
    s->rec = std::move(rec);
    s->version = before;
    s->load_seconds = seconds;
    s->loaded_unix =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const fs::path manifest = (before.empty() ? fs::path(dir) : fs::path(dir) / before) / "manifest.json";
    if (!fs::exists(manifest, ec)) continue;  // replaced by two newer exports since
    s->manifest = pipeline::read_json(manifest.string());
    return s;
  }
  fail("{}: a new export arrived during each of 5 loads in a row; reload once the exports stop", dir);
}

// ---- Request parsing ---------------------------------------------------------------------

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    const size_t e = s.find(',', b);
    const std::string part = recommend::trim(s.substr(b, e == std::string::npos ? e : e - b));
    if (!part.empty()) out.push_back(part);
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

/// The query parameters, each at most once and each one of `allowed`.
std::map<std::string, std::string> query_params(const httplib::Request& req,
                                                std::initializer_list<const char*> allowed) {
  std::map<std::string, std::string> out;
  for (const auto& param : req.params) {
    const std::string& key = param.first;  // a plain reference: lambdas capture it (C++17)
    const std::string& value = param.second;
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
      std::string names;
      for (const char* a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      http_fail(400, fmt::format("unknown query parameter '{}' for {}; the parameters are {}", key,
                                 req.path, names));
    }
    if (!out.emplace(key, value).second)
      http_fail(400, fmt::format("query parameter '{}' is given more than once", key));
  }
  return out;
}

int parse_k(const std::string& v, int max_k, const char* where) {
  const std::optional<int64_t> k = parse_int64(v);
  if (!k || *k < 1 || *k > max_k)
    http_fail(400, fmt::format("{} must be an integer from 1 to {} (--max-k), got \"{}\"", where,
                               max_k, v));
  return static_cast<int>(*k);
}

bool parse_bool(const std::string& v, const char* where) {
  if (v == "true") return true;
  if (v == "false") return false;
  http_fail(400, fmt::format("{} must be true or false, got \"{}\"", where, v));
}

json items_json(const recommend::List& list) {
  json items = json::array();
  for (const recommend::Scored& s : list.items)
    items.push_back({{"item", s.id}, {"score", s.score}});
  return items;
}

/// Strings of a JSON array body field.
std::vector<std::string> string_array(const json& v, const std::string& field) {
  if (!v.is_array()) http_fail(400, fmt::format("body field '{}' must be an array of strings", field));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const json& x : v) {
    if (!x.is_string())
      http_fail(400, fmt::format("body field '{}' must be an array of strings, but holds {}", field,
                                 quoted(x)));
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::string method_list(const std::vector<std::string>& methods) {
  std::string out;
  for (const auto& m : methods) out += (out.empty() ? "" : ", ") + m;
  return out;
}

}  // namespace

std::string read_admin_token(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--admin-token {}: cannot read the file", path);
  std::string token((std::istreambuf_iterator<char>(in)), {});
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) fail("--admin-token {}: the file holds no token (it is empty)", path);
  if (token.find_first_of("\r\n") != std::string::npos)
    fail("--admin-token {}: the token must be one line", path);
  return token;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// ---- The server --------------------------------------------------------------------------

struct Server::Impl {
  using Endpoint = json (Impl::*)(const httplib::Request&, httplib::Response&, Clock::time_point);
  struct Route {
    std::string path, method;
    Endpoint fn;
    bool needs_export;
  };

  ServerOptions o;
  httplib::Server svr;
  Metrics metrics;
  std::vector<Route> routes;
  int bound_port = 0;
  int listen_fd = -1;  // the listening socket (for its backlog)
  std::thread listener, loader;
  std::atomic<bool> listen_returned{false};
  std::once_flag stop_once;

  std::shared_ptr<const State> state;  // std::atomic_load / std::atomic_store
  std::mutex load_mu;                  // first load's outcome; one reload at a time
  std::condition_variable load_cv;
  bool first_load_done = false;
  std::string first_load_error;
  std::mutex reload_mu;

  std::shared_ptr<const State> current() const { return std::atomic_load(&state); }

  void install(std::shared_ptr<const State> s) {
    metrics.set_export(s->version, s->load_seconds, s->loaded_unix);
    std::atomic_store(&state, std::move(s));
  }

  // Single-user GET recommendations: gathered with concurrent ones into one library call.
  std::unique_ptr<Batcher> batcher;

  // ---- Endpoints ----

  json healthz(const httplib::Request&, httplib::Response&, Clock::time_point) {
    return {{"status", "alive"}};
  }

  json readyz(const httplib::Request&, httplib::Response&, Clock::time_point) {
    return {{"status", "ready"}, {"export", current()->version}};
  }

  json metrics_text(const httplib::Request&, httplib::Response& res, Clock::time_point) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    return nullptr;
  }

  json info(const httplib::Request& req, httplib::Response&, Clock::time_point) {
    query_params(req, {});
    const auto s = current();
    const json& m = s->manifest;
    json out = {{"export", s->version},
                {"path", o.export_dir},
                {"users", s->rec->user_ids().size()},
                {"items", s->rec->item_ids().size()},
                {"dim", s->rec->item_factors().cols},
                {"metric", m.value("metric", "")},
                {"index", m.contains("index") ? m["index"].value("type", "") : ""},
                {"model", m.contains("model") ? m["model"].value("type", "") : ""},
                {"format_version", m.value("format_version", 0)},
                {"created", m.value("created", "")},
                {"fold_in", s->rec->can_fold_in()},
                {"pseudonymized", m.contains("user_ids") && m["user_ids"].value("pseudonymized", false)},
                {"opted_out", s->rec->opt_out_size()},
                {"load_seconds", s->load_seconds},
                {"loaded_at", s->loaded_unix}};
    return out;
  }

  json recommend_get(const httplib::Request& req, httplib::Response&, Clock::time_point deadline) {
    auto p = query_params(req, {"user", "k", "exclude", "items", "include_seen"});
    const auto s = current();
    if (!p.count("user")) http_fail(400, "query parameter 'user' is required (the user's id)");
    const std::string user = recommend::trim(p["user"]);
    if (user.empty()) http_fail(400, "query parameter 'user' is empty; expected the user's id");
    recommend::Options opts;
    opts.k = p.count("k") ? parse_k(p["k"], o.max_k, "query parameter 'k'") : 10;
    if (p.count("exclude")) opts.exclude = split_list(p["exclude"]);
    if (p.count("items")) opts.candidates = split_list(p["items"]);
    if (p.count("include_seen")) opts.include_seen = parse_bool(p["include_seen"], "query parameter 'include_seen'");
    if (!s->rec->knows_user(user)) http_fail(404, fmt::format("unknown user '{}'", user));
    const json unknown = unknown_items(*s->rec, opts);
    const recommend::Result r = batcher->recommend(s->rec, user, opts, deadline);
    if (r.lists.size() != 1) throw std::runtime_error("the library answered no list for a known user");
    json out = {{"user", user},
                {"personalised", r.lists[0].personalised},
                {"items", items_json(r.lists[0])},
                {"export", s->version}};
    if (!r.lists[0].personalised) metrics.count_not_personalised(1);
    if (!unknown.empty()) out["unknown"] = unknown;
    return out;
  }

  /// The unknown ids of exclude and items (candidates), as {"id", "field"}; 404 when candidates
  /// are given and none is known.
  static json unknown_items(const recommend::Recommender& rec, const recommend::Options& opts) {
    json out = json::array();
    for (const auto& id : opts.exclude)
      if (!rec.item_ids().find(recommend::trim(id))) out.push_back({{"id", recommend::trim(id)}, {"field", "exclude"}});
    if (opts.candidates) {
      if (opts.candidates->empty())
        http_fail(400, "'items' (the candidate items) is empty; leave it out to rank all items");
      size_t known = 0;
      for (const auto& id : *opts.candidates) {
        if (rec.item_ids().find(recommend::trim(id)))
          ++known;
        else
          out.push_back({{"id", recommend::trim(id)}, {"field", "items"}});
      }
      if (known == 0)
        http_fail(404, fmt::format("none of the {} candidate items ('items') is known",
                                   opts.candidates->size()));
    }
    return out;
  }

  // A POST's JSON object body, with no query parameter and only the body fields `keys`.
  static json post_body(const httplib::Request& req, const std::vector<std::string>& keys) {
    query_params(req, {});
    json body = parse_body(req.body);
    if (!body.is_object()) http_fail(400, "the request body must be a JSON object");
    for (const auto& [key, value] : body.items())
      if (std::find(keys.begin(), keys.end(), key) == keys.end())
        http_fail(400, fmt::format("unknown body field '{}'; the fields are {}", key, method_list(keys)));
    return body;
  }

  // A body's "k": an integer from 1 to --max-k.
  int body_k(const json& v) const {
    if (!v.is_number_integer())
      http_fail(400, fmt::format("body field 'k' must be an integer from 1 to {} (--max-k), got {}",
                                 o.max_k, quoted(v)));
    // dump(): the digits sent, also past int64 (an unsigned value read as int64 would wrap).
    return parse_k(v.dump(), o.max_k, "body field 'k'");
  }

  json recommend_post(const httplib::Request& req, httplib::Response&, Clock::time_point deadline) {
    const json body = post_body(req, {"users", "new_users", "k", "exclude", "items", "include_seen"});
    const auto s = current();
    recommend::Options opts;
    std::vector<std::string> users;
    if (body.contains("users")) users = string_array(body["users"], "users");
    if (body.contains("k")) opts.k = body_k(body["k"]);
    if (body.contains("exclude")) opts.exclude = string_array(body["exclude"], "exclude");
    if (body.contains("items")) opts.candidates = string_array(body["items"], "items");
    if (body.contains("include_seen")) {
      if (!body["include_seen"].is_boolean())
        http_fail(400, fmt::format("body field 'include_seen' must be true or false, got {}",
                                   quoted(body["include_seen"])));
      opts.include_seen = body["include_seen"].get<bool>();
    }
    struct NewUser {
      std::vector<std::string> items;
      std::vector<float> weights;
    };
    std::vector<NewUser> new_users;
    if (body.contains("new_users")) {
      const json& nu = body["new_users"];
      if (!nu.is_array()) http_fail(400, "body field 'new_users' must be an array of objects");
      for (size_t i = 0; i < nu.size(); ++i) {
        const std::string where = fmt::format("new_users[{}]", i);
        if (!nu[i].is_object())
          http_fail(400, fmt::format("{} must be an object with 'items' and optional 'weights'", where));
        for (const auto& [key, value] : nu[i].items())
          if (key != "items" && key != "weights")
            http_fail(400, fmt::format("unknown field '{}' in {}; the fields are items, weights", key, where));
        if (!nu[i].contains("items")) http_fail(400, fmt::format("{} has no 'items'", where));
        NewUser u;
        u.items = string_array(nu[i]["items"], where + ".items");
        if (u.items.empty())
          http_fail(400, fmt::format("{}.items is empty; a new user needs at least one item", where));
        if (u.items.size() > o.max_items)
          http_fail(400, fmt::format("{}.items has {} items, over the limit of {} (--max-items)", where,
                                     u.items.size(), o.max_items));
        if (nu[i].contains("weights")) {
          const json& w = nu[i]["weights"];
          if (!w.is_array() || w.size() != u.items.size())
            http_fail(400, fmt::format("{}.weights must be an array of {} numbers, one per item", where,
                                       u.items.size()));
          for (const json& x : w) {
            if (!x.is_number())
              http_fail(400, fmt::format("{}.weights must hold numbers, but holds {}", where, quoted(x)));
            const double v = x.get<double>();
            if (!std::isfinite(v) || v < 0 || v > std::numeric_limits<float>::max())
              http_fail(400, fmt::format("{}.weights must be finite numbers >= 0 and at most {:g} "
                                         "(the largest float), got {}",
                                         where, std::numeric_limits<float>::max(), quoted(x)));
            u.weights.push_back(static_cast<float>(v));
          }
        }
        new_users.push_back(std::move(u));
      }
    }
    const size_t n = users.size() + new_users.size();
    if (n == 0) http_fail(400, "the request names no user: give 'users' or 'new_users'");
    if (n > o.max_users)
      http_fail(400, fmt::format("the request has {} users and new users, over the limit of {} (--max-users)",
                                 n, o.max_users));
    if (!new_users.empty() && !s->rec->can_fold_in())
      http_fail(400, "this export cannot fold in new users (it lacks the fold_in section); export the run again");

    json unknown = json::array();
    std::vector<std::string> known;
    for (const auto& u : users) {
      const std::string id = recommend::trim(u);
      if (id.empty()) http_fail(400, "body field 'users' holds an empty id; expected user ids");
      if (s->rec->knows_user(id))
        known.push_back(id);
      else
        unknown.push_back({{"id", id}, {"field", "users"}});
    }
    for (auto& x : unknown_items(*s->rec, opts)) unknown.push_back(std::move(x));

    json results = json::array();
    if (!known.empty()) {
      const recommend::Result r = batcher->recommend_users(s->rec, known, opts, deadline);
      for (const auto& list : r.lists) {
        results.push_back({{"user", list.query},
                           {"personalised", list.personalised},
                           {"items", items_json(list)},
                           {"export", s->version}});
        if (!list.personalised) metrics.count_not_personalised(1);
      }
    }
    // New users are folded in here, one solve each, and scored through the batcher, which
    // shares one scoring call among concurrent requests' new users.
    std::vector<recommend::FoldedUser> folded;
    std::vector<size_t> folded_index;  // their positions in new_users
    for (size_t i = 0; i < new_users.size(); ++i) {
      const NewUser& u = new_users[i];
      bool any = false;
      for (const auto& id : u.items) {
        if (s->rec->item_ids().find(recommend::trim(id)))
          any = true;
        else
          unknown.push_back({{"id", recommend::trim(id)}, {"field", fmt::format("new_users[{}].items", i)}});
      }
      if (!any) continue;
      if (Clock::now() > deadline) throw DeadlinePassed{};  // each fold-in is a solve
      recommend::FoldedUser f;
      const Matrix q = s->rec->fold_in(u.items, u.weights, nullptr, &f.given);
      f.factors.assign(q.data.begin(), q.data.end());
      folded.push_back(std::move(f));
      folded_index.push_back(i);
    }
    if (!folded.empty()) {
      const recommend::Result r = batcher->recommend_folded(s->rec, std::move(folded), opts, deadline);
      if (r.lists.size() != folded_index.size())
        throw std::runtime_error("the library answered another number of lists than new users");
      for (size_t j = 0; j < r.lists.size(); ++j)
        results.push_back({{"user", nullptr},
                           {"new_user", folded_index[j]},
                           {"personalised", r.lists[j].personalised},
                           {"items", items_json(r.lists[j])},
                           {"export", s->version}});
    }
    if (Clock::now() > deadline) throw DeadlinePassed{};
    if (results.empty())
      http_fail(404, fmt::format("none of the {} users and new users is known (listed in 'unknown')", n),
                {{"unknown", std::move(unknown)}, {"export", s->version}});
    return {{"results", std::move(results)}, {"unknown", std::move(unknown)}, {"export", s->version}};
  }

  json similar_items(const httplib::Request& req, httplib::Response&, Clock::time_point deadline) {
    auto p = query_params(req, {"item", "k", "metric"});
    const auto s = current();
    if (!p.count("item")) http_fail(400, "query parameter 'item' is required (the item's id)");
    const std::string item = recommend::trim(p["item"]);
    if (item.empty()) http_fail(400, "query parameter 'item' is empty; expected the item's id");
    const int k = p.count("k") ? parse_k(p["k"], o.max_k, "query parameter 'k'") : 10;
    recommend::SimilarOptions so;
    if (p.count("metric")) so.metric = parse_metric(p["metric"], "query parameter 'metric'");
    if (!s->rec->item_ids().find(item)) http_fail(404, fmt::format("unknown item '{}'", item));
    const recommend::Result r = batcher->similar_items(s->rec, {item}, k, so, deadline);
    if (Clock::now() > deadline) throw DeadlinePassed{};
    if (r.lists.size() != 1) throw std::runtime_error("the library answered no list for a known item");
    return {{"item", item}, {"items", items_json(r.lists[0])}, {"export", s->version}};
  }

  static recommend::Metric parse_metric(const std::string& v, const std::string& what) {
    if (v == "dot") return recommend::Metric::kDot;
    if (v == "cosine") return recommend::Metric::kCosine;
    http_fail(400, fmt::format("{} must be dot or cosine, got \"{}\"", what, v));
  }

  // Several items' similar items in one request, through the batcher with other similar-items
  // requests: {"items": [...], "k": N, "metric": "dot"|"cosine"}.
  json similar_items_post(const httplib::Request& req, httplib::Response&, Clock::time_point deadline) {
    const json body = post_body(req, {"items", "k", "metric"});
    const auto s = current();
    if (!body.contains("items")) http_fail(400, "body field 'items' is required (the items' ids)");
    const std::vector<std::string> items = string_array(body["items"], "items");
    if (items.empty()) http_fail(400, "body field 'items' is empty; expected at least one item id");
    if (items.size() > o.max_users)
      http_fail(400, fmt::format("the request has {} items, over the limit of {} (--max-users)",
                                 items.size(), o.max_users));
    const int k = body.contains("k") ? body_k(body["k"]) : 10;
    recommend::SimilarOptions so;
    if (body.contains("metric")) {
      if (!body["metric"].is_string())
        http_fail(400, fmt::format("body field 'metric' must be dot or cosine, got {}", quoted(body["metric"])));
      so.metric = parse_metric(body["metric"].get<std::string>(), "body field 'metric'");
    }
    json unknown = json::array();
    std::vector<std::string> known;
    for (const auto& raw : items) {
      const std::string id = recommend::trim(raw);
      if (s->rec->item_ids().find(id))
        known.push_back(id);
      else
        unknown.push_back({{"id", id}, {"field", "items"}});
    }
    if (known.empty())
      http_fail(404, fmt::format("none of the {} items is known (listed in 'unknown')", items.size()),
                {{"unknown", std::move(unknown)}, {"export", s->version}});
    const recommend::Result r = batcher->similar_items(s->rec, known, k, so, deadline);
    if (Clock::now() > deadline) throw DeadlinePassed{};
    if (r.lists.size() != known.size())
      throw std::runtime_error("the library answered another number of lists than known items");
    json results = json::array();
    for (const auto& list : r.lists)
      results.push_back({{"item", list.query}, {"items", items_json(list)}, {"export", s->version}});
    return {{"results", std::move(results)}, {"unknown", std::move(unknown)}, {"export", s->version}};
  }

  json admin_reload(const httplib::Request& req, httplib::Response&, Clock::time_point) {
    query_params(req, {});
    const ReloadOutcome r = reload();
    if (!r.ok)
      http_fail(500, fmt::format("reload refused, still serving {}: {}", r.previous, r.message));
    return {{"reloaded", true}, {"export", r.version}, {"previous", r.previous}, {"load_seconds", r.load_seconds}};
  }

  ReloadOutcome reload() {
    std::lock_guard<std::mutex> lock(reload_mu);
    ReloadOutcome out;
    const auto old = current();
    out.previous = old ? old->version : "";
    try {
      auto s = load_state(o.export_dir, o);
      out.ok = true;
      out.version = s->version;
      out.load_seconds = s->load_seconds;
      install(std::move(s));
      metrics.count_reload(true);
      log().info("serve: reloaded {}: {} (was {}), {:.2f} s", o.export_dir, out.version, out.previous,
                 out.load_seconds);
    } catch (const std::exception& e) {
      out.ok = false;
      out.version = out.previous;
      out.message = e.what();
      metrics.count_reload(false);
      log().error("serve: reload of {} refused, still serving {}: {}", o.export_dir,
                  out.previous.empty() ? "nothing" : out.previous, out.message);
    }
    return out;
  }

  // ---- Dispatch ----

  bool authorized(const httplib::Request& req) const {
    if (o.admin_token.empty()) return true;
    // The scheme's name is case-insensitive (RFC 9110 11.1): "bearer TOKEN" is the same.
    const std::string expected = "Bearer " + o.admin_token;
    std::string got = req.get_header_value("Authorization");
    if (got.size() >= 7 && got[6] == ' ' &&
        std::equal(got.begin(), got.begin() + 6, "bearer",
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      got.replace(0, 6, "Bearer");
    // Constant time in the token's contents: every byte of the expected value is compared.
    unsigned char diff = got.size() == expected.size() ? 0 : 1;
    for (size_t i = 0; i < expected.size(); ++i)
      diff |= static_cast<unsigned char>(expected[i] ^ (i < got.size() ? got[i] : 0));
    return diff == 0;
  }

  void handle(const httplib::Request& req, httplib::Response& res, const std::string* body_error) {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::milliseconds(o.timeout_ms);
    std::string endpoint = "other";
    json out;
    int status = 200;
    try {
      std::vector<std::string> methods;
      const Route* route = nullptr;
      for (const Route& r : routes) {
        if (r.path != req.path) continue;
        endpoint = r.path;
        methods.push_back(r.method);
        // HEAD is GET without the body (RFC 9110 9.3.2; load balancers probe with it): the
        // library sends the headers of the GET answer and drops its body.
        if (r.method == "GET") methods.push_back("HEAD");
        if (r.method == req.method || (r.method == "GET" && req.method == "HEAD")) route = &r;
      }
      if (body_error) http_fail(400, *body_error);
      if (methods.empty())
        http_fail(404, fmt::format("no such path {}; see docs/serving.md for the endpoints", req.path));
      if (!route) {
        res.set_header("Allow", method_list(methods));
        http_fail(405, fmt::format("{} does not take {}; it takes {}", req.path, req.method, method_list(methods)));
      }
      if (route->path.rfind("/admin/", 0) == 0 && !authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer");
        http_fail(401, fmt::format("{} needs the header 'Authorization: Bearer TOKEN' with the token of --admin-token", req.path));
      }
      if (route->needs_export && !current())
        http_fail(503, "the export is not loaded yet; try again once /readyz answers 200");
      out = (this->*(route->fn))(req, res, deadline);
    } catch (const HttpError& e) {
      status = e.status;
      out = {{"error", e.message}};
      if (e.extra.is_object())
        for (const auto& [key, value] : e.extra.items()) out[key] = value;
    } catch (const TimedOut&) {
      status = 503;
      out = {{"error", fmt::format("the request ran past its timeout of {} ms (--timeout-ms)", o.timeout_ms)}};
    } catch (const DeadlinePassed&) {
      status = 503;
      out = {{"error", fmt::format("the request ran past its timeout of {} ms (--timeout-ms)", o.timeout_ms)}};
    } catch (const Error& e) {
      status = 400;
      out = {{"error", e.what()}};
    } catch (const std::exception& e) {
      status = 500;
      out = {{"error", fmt::format("internal error: {}", e.what())}};
      log().error("serve: {} {}: internal error: {}", req.method, req.path, e.what());
    } catch (...) {
      status = 500;
      out = {{"error", "internal error of an unknown kind"}};
      log().error("serve: {} {}: internal error of an unknown kind", req.method, req.path);
    }
    res.status = status;
    if (!out.is_null()) res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", "application/json");
    metrics.observe_request(endpoint, req.method, status,
                            std::chrono::duration<double>(Clock::now() - start).count());
  }

  // Answers of the library before any handler ran (malformed request line or headers, URI or
  // body over its limit): the status becomes 400 with a sentence.
  httplib::Server::HandlerResponse library_error(const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // one of ours
    std::string message;
    switch (res.status) {
      case 413:
        message = fmt::format("the request body is over the limit of {} bytes (--max-body-bytes)", o.max_body_bytes);
        break;
      case 414:
        message = fmt::format("the request URI is over the limit of {} bytes", CPPHTTPLIB_REQUEST_URI_MAX_LENGTH);
        break;
      case 400:
        message = fmt::format("malformed HTTP request (bad request line or method, or a header line over {} bytes)",
                              CPPHTTPLIB_HEADER_MAX_LENGTH);
        break;
      default:  // e.g. 416 for a bad Range header: the library's status stays
        message = fmt::format("the HTTP library refused the request with status {}", res.status);
        res.set_content(json{{"error", message}}.dump() + "\n", "application/json");
        metrics.observe_request("other", req.method, res.status, -1);
        return httplib::Server::HandlerResponse::Handled;
    }
    res.status = 400;
    res.set_content(json{{"error", message}}.dump() + "\n", "application/json");
    metrics.observe_request("other", req.method, 400, -1);
    return httplib::Server::HandlerResponse::Handled;
  }
};

Server::Server(ServerOptions opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.o = std::move(opts);
  const ServerOptions& o = m.o;
  if (o.threads < 1) fail("--threads must be at least 1, got {}", o.threads);
  m.routes = {
      {"/healthz", "GET", &Impl::healthz, false},
      {"/readyz", "GET", &Impl::readyz, true},
      {"/metrics", "GET", &Impl::metrics_text, false},
      {"/v1/info", "GET", &Impl::info, true},
      {"/v1/recommend", "GET", &Impl::recommend_get, true},
      {"/v1/recommend", "POST", &Impl::recommend_post, true},
      {"/v1/similar-items", "GET", &Impl::similar_items, true},
      {"/v1/similar-items", "POST", &Impl::similar_items_post, true},
      {"/admin/reload", "POST", &Impl::admin_reload, true},
  };
  BatcherOptions bo;
  bo.max_wait = o.batch_wait;
  bo.max_batch = o.max_batch;
  bo.in_server = [&m] { return m.metrics.in_flight(); };
  m.batcher = std::make_unique<Batcher>(bo, [&m](size_t n) { m.metrics.observe_batch(n); });
  const int threads = o.threads;
  m.svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.svr.set_keep_alive_max_count(10000);
  m.svr.set_keep_alive_timeout(o.keep_alive_seconds);
  m.svr.set_read_timeout(std::chrono::milliseconds(o.timeout_ms));
  m.svr.set_write_timeout(std::chrono::milliseconds(o.timeout_ms));
  m.svr.set_payload_max_length(o.max_body_bytes);
  // SO_REUSEADDR only: a restart may bind while old connections are in TIME_WAIT, but a port
  // that another server listens on is refused. The library's default, SO_REUSEPORT, let a
  // second `recforge serve` bind the same port and take half of its connections.
  // TCP_NODELAY (accepted connections inherit it from the listening socket): an answer goes out
  // as headers and body in separate writes, and with Nagle's algorithm the body waited for the
  // client's delayed ACK of the headers, 40 ms per request on Linux.
  m.svr.set_tcp_nodelay(true);
  m.svr.set_socket_options([&m](socket_t sock) {
    m.listen_fd = sock;  // the last one offered is the one bound (see the listen() below)
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  });
  m.svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [&m](const httplib::Request& req, httplib::Response& res) { return m.library_error(req, res); }));
  // A request is in flight (recforge_requests_in_flight) from routing, body reading included,
  // to its answer.
  // Every answer is JSON made for its request: a Range header would have the library cut it to
  // a fragment still sent as 200 (or as multipart/byteranges). The library's Request object is
  // its own, non-const, handed to the handlers as const; its parsed ranges are dropped so that the
  // whole answer goes out.
  auto whole_answers = [](const httplib::Request& req) {
    const_cast<httplib::Request&>(req).ranges.clear();
  };
  auto plain = [&m, whole_answers](const httplib::Request& req, httplib::Response& res) {
    whole_answers(req);
    m.metrics.begin_request();
    m.handle(req, res, nullptr);
    m.metrics.end_request();
    if (m.batcher) m.batcher->wake();
  };
  // Bodies are read here, bounded by --max-body-bytes also when they come in chunks (the
  // library bounds only a declared Content-Length).
  auto with_body = [&m, whole_answers](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& reader) {
    whole_answers(req);
    m.metrics.begin_request();
    std::string body;
    bool over = false;
    // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 6.3);
    // the library would read one until the connection closes.
    const bool has_body = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
    // A body over the limit is read on and dropped, up to a bound, before the 400 goes out: a
    // client still sending it would otherwise meet a closed connection (a reset) instead of the
    // answer.
    const size_t drain = std::max<size_t>(4 * m.o.max_body_bytes, size_t{1} << 20);
    size_t dropped = 0;
    const auto reading = Clock::now();
    const bool ok = !has_body || reader([&](const char* data, size_t n) {
      if (over || body.size() + n > m.o.max_body_bytes) {
        over = true;
        dropped += n;
        return dropped <= drain;
      }
      body.append(data, n);
      return true;
    });
    std::string error;
    if (over || res.status == 413)
      error = fmt::format("the request body is over the limit of {} bytes (--max-body-bytes)", m.o.max_body_bytes);
    else if (!ok && Clock::now() - reading >= std::chrono::milliseconds(m.o.timeout_ms))
      // The library's read timeout is --timeout-ms: the rest of the body did not come in time.
      error = fmt::format("the request body was not received within the read timeout of {} ms "
                          "(--timeout-ms)", m.o.timeout_ms);
    else if (!ok)
      error = "the request body could not be read (incomplete or malformed)";
    if (!error.empty()) res.set_header("Connection", "close");
    httplib::Request copy = req;
    copy.body = std::move(body);
    m.handle(copy, res, error.empty() ? nullptr : &error);
    m.metrics.end_request();
    if (m.batcher) m.batcher->wake();
  };
  m.svr.Get(".*", plain);
  m.svr.Options(".*", plain);
  m.svr.Post(".*", with_body);
  m.svr.Put(".*", with_body);
  m.svr.Patch(".*", with_body);
  m.svr.Delete(".*", with_body);

  if (o.port < 0 || o.port > 65535) fail("--listen {}:{}: the port must be from 0 to 65535", o.host, o.port);
  if (o.port == 0) {
    m.bound_port = m.svr.bind_to_any_port(o.host);
    if (m.bound_port < 0) m.bound_port = 0;
  } else if (m.svr.bind_to_port(o.host, o.port)) {
    m.bound_port = o.port;
  }
  if (m.bound_port <= 0)
    fail("--listen {}:{}: cannot listen there (address in use, not an address of this host, or "
         "a port below 1024 without the right)",
         o.host, o.port);
  // Debian's cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed in its
  // .so): 64 clients connecting at once had their SYNs dropped and retried a second later, a
  // p99 above 1 s. Listening again on the bound socket raises the backlog (to the kernel's
  // net.core.somaxconn at most).
  if (m.listen_fd >= 0 && ::listen(m.listen_fd, SOMAXCONN) != 0)
    log().warn("--listen {}:{}: could not raise the connection backlog: {}", o.host, m.bound_port,
               std::strerror(errno));
  m.listener = std::thread([&m] {
    m.svr.listen_after_bind();
    m.listen_returned = true;
  });
  m.loader = std::thread([&m] {
    std::string error;
    try {
      m.install(load_state(m.o.export_dir, m.o));
      const auto s = m.current();
      log().info("serve: loaded {} ({}) in {:.2f} s: {} users, {} items", m.o.export_dir,
                 s->version.empty() ? "flat" : s->version, s->load_seconds, s->rec->user_ids().size(),
                 s->rec->item_ids().size());
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "the export could not be loaded";
    }
    std::lock_guard<std::mutex> lock(m.load_mu);
    m.first_load_done = true;
    m.first_load_error = error;
    m.load_cv.notify_all();
  });
}

Server::~Server() { stop(); }

const std::string& Server::host() const { return impl_->o.host; }
int Server::port() const { return impl_->bound_port; }
const Metrics& Server::metrics() const { return impl_->metrics; }

std::string Server::wait_loaded() {
  std::unique_lock<std::mutex> lock(impl_->load_mu);
  impl_->load_cv.wait(lock, [&] { return impl_->first_load_done; });
  return impl_->first_load_error;
}

ReloadOutcome Server::reload() {
  wait_loaded();
  return impl_->reload();
}

void Server::stop() {
  Impl& m = *impl_;
  std::call_once(m.stop_once, [&m] {
    // stop() is a no-op until the listener runs: wait for it to start (or to have failed).
    while (!m.svr.is_running() && !m.listen_returned) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    m.svr.stop();  // closes the listening socket; the workers finish what they have, then end
    if (m.listener.joinable()) m.listener.join();
    if (m.loader.joinable()) m.loader.join();
    m.batcher.reset();  // after the workers: nothing is queued any more
  });
}

}  // namespace recforge::serve
