#include "cli/commands.h"
#include "cli/forget_command.h"
#include "cli/explain_command.h"
#include "cli/report_user_command.h"
#include "cli/serve_command.h"
#include "cli/sweep_commands.h"

#include <omp.h>

#include <faiss/Index.h>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <limits>
#include <optional>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/blas.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "core/text.h"
#include "data/synthetic.h"
#include "dist/comm.h"
#include "dist/errors.h"
#include "dist/train_dist.h"
#include "pipeline/checkpoint.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "pipeline/warm_start.h"
#include "core/fs.h"
#include "data/weight.h"
#include "eval/topk.h"
#include "cli/index_bench.h"
#include "index/filtered_search.h"
#include "models/memory.h"
#include "pipeline/export.h"
#include "pipeline/options.h"
#include "recommend/recommend.h"
#include <cmath>

namespace recforge::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string config_path;
  std::vector<std::string> sets;
  std::string run_dir, out, user, item_list, name, device, exclude, resume;
  std::string user_list, candidates, weights, format = "csv", metric = "default", item;
  std::string key_file, key_env;  // --pseudonym-key-file / --pseudonym-key-env
  bool all = false, exact = false, include_seen = false;
  std::string nprobe_list, ef_list;
  int64_t bench_users = 0;
  int64_t k = 10;
  int64_t users = 0, items = 0, interactions = 0, seed = -1;
  bool markdown = false;
  bool distributed = false;  // train --distributed
  bool by_activity = false;  // evaluate --by-activity
  std::string activity_edges = "5,10,20,50,100";
  CLI::Option* activity_edges_option = nullptr;  // given: --by-activity too
};

Options g;
std::map<std::string, std::function<int()>> g_actions;

config::Config load_config(const std::string& path, std::vector<std::string> sets,
                           config::Config::Checks checks = config::Config::Checks::kAll) {
  return path.empty() ? [&] {
    config::Config c = config::Config::defaults();
    for (const auto& s : sets) c.set(s);
    if (checks == config::Config::Checks::kAll) config::check(c);
    return c;
  }()
                      : config::Config::load(path, sets, checks);
}

using pipeline::read_json;

// train --resume RUN: the config of RUN's checkpoint (or the given one), with run.dir and
// run.name of RUN.
config::Config resume_config(std::vector<std::string> sets) {
  std::string run = g.resume;
  while (run.size() > 1 && run.back() == '/') run.pop_back();
  const fs::path path(run);
  const std::string name = path.filename().string();
  const std::string parent = path.has_parent_path() ? path.parent_path().string() : ".";
  if (!g.name.empty())
    fail("train --resume {}: the run's name is {}; leave out --name {}", g.resume, name, g.name);
  const std::string ckpt = pipeline::checkpoint_dir(parent, name);
  if (!pipeline::has_checkpoint(ckpt))
    fail("train --resume {}: there is no checkpoint {} to continue from (one is written every "
         "train.checkpoint_every iterations and removed when the run completes)",
         g.resume, ckpt);
  const std::string dir_set = "run.dir=" + nlohmann::json(parent).dump();
  const std::string name_set = "run.name=" + nlohmann::json(name).dump();
  sets.push_back(dir_set);
  sets.push_back(name_set);
  if (!g.config_path.empty()) return config::Config::load(g.config_path, sets);
  const nlohmann::json meta = pipeline::read_checkpoint_json(ckpt);
  const std::string file = ckpt + "/checkpoint.json";
  config::Config cfg = config::Config::parse(meta.value("config_yaml", ""), file, sets);
  // The values re-read from the checkpoint, and the run's name and directory given back by
  // --resume, keep the origins they had when the run started (its config file, --set,
  // default): the resumed run's config.yaml and run.json name those, not the checkpoint,
  // which is removed when the run completes.
  cfg.restore_origins(meta.value("config_origins", nlohmann::json()), file,
                      {"--set " + dir_set, "--set " + name_set});
  return cfg;
}


constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

// Outputs of recommend --all above this size are announced before they are computed.
constexpr double kLargeOutputBytes = 100.0 * 1024 * 1024;

// recommend --all (similar --all): the CSV's estimated size (queries × k lines; ids measured on
// up to 1000 queries and items), announced above kLargeOutputBytes and refused when the file's
// disk or the memory that holds the lists and the text cannot take it. `verb` names the command
// and `queries` what the queries are ("users").
void check_output_size(int64_t n_users, int k, const data::IdMap& users, const data::IdMap& items,
                       const char* verb = "recommend --all", const char* queries = "users") {
  auto mean_length = [](const data::IdMap& ids) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(ids.size()), 1000);
    double total = 0;
    for (int64_t j = 0; j < n; ++j) total += static_cast<double>(ids.external(static_cast<data::index_t>(j)).size());
    return n > 0 ? total / static_cast<double>(n) : 1.0;
  };
  // user,rank,item,score: three commas, a newline, the rank's digits and a %.6g score (~10).
  const double line = mean_length(users) + mean_length(items) + std::to_string(k).size() + 14;
  const double lines = static_cast<double>(n_users) * k;
  const double bytes = lines * line;
  if (bytes < kLargeOutputBytes) return;
  log().info("{}: writing about {} ({} {} x {} items) to {}", verb, models::format_bytes(bytes),
             n_users, queries, k, g.out);
  std::error_code ec;
  const fs::path dir = fs::absolute(g.out).parent_path();
  const fs::space_info space = fs::space(dir, ec);
  if (!ec && bytes > static_cast<double>(space.available))
    fail("{} --k {}: the CSV would take about {}, but {} has {} free; lower --k", verb,
         g.k, models::format_bytes(bytes), dir.string(),
         models::format_bytes(static_cast<double>(space.available)));
  std::string source;
  const double memory = lines * 8 + bytes;  // the lists (item, score) and the text
  const double available = models::available_memory(&source);
  if (available >= 0 && memory > available)
    fail("{} --k {}: the lists and the CSV text need about {} of memory, but only "
         "{} is available ({}); lower --k",
         verb, g.k, models::format_bytes(memory), models::format_bytes(available), source);
}

