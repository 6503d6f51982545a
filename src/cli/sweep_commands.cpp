/// @file sweep_commands.cpp
/// `recforge sweep` and `recforge compare`.

#include "cli/sweep_commands.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include <fmt/ranges.h>

#include "artifact/artifact.h"
#include "cli/commands.h"
#include "config/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "pipeline/evaluate.h"
#include "sweep/compare.h"
#include "sweep/spec.h"
#include "sweep/sweep.h"

extern char** environ;

namespace recforge::cli {
namespace {

namespace fs = std::filesystem;

struct SweepArgs {
  std::string file;
  int parallel = 1;
  std::vector<std::string> sets;
} g_sweep;

struct CompareArgs {
  std::vector<std::string> dirs;
  std::string out = "compare";
  bool each = false;
  bool paired = false;
  std::string metric;
} g_compare;

int cmd_sweep() {
  const sweep::SweepSpec spec = sweep::load_sweep(g_sweep.file, g_sweep.sets);
  sweep::SweepOptions options;
  options.parallel = g_sweep.parallel;
  const sweep::SweepResult r = sweep::run_sweep(spec, options);
  std::printf("%s\n", r.dir.c_str());
  return 0;
}

/// The directory holding tools/plot/plot_curves.py: the current directory, else the nearest
/// directory above the recforge binary (build/release/recforge → the repository); "" if none.
std::string tools_root() {
  std::vector<fs::path> candidates{fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      candidates.push_back(p);
  for (const fs::path& c : candidates)
    if (fs::exists(c / "tools" / "plot" / "plot_curves.py", ec)) return c.string();
  return "";
}

/// Runs `argv` and returns its exit status (-1 when it could not be started or was killed).
int run_program(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Plots curves.csv with tools/plot/plot_curves.py in the project's .venv; a missing venv or
// matplotlib skips the plot with one line saying how to get it.
void plot(const std::string& csv, const std::string& png, const std::string& metric) {
  const std::string root = tools_root();
  if (root.empty()) {
    std::printf(
        "plot skipped: tools/plot/plot_curves.py was not found; run compare from the recforge "
        "repository (or next to a recforge built in it)\n");
    return;
  }
  const char* env = std::getenv("RECFORGE_PYTHON");
  const std::string python = env && *env ? env : root + "/.venv/bin/python";
  if (::access(python.c_str(), X_OK) != 0) {
    std::printf(
        "plot skipped: %s is missing; run tools/setup.sh (it creates .venv with "
        "matplotlib), then compare again\n",
        python.c_str());
    return;
  }
  const int rc = run_program({python, root + "/tools/plot/plot_curves.py", csv, "--out", png,
                              "--metric", metric, "--quiet-missing"});
  if (rc == 3) {
    std::printf(
        "plot skipped: matplotlib is not installed in %s; run tools/setup.sh, then "
        "compare again\n",
        python.c_str());
    return;
  }
  if (rc != 0)
    fail(
        "tools/plot/plot_curves.py failed (exit status {}) on {}; the table and the CSV "
        "are complete",
        rc, csv);
  std::printf("plot: %s\n", png.c_str());
}

// The first line of a file, or "" when it cannot be read.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// compare writes curves.csv, curves.png and paired.csv into --out, replacing what an earlier
// compare wrote there; a file of those names that compare did not write is refused (before any
// work), as are run, sweep and export directories of other owners.
void check_compare_out(const std::string& out) {
  std::error_code ec;
  const std::string owner = artifact::recforge_owner(out, true);
  if (!owner.empty())
    fail("--out {}: is inside {}, whose files compare's would sit among; choose another --out",
         out, owner);
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec))
    fail("--out {}: exists and is not a directory; expected a directory for compare's files", out);
  const auto ours = [&](const std::string& name, const std::string& header) {
    const std::string file = out + "/" + name;
    if (!fs::exists(file, ec)) return false;
    if (first_line(file).rfind(header, 0) == 0) return true;
    fail("--out {}: {} exists and was not written by recforge compare (its first line is not "
         "\"{}...\"); choose another --out",
         out, file, header);
  };
  const bool curves = ours("curves.csv", "run,iteration,seconds,loss");
  ours("paired.csv", "column,baseline,metric,users,");
  if (!curves && fs::exists(out + "/curves.png", ec))
    fail("--out {}: {}/curves.png exists without the curves.csv that recforge compare writes "
         "beside it; choose another --out",
         out, out);
}

// --metric NAME@K needs a K that some run evaluated (eval.ks), else there is no curve to show.
void check_compare_metric(const std::vector<sweep::RunInfo>& runs, const std::string& metric) {
  const std::string digits = metric.substr(metric.find('@') + 1);
  int64_t k = -1;  // a K beyond int64 is in no list
  std::from_chars(digits.data(), digits.data() + digits.size(), k);
  std::vector<int> all;
  for (const sweep::RunInfo& r : runs)
    for (const int x : pipeline::eval_ks(r.config))
      if (std::find(all.begin(), all.end(), x) == all.end()) all.push_back(x);
  if (std::find(all.begin(), all.end(), k) == all.end()) {
    std::sort(all.begin(), all.end());
    fail("--metric {}: no run evaluated K = {} (their eval.ks hold {}); expected one of those",
         metric, digits, fmt::join(all, ", "));
  }
}

int cmd_compare() {
  const std::vector<sweep::RunInfo> runs = sweep::read_runs(g_compare.dirs);
  const std::string metric =
      g_compare.metric.empty() ? runs.front().config.settings().eval.metric : g_compare.metric;
  const std::string why = config::find_param("eval.metric")->check(metric);
  if (!why.empty()) fail("--metric {}: {}", metric, why);
  check_compare_metric(runs, metric);
  check_compare_out(g_compare.out);
  const sweep::Comparison c = sweep::compare(runs, metric, !g_compare.each);
  // The paired test reopens and scores every run first, so that a refusal comes before any output.
  std::optional<sweep::PairedComparison> paired;
  if (g_compare.paired) {
    paired = sweep::paired_comparison(c, pipeline::eval_ks(runs.front().config));
  }
  std::fputs(sweep::format_comparison(c).c_str(), stdout);
  if (paired) std::fputs(sweep::format_paired(*paired).c_str(), stdout);
  std::error_code ec;
  MadeDirs made;  // removed again if writing fails
  made.create(g_compare.out, ec);
  if (ec) fail("--out {}: cannot create the directory: {}", g_compare.out, ec.message());
  // Both files or neither: a paired.csv of these runs beside an earlier compare's curves.csv
  // would pass for one comparison.
  const std::string file = g_compare.out + "/paired.csv";
  const std::string csv = g_compare.out + "/curves.csv";
  std::vector<std::pair<std::string, std::string>> files;
  if (paired) files.emplace_back(file, sweep::paired_csv(*paired));
  files.emplace_back(csv, sweep::curves_csv(runs));
  write_files_atomic(files);
  // What an earlier compare wrote here (check_compare_out made sure of that) and this one does
  // not write again describes other runs: a paired.csv without --paired, and the plot until
  // plot() draws the new one (it may be skipped).
  if (!paired) fs::remove(file, ec);
  fs::remove(g_compare.out + "/curves.png", ec);
  if (paired) std::printf("paired: %s\n", file.c_str());
  std::printf("curves: %s\n", csv.c_str());
  plot(csv, g_compare.out + "/curves.png", metric);
  made.keep();
  std::fflush(stdout);
  return 0;
}

}  // namespace

void register_sweep_commands(CLI::App& app, std::map<std::string, std::function<int()>>& actions) {
  auto* sw = app.add_subcommand(
      "sweep",
      "Tune hyperparameters: run the trials of a sweep file (grid or random search, or a "
      "list of trials, scored on validation) and train the best config once with test "
      "evaluation; "
      "running it again resumes (docs/sweeps.md)");
  sw->add_option("sweep_file", g_sweep.file, "Sweep YAML file")->required();
  sw->add_option("--parallel", g_sweep.parallel,
                 "Trials run at once on the CPU, train.threads split between them (default 1)")
      ->check(int_range(1, std::numeric_limits<int>::max()));
  sw->add_option("--set", g_sweep.sets,
                 "Override a value of the base config, e.g. --set model.iterations=5 (repeatable)")
      ->type_name("KEY=VALUE");
  actions["sweep"] = cmd_sweep;

  auto* cmp = app.add_subcommand(
      "compare",
      "Compare runs: the config keys that differ and the metrics side by side (seed runs of "
      "one config as one column: mean ± std), the metric-per-iteration curves as CSV and a PNG "
      "plot");
  cmp->add_option("run_dirs", g_compare.dirs, "Run directories")->required();
  cmp->add_option("--out", g_compare.out,
                  "Directory for curves.csv and curves.png (default: compare)");
  cmp->add_option("--metric", g_compare.metric,
                  "Validation metric NAME@K to plot (default: the first run's eval.metric)");
  cmp->add_flag("--each", g_compare.each,
                "One column per run; by default runs whose configs are equal but for model.seed "
                "and the run.* keys that name or show a run are one column of means ± sample "
                "standard deviations (docs/sweeps.md)");
  cmp->add_flag("--paired", g_compare.paired,
                "Also test each column against the first on the test users: reopens every run, "
                "scores its test part per user (at the first run's eval.ks) and prints the mean "
                "difference of each metric with its 95% interval and a paired t-test "
                "(paired.csv; docs/sweeps.md)");
  actions["compare"] = cmd_compare;
}

}  // namespace recforge::cli
