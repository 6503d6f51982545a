#include "dist/train_dist.h"

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <optional>

#include <sys/resource.h>

#include "artifact/artifact.h"
#include "core/clock.h"
#include "core/context.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"
#include "dist/checkpoint_dist.h"
#include "dist/dataset_dist.h"
#include "dist/errors.h"
#include "pipeline/checkpoint.h"
#include "dist/ials_dist.h"
#include "dist/nccl_comm.h"
#include "eval/metrics.h"
#include "eval/topk.h"
#include "index/index.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/export.h"
#include "pipeline/options.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "pipeline/warm_start.h"

namespace recforge::dist {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The device spec of this rank: train.device cpu stays on the CPU; auto takes a GPU when every
// rank has one and NCCL is built in, else the CPU; cuda takes GPU (local rank mod the GPUs this
// machine has), so that ranks on one machine use different GPUs; cuda:N takes GPU N.
std::string rank_device(const std::string& spec, const Comm& comm) {
  // Every rank takes part in the one collective, whatever its own spec (train.device may differ
  // between hosts); a rank set to cpu counts as one without a GPU.
  const int gpus = spec == "cpu" ? 0 : backend::cuda_device_count();
  const bool everywhere = !comm.any(gpus == 0 || !nccl_available());
  if (spec == "cpu") return spec;
  if (spec == "auto") {
    if (!everywhere) return "cpu";
  } else if (spec != "cuda") {
    return spec;  // cuda:N
  }
  if (gpus == 0) return "cuda";  // Context::create says why there is none
  int local = comm.rank();
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* v = std::getenv(name)) {
      local = std::atoi(v);
      break;
    }
  return "cuda:" + std::to_string(local % gpus);
}

// Runs `fn` on rank 0 only and shares how it went: an Error there becomes the same
// CollectiveError on every rank (the other ranks would otherwise wait for rank 0 forever).
template <typename F>
void on_root(const Comm& comm, F&& fn) {
  std::string error;
  if (comm.rank() == 0) {
    try {
      fn();
    } catch (const Error& e) {
      error = e.what();
    }
  }
  int64_t n = static_cast<int64_t>(error.size());
  comm.broadcast(&n, sizeof n, 0);
  error.resize(static_cast<size_t>(n));
  if (n > 0) comm.broadcast(error.data(), n, 0);
  if (n > 0) throw CollectiveError(error);
}

// Ranking metrics over every rank's users: each rank ranks its own users against all items,
// and the per-user sums and the items covered are added up over ranks.
// `sample`: eval.validation_sample for the validation part (1: every user), over the global
// user ids of `data`'s rows, so that the ranks score the users one process scores.
eval::Metrics evaluate_sharded(const Comm& comm, const IalsDist& model, const Matrix& items,
                               const ShardedDataset& data, const data::Csr& truth,
                               const data::Csr& mask, const std::vector<int>& ks, double sample) {
  eval::MetricsOptions mo;
  mo.ks = ks;
  const int k = eval::validate_cutoffs(mo);
  const int64_t ni = items.rows;
  const int d = static_cast<int>(items.cols);
  const pipeline::ScoredRows scored =
      pipeline::scored_rows(truth, data.users, data.ials.users.begin, sample);
  const std::vector<data::index_t>& rows = scored.rows;
  const size_t nk = ks.size();
  // Per cutoff: recall, precision, ndcg, map, hit_rate summed over users; then users, then the
  // users with a truth item (sampled or not).
  std::vector<double> sums(5 * nk + 2, 0.0);
  sums[5 * nk + 1] = static_cast<double>(scored.population);
  std::vector<uint8_t> covered(nk * static_cast<size_t>(ni), 0);
  if (!rows.empty()) {
    const eval::TopK top =
        eval::topk_rows(model.users().data.data(), rows, items.data.data(), ni, d, k, &mask);
    const eval::Metrics m = eval::compute_metrics(top, rows, truth, ni, mo);
    const double n = static_cast<double>(m.users);
    for (size_t j = 0; j < nk; ++j) {
      sums[5 * j + 0] = m.recall[j] * n;
      sums[5 * j + 1] = m.precision[j] * n;
      sums[5 * j + 2] = m.ndcg[j] * n;
      sums[5 * j + 3] = m.map[j] * n;
      sums[5 * j + 4] = m.hit_rate[j] * n;
      for (int64_t q = 0; q < top.n; ++q)
        for (int r = 0; r < std::min(ks[j], top.k); ++r)
          if (const data::index_t i = top.item(q, r); i >= 0)
            covered[j * static_cast<size_t>(ni) + static_cast<size_t>(i)] = 1;
    }
    sums[5 * nk] = n;
  }
  comm.allreduce_sum(sums.data(), static_cast<int64_t>(sums.size()));
  comm.allreduce_or(covered.data(), static_cast<int64_t>(covered.size()));
  eval::Metrics out;
  out.ks = ks;
  out.users = static_cast<int64_t>(std::llround(sums[5 * nk]));
  if (sample < 1) out.sampled_from = static_cast<int64_t>(std::llround(sums[5 * nk + 1]));
  const double n = std::max(1.0, sums[5 * nk]);
  for (size_t j = 0; j < nk; ++j) {
    out.recall.push_back(sums[5 * j + 0] / n);
    out.precision.push_back(sums[5 * j + 1] / n);
    out.ndcg.push_back(sums[5 * j + 2] / n);
    out.map.push_back(sums[5 * j + 3] / n);
    out.hit_rate.push_back(sums[5 * j + 4] / n);
    const auto begin = covered.begin() + static_cast<int64_t>(j) * ni;
    out.coverage.push_back(out.users > 0 ? static_cast<double>(std::count(begin, begin + ni, 1)) /
                                               static_cast<double>(ni)
                                         : 0.0);
  }
  return out;
}