int cmd_train() {
  std::vector<std::string> sets = g.sets;
  if (!g.name.empty() && g.resume.empty()) sets.push_back("run.name=" + g.name);
  if (!g.device.empty()) sets.push_back("train.device=" + g.device);
  if (g.resume.empty() && g.config_path.empty())
    fail("train: give a YAML config file, or --resume RUN to continue a run from its checkpoint");
  // One process of `mpirun -np P recforge train CONFIG` (P > 1), or --distributed.
  if (dist::world().distributed() || g.distributed) {
    std::optional<config::Config> cfg;
    std::string error;
    try {
      if (!g.resume.empty())
        fail("train --resume: a distributed run resumes by running the same command again (its "
             "checkpoint, written every train.checkpoint_every iterations, is found by the "
             "run's name); run the mpirun command without --resume");
      cfg = config::Config::load(g.config_path, sets);
    } catch (const Error& e) {
      error = e.what();
    }
    // A config that one process cannot read (a missing file on one host) ends every process:
    // said once, by rank when only some failed.
    dist::agree(dist::world(), error);
    const std::string dir = dist::train_distributed(*cfg, dist::world());
    if (dist::world().rank() == 0) std::printf("%s\n", dir.c_str());
    return 0;
  }
  const config::Config cfg = g.resume.empty() ? config::Config::load(g.config_path, sets)
                                              : resume_config(sets);
  const std::string dir = pipeline::train(cfg);
  std::printf("%s\n", dir.c_str());
  return 0;
}

int cmd_datagen() {
  for (const std::string& set : g.sets)  // anything else would be ignored without a word
    if (set.rfind("synthetic.", 0) != 0 && set.rfind("run.progress=", 0) != 0 &&
        set.rfind("run.log_level=", 0) != 0)
      fail("--set {}: datagen takes synthetic.* settings (and run.progress, run.log_level); it "
           "generates data and trains nothing",
           set);
  std::vector<std::string> sets = g.sets;
  if (g.users > 0) sets.push_back("synthetic.users=" + std::to_string(g.users));
  if (g.items > 0) sets.push_back("synthetic.items=" + std::to_string(g.items));
  if (g.interactions > 0) sets.push_back("synthetic.interactions=" + std::to_string(g.interactions));
  if (g.seed >= 0) sets.push_back("synthetic.seed=" + std::to_string(g.seed));
  // datagen has no --communities: a small --items lowers the default 16 communities to one per
  // item rather than refusing (a value the user set is kept, and refused if too large), so the
  // settings are read once without the checks that relate them.
  {
    const config::Config first = load_config(g.config_path, sets, config::Config::Checks::kValuesOnly);
    const config::SyntheticSection& syn = first.settings().synthetic;
    if (first.where("synthetic.communities") == "default" && syn.communities > syn.items)
      sets.push_back("synthetic.communities=" + std::to_string(syn.items));
  }
  const config::Config cfg = load_config(g.config_path, sets);
  std::error_code ec;
  if (!g.config_path.empty() && fs::equivalent(g.out, g.config_path, ec))
    fail("datagen --out {}: that is the config file it reads; write the data elsewhere", g.out);
  set_progress_mode(cfg.settings().run.progress);
  const auto data = data::generate_synthetic(pipeline::synthetic_options(cfg));
  data::write_synthetic_csv(data, g.out);
  // The users and items that occur (a sparse draw can leave some of synthetic.items out).
  std::vector<char> user_seen(static_cast<size_t>(data.users.size()), 0);
  std::vector<char> item_seen(static_cast<size_t>(data.items.size()), 0);
  for (data::offset_t k = 0; k < data.x.size(); ++k) {
    user_seen[static_cast<size_t>(data.x.users[k])] = 1;
    item_seen[static_cast<size_t>(data.x.items[k])] = 1;
  }
  const auto count = [](const std::vector<char>& v) { return std::count(v.begin(), v.end(), 1); };
  log().info("wrote {} interactions ({} users, {} items of the {} and {} drawn from) to {}",
             data.x.size(), count(user_seen), count(item_seen), data.users.size(),
             data.items.size(), g.out);
  return 0;
}

int cmd_config() {
  if (g.markdown) {
    std::fputs(config::markdown_reference().c_str(), stdout);
    return 0;
  }
  const config::Config cfg = load_config(g.config_path, g.sets);
  std::fputs(cfg.to_yaml().c_str(), stdout);
  return 0;
}

