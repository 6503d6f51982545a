// `recforge explain`: the score of one (user, item) pair, split into the contributions of the
// user's training items (exact for iALS, item similarity for bpr, softmax and ccl).
#include "cli/explain_command.h"

#include "cli/commands.h"

#include <cstdio>
#include <limits>
#include <optional>

#include "core/error.h"
#include "core/text.h"
#include "recommend/explain.h"

namespace recforge::cli {
namespace {

struct ExplainArgs {
  std::string path, user, item, format = "text";
  int top = 10;
};
ExplainArgs g_args;

int cmd_explain() {
  const recommend::Recommender rec =
      recommend::Recommender::open(g_args.path, open_options("explain"));
  const recommend::ItemExplanation e = recommend::explain(rec, g_args.user, {g_args.item}).at(0);
  if (g_args.format == "json") {
    std::fputs((to_json(e, g_args.top).dump(2) + "\n").c_str(), stdout);
    return 0;
  }
  std::string out;
  if (e.sums_to_score) {
    out += fmt::format(
        "user {}, item {}: score {:.6g} (exact decomposition of the user's iALS solve; the "
        "stored model's score is {:.6g})\n",
        e.user, e.item, e.score, e.model_score);
    out += fmt::format("the contributions of the {} training items sum to the score (within {:.2g})\n",
                       e.contributions.size(), e.tolerance);
  } else {
    out += fmt::format("user {}, item {}: model score {:.6g} (method {})\n", e.user, e.item,
                       e.model_score, e.method);
    out += fmt::format(
        "this model has no exact decomposition: the {} training items are ranked by the cosine "
        "of their item factors to item {}; these values do not sum to the score\n",
        e.contributions.size(), e.item);
  }
  const size_t n = std::min(e.contributions.size(), static_cast<size_t>(g_args.top));
  out += e.sums_to_score ? "rank\titem\tconfidence\tcontribution\tshare\n"
                         : "rank\titem\tconfidence\tcosine\n";
  for (size_t q = 0; q < n; ++q) {
    const recommend::ExplainedItem& c = e.contributions[q];
    out += fmt::format("{}\t{}\t{:.6g}\t{:.6g}", q + 1, c.item, c.confidence, c.contribution);
    if (e.sums_to_score)
      out += fmt::format("\t{:.1f}%", e.score != 0 ? 100 * c.contribution / e.score : 0.0);
    out += "\n";
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void register_explain_command(CLI::App& app,
                              std::map<std::string, std::function<int()>>& actions) {
  auto* c = app.add_subcommand(
      "explain",
      "Why a model scores an item for a user: the contributions of the user's training items "
      "(iALS: exact, summing to the score; bpr/softmax/ccl: training items by item similarity)");
  c->add_option("path", g_args.path, "Run directory or export directory")->required();
  c->add_option("--user", g_args.user, "External user id")->required();
  c->add_option("--item", g_args.item, "External item id")->required();
  c->add_option("--top", g_args.top, "Contributions to list, largest first (default 10)")
      ->check(int_range(1, std::numeric_limits<int>::max()));
  c->add_option("--format", g_args.format, "text (default) or json (every field)")
      ->check(CLI::IsMember({"text", "json"}));
  add_key_options(c);
  actions["explain"] = cmd_explain;
}

}  // namespace recforge::cli
