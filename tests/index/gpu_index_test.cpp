// GPU Faiss (builds with RECFORGE_FAISS_GPU=ON, on a GPU that answers): GPU indices give the CPU
// indices' and the exact lists, searches above 1.7.3's k-selection limit fall back to the CPU
// copy, the L2-norm patch holds, and the exported file is a CPU index. The choice of device
// (index.device) is checked in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "eval/topk.h"
#include "gpu/require_gpu.h"
#include "index/filtered_search.h"
#include "index/faiss_cuda.h"
#include "index/index.h"
#include "index_fixtures.h"
#include "pipeline/options.h"
#include "test_util.h"

namespace recforge::index {
namespace {

using data::index_t;
using fixtures::clustered;
using fixtures::csr;
using fixtures::expect_same_lists;
using fixtures::gaussian;

/// Score tolerances between GPU (cuBLAS) and CPU (OpenBLAS) inner products of O(10) magnitude.
constexpr float kGpuScoreTol = 1e-3f;

bool gpu_faiss_answers() { return faiss_gpu_compiled() && backend::cuda_device_count() > 0; }

// A build without GPU Faiss (an option, off by default) skips; a build with it where no CUDA
// device answers skips too, or fails when RECFORGE_REQUIRE_GPU is set (gpu/require_gpu.h).
#define SKIP_WITHOUT_GPU_FAISS()                                                                \
  do {                                                                                          \
    if (!faiss_gpu_compiled())                                                                  \
      GTEST_SKIP()                                                                              \
          << "this build has no GPU Faiss (tools/faiss-gpu/build-faiss-gpu.sh, then configure " \
             "with -DRECFORGE_FAISS_GPU=ON)";                                                   \
    if (backend::cuda_device_count() < 1)                                                       \
      RF_SKIP_UNLESS_GPU_REQUIRED(                                                              \
          "GPU Faiss is built in, but no CUDA device answers on this machine");                 \
  } while (0)

/// All queries of `q` through idx.search, as an eval::TopK.
eval::TopK search_all(const ItemIndex& idx, const Matrix& q, int k) {
  eval::TopK t;
  t.n = q.rows;
  t.k = k;
  t.scores.resize(static_cast<size_t>(q.rows * k));
  std::vector<int64_t> labels(static_cast<size_t>(q.rows * k));
  idx.search(q.data.data(), q.rows, k, t.scores.data(), labels.data());
  t.items.assign(labels.begin(), labels.end());
  return t;
}

/// Mean over queries of |a_q ∩ b_q| / k.
double overlap(const eval::TopK& a, const eval::TopK& b) {
  double sum = 0;
  for (int64_t q = 0; q < a.n; ++q) {
    std::vector<index_t> x(a.items.begin() + q * a.k, a.items.begin() + (q + 1) * a.k);
    std::vector<index_t> y(b.items.begin() + q * b.k, b.items.begin() + (q + 1) * b.k);
    std::sort(x.begin(), x.end());
    std::sort(y.begin(), y.end());
    std::vector<index_t> both;
    std::set_intersection(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(both));
    sum += static_cast<double>(both.size()) / a.k;
  }
  return sum / static_cast<double>(a.n);
}

// ---- Device choice (every build) ---------------------------------------------------------------

TEST(IndexDevice, ComesFromTheConfigAndUnknownNamesAreRefused) {
  EXPECT_EQ(pipeline::index_options(config::Config::defaults().settings()).device,
            IndexDevice::kAuto);
  EXPECT_EQ(Options{}.device, IndexDevice::kCpu);
  for (IndexDevice d : {IndexDevice::kAuto, IndexDevice::kCpu, IndexDevice::kCuda})
    EXPECT_EQ(parse_index_device(device_name(d), "index.device"), d);
  try {
    parse_index_device("gpu", "index.device");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "index.device: device \"gpu\" is unknown; expected auto, cpu or cuda");
  }
}

TEST(IndexDevice, CpuStaysOnTheCpuAndAutoTakesTheGpuOnlyWhenGpuFaissAnswers) {
  const Matrix items = gaussian(300, 8, 21);
  Options o;
  o.device = IndexDevice::kCpu;
  EXPECT_EQ(ItemIndex::build(items, o).device(), "cpu");
  o.device = IndexDevice::kAuto;  // in a build with GPU Faiss and no GPU this must not abort
  const ItemIndex a = ItemIndex::build(items, o);
  EXPECT_EQ(a.device(), gpu_faiss_answers() ? "cuda:0" : "cpu");
  EXPECT_EQ(a.describe()["device"], a.device());
  o.type = Type::kHnsw;  // no GPU version: the CPU, whatever the build
  EXPECT_EQ(ItemIndex::build(items, o).device(), "cpu");
}

TEST(IndexDevice, CudaThatCannotBeHonouredIsRefusedBeforeAnythingIsBuilt) {
  const Matrix items = gaussian(300, 100, 22);
  auto error_of = [&](Options o) {
    try {
      check_dimension(o, 100);
      ItemIndex::build(items, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Options o;
  o.device = IndexDevice::kCuda;
  if (!faiss_gpu_compiled()) {
    EXPECT_EQ(error_of(o),
              "index.device cuda: this recforge was built without GPU Faiss; run "
              "tools/faiss-gpu/build-faiss-gpu.sh and configure with -DRECFORGE_FAISS_GPU=ON "
              "(docs/export.md), or set index.device to auto or cpu");
  } else if (backend::cuda_device_count() < 1) {
    EXPECT_EQ(error_of(o),
              "index.device cuda: no CUDA device answers on this machine; set index.device to "
              "auto or cpu");
    EXPECT_FALSE(test::gpu_required())
        << test::kRequireGpuVariable << " is set, but GPU Faiss is built in and no CUDA device "
        << "answers on this machine; the GPU half of this test did not run";
  } else {
    EXPECT_EQ(error_of(o), "no error");
  }
  if (!gpu_faiss_answers()) return;
  o.type = Type::kHnsw;
  EXPECT_EQ(error_of(o),
            "index.device cuda: Faiss has no GPU HNSW index; set index.device to auto or cpu to "
            "keep this hnsw index on the CPU");
  o.type = Type::kIvfPq;  // d = 100: 25 sub-quantizers, which GPU Faiss 1.7.3 does not have
  o.nlist = 4;
  o.pq_nbits = 6;
  EXPECT_EQ(error_of(o),
            "index.device cuda: GPU IVF-PQ needs index.pq_nbits 8 (it is 6); set index.device to "
            "auto or cpu to keep this ivf_pq index on the CPU");
  o.pq_nbits = 8;
  EXPECT_EQ(error_of(o),
            "index.device cuda: GPU IVF-PQ needs index.pq_m (sub-quantizers) of 1, 2, 3, 4, 8, "
            "12, 16, 20, 24, 28, 32, 40 or 48 (it is 25); set index.device to auto or cpu to keep "
            "this ivf_pq index on the CPU");
  o.device = IndexDevice::kAuto;
  o.pq_nbits = 4;
  EXPECT_EQ(ItemIndex::build(items, o).device(), "cpu");  // auto: stays on the CPU, says why
}

// ---- GPU Faiss on a GPU
// --------------------------------------------------------------------------

TEST(GpuFaiss, FlatEqualsTheCpuFlatAndTheExactTopK) {
  SKIP_WITHOUT_GPU_FAISS();
  for (int d : {64, 100}) {  // 100: not a multiple of 32
    for (Metric metric : {Metric::kInnerProduct, Metric::kCosine}) {
      SCOPED_TRACE(fmt::format("d = {}, {}", d, metric_name(metric)));
      const Matrix items = gaussian(3000, d, 23);
      const Matrix users = gaussian(200, d, 24);
      Options o;
      o.metric = metric;
      const ItemIndex cpu = ItemIndex::build(items, o);
      o.device = IndexDevice::kCuda;
      const ItemIndex gpu = ItemIndex::build(items, o);
      ASSERT_EQ(gpu.device(), "cuda:0");
      EXPECT_EQ(gpu.size(), 3000);
      Matrix ui = items, uu = users;
      if (metric == Metric::kCosine) {
        normalize_rows(ui.data.data(), ui.rows, d);
        normalize_rows(uu.data.data(), uu.rows, d);
      }
      for (int k : {1, 10, 100}) {
        const eval::TopK exact = eval::topk(uu.data.data(), 200, ui.data.data(), 3000, d, k);
        const eval::TopK on_gpu = search_all(gpu, users, k);
        expect_same_lists(on_gpu, exact, kGpuScoreTol, kGpuScoreTol);
        expect_same_lists(on_gpu, search_all(cpu, users, k), kGpuScoreTol, kGpuScoreTol);
      }
    }
  }
}

TEST(GpuFaiss, IvfProbingEveryCellIsExactAndTheExportIsACpuIndex) {
  SKIP_WITHOUT_GPU_FAISS();
  test::TempDir t;
  const Matrix items = clustered(4000, 32, 40, 25);
  const Matrix users = gaussian(150, 32, 26);
  std::vector<std::vector<index_t>> rows(150);
  for (size_t u = 0; u < rows.size(); ++u)
    for (index_t i = 0; i < 60; ++i)
      rows[u].push_back(static_cast<index_t>((u * 37 + i * 61) % 4000));
  const data::Csr seen = csr(rows, 4000);
  Options o;
  o.type = Type::kIvfFlat;
  o.nlist = 64;
  o.nprobe = 64;
  o.device = IndexDevice::kCuda;
  ItemIndex gpu = ItemIndex::build(items, o);
  ASSERT_EQ(gpu.device(), "cuda:0");
  EXPECT_EQ(gpu.describe()["nlist"], 64);
  EXPECT_EQ(gpu.describe()["nprobe"], 64);
  const SearchFn search = [&](const float* x, int64_t n, int k, float* s, int64_t* l) {
    gpu.search(x, n, k, s, l);
  };
  const eval::TopK want =
      eval::topk(users.data.data(), 150, items.data.data(), 4000, 32, 20, &seen);
  expect_same_lists(search_filtered(search, users.data.data(), 150, 32, 4000, 20, &seen), want,
                    kGpuScoreTol, kGpuScoreTol);

  // The written file is a plain CPU IVF index with the same lists and settings.
  gpu.write(t.file("ivf.faiss"));
  const ItemIndex back =
      ItemIndex::read(t.file("ivf.faiss"), Type::kIvfFlat, Metric::kInnerProduct);
  EXPECT_EQ(back.device(), "cpu");
  EXPECT_EQ(back.describe()["nprobe"], 64);
  expect_same_lists(search_all(back, users, 20), search_all(gpu, users, 20), kGpuScoreTol,
                    kGpuScoreTol);

  // Training ran on the CPU with the same seed: at 4 of 64 cells the GPU build probes the same
  // cells as a CPU build (vectors near a cell border may be assigned differently).
  o.device = IndexDevice::kCpu;
  ItemIndex cpu = ItemIndex::build(items, o);
  cpu.set_nprobe(4);
  gpu.set_nprobe(4);
  EXPECT_GE(overlap(search_all(gpu, users, 20), search_all(cpu, users, 20)), 0.98);
}

TEST(GpuFaiss, KAndNprobeAboveTheSelectionLimitRunOnTheCpuCopyAndStayExact) {
  SKIP_WITHOUT_GPU_FAISS();
  const Matrix items = gaussian(5000, 16, 27);
  const Matrix users = gaussian(40, 16, 28);
  Options o;
  o.device = IndexDevice::kCuda;
  const ItemIndex flat = ItemIndex::build(items, o);
  ASSERT_EQ(flat.device(), "cuda:0");
  for (int k : {2047, 2048, 3000}) {  // 2047 on the GPU; 2048 is refused by 1.7.3's GPU search
    SCOPED_TRACE("k = " + std::to_string(k));
    expect_same_lists(search_all(flat, users, k),
                      eval::topk(users.data.data(), 40, items.data.data(), 5000, 16, k),
                      kGpuScoreTol, kGpuScoreTol);
  }
  // Filtered search over-fetches past the limit for users with many seen items.
  std::vector<std::vector<index_t>> rows(40);
  for (index_t i = 0; i < 1500; ++i) rows[0].push_back(i * 3);
  for (index_t i = 0; i < 100; ++i) rows[1].push_back(i);
  const data::Csr seen = csr(rows, 5000);
  FilterStats st;
  const SearchFn search = [&](const float* x, int64_t n, int k, float* s, int64_t* l) {
    flat.search(x, n, k, s, l);
  };
  const eval::TopK got =
      search_filtered(search, users.data.data(), 40, 16, 5000, 1000, &seen, {}, nullptr, &st);
  EXPECT_GT(st.max_fetch, kGpuMaxSelect);
  expect_same_lists(got,
                    eval::topk(users.data.data(), 40, items.data.data(), 5000, 16, 1000, &seen),
                    kGpuScoreTol, kGpuScoreTol);

  // nprobe above the limit: every one of 4096 cells probed, on the CPU copy.
  o.type = Type::kIvfFlat;
  o.nlist = 4096;
  o.nprobe = 4096;
  const ItemIndex ivf = ItemIndex::build(items, o);
  ASSERT_EQ(ivf.device(), "cuda:0");
  EXPECT_EQ(ivf.describe()["nprobe"], 4096);
  expect_same_lists(search_all(ivf, users, 10),
                    eval::topk(users.data.data(), 40, items.data.data(), 5000, 16, 10),
                    kGpuScoreTol, kGpuScoreTol);
}

TEST(GpuFaiss, L2DistancesOfDimensionsThatAreNotAMultipleOf32) {
  SKIP_WITHOUT_GPU_FAISS();
  // tools/faiss-gpu/patches/0002: unpatched, 1.7.3's row norms are wrong for these under CUDA 12+.
  for (int d : {100, 4, 31, 36, 64}) {
    SCOPED_TRACE("d = " + std::to_string(d));
    const Matrix base = gaussian(2000, d, 29);
    const Matrix q = gaussian(50, d, 30);
    const int k = 10;
    std::vector<float> dist(50 * k);
    std::vector<int64_t> labels(50 * k);
    detail::gpu_flat_l2_search(0, base.data.data(), 2000, d, q.data.data(), 50, k, dist.data(),
                               labels.data());
    for (int64_t i = 0; i < 50; ++i) {
      auto l2 = [&](int64_t b) {  // exact, in double precision
        double s = 0;
        for (int j = 0; j < d; ++j) {
          const double diff = static_cast<double>(q.row(i)[j]) - base.row(b)[j];
          s += diff * diff;
        }
        return s;
      };
      std::vector<std::pair<double, int64_t>> all;
      for (int64_t b = 0; b < 2000; ++b) all.emplace_back(l2(b), b);
      std::partial_sort(all.begin(), all.begin() + k, all.end());
      for (int j = 0; j < k; ++j) {
        const double want = all[static_cast<size_t>(j)].first;
        const size_t e = static_cast<size_t>(i * k + j);
        EXPECT_NEAR(dist[e], want, 1e-4 * (1 + want)) << "query " << i << " rank " << j;
        ASSERT_GE(labels[e], 0);
        if (labels[e] != all[static_cast<size_t>(j)].second) {  // only a tie may swap places
          EXPECT_NEAR(l2(labels[e]), want, 1e-4 * (1 + want))
              << "query " << i << " rank " << j << ": item " << labels[e] << " is not a tie";
        }
      }
    }
  }
}

TEST(GpuFaiss, IvfPqSearchesOnTheGpuAndExportsACpuIndex) {
  SKIP_WITHOUT_GPU_FAISS();
  test::TempDir t;
  const Matrix items = clustered(3000, 32, 30, 10);
  const Matrix users = gaussian(100, 32, 11);
  Options o;
  o.type = Type::kIvfPq;
  o.nlist = 16;
  o.nprobe = 16;
  o.device = IndexDevice::kCuda;
  const ItemIndex gpu = ItemIndex::build(items, o);
  ASSERT_EQ(gpu.device(), "cuda:0");
  EXPECT_EQ(gpu.describe()["pq_m"], 8);
  const eval::TopK exact = eval::topk(users.data.data(), 100, items.data.data(), 3000, 32, 10);
  const eval::TopK on_gpu = search_all(gpu, users, 10);
  EXPECT_GE(overlap(on_gpu, exact), 0.45);  // the CPU index measures 0.53 here (index_test)
  gpu.write(t.file("pq.faiss"));
  const ItemIndex back = ItemIndex::read(t.file("pq.faiss"), Type::kIvfPq, Metric::kInnerProduct);
  EXPECT_EQ(back.describe()["pq_m"], 8);
  EXPECT_EQ(back.describe()["nprobe"], 16);
  // The same codes scored by the CPU: the same lists up to rounding of near-ties.
  EXPECT_GE(overlap(search_all(back, users, 10), on_gpu), 0.95);
}

TEST(GpuFaiss, PlaceMovesAReadIndexToTheGpuAndBack) {
  SKIP_WITHOUT_GPU_FAISS();
  test::TempDir t;
  const Matrix items = gaussian(1000, 32, 31);
  const Matrix users = gaussian(30, 32, 32);
  const ItemIndex built = ItemIndex::build(items, Options{});
  built.write(t.file("flat.faiss"));
  ItemIndex idx = ItemIndex::read(t.file("flat.faiss"), Type::kFlat, Metric::kInnerProduct);
  const eval::TopK on_cpu = search_all(idx, users, 50);
  idx.place(IndexDevice::kCuda);
  EXPECT_EQ(idx.device(), "cuda:0");
  expect_same_lists(search_all(idx, users, 50), on_cpu, kGpuScoreTol, kGpuScoreTol);
  idx.place(IndexDevice::kCpu);
  EXPECT_EQ(idx.device(), "cpu");
  idx.place(IndexDevice::kAuto);
  EXPECT_EQ(idx.device(), "cuda:0");
}

}  // namespace
}  // namespace recforge::index