int cmd_info() {
  if (!g.run_dir.empty() && artifact::is_artifact(g.run_dir)) {
    // An export: loaded and verified as recommend loads it (every file's size and SHA-256, the
    // shapes, finite factors, the index), then described. Any defect is a one-line error.
    const artifact::Artifact a = artifact::load(g.run_dir);
    const nlohmann::json& m = a.manifest;
    auto text = [&](const char* key) {
      const auto it = m.find(key);
      return it != m.end() && it->is_string() ? it->get<std::string>() : std::string("?");
    };
    auto dump = [&](const char* key) {
      const auto it = m.find(key);
      return it != m.end() ? it->dump() : std::string("?");
    };
    std::printf("export     %s (%s version %d)\n", g.run_dir.c_str(), artifact::kFormatName,
                artifact::kFormatVersion);
    std::printf("version    %s\n",
                a.version.empty() ? "(flat layout of an earlier recforge)" : a.version.c_str());
    std::printf("created    %s with recforge %s\n", text("created").c_str(),
                text("recforge_version").c_str());
    std::printf("model      %s\n", dump("model").c_str());
    std::printf("counts     %s\n", dump("counts").c_str());
    std::printf("index      %s\n", dump("index").c_str());
    std::printf("verified   %zu files: sizes and SHA-256 as manifest.json lists them, shapes as "
                "its counts, finite factors\n",
                m["files"].size());
    return 0;
  }
  if (!g.run_dir.empty()) {
    const nlohmann::json run = pipeline::read_run_json(g.run_dir);
    const std::string stats_path = g.run_dir + "/stats.json";
    nlohmann::json stats;
    if (fs::exists(stats_path)) stats = read_json(stats_path);
    std::string text;
    try {  // values of other types than recforge writes: a damaged or hand-edited file
      text += fmt::format("run        {}\n", g.run_dir);
      text += fmt::format("created    {} with recforge {}\n", run.value("created", "?"),
                          run.value("recforge_version", "?"));
      text += fmt::format("device     {}, {} threads\n", run.value("device", "?"),
                          run.value("threads", 0));
      text += fmt::format("model      {}\n", run.contains("model") && !run["model"].is_null()
                                                   ? run["model"].dump()
                                                   : "none");
      if (run.contains("init_from")) {  // a warm start (model.init_from)
        const nlohmann::json& w = run["init_from"];
        text += fmt::format("started    from {} ({}): {} of {} users, {} of {} items\n",
                            w.at("export").get<std::string>(), w.at("version").get<std::string>(),
                            w.at("users_matched").get<long long>(), w.at("users").get<long long>(),
                            w.at("items_matched").get<long long>(), w.at("items").get<long long>());
        if (w.value("users_departed", 0LL) > 0)
          text += fmt::format("           {} user(s) of that export are not in this run's data\n",
                              w.at("users_departed").get<long long>());
      }
      if (run.contains("init_from_skipped"))  // model.init_from_max_age_days
        text += fmt::format("started    from random factors, not from {}: {}\n",
                            run["init_from_skipped"].at("export").get<std::string>(),
                            run["init_from_skipped"].at("reason").get<std::string>());
      if (run.contains("model") && !run["model"].is_null()) {  // when the chain of warm starts the model is in began
        const nlohmann::json lineage = pipeline::run_lineage(run);
        const nlohmann::json& started = lineage.at("started");
        text += fmt::format("lineage    {}\n",
                            started.is_string() && lineage.at("warm_starts").is_number()
                                ? fmt::format("chain of warm starts began {}, {} warm start(s) "
                                              "since",
                                              started.get<std::string>(),
                                              lineage.at("warm_starts").get<long long>())
                                : std::string("not recorded (warm-started by an older recforge)"));
        const nlohmann::json::json_pointer chain("/init_from/chain_users/count");
        if (run.contains(chain) && run.at(chain).get<long long>() > 0)
          text += fmt::format("           carries {} user(s) that earlier models of the chain "
                              "were trained on and this run's data lacks (chain_users.txt, "
                              "hashed)\n",
                              run.at(chain).get<long long>());
      }
      // Every export written from the run (training's and recforge export's, exports.txt): what
      // forget and report-user consider.
      for (const std::string& e : pipeline::run_exports(g.run_dir, run)) {
        text += fmt::format("export     {}{}\n", e,
                            artifact::is_artifact(e) ? "" : " (no longer there)");
      }
      if (!stats.is_null()) {
        text += fmt::format("users      {}\nitems      {}\n", stats.at("users").get<long long>(),
                            stats.at("items").get<long long>());
        for (const char* part : {"train", "validation", "test"}) {
          if (!stats.contains(part)) continue;
          // A distributed run's stats.json counts the interactions only.
          text += fmt::format("{:<10} {} interactions{}\n", part,
                              stats[part].at("interactions").get<long long>(),
                              stats[part].contains("density")
                                  ? fmt::format(", density {:.3g}",
                                                stats[part]["density"].get<double>())
                                  : "");
        }
      }
    } catch (const nlohmann::json::exception& e) {
      fail("{}: run.json or stats.json holds a value that recforge does not write ({}); the run "
           "directory is damaged",
           g.run_dir, e.what());
    }
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  std::printf("recforge   %s\n", RECFORGE_VERSION);
  std::printf("cuda       %s\n", backend::cuda_version_text().c_str());
  const int n = backend::cuda_device_count();
  std::printf("gpus       %d\n", n);
  for (int d = 0; d < n; ++d) std::printf("           %s\n", backend::cuda_device_description(d).c_str());
  std::printf("cpu        %d threads (OpenMP)\n", omp_get_num_procs());
  std::printf("blas       OpenBLAS, %s kernels\n", blas_core_name());
  std::printf("faiss      %d.%d.%d (%s)\n", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
              FAISS_VERSION_PATCH, index::faiss_gpu_compiled() ? "GPU and CPU" : "CPU");
  std::printf("cache dir  %s\n", data::default_cache_dir().c_str());
  return 0;
}

// Parses "a,b,c" into external ids.
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = std::min(s.find(',', b), s.size());
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

// split_list for a list of ids that must name at least one ("--items ," named none, and was
// answered "none of the 0 items asked for is in this run").
std::vector<std::string> id_list(const std::string& s, const char* option) {
  std::vector<std::string> out = split_list(s);
  if (out.empty())
    fail("{} \"{}\": lists no id; expected ids separated by commas", option, s);
  return out;
}

// Parses "1,2,4" into positive integers for --nprobe, --ef-search and --activity-edges; an empty
// entry ("1,,2", "1,") is refused too.
std::vector<int64_t> int_list(const std::string& text, const char* option) {
  if (text.empty() || text.front() == ',' || text.back() == ',' ||
      text.find(",,") != std::string::npos)
    fail("{} {}: an entry is empty; expected a list like 1,2,4,8", option, text);
  std::vector<int64_t> v;
  for (const std::string& s : split_list(text)) {
    const std::optional<int64_t> x = parse_int64(s);
    if (!x || *x < 1)
      fail("{} {}: \"{}\" is not a positive integer; expected a list like 1,2,4,8", option, text, s);
    v.push_back(*x);
  }
  return v;
}

// The test metrics of `m` by activity bucket: printed as a table and returned as JSON.
nlohmann::json print_by_activity(const pipeline::UserMetrics& m, const std::vector<int64_t>& edges) {
  const std::vector<pipeline::ActivityBucket> buckets = pipeline::by_activity(m, edges);
  std::vector<std::string> titles;
  for (const pipeline::ActivityBucket& b : buckets)
    titles.push_back(b.high < 0 ? fmt::format("{}+", b.low) : fmt::format("{}-{}", b.low, b.high));
  const nlohmann::json out = pipeline::activity_json(m, buckets);
  std::printf("test by activity (users by the interactions their ranking came from: training, or "
              "fold-in for held-out users)\n");
  std::printf("  %-14s", "interactions");
  for (const std::string& t : titles) std::printf(" %9s", t.c_str());
  std::printf("\n  %-14s", "users");
  for (const pipeline::ActivityBucket& b : buckets) std::printf(" %9lld", static_cast<long long>(b.users));
  std::printf("\n");
  for (size_t n = 0; n < m.per_user.names.size(); ++n) {
    std::printf("  %-14s", m.per_user.names[n].c_str());
    for (const pipeline::ActivityBucket& b : buckets)
      std::printf(" %9s", b.users > 0 ? fmt::format("{:.6f}", b.means[n]).c_str() : "-");
    std::printf("\n");
  }
  return out;
}

int cmd_evaluate() {
  if (g.activity_edges_option && g.activity_edges_option->count() > 0) g.by_activity = true;
  // Checked before the run is opened, so that a bad list costs nothing.
  std::vector<int64_t> edges;
  if (g.by_activity) {
    edges = int_list(g.activity_edges, "--activity-edges");
    pipeline::check_activity_edges(edges, "--activity-edges " + g.activity_edges);
  }
  pipeline::OpenedRun r = pipeline::open_run(g.run_dir, "evaluate");
  nlohmann::json saved;
  if (fs::exists(g.run_dir + "/metrics.json")) saved = read_json(g.run_dir + "/metrics.json");
  nlohmann::json out = nlohmann::json::object();
  for (pipeline::Part part : {pipeline::Part::kValidation, pipeline::Part::kTest}) {
    std::optional<pipeline::UserMetrics> per_user;
    if (g.by_activity && part == pipeline::Part::kTest)
      per_user = pipeline::evaluate_per_user(*r.model, r.data, part, pipeline::eval_ks(r.config));
    const eval::Metrics m =
        per_user ? per_user->metrics : pipeline::evaluate(*r.model, r.data, part, r.config);
    if (m.users == 0) continue;
    const char* name = pipeline::part_name(part);
    out[name] = m.to_json();
    std::printf("%s (%s)\n", name, pipeline::users_scored(m).c_str());
    for (const std::string& metric : m.names()) {
      const double v = m.get(metric);
      std::string note;
      if (saved.is_object() && saved.contains(name) && saved[name].is_object() &&
          saved[name].contains(metric) && saved[name][metric].is_number())
        note = std::fabs(saved[name][metric].get<double>() - v) <= 1e-6 ? "  (= saved)"
                                                                        : "  (saved: " + saved[name][metric].dump() + ")";
      std::printf("  %-14s %.6f%s\n", metric.c_str(), v, note.c_str());
    }
    if (per_user) out["test_by_activity"] = print_by_activity(*per_user, edges);
  }
  // Nothing held out (split.method none): nothing to score, said instead of an empty answer.
  if (out.empty())
    fail("evaluate {}: the run holds no validation or test interactions to score (split.method "
         "{}); train with a split that holds some out",
         g.run_dir, r.config.settings().split.method);
  if (!g.out.empty()) write_output_file(g.out, out.dump(2) + "\n");
  return 0;
}

// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// A JSON string.
std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

// One ranked list of the output, whatever its source (a Result's List or a row of a TopK).
struct OutList {
  const std::string* query;  // nullptr: a folded-in new user (empty CSV field, JSON null)
  std::vector<std::pair<const std::string*, float>> entries;
  bool personalised = true;  // false: an opted-out user's popularity list
};

// The lists as CSV (header `columns`, and a trailing column `personalised` when
// `personalised_column`) or JSON (`query_key`, `list_key` and "personalised" per object; an
// array unless `single`). Scores are written in full float precision (shortest round trip).
std::string format_lists(const std::vector<OutList>& lists, const std::array<const char*, 4>& columns,
                         const char* query_key, const char* list_key, const char* entry_key,
                         bool single, bool personalised_column = false) {
  std::string text;
  if (g.format == "csv") {
    text = fmt::format("{},{},{},{}{}\n", columns[0], columns[1], columns[2], columns[3],
                       personalised_column ? ",personalised" : "");
    for (const OutList& l : lists) {
      const std::string q = l.query ? csv_field(*l.query) : std::string();
      const char* tail = !personalised_column ? "" : l.personalised ? ",true" : ",false";
      for (size_t j = 0; j < l.entries.size(); ++j)
        text += fmt::format("{},{},{},{}{}\n", q, j + 1, csv_field(*l.entries[j].first),
                            l.entries[j].second, tail);
    }
    return text;
  }
  if (!single) text += "[";
  for (size_t n = 0; n < lists.size(); ++n) {
    const OutList& l = lists[n];
    if (n) text += ",\n";
    text += fmt::format("{{\"{}\":{},\"{}\":[", query_key,
                        l.query ? json_string(*l.query) : std::string("null"), list_key);
    for (size_t j = 0; j < l.entries.size(); ++j)
      text += fmt::format("{}{{\"{}\":{},\"score\":{}}}", j ? "," : "", entry_key,
                          json_string(*l.entries[j].first), l.entries[j].second);
    text += fmt::format("],\"personalised\":{}}}", l.personalised ? "true" : "false");
  }
  if (!single) text += "]";
  return text + "\n";
}

// Writes the output to --out (atomically) or stdout.
void emit(const std::string& text, const std::string& what) {
  if (g.out.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  write_output_file(g.out, text);
  log().info("wrote {} to {}", what, g.out);
}

// Result lists as output lists.
std::vector<OutList> out_lists(const recommend::Result& r, bool new_user) {
  std::vector<OutList> out;
  for (const recommend::List& l : r.lists) {
    OutList o{new_user ? nullptr : &l.query, {}, l.personalised};
    for (const recommend::Scored& s : l.items) o.entries.push_back({&s.id, s.score});
    out.push_back(std::move(o));
  }
  return out;
}

// One warning line on stderr per id that the request named and the source does not know.
void warn_unknown(const char* verb, const std::vector<recommend::Unknown>& unknown) {
  for (const recommend::Unknown& u : unknown) {
    const std::string option = u.field == "users" ? (g.user.empty() ? "--users" : "--user")
                                                  : "--" + u.field;
    if (u.field == "users" || u.field == "user") {  // user ids stay out of logs: its length
      log().warn("{} {}: a user id of {} byte{} is not in {}; skipped", verb, option, u.id.size(),
                 u.id.size() == 1 ? "" : "s", g.run_dir);
      continue;
    }
    log().warn("{} {}: item \"{}\" is not in {}; skipped", verb, option, u.id, g.run_dir);
  }
}

// --weights w,w,...: finite numbers.
std::vector<float> weight_list(const std::string& text) {
  std::vector<float> w;
  for (const std::string& s : split_list(text)) {
    const std::string t = recommend::trim(s);
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (t.empty() || used != t.size() || !std::isfinite(x) || x < 0 ||
        x > std::numeric_limits<float>::max())
      fail("recommend --weights {}: \"{}\" is not a weight; expected finite numbers >= 0 and "
           "at most {:g} (the largest float) like 1,2.5,4",
           text, s, std::numeric_limits<float>::max());
    w.push_back(static_cast<float>(x));
  }
  return w;
}

// Warns (once) when --k is above what a list can hold.
void warn_k(int64_t available, const char* what) {
  if (g.k > available)
    log().warn("--k {} is above the number of {}, {}; the lists hold at most {}", g.k, what,
               available, available);
}

int cmd_recommend() {
  const int modes = !g.user.empty() + !g.user_list.empty() + !g.item_list.empty() + g.all;
  if (modes != 1)
    fail("recommend: give exactly one of --user ID, --users ID,ID,..., --items ID,ID,... or "
         "--all --out FILE");
  if (g.all && g.out.empty())
    fail("recommend --all needs --out FILE (a CSV of user,rank,item,score, or JSON with "
         "--format json)");
  if (!g.weights.empty() && g.item_list.empty())
    fail("recommend --weights: weights belong to the items of --items ID,ID,...; give --items");
  const recommend::Recommender rec =
      recommend::Recommender::open(g.run_dir, open_options("recommend from"));
  // CSV: the trailing `personalised` column when the source has users who opted out.
  const bool personalised_column = rec.opt_out_size() > 0;
  recommend::Options o;
  o.k = static_cast<int>(g.k);
  o.exclude = split_list(g.exclude);
  if (!g.candidates.empty()) o.candidates = id_list(g.candidates, "--candidates");
  o.include_seen = g.include_seen;
  o.exact = g.exact;
  const int64_t n_items = rec.item_ids().size();
  warn_k(n_items, "items");
  const std::array<const char*, 4> columns{"user", "rank", "item", "score"};
  if (g.all) {
    const int k = static_cast<int>(std::min<int64_t>(g.k, n_items));
    check_output_size(rec.user_ids().size(), k, rec.user_ids(), rec.item_ids());
    std::vector<recommend::Unknown> unknown;
    const eval::TopK top = rec.recommend_rows({}, o, &unknown);
    warn_unknown("recommend", unknown);
    std::vector<OutList> lists(static_cast<size_t>(top.n));
    for (int64_t q = 0; q < top.n; ++q) {
      OutList& l = lists[static_cast<size_t>(q)];
      l.query = &rec.user_ids().external(static_cast<data::index_t>(q));
      l.personalised = !rec.row_opted_out(static_cast<data::index_t>(q));
      for (int j = 0; j < top.k && top.item(q, j) >= 0; ++j)
        l.entries.push_back({&rec.item_ids().external(top.item(q, j)), top.score(q, j)});
    }
    emit(format_lists(lists, columns, "user", "items", "item", false, personalised_column),
         fmt::format("top-{} lists of {} users", top.k, top.n));
    return 0;
  }
  recommend::Result r;
  if (!g.item_list.empty())
    r = rec.recommend_new_user(id_list(g.item_list, "--items"), weight_list(g.weights), o);
  else
    r = rec.recommend(g.user.empty() ? id_list(g.user_list, "--users") : std::vector<std::string>{g.user}, o);
  warn_unknown("recommend", r.unknown);
  emit(format_lists(out_lists(r, !g.item_list.empty()), columns, "user", "items", "item",
                    g.user_list.empty(), personalised_column),
       fmt::format("top-{} lists of {} users", r.k, r.lists.size()));
  return 0;
}

int cmd_similar() {
  const int modes = !g.item.empty() + !g.item_list.empty() + g.all + !g.user.empty();
  if (modes != 1)
    fail("similar: give exactly one of --item ID, --items ID,ID,..., --all --out FILE or --user ID");
  if (g.all && g.out.empty())
    fail("similar --all needs --out FILE (a CSV of item,rank,similar_item,score, or JSON with "
         "--format json)");
  const recommend::Recommender rec =
      recommend::Recommender::open(g.run_dir, open_options("find similar items in"));
  recommend::SimilarOptions o;
  o.metric = g.metric == "dot"      ? recommend::Metric::kDot
             : g.metric == "cosine" ? recommend::Metric::kCosine
                                    : recommend::Metric::kDefault;
  o.exact = g.exact;
  const bool items = g.user.empty();
  if (!items && g.exact)
    log().warn("similar --user --exact: similar users are always scored exactly");
  warn_k((items ? rec.item_ids().size() : rec.user_ids().size()) - 1,
         items ? "other items" : "other users");
  const std::array<const char*, 4> columns =
      items ? std::array<const char*, 4>{"item", "rank", "similar_item", "score"}
            : std::array<const char*, 4>{"user", "rank", "similar_user", "score"};
  if (g.all || !g.item_list.empty()) {
    // Blocks of items, each one call (one GEMM or one batched index search); the lists keep
    // pointers to the id map's strings, not copies.
    const data::IdMap& ids = rec.item_ids();
    std::vector<std::string> wanted;
    if (!g.all) {  // unknown ids are skipped with a warning each, as recommend --users does
      const std::vector<std::string> asked = id_list(g.item_list, "--items");
      std::vector<recommend::Unknown> unknown;
      for (const std::string& id : asked) {
        if (ids.find(recommend::trim(id))) wanted.push_back(id);
        else unknown.push_back({recommend::trim(id), "items"});
      }
      if (wanted.empty() && asked.size() == 1)  // its own sentence, as --item gives
        rec.similar_items_batch(asked, static_cast<int>(g.k), o);
      if (wanted.empty())
        fail("{}: none of the {} items asked for is in this {}; expected item ids of its "
             "training data",
             rec.path(), asked.size(), rec.is_export() ? "export" : "run");
      warn_unknown("similar", unknown);
    }
    const int64_t n = g.all ? ids.size() : static_cast<int64_t>(wanted.size());
    if (g.all)
      check_output_size(n, static_cast<int>(std::min<int64_t>(g.k, std::max<int64_t>(n - 1, 0))),
                        ids, ids, "similar --all", "items");
    constexpr int64_t kBlock = 1024;
    std::vector<OutList> lists;
    lists.reserve(static_cast<size_t>(n));
    int k = 0;
    // One line every 5 s (a bar on a terminal) over the whole table: each block's own top-k
    // is too short to report, and an item-to-item table grows with the square of the items.
    Progress progress("similar items", n, "items");
    for (int64_t b = 0; b < n; b += kBlock) {
      progress.update(b);
      std::vector<std::string> block;
      for (int64_t j = b; j < std::min(n, b + kBlock); ++j)
        block.push_back(g.all ? ids.external(static_cast<data::index_t>(j))
                              : wanted[static_cast<size_t>(j)]);
      const recommend::Result r = rec.similar_items_batch(block, static_cast<int>(g.k), o);
      k = r.k;
      for (size_t j = 0; j < r.lists.size(); ++j) {  // one list per item of the block, in order
        const recommend::List& l = r.lists[j];
        OutList out;
        out.query = &ids.external(g.all ? static_cast<data::index_t>(b + static_cast<int64_t>(j))
                                        : *ids.find(l.query));
        for (const recommend::Scored& e : l.items)
          out.entries.push_back({&ids.external(e.row), e.score});
        lists.push_back(std::move(out));
      }
    }
    progress.finish(n);
    emit(format_lists(lists, columns, "item", "items", "item", false),
         fmt::format("{} similar items of {} items", k, lists.size()));
    return 0;
  }
  const recommend::Result r = items ? rec.similar_items(g.item, static_cast<int>(g.k), o)
                                    : rec.similar_users(g.user, static_cast<int>(g.k), o);
  emit(format_lists(out_lists(r, false), columns, items ? "item" : "user",
                    items ? "items" : "users", items ? "item" : "user", true),
       fmt::format("{} similar {}", r.k, items ? "items" : "users"));
  return 0;
}

int cmd_export() {
  const std::string out = pipeline::export_run(g.run_dir, g.out, g.sets);
  std::printf("%s\n", out.c_str());
  return 0;
}

int cmd_index_bench() {
  if (!g.nprobe_list.empty() && !g.ef_list.empty())
    fail("index-bench: give --nprobe (IVF) or --ef-search (HNSW), not both");
  Matrix users, items;
  data::Csr seen;
  index::ItemIndex idx;
  std::optional<artifact::Artifact> a;
  if (artifact::is_artifact(g.run_dir)) {
    if (!g.sets.empty())
      fail("index-bench --set: {} is an export whose index is fixed; pass a run directory to "
           "build other indices",
           g.run_dir);
    a.emplace(artifact::load(g.run_dir));
  } else {
    for (const std::string& s : g.sets)
      if (s.rfind("index.", 0) != 0)
        fail("--set {}: only index.* settings can be changed here; the model and data are those "
             "of the run",
             s);
    pipeline::OpenedRun r = pipeline::open_run(g.run_dir, "benchmark an index of");
    for (const std::string& s : g.sets) r.config.set(s);
    const auto t0 = std::chrono::steady_clock::now();
    idx = index::ItemIndex::build(r.model->item_factors(),
                                  pipeline::index_options(r.config.settings()));
    log().info("built the {} index of {} items in {:.2f} s", index::type_name(idx.type()),
               idx.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    users = r.model->user_factors();
    items = r.model->item_factors();
    seen = std::move(r.data.user_items);
  }
  index::BenchInput in;
  in.users = a ? &a->users : &users;
  in.items = a ? &a->items : &items;
  in.seen = a ? &a->seen : &seen;
  in.index = a ? &a->index : &idx;
  // Recall at a k past the items is recall at all of them (it printed recall@2147483647).
  if (g.k > in.index->size()) {
    log().warn("--k {} is above the number of items, {}; recall is measured at k {}", g.k,
               in.index->size(), in.index->size());
    g.k = in.index->size();
  }
  in.k = static_cast<int>(g.k);
  in.max_users = g.bench_users;
  const bool ivf = in.index->type() == index::Type::kIvfFlat || in.index->type() == index::Type::kIvfPq;
  if (!g.nprobe_list.empty()) {
    if (!ivf) fail("index-bench --nprobe: the index is {}, expected ivf_flat or ivf_pq", index::type_name(in.index->type()));
    in.values = int_list(g.nprobe_list, "--nprobe");
  }
  if (!g.ef_list.empty()) {
    if (in.index->type() != index::Type::kHnsw)
      fail("index-bench --ef-search: the index is {}, expected hnsw", index::type_name(in.index->type()));
    in.values = int_list(g.ef_list, "--ef-search");
  }
  int64_t n_users = 0;
  const std::vector<index::BenchRow> rows = index::bench(in, &n_users);
  const nlohmann::json desc = in.index->describe();
  std::printf("index %s (%s), %lld items, k %lld, %lld users\n", index::type_name(in.index->type()),
              index::metric_name(in.index->metric()), static_cast<long long>(in.index->size()),
              static_cast<long long>(g.k), static_cast<long long>(n_users));
  std::printf("%-10s %-10s %8s %10s %12s\n", "method", "param", "value",
              fmt::format("recall@{}", g.k).c_str(), "queries/s");
  for (const index::BenchRow& r : rows)
    std::printf("%-10s %-10s %8s %10.4f %12.1f\n", r.method.c_str(), r.param.c_str(),
                r.param == "-" ? "-" : std::to_string(r.value).c_str(), r.recall, r.qps);
  if (!g.out.empty()) {
    write_output_file(g.out, index::bench_csv(rows, static_cast<int>(g.k), n_users));
    log().info("wrote {}", g.out);
  }
  return 0;
}

void add_sets(CLI::App* c, const std::string& help =
                               "Override a config value, e.g. --set model.factors=128 (repeatable)") {
  c->add_option("--set", g.sets, help)->type_name("KEY=VALUE");
}

}  // namespace

// An integer option's range in words (CLI11's PositiveNumber said "not in range 0.000000 to
// 1.797693e+308"): "--k: must be an integer from 1 to 2147483647, got \"0\"".
CLI::Validator int_range(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        const std::optional<int64_t> x = parse_int64(v);
        if (x && *x >= lo && *x <= hi) return "";
        return fmt::format("must be an integer from {} to {}, got \"{}\"", lo, hi, v);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

// A file to write (--out of datagen, evaluate, recommend, similar, index-bench), checked before
// any work: not a directory, in a directory that exists, and not inside a run directory or an
// export.
static CLI::Validator output_file() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        std::error_code ec;
        if (v.empty()) return "expected a file name, got \"\"";
        if (fs::is_directory(v, ec))
          return fmt::format("\"{}\" is a directory; expected the name of a file to write", v);
        const fs::path dir = fs::absolute(v).parent_path();
        if (!fs::is_directory(dir, ec))
          return fmt::format("\"{}\": the directory {} does not exist", v, dir.string());
        // Run directories and exports are recforge's, written once and read as a whole: a file
        // written into one would replace one of its files (run.json, a factor file) or sit
        // among them. Checked on the resolved path, so that a link or ".." leads nowhere else.
        const std::string owner = artifact::recforge_owner(v, false);
        if (!owner.empty()) return fmt::format("\"{}\" is inside {}; write it elsewhere", v, owner);
        return "";
      },
      "FILE");
}

