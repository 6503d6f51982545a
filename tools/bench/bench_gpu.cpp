// bench-gpu: iALS and exact top-k on a CUDA GPU, against ceilings measured in the same run.
//
//   bench-gpu [--data ml20m|10x|both] [--no-topk] [--iters N] [--factors 64,128,256,1024]
//             [--out FILE.json]
//
// 1. Ceilings: a device-to-device copy (bytes read + written per second) and a large float32
//    cuBLAS SGEMM (FLOP/s).
// 2. iALS seconds per iteration (median of --iters after a warm-up iteration that also moves the
//    data to the GPU) on synthetic data shaped like MovieLens-20M (138,493 users × 26,744 items,
//    ~20M interactions with Zipf popularity, src/data/synthetic) at each factor count, float16
//    at 256, and one run with the interactions streamed from host memory; `--data 10x` (or
//    `both`) runs ~10× larger data (1M users × 200k items, ~200M interactions) at 64 and 128
//    factors. Achieved bytes/s and FLOP/s come from the traffic model below.
// 3. Top-k throughput: users/s for k = 100 over 1M items at 128 factors, against the same GEMM
//    tiles without the selection.
//
// Traffic and flop model of one iALS iteration (docs/cuda.md), per half-iteration solving the
// n_R rows of one side against the n_Y rows of the other, kp padded factors, s bytes per stored
// value, S = cg_steps, nnz interactions:
//   bytes = n_Y kp s                       (Gram: read Y once)
//         + (S + 1) (nnz (kp s + 8)        (every pass gathers one factor row per interaction)
//                    + 9 n_R kp 4)         (GEMM reads P, writes AP; the update reads AP, P, R, X
//                                           and writes X, R, P)
//         + 2 n_R kp s                     (load and store of the solved factors)
//   flops = n_Y kp² + (S + 1) (4 nnz kp + 2 n_R kp² + 10 n_R kp)
// The memory floor is bytes / (copy bandwidth): every gathered row counted as a DRAM read (rows
// that hit L2 can make the achieved figure exceed the copy ceiling); the compute floor is
// flops / (SGEMM rate). The table reports time / max(floors).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_gpu_support.h"
#include "eval/topk_cuda.h"
#include "models/ials/ials_cuda_solver.h"
#include "core/blas.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "data/csr.h"
#include "data/synthetic.h"
#include "models/ials/ials.h"

using namespace recforge;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  std::string name;
  int64_t users, items, draws;
};

struct Data {
  data::Csr ui, iu;
  double seconds = 0;
};

Data make_data(const Shape& s) {
  const double t0 = now();
  data::SyntheticOptions o;
  o.users = s.users;
  o.items = s.items;
  o.interactions = s.draws;
  o.popularity_exponent = 1.0;
  o.seed = 7;
  const data::SyntheticData d = data::generate_synthetic(o);
  std::vector<float> conf(static_cast<size_t>(d.x.size()));
  for (size_t e = 0; e < conf.size(); ++e) conf[e] = 1.f + std::log(d.x.weights[e]);  // log weighting
  Data out;
  out.ui = data::Csr::from_interactions(s.users, s.items, d.x, conf);
  out.iu = out.ui.transpose();
  out.seconds = now() - t0;
  return out;
}

int padded(int k) {
  for (int p : {32, 64, 128, 256})
    if (k <= p) return p;
  return (k + 255) / 256 * 256;
}

struct Model {
  double bytes = 0, flops = 0;
};

Model traffic(const data::Csr& ui, int k, int steps, int storage_bytes) {
  const double kp = padded(k), s = storage_bytes, nnz = static_cast<double>(ui.nnz());
  Model m;
  for (int side = 0; side < 2; ++side) {
    const double n_r = side == 0 ? ui.rows : ui.cols, n_y = side == 0 ? ui.cols : ui.rows;
    m.bytes += n_y * kp * s + (steps + 1) * (nnz * (kp * s + 8) + 9 * n_r * kp * 4) + 2 * n_r * kp * s;
    m.flops += n_y * kp * kp + (steps + 1) * (4 * nnz * kp + 2 * n_r * kp * kp + 10 * n_r * kp);
  }
  return m;
}

