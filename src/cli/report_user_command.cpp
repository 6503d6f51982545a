// `recforge report-user`: the data-access report of one user of a run or an export.
#include "cli/report_user_command.h"

#include <cstdio>
#include <limits>

#include "cli/commands.h"
#include "core/error.h"
#include "recommend/explain.h"

namespace recforge::cli {
namespace {

struct ReportArgs {
  std::string path, user, format = "text";
  int k = 10;
};
ReportArgs g_args;

std::string scalar(const nlohmann::ordered_json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

int cmd_report_user() {
  const recommend::Recommender rec =
      recommend::Recommender::open(g_args.path, open_options("report on"));
  const nlohmann::ordered_json j = recommend::report_user(rec, g_args.user, g_args.k);
  if (g_args.format == "json") {
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
    return 0;
  }
  std::string out = fmt::format("user {} in {} {}\n", scalar(j["user"]), scalar(j["source"]),
                                scalar(j["path"]));
  out += fmt::format("opted out of personalisation: {}\n", j["opted_out"].get<bool>() ? "yes" : "no");
  if (j.contains("held_note")) out += scalar(j["held_note"]) + "\n";
  const auto& t = j["training"];
  out += fmt::format("training interactions: {}\n", t["count"].get<int64_t>());
  for (const auto& x : t["interactions"]) {
    out += fmt::format("  {}\tconfidence {}", scalar(x["item"]), scalar(x["confidence"]));
    if (x.contains("raw"))
      for (const auto& ev : x["raw"]) {
        out += fmt::format("\tweight {}", scalar(ev["weight"]));
        if (ev.contains("timestamp")) out += fmt::format(" at {}", scalar(ev["timestamp"]));
      }
    out += "\n";
  }
  for (const char* part : {"validation", "test"}) {
    const auto& p = j[part];
    if (p.is_null()) continue;
    out += fmt::format("{}: {} interactions", part, p["count"].get<int64_t>());
    for (const auto& x : p["interactions"]) out += " " + scalar(x["item"]);
    if (p.contains("history")) {  // the users split's fold-in history of a held-out user
      out += fmt::format("; history given at evaluation: {} interactions",
                         p["history_count"].get<int64_t>());
      for (const auto& x : p["history"]) out += " " + scalar(x["item"]);
    }
    out += "\n";
  }
  if (j.contains("held_out_note")) out += scalar(j["held_out_note"]) + "\n";
  const auto& e = j["embedding"];
  // Several exports (training's and those written later by recforge export): one line each.
  const bool several = !e.is_null() && e.contains("exports") && e["exports"].size() > 1;
  if (e.is_null())
    out += "embedding: none\n";
  else {
    const auto yes_no = [](const nlohmann::json& b) {
      return b.is_null() ? "unknown" : b.get<bool>() ? "yes" : "no";
    };
    out += fmt::format("embedding: {} dimensions, norm {:.6g}; stored in an export: {}{}\n",
                       e["dim"].get<int64_t>(), e["norm"].get<double>(), yes_no(e["in_export"]),
                       several || e["export"].is_null() ? "" : " (" + scalar(e["export"]) + ")");
    if (several)
      for (const auto& x : e["exports"]) {
        out += fmt::format("  export {}: {}\n", scalar(x["export"]),
                           x["exists"].get<bool>() ? yes_no(x["holds_user"]) : "no (no longer there)");
        if (x.contains("note")) out += "  " + scalar(x["note"]) + "\n";
      }
  }
  if (!e.is_null() && e.contains("in_export_note") && !several)
    out += scalar(e["in_export_note"]) + "\n";
  if (j.contains("warm_start")) {  // model.init_from: the model started from another export
    const auto& w = j["warm_start"];
    const auto& held = w["trained_on_user"];
    out += fmt::format("the model started from the export {}{}, which was trained on this "
                       "user's data: {}\n",
                       scalar(w["export"]),
                       w["version"].is_null() ? std::string() : " (" + scalar(w["version"]) + ")",
                       held.is_null() ? "unknown" : held.get<bool>() ? "yes" : "no");
    if (w.contains("note")) out += scalar(w["note"]) + "\n";
    if (w.contains("earlier_in_chain"))  // users of earlier models of its chain of warm starts
      out += fmt::format("an earlier model of its chain of warm starts was trained on this "
                         "user's data without that export holding them: {}\n",
                         w["earlier_in_chain"].is_null()               ? "unknown"
                         : w["earlier_in_chain"].get<bool>() ? "yes"
                                                             : "no");
  }
  const auto& r = j["recommendations"];
  if (r.is_null()) {  // a user the run's data lacks, reported for its warm start
    out += scalar(j["recommendations_note"]) + "\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  // The lists leave out the user's training items: fewer than k remain when the catalog is
  // small (k itself is at most the number of items).
  const int64_t listed = static_cast<int64_t>(r["items"].size());
  const int64_t k = r["k"].get<int64_t>();
  out += fmt::format("top {} recommendations{}{}{}:\n", listed,
                     listed < k ? fmt::format(" (of k = {}: no more items are eligible; a "
                                              "user's training items are never recommended)",
                                              k)
                                : std::string(),
                     r["personalised"].get<bool>() ? "" : " (not personalised: popularity)",
                     r.contains("method") ? " (explained by " + scalar(r["method"]) + ")" : "");
  int rank = 0;
  for (const auto& x : r["items"]) {
    out += fmt::format("  {}\t{}\tscore {:.6g}", ++rank, scalar(x["item"]),
                       x["score"].get<double>());
    if (x.contains("explained_by")) {
      out += "\tbecause of";
      for (const auto& c : x["explained_by"])
        out += fmt::format(" {} ({:.4g})", scalar(c["item"]), c["contribution"].get<double>());
    }
    out += "\n";
  }
  if (r.contains("explanations_note")) out += "note: " + scalar(r["explanations_note"]) + "\n";
  if (r.contains("explanations_unavailable"))
    out += "no explanations: " + scalar(r["explanations_unavailable"]) + "\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void register_report_user_command(CLI::App& app,
                                  std::map<std::string, std::function<int()>>& actions) {
  auto* c = app.add_subcommand(
      "report-user",
      "What a run or an export holds about one user: training interactions, validation/test "
      "presence, the embedding, and the top-k recommendations with their explanations");
  c->add_option("path", g_args.path, "Run directory or export directory")->required();
  c->add_option("--user", g_args.user, "External user id")->required();
  c->add_option("--k", g_args.k, "Number of recommendations (default 10)")
      ->check(int_range(1, std::numeric_limits<int>::max()));
  c->add_option("--format", g_args.format, "text (default) or json (every field)")
      ->check(CLI::IsMember({"text", "json"}));
  add_key_options(c);
  actions["report-user"] = cmd_report_user;
}

}  // namespace recforge::cli