// The rank's user rows of a CSR gathered at rank 0 (rows in rank order: the global order).
data::Csr gather_rows(const Comm& comm, const data::Csr& mine, int64_t cols) {
  std::vector<int64_t> sizes(static_cast<size_t>(mine.rows));
  for (int64_t r = 0; r < mine.rows; ++r) sizes[r] = mine.row_size(r);
  const std::vector<int64_t> all_sizes = comm.gatherv(sizes, 0);
  const std::vector<data::index_t> indices = comm.gatherv(mine.indices, 0);
  const std::vector<float> values = comm.gatherv(mine.data, 0);
  data::Csr out;
  if (comm.rank() != 0) return out;
  out.rows = static_cast<int64_t>(all_sizes.size());
  out.cols = cols;
  out.indptr.assign(1, 0);
  for (const int64_t n : all_sizes) out.indptr.push_back(out.indptr.back() + n);
  out.indices = indices;
  out.data = values;
  return out;
}

}  // namespace

std::string train_distributed(const config::Config& cfg, const Comm& comm) {
  const auto t0 = Clock::now();
  const int P = comm.size(), me = comm.rank();
  const config::Settings& s = cfg.settings();
  models::IalsOptions io;
  std::vector<int> ks;
  check_same_config(comm, cfg);  // before any decision taken from it
  try {  // decided alike on every rank from the config
    config::check(cfg);
    check_distributable(cfg);
    io = pipeline::ials_options(s);
    ks = pipeline::eval_ks(cfg);
    if (io.dtype != backend::cuda::Storage::kFloat32)
      fail("{}: model.dtype is {}; a distributed run stores float32 factors (on CPUs and GPUs); "
           "set model.dtype: float32",
           cfg.where("model.dtype"), backend::cuda::storage_name(io.dtype));
  } catch (const CollectiveError&) {
    throw;
  } catch (const Error& e) {
    throw CollectiveError(e.what());
  }
  set_file_mode(file_mode_from(s.privacy.file_mode));
  // Rank 0 speaks for the job; the others say only what goes wrong.
  const std::string level = s.run.log_level;
  set_log_level(me == 0 || level == "warn" || level == "error" ? level : std::string("warn"));
  set_progress_mode(me == 0 ? s.run.progress : std::string("off"));
  // A device every rank lacks (cuda in a build without it) is said once; one rank's, by rank.
  std::optional<Context> made;
  {
    const std::string device = rank_device(pipeline::training_device(s), comm);
    std::string error;
    try {
      made.emplace(Context::create(device, static_cast<int>(s.train.threads)));
    } catch (const Error& e) {
      error = e.what();
    }
    agree(comm, error);
  }
  const Context& ctx = *made;
  const bool on_gpu = ctx.device().kind == Device::Kind::kCuda;
  if (comm.any(on_gpu) && io.observed_weight == "replaced")
    fail_collective("{}: model.observed_weight replaced trains on the CPU only (the CUDA kernels "
                    "weigh observed pairs as `added`); set train.device: cpu or "
                    "model.observed_weight: added",
                    cfg.where("model.observed_weight"));
  const bool exporting = s.export_.enabled;
  const std::string& export_out = s.export_.out;

  std::optional<StagedDir> dir;
  struct LogFileGuard {
    ~LogFileGuard() { close_log_file(); }
  } guard;
  on_root(comm, [&] {
    if (exporting) {
      index::check_dimension(pipeline::index_options(s), io.factors);
      if (!export_out.empty()) artifact::check_target(export_out, "export.out");
      pipeline::pseudonym_key(cfg);
    }
    dir.emplace(s.run.dir, pipeline::run_name(cfg), s.run.exists);
    log_to_file(dir->file("log.txt"));
    write_file_atomic(dir->file("config.yaml"), cfg.to_yaml());
  });
  log().info("recforge {} train: config {}, run directory {}, distributed over {} process{}, "
             "each on {} with {} thread{}",
             RECFORGE_VERSION, cfg.source().empty() ? "(defaults)" : cfg.source(),
             dir ? dir->final_path() : std::string(), P, P == 1 ? "" : "es",
             on_gpu ? "a GPU (NCCL)" : "the CPU", ctx.threads(), ctx.threads() == 1 ? "" : "s");

  const int64_t bytes0 = comm.bytes_sent();
  ShardedDataset data = prepare_sharded(cfg, comm);
  const int64_t data_bytes = comm.bytes_sent() - bytes0;
  if (data.stats.contains("privacy")) {  // counts only, never ids
    const nlohmann::json& p = data.stats["privacy"];
    log().info("privacy: dropped {} opted-out user(s) ({} interactions) and {} forgotten user(s) "
               "({} interactions) from the data, in every process's shard",
               p["opt_out_users"].get<int64_t>(), p["opt_out_interactions"].get<int64_t>(),
               p["forgotten_users"].get<int64_t>(), p["forgotten_interactions"].get<int64_t>());
  }
  log().info("dataset: {} users, {} items, {} train interactions (density {:.3g}); "
             "{} validation, {} test",
             data.users.size(), data.items.size(), data.train_size,
             data.stats["train"]["density"].get<double>(), data.validation_size, data.test_size);

  // eval.validation_sample: the users of every rank that validation evaluations score.
  const double sample = s.eval.validation_sample;
  if (sample < 1) {
    const pipeline::ScoredRows mine =
        pipeline::scored_rows(data.validation, data.users, data.ials.users.begin, sample);
    int64_t counts[2] = {mine.population, static_cast<int64_t>(mine.rows.size())};
    comm.allreduce_sum(counts, 2);
    pipeline::check_validation_sample(cfg, counts[0], counts[1]);  // the same on every rank
  }

  IalsDist model(io, ctx.threads(), comm, data.ials, on_gpu ? &ctx : nullptr);
  if (on_gpu) log().info("rank 0 trains on {}", model.device());
  const data::Csr user_mask = model.user_exchange().with_global_columns(data.ials.user_items);
  for (const auto* side : {&model.user_exchange(), &model.item_exchange()}) {
    const char* name = side == &model.user_exchange() ? "item rows for the user half"
                                                      : "user rows for the item half";
    log().info("exchange of {}: {} ({} rows received per iteration in all ranks; an all-gather "
               "would move {})",
               name, side->targeted() ? "targeted all-to-all" : "all-gather",
               side->targeted() ? side->volume().targeted : side->volume().allgather,
               side->volume().allgather);
  }

  // model.init_from: opened and matched on rank 0 first (its error is every rank's), then on
  // the others; each rank copies the export's rows of its own users and items.
  // One clock for model.init_from_max_age_days: rank 0's, so that every rank decides alike.
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  comm.broadcast(&now, sizeof now, 0);
  std::optional<pipeline::InitSource> init_source;
  std::optional<pipeline::WarmStart> warm;
  nlohmann::json init_skipped;
  auto open_warm = [&] {
    const auto t_init = Clock::now();
    init_source = pipeline::open_init_from(cfg, static_cast<std::time_t>(now), &init_skipped);
    if (init_source) {
      warm = pipeline::match_init_from(*init_source, cfg, data.users, data.items,
                                       pipeline::opt_out_ids(cfg));
      warm->record["seconds"] = seconds_since(t_init);  // opened and matched (rank 0's is kept)
    }
  };
  on_root(comm, open_warm);
  {
    std::string error;  // the export missing or unreadable on some ranks only: said once
    if (comm.rank() != 0) try {
        open_warm();
      } catch (const Error& e) {
        error = e.what();
      }
    agree(comm, error);
  }
  if (!s.model.init_from.empty()) {
    // Every rank starts from the same export: the same manifest, which checksums its files.
    std::string digest;
    if (init_source) {
      Sha256 h;
      h.update(init_source->export_.manifest.dump());
      digest = h.hex();
    }
    check_same_input(comm, "model.init_from " + s.model.init_from, digest);
  }

  const auto tt = Clock::now();
  if (warm)
    model.init([&](Matrix& users, int64_t first_user, Matrix& items, int64_t first_item) {
      pipeline::apply_warm_start(*init_source, *warm, users, items, first_user, first_item);
    });
  else
    model.init();
  nlohmann::json history = nlohmann::json::array();
  const int64_t every = s.model.eval_every, patience = s.model.patience;
  const std::string& metric = s.eval.metric;
  if (every > 0 && data.validation_size == 0)
    fail_collective("{}: model.eval_every needs a validation set; set "
                    "split.validation_fraction above 0",
                    cfg.where("model.eval_every"));
  double best = -1;
  int best_iter = 0;
  int64_t since_best = 0;
  Matrix best_users, best_items;
  std::vector<int64_t> iteration_bytes;
  // A checkpoint of this run (the same number of processes, config and data) continues it.
  const std::string checkpoint = pipeline::checkpoint_dir(cfg);
  const int64_t checkpoint_every = s.train.checkpoint_every;
  int start = 0;
  {
    DistCheckpoint c;
    if (read_dist_checkpoint(comm, checkpoint, cfg, data.fingerprint, data.values, data.ials.users.size(),
                             data.ials.items.size(), io.factors, c)) {
      start = c.iteration;
      model.resume(std::move(c.users), std::move(c.items), start);
      history = std::move(c.history);
      best = c.best;
      best_iter = c.best_iter;
      since_best = c.since_best;
      best_users = std::move(c.best_users);
      best_items = std::move(c.best_items);
      log().info("resuming from iteration {} of {} (checkpoint {})", start, io.iterations,
                 checkpoint);
    }
  }
  for (int it = start + 1; it <= io.iterations; ++it) {
    const auto ti = Clock::now();
    const int64_t b0 = comm.bytes_sent() + model.device_bytes_sent();
    model.iterate();
    const double secs = seconds_since(ti);
    const double loss = model.loss();
    iteration_bytes.push_back(comm.bytes_sent() + model.device_bytes_sent() - b0);
    if (!std::isfinite(loss))
      fail_collective("loss became {} at iteration {}; lower model.alpha or model.init_std, or "
                      "raise model.regularization",
                      loss, it);
    nlohmann::json h = {{"iteration", it}, {"seconds", secs}, {"loss", loss}};
    std::string line =
        fmt::format("iteration {}/{}: loss {:.6g}, {:.3f} s", it, io.iterations, loss, secs);
    if (every > 0 && (it % every == 0 || it == io.iterations)) {
      const Matrix items = model.allgather_items();
      const eval::Metrics m =
          evaluate_sharded(comm, model, items, data, data.validation, user_mask, ks, sample);
      const double v = m.get(metric);
      h["validation"] = m.to_json();
      line += fmt::format(", validation {} {:.4f}", metric, v);
      if (v > best) {
        best = v;
        best_iter = it;
        since_best = 0;
        if (patience > 0) {
          best_users = model.users();
          best_items = model.items();
        }
      } else if (patience > 0 && ++since_best >= patience) {
        history.push_back(h);
        log().info("{} — no improvement in {} evaluations, stopping; keeping iteration {}", line,
                   patience, best_iter);
        model.set_own(std::move(best_users), std::move(best_items));
        best_iter = -1;  // restored
        break;
      }
    }
    log().info("{}", line);
    history.push_back(h);
    if (checkpoint_every > 0 && it % checkpoint_every == 0 && it < io.iterations) {
      DistCheckpoint c;
      c.iteration = it;
      c.users = model.users();
      c.items = model.items();
      c.best_users = best_users;
      c.best_items = best_items;
      c.history = history;
      c.best = best;
      c.best_iter = best_iter;
      c.since_best = since_best;
      write_dist_checkpoint(comm, checkpoint, cfg, data.fingerprint, data.values, c);
    }
  }
  if (patience > 0 && best_iter > 0 && best_iter != io.iterations) {
    log().info("keeping the factors of iteration {} (best validation {} {:.4f})", best_iter,
               metric, best);
    model.set_own(std::move(best_users), std::move(best_items));
  }
  const double train_seconds = seconds_since(tt);

  // Evaluation, sharded by user.
  nlohmann::json metrics = nlohmann::json::object();
  {
    const Matrix items = model.allgather_items();
    for (pipeline::Part part : {pipeline::Part::kValidation, pipeline::Part::kTest}) {
      if (part == pipeline::Part::kTest && !s.eval.test) continue;
      const bool test = part == pipeline::Part::kTest;
      if ((test ? data.test_size : data.validation_size) == 0) continue;
      const auto te = Clock::now();
      const data::Csr& mask =
          test && data.validation_size > 0 ? data.train_and_validation : user_mask;
      const eval::Metrics m =
          evaluate_sharded(comm, model, items, data, test ? data.test : data.validation, mask,
                           ks, test ? 1.0 : sample);
      if (m.users == 0) continue;
      metrics[pipeline::part_name(part)] = m.to_json();
      std::string shown;
      for (int k : ks)
        shown += fmt::format(" recall@{} {:.4f} ndcg@{} {:.4f}", k,
                             m.get(fmt::format("recall@{}", k)), k,
                             m.get(fmt::format("ndcg@{}", k)));
      log().info("{} ({}, {:.2f} s):{}", pipeline::part_name(part), pipeline::users_scored(m),
                 seconds_since(te), shown);
    }
  }

  // Everything to rank 0, which writes the run directory (and the export).
  models::Ials whole(io, ctx.threads());
  {
    Matrix users = model.gather_users(0), items = model.gather_items(0);
    if (me == 0) {
      whole.set_factors(std::move(users), std::move(items));
      whole.set_item_counts(data.ials.item_counts);
    }
  }
  const std::vector<int64_t> bytes_per_rank = comm.gatherv(
      std::vector<int64_t>{iteration_bytes.empty() ? 0 : iteration_bytes.back()}, 0);
  const std::vector<int64_t> data_bytes_per_rank = comm.gatherv(std::vector<int64_t>{data_bytes}, 0);
  data::Csr seen;
  if (exporting) seen = gather_rows(comm, user_mask, data.items.size());
  struct rusage usage = {};
  getrusage(RUSAGE_SELF, &usage);  // ru_maxrss in KiB on Linux
  const std::vector<int64_t> peak_rss =
      comm.gatherv(std::vector<int64_t>{static_cast<int64_t>(usage.ru_maxrss) * 1024}, 0);
  std::string final_dir, export_error;
  on_root(comm, [&] {
    write_file_atomic(dir->file("stats.json"), data.stats.dump(2) + "\n");
    // Created when training began (the clock model.init_from_max_age_days used), as a single
    // process's run.json says when its data was read.
    nlohmann::json run = {{"recforge_version", RECFORGE_VERSION},
                          {"id", random_id()},  // which run an export came from (run_exports)
                          {"created", utc_string(static_cast<std::time_t>(now))},
                          {"config_source", cfg.source()},
                          {"device", on_gpu ? ctx.device().name() : std::string("cpu")},
                          {"threads", ctx.threads()},
                          {"data_fingerprint", data.fingerprint},
                          {"data_fingerprint_kind", "unordered"},
                          {"data_values", data.values},
                          {"model", models::describe_ials(io)},
                          {"history", history},
                          {"train_seconds", train_seconds}};
    if (start > 0) run["resumed_from_iteration"] = start;
    run["distributed"] = {
        {"ranks", P},
        {"exchange",
         {{"user_half", model.user_exchange().targeted() ? "targeted" : "allgather"},
          {"item_half", model.item_exchange().targeted() ? "targeted" : "allgather"}}},
        {"bytes_sent_per_iteration", bytes_per_rank},
        {"bytes_sent_preparing_data", data_bytes_per_rank},
        {"peak_rss_bytes", peak_rss}};
    if (data.excluded && !data.excluded->empty()) run["excluded_users"] = data.excluded->to_json();
    if (warm) run["init_from"] = warm->record;
    if (!init_skipped.is_null()) run["init_from_skipped"] = init_skipped;
    if (warm && !warm->chain.hashes.empty())  // for `recforge export RUN` (open_run)
      write_file_atomic(dir->file(pipeline::kChainUsersFile),
                        artifact::chain_users_text(warm->chain.hashes));
    write_npy(dir->file("user_factors.npy"), whole.user_factors());
    write_npy(dir->file("item_factors.npy"), whole.item_factors());
    write_file_atomic(dir->file("metrics.json"), metrics.dump(2) + "\n");
    std::string export_to;
    if (exporting) {
      export_to = export_out.empty() ? dir->final_path() + "/export" : export_out;
      try {
        artifact::ExportInput in;
        in.model_type = "ials";
        in.model_parameters = whole.describe();
        in.users = &whole.user_factors();
        in.items = &whole.item_factors();
        in.user_ids = &data.users;
        in.item_ids = &data.items;
        in.seen = &seen;
        in.index = pipeline::index_options(s);
        in.metrics = metrics;
        in.config = cfg.to_json();
        in.source = {{"run_dir", dir->final_path()},
                     {"run_id", run.value("id", "")},
                     {"data_fingerprint", data.fingerprint}};
        pipeline::set_lineage(in, run, warm ? warm->chain.hashes : std::vector<Digest>{});
        in.train_weight_total = data.train_weight_total;
        in.pseudonym_key = pipeline::pseudonym_key(cfg);
        in.opt_out = pipeline::opt_out_ids(cfg);
        in.out_option = "export.out";
        artifact::write(in, export_out.empty() ? dir->file("export") : export_out, export_to);
        run["export"] = export_to;
        pipeline::record_export(dir->staging(), export_to);
      } catch (const std::exception& e) {
        export_error = e.what();
        run["export_error"] = export_error;
        log().error("export to {} failed: {}", export_to, export_error);
      }
    }
    run["seconds"] = seconds_since(t0);
    run["status"] = export_error.empty() ? "complete" : "export_failed";
    run["files"] = pipeline::run_file_checksums(dir->staging());
    write_file_atomic(dir->file("run.json"), run.dump(2) + "\n");
    log().info("run complete in {:.2f} s", run["seconds"].get<double>());
    close_log_file();
    final_dir = dir->commit();
    pipeline::remove_checkpoint(checkpoint);  // the run is complete: nothing to resume
    if (!export_error.empty())
      fail("export to {} failed after training: {}; the trained run is kept in {}, export it "
           "again with: recforge export {} --out {}",
           export_to, export_error, final_dir, final_dir, export_to);
  });
  int64_t n = static_cast<int64_t>(final_dir.size());
  comm.broadcast(&n, sizeof n, 0);
  final_dir.resize(static_cast<size_t>(n));
  comm.broadcast(final_dir.data(), n, 0);
  return final_dir;
}

}  // namespace recforge::dist