struct Row {
  std::string data;
  int factors = 0;
  std::string dtype, mode;
  double sec = 0;
  double bytes_s = 0, flops_s = 0, floor_x = 0;
};

Row time_ials(const std::shared_ptr<backend::cuda::CudaResources>& gpu, const std::string& name,
              const Data& d, int k, backend::cuda::Storage st, backend::cuda::Streaming mode,
              int iters, const backend::cuda::Ceilings& c, int64_t batch_nnz = 0) {
  models::IalsOptions o;
  o.factors = k;
  o.seed = 3;
  o.solve.regularization = 0.05;
  o.solve.unobserved_weight = 0.05;
  o.solve.cg_steps = 3;
  backend::cuda::IalsCudaSolverOptions g;
  g.solve = o.solve;
  g.storage = st;
  g.streaming = mode;
  g.stream_batch_nnz = batch_nnz;
  auto state = backend::cuda::make_ials_cuda_solver(gpu, d.ui.rows, d.ui.cols, k, g);
  const auto [users, items] = models::initial_factors(o, d.ui.rows, d.ui.cols);
  state->set_factors(users, items);
  state->iterate(d.ui, d.iu, {}, 1);  // warm-up; moves the data to the GPU
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const double t0 = now();
    state->iterate(d.ui, d.iu, {}, i + 2);  // returns after the GPU finished (flags are read)
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  Row r;
  r.data = name;
  r.factors = k;
  r.dtype = backend::cuda::storage_name(st);
  r.mode = state->data_mode().rfind("streamed", 0) == 0 ? "streamed" : "resident";
  r.sec = t[t.size() / 2];
  const Model m = traffic(d.ui, k, 3, st == backend::cuda::Storage::kFloat32 ? 4 : 2);
  r.bytes_s = m.bytes / r.sec;
  r.flops_s = m.flops / r.sec;
  r.floor_x = r.sec / std::max(m.bytes / c.copy_bytes_per_s, m.flops / c.sgemm_flops_per_s);
  return r;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  size_t p = 0;
  while (p < s.size()) {
    const size_t q = s.find(',', p);
    v.push_back(std::stoi(s.substr(p, q == std::string::npos ? std::string::npos : q - p)));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_blas_kernels(argv);
  std::string which = "ml20m";
  bool with_topk = true;
  int iters = 3;
  std::vector<int> factors = {64, 128, 256, 1024};
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) {
      which = argv[++i];
    } else if (a == "--large") {
      which = "both";
    } else if (a == "--no-topk") {
      with_topk = false;
    } else if (a == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--factors" && i + 1 < argc) {
      factors = parse_list(argv[++i]);
    } else if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: bench-gpu [--data ml20m|10x|both] [--no-topk] [--iters N] "
                   "[--factors 64,128,...] [--out FILE]\n");
      return 2;
    }
  }
  try {
    set_log_level("warn");
    set_progress_mode("off");
    const Context ctx = Context::create("cuda:0", 0);
    const auto gpu = ctx.cuda();
    std::printf("device: %s\n", backend::cuda::describe(*gpu).c_str());
    nlohmann::json report = {{"device", backend::cuda::describe(*gpu)}};

    const backend::cuda::Ceilings c = backend::cuda::measure_ceilings(*gpu);
    std::printf("ceilings: copy %.0f GB/s (read+write, %.1f GiB), SGEMM %.1f TFLOP/s (n=%d)\n",
                c.copy_bytes_per_s / 1e9, c.copy_bytes / 1073741824.0, c.sgemm_flops_per_s / 1e12,
                c.sgemm_n);
    std::fflush(stdout);
    report["copy_GBps"] = c.copy_bytes_per_s / 1e9;
    report["sgemm_TFLOPs"] = c.sgemm_flops_per_s / 1e12;

    // Draws before repeated (user, item) pairs combine: 42M give ~20.9M interactions on the
    // ML-20M shape (44M gave 20.95M); 300M aim at ~200M on the 10× shape.
    std::vector<Shape> shapes;
    if (which == "ml20m" || which == "both") shapes.push_back({"ml20m", 138493, 26744, 42000000});
    if (which == "10x" || which == "both") shapes.push_back({"10x", 1000000, 200000, 300000000});
    if (shapes.empty()) fail("--data is \"{}\"; expected ml20m, 10x or both", which);
    std::vector<Row> rows;
    for (const Shape& s : shapes) {
      const Data d = make_data(s);
      std::printf("data %s: %lld users x %lld items, %lld interactions (generated in %.1f s)\n",
                  s.name.c_str(), static_cast<long long>(d.ui.rows), static_cast<long long>(d.ui.cols),
                  static_cast<long long>(d.ui.nnz()), d.seconds);
      std::fflush(stdout);
      report["data"][s.name] = {{"users", d.ui.rows}, {"items", d.ui.cols}, {"nnz", d.ui.nnz()}};
      const std::vector<int> ks = s.name == "ml20m" ? factors : std::vector<int>{64, 128};
      for (int k : ks) {
        rows.push_back(time_ials(gpu, s.name, d, k, backend::cuda::Storage::kFloat32,
                                 backend::cuda::Streaming::kOff, iters, c));
        const Row& r = rows.back();
        std::printf("  iALS %s k=%d: %.4f s/iter\n", s.name.c_str(), k, r.sec);
        std::fflush(stdout);
      }
      if (s.name == "ml20m") {
        rows.push_back(time_ials(gpu, s.name, d, 256, backend::cuda::Storage::kFloat16,
                                 backend::cuda::Streaming::kOff, iters, c));
        // Streamed in batches of 4M interactions (~5 per side), so copies overlap the solves.
        rows.push_back(time_ials(gpu, s.name, d, 128, backend::cuda::Storage::kFloat32,
                                 backend::cuda::Streaming::kOn, iters, c, int64_t{1} << 22));
      }
    }
    for (const Row& r : rows)
      report["ials"].push_back({{"data", r.data}, {"factors", r.factors}, {"dtype", r.dtype},
                                {"mode", r.mode}, {"seconds_per_iteration", r.sec},
                                {"GBps", r.bytes_s / 1e9}, {"TFLOPs", r.flops_s / 1e12},
                                {"times_floor", r.floor_x}});

    backend::cuda::TopkTiming tk;
    if (with_topk) {
      tk = backend::cuda::time_topk(*gpu, 32768, 1000000, 128, 100);
      report["topk"] = {{"users", tk.users}, {"items", 1000000}, {"factors", 128}, {"k", 100},
                        {"topk_seconds", tk.topk_seconds}, {"gemm_seconds", tk.gemm_seconds}};
    }

    if (!out.empty()) std::ofstream(out) << report.dump(2) << "\n";

    std::printf("\n%-7s %7s %-8s %-9s %10s %9s %9s %8s\n", "data", "factors", "dtype", "interact.",
                "s/iter", "GB/s", "TFLOP/s", "x floor");
    for (const Row& r : rows)
      std::printf("%-7s %7d %-8s %-9s %10.4f %9.0f %9.2f %8.2f\n", r.data.c_str(), r.factors,
                  r.dtype.c_str(), r.mode.c_str(), r.sec, r.bytes_s / 1e9, r.flops_s / 1e12,
                  r.floor_x);
    if (with_topk)
      std::printf("top-k k=100, 1M items, 128 factors: %.0f users/s; bare GEMM %.0f users/s; "
                  "top-k / GEMM time %.2f (goal <= 1.5)\n",
                  tk.users / tk.topk_seconds, tk.users / tk.gemm_seconds,
                  tk.topk_seconds / tk.gemm_seconds);
    std::printf("ceilings: copy %.0f GB/s, SGEMM %.1f TFLOP/s; goal: ml20m k=256 <= 0.025 s/iter\n",
                c.copy_bytes_per_s / 1e9, c.sgemm_flops_per_s / 1e12);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-gpu: error: %s\n", e.what());
    return 1;
  }
}