// How recommend and similar open their source: --pseudonym-key-file / --pseudonym-key-env.
recommend::OpenOptions open_options(const char* verb) {
  recommend::OpenOptions o;
  o.verb = verb;
  if (!g.key_file.empty() && !g.key_env.empty())
    fail("--pseudonym-key-file and --pseudonym-key-env: give one of them, not both");
  if (!g.key_file.empty()) {
    o.pseudonym_key = SecretKey::from_file(g.key_file, "--pseudonym-key-file");
    o.key_where = "--pseudonym-key-file " + g.key_file;
  } else if (!g.key_env.empty()) {
    o.pseudonym_key = SecretKey::from_env(g.key_env, "--pseudonym-key-env");
    o.key_where = "--pseudonym-key-env " + g.key_env;
  }
  return o;
}

// Adds --pseudonym-key-file and --pseudonym-key-env to a verb that answers for users.
void add_key_options(CLI::App* app) {
  app->add_option("--pseudonym-key-file", g.key_file,
                  "File holding the key of a pseudonymised export (export.pseudonymize), so that "
                  "raw user ids may be given; pseudonyms are accepted without it");
  app->add_option("--pseudonym-key-env", g.key_env,
                  "Environment variable holding that key (instead of --pseudonym-key-file)");
}


void register_commands(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train a model from a YAML config into runs/<name>/");
  train->add_option("config", g.config_path,
                    "YAML config file (optional with --resume: the checkpoint's config)");
  add_sets(train);
  train->add_option("--name", g.name, "Run name (same as --set run.name=NAME)");
  train->add_option("--device", g.device, "auto, cpu, cuda or cuda:N (same as --set train.device=...)");
  train->add_option("--resume", g.resume,
                    "Continue the run RUN (its path, e.g. runs/NAME) from its checkpoint "
                    "(runs/.NAME.checkpoint), with the config saved there unless a config file "
                    "is given")
      ->type_name("RUN");
  train->add_flag("--distributed", g.distributed,
                  "Train through the distributed path (sharded data, collectives) even as one "
                  "process; `mpirun -np P` with P > 1 takes it anyway (docs/distributed.md)");
  g_actions["train"] = cmd_train;

  auto* datagen = app.add_subcommand(
      "datagen", "Write a synthetic implicit-feedback set (planted communities, power-law "
                 "popularity, activity skew, timestamps) as CSV");
  datagen->add_option("--out", g.out, "Output CSV file (user,item,weight,timestamp)")
      ->required()
      ->check(output_file());
  datagen->add_option("--config", g.config_path, "Take the synthetic: section from this config");
  datagen->add_option("--users", g.users, "Number of users (synthetic.users)")
      ->check(int_range(1, kMaxInt));
  datagen->add_option("--items", g.items, "Number of items (synthetic.items)")
      ->check(int_range(2, kMaxInt));
  datagen->add_option("--interactions", g.interactions, "Target interactions (synthetic.interactions)")
      ->check(int_range(1, std::numeric_limits<int64_t>::max()));
  datagen->add_option("--seed", g.seed, "Random seed (synthetic.seed)")
      ->check(int_range(0, std::numeric_limits<int64_t>::max()));
  add_sets(datagen, "Override a synthetic.* value of the generator, e.g. --set "
                    "synthetic.communities=32 (repeatable; run.progress and run.log_level too)");
  g_actions["datagen"] = cmd_datagen;

  auto* evaluate = app.add_subcommand("evaluate", "Recompute a run's metrics from its saved factors");
  evaluate->add_option("run_dir", g.run_dir, "Run directory")->required();
  evaluate->add_option("--out", g.out, "Also write the metrics as JSON to this file")
      ->check(output_file());
  evaluate->add_flag("--by-activity", g.by_activity,
                     "Also the test metrics of users grouped by their number of training "
                     "interactions (fold-in interactions for held-out users), scored on the CPU");
  g.activity_edges_option = evaluate->add_option(
      "--activity-edges", g.activity_edges,
      "Upper ends of the --by-activity groups but the last, comma-separated (default "
      "5,10,20,50,100: 0-5, 6-10, 11-20, 21-50, 51-100, 101+); implies --by-activity");
  g_actions["evaluate"] = cmd_evaluate;

  auto* recommend = app.add_subcommand(
      "recommend", "Top-k items for users of a trained run, or of an export directory (one "
                   "holding manifest.json: served from the artifact alone), or for a new user "
                   "folded in from their items");
  recommend->add_option("run_dir", g.run_dir, "Run directory or export directory")->required();
  recommend->add_option("--user", g.user, "External user id: top-k for this training user");
  recommend->add_option("--users", g.user_list,
                        "Comma-separated external user ids: top-k for each (one batch); unknown "
                        "ids are skipped with a warning");
  recommend->add_option("--items", g.item_list,
                        "Comma-separated external item ids: fold in a new user with these items "
                        "(run directories, and exports written by this recforge)");
  recommend->add_option("--weights", g.weights,
                        "Comma-separated raw weights of the --items (default 1 each), "
                        "turned into confidences by the run's weighting section");
  recommend->add_flag("--all", g.all, "Top-k for every user, written to --out");
  recommend->add_option("--out", g.out,
                        "Write the output to this file instead of stdout (required by --all)")
      ->check(output_file());
  recommend->add_option("--format", g.format,
                        "csv (user,rank,item,score with a header; a new user's user column is "
                        "empty; a trailing personalised column when the source lists opted-out "
                        "users) or json (one object {\"user\", \"items\": [{\"item\", "
                        "\"score\"}], \"personalised\"} per user; an array for --users and "
                        "--all)")
      ->check(CLI::IsMember({"csv", "json"}));
  recommend->add_option("--k", g.k,
                        "Number of items (default 10; at most the number of items, with a warning "
                        "above it)")
      ->check(int_range(1, kMaxInt));
  recommend->add_option("--exclude", g.exclude,
                        "Comma-separated external item ids never to recommend (a global "
                        "exclusion list, besides each user's training items)");
  recommend->add_option("--candidates", g.candidates,
                        "Comma-separated external item ids: only these may be recommended "
                        "(scored exactly); implicit's `items`");
  recommend->add_flag("--include-seen", g.include_seen,
                      "Keep the user's training items (or the --items of a new user) in the "
                      "lists; they are masked by default");
  recommend->add_flag("--exact", g.exact,
                      "Export directories: score every item directly instead of searching the "
                      "Faiss index (run directories are always exact)");
  add_key_options(recommend);
  g_actions["recommend"] = cmd_recommend;

  auto* similar = app.add_subcommand(
      "similar", "The items most similar to an item, or the users most similar to a user, of a "
                 "run or an export (the item or user itself is not listed)");
  similar->add_option("run_dir", g.run_dir, "Run directory or export directory")->required();
  similar->add_option("--item", g.item, "External item id: its most similar items");
  similar->add_option("--items", g.item_list,
                      "Comma-separated external item ids: the most similar items of each, "
                      "computed in blocks of 1024 items");
  similar->add_flag("--all", g.all,
                    "The most similar items of every item, written to --out (an item-to-item "
                    "table)");
  similar->add_option("--user", g.user, "External user id: its most similar users (exact)");
  similar->add_option("--k", g.k, "Number of results (default 10)")->check(int_range(1, kMaxInt));
  similar->add_option("--metric", g.metric,
                      "dot (the model's score), cosine, or default: an export's index metric, "
                      "dot for run directories")
      ->check(CLI::IsMember({"default", "dot", "cosine"}));
  similar->add_flag("--exact", g.exact,
                    "Score every item directly; without it an export's Faiss index is searched "
                    "when its metric is the one asked for");
  similar->add_option("--format", g.format,
                      "csv (item,rank,similar_item,score or user,rank,similar_user,score) or json")
      ->check(CLI::IsMember({"csv", "json"}));
  similar->add_option("--out", g.out, "Write the output to this file instead of stdout")
      ->check(output_file());
  add_key_options(similar);
  g_actions["similar"] = cmd_similar;

  auto* exp = app.add_subcommand("export", "Write the serving artifact of a trained run");
  exp->add_option("run_dir", g.run_dir, "Run directory")->required();
  exp->add_option("--out", g.out,
                  "Export directory; an earlier export there is replaced atomically")
      ->required();
  exp->add_option("--set", g.sets,
                  "Override an index setting of the run's config, e.g. --set index.type=hnsw "
                  "(repeatable)")
      ->type_name("KEY=VALUE");
  g_actions["export"] = cmd_export;

  auto* bench = app.add_subcommand(
      "index-bench", "Recall@k against exact top-k and queries/s of an ANN index, for a sweep of "
                     "nprobe (IVF) or efSearch (HNSW)");
  bench->add_option("run_dir", g.run_dir,
                    "Run directory (the index is built from its config and --set) or export "
                    "directory (its index)")
      ->required();
  bench->add_option("--k", g.k, "List length (default 10)")->check(int_range(1, kMaxInt));
  bench->add_option("--nprobe", g.nprobe_list, "IVF cells probed, e.g. 1,2,4,8 (default: powers "
                                               "of two up to nlist)");
  bench->add_option("--ef-search", g.ef_list, "HNSW efSearch values, e.g. 16,32,64 (default: "
                                              "16 to 1024)");
  bench->add_option("--users", g.bench_users, "Measure a seeded sample of this many users "
                                              "(default: all)")
      ->check(int_range(1, std::numeric_limits<int64_t>::max()));
  bench->add_option("--out", g.out,
                    "Also write the table as CSV (for tools/plot/plot_index_bench.py)")
      ->check(output_file());
  add_sets(bench, "Override an index.* value of a run directory (an export's index is fixed), "
                  "e.g. --set index.nlist=256 (repeatable)");
  g_actions["index-bench"] = cmd_index_bench;

  auto* info = app.add_subcommand(
      "info", "Show this build (CUDA, GPUs, Faiss), a run directory or an export directory");
  info->add_option("run_dir", g.run_dir, "Run or export directory to describe");
  g_actions["info"] = cmd_info;

  auto* cfg = app.add_subcommand("config", "Print the fully resolved config, or the parameter reference");
  cfg->add_option("config", g.config_path, "YAML config file (defaults when omitted)");
  add_sets(cfg);
  cfg->add_flag("--markdown", g.markdown, "Print docs/configuration.md (the parameter reference)");
  g_actions["config"] = cmd_config;

  register_sweep_commands(app, g_actions);
  register_serve_command(app, g_actions);
  register_forget_command(app, g_actions);
  register_explain_command(app, g_actions);
  register_report_user_command(app, g_actions);
}

int run_selected(CLI::App& app) {
  for (auto* sub : app.get_subcommands()) return g_actions.at(sub->get_name())();
  return 2;
}

}  // namespace recforge::cli
