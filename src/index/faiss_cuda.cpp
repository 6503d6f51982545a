// The GPU side of ItemIndex through GPU Faiss 1.7.3 (tools/faiss-gpu/build-faiss-gpu.sh). Compiled
// only in builds with RECFORGE_FAISS_GPU=ON; the stubs of other builds are in index.cpp.
#if defined(RECFORGE_WITH_FAISS_GPU)

#include "index/faiss_cuda.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/gpu/GpuCloner.h>
#include <faiss/gpu/GpuClonerOptions.h>
#include <faiss/gpu/GpuIndexFlat.h>
#include <faiss/gpu/GpuIndexIVFFlat.h>
#include <faiss/gpu/GpuIndexIVFPQ.h>
#include <faiss/gpu/StandardGpuResources.h>
#include <faiss/impl/FaissException.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "core/error.h"
#include "index/index.h"

namespace recforge::index::detail {

namespace {

/// Temporary GPU memory of Faiss, fixed. 1.7.3 sizes its temporary-memory stack itself (up to
/// 1.5 GiB per GPU) and over-allocates it about 5× through a growth bug; a fixed size set before
/// the first use avoids that. Searches tile their work to what is available.
constexpr size_t kTempMemoryBytes = size_t{1} << 30;

/// One StandardGpuResources per GPU, shared by the indices on it. Faiss's resources are not
/// thread-safe, so every call into GPU Faiss holds `mutex`.
struct Resources {
  std::mutex mutex;
  faiss::gpu::StandardGpuResources res;
};

/// The resources of GPU `ordinal`, created on first use (the constructor and setTempMemory touch
/// no CUDA function; the device is initialised by the first index) and released with the last
/// index that holds them, so that nothing Faiss-related is left for static destruction, when the
/// CUDA runtime may already be gone (1.7.3 aborts on a CUDA error while destroying resources).
std::shared_ptr<Resources> resources_for(int ordinal) {
  static std::mutex m;
  static std::map<int, std::weak_ptr<Resources>> live;
  std::lock_guard<std::mutex> lock(m);
  std::shared_ptr<Resources> r = live[ordinal].lock();
  if (!r) {
    r = std::make_shared<Resources>();
    r->res.setTempMemory(kTempMemoryBytes);
    live[ordinal] = r;
  }
  return r;
}

/// The first line of a Faiss error (1.7.3 appends the source location on further lines).
std::string first_line(const faiss::FaissException& e) {
  std::string what = e.what();
  if (const auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
  return what;
}

class FaissGpuIndex final : public GpuIndex {
 public:
  FaissGpuIndex(std::shared_ptr<Resources> res, std::unique_ptr<faiss::Index> index, int ordinal)
      : res_(std::move(res)), index_(std::move(index)), ordinal_(ordinal) {}

  ~FaissGpuIndex() override {
    std::lock_guard<std::mutex> lock(res_->mutex);  // frees GPU memory through the resources
    index_.reset();
  }

  void add(int64_t n, const float* x) override {
    std::lock_guard<std::mutex> lock(res_->mutex);
    try {
      index_->add(n, x);
    } catch (const faiss::FaissException& e) {
      fail("index: GPU Faiss could not add {} vectors on cuda:{}: {}", n, ordinal_, first_line(e));
    }
  }

  void search(const float* x, int64_t n, int k, int64_t nprobe, float* scores,
              int64_t* labels) const override {
    RF_ASSERT(k >= 1 && k <= kGpuMaxSelect, "GpuIndex::search: k above the GPU limit");
    std::lock_guard<std::mutex> lock(res_->mutex);
    try {
      if (dynamic_cast<const faiss::gpu::GpuIndexIVF*>(index_.get()) != nullptr) {
        RF_ASSERT(nprobe >= 1 && nprobe <= kGpuMaxSelect, "GpuIndex::search: nprobe out of range");
        faiss::SearchParametersIVF params;
        params.nprobe = static_cast<size_t>(nprobe);
        index_->search(n, x, k, scores, labels, &params);
      } else {
        index_->search(n, x, k, scores, labels);
      }
    } catch (const faiss::FaissException& e) {
      throw InternalError(
          fmt::format("GPU Faiss search on cuda:{} failed: {}", ordinal_, first_line(e)), __FILE__,
          __LINE__);
    }
  }

  std::unique_ptr<faiss::Index> to_cpu() const override {
    std::lock_guard<std::mutex> lock(res_->mutex);
    try {
      return std::unique_ptr<faiss::Index>(faiss::gpu::index_gpu_to_cpu(index_.get()));
    } catch (const faiss::FaissException& e) {
      fail("index: GPU Faiss could not copy the index from cuda:{} to the CPU: {}", ordinal_,
           first_line(e));
    }
  }

  int ordinal() const override { return ordinal_; }

 private:
  std::shared_ptr<Resources> res_;       // declared first: outlives index_
  std::unique_ptr<faiss::Index> index_;  // GpuIndexFlatIP, GpuIndexIVFFlat or GpuIndexIVFPQ
  int ordinal_;
};

}  // namespace

std::unique_ptr<GpuIndex> copy_to_gpu(faiss::Index& cpu, int ordinal, int64_t reserve) {
  RF_ASSERT(cpu.metric_type == faiss::METRIC_INNER_PRODUCT, "copy_to_gpu: not inner product");
  std::shared_ptr<Resources> res = resources_for(ordinal);
  std::lock_guard<std::mutex> lock(res->mutex);
  std::unique_ptr<faiss::Index> gpu;
  try {
    if (auto* flat = dynamic_cast<faiss::IndexFlat*>(&cpu)) {
      faiss::gpu::GpuIndexFlatConfig config;
      config.device = ordinal;
      auto g =
          std::make_unique<faiss::gpu::GpuIndexFlatIP>(&res->res, static_cast<int>(cpu.d), config);
      g->copyFrom(flat);
      gpu = std::move(g);
    } else if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(&cpu)) {
      // GpuIndexIVF::copyFrom refuses nprobe above the selection limit; searches pass their own
      // nprobe anyway (SearchParametersIVF), so copy with a capped one and restore it.
      const size_t nprobe = ivf->nprobe;
      ivf->nprobe = std::min<size_t>(nprobe, static_cast<size_t>(kGpuMaxSelect));
      faiss::gpu::GpuClonerOptions options;  // float32 everywhere, 64-bit labels
      options.reserveVecs = static_cast<long>(reserve);
      try {
        gpu.reset(faiss::gpu::index_cpu_to_gpu(&res->res, ordinal, &cpu, &options));
      } catch (...) {
        ivf->nprobe = nprobe;
        throw;
      }
      ivf->nprobe = nprobe;
      if (dynamic_cast<faiss::gpu::GpuIndexIVFFlat*>(gpu.get()) == nullptr &&
          dynamic_cast<faiss::gpu::GpuIndexIVFPQ*>(gpu.get()) == nullptr)
        throw InternalError("copy_to_gpu: index_cpu_to_gpu did not make a GPU IVF index", __FILE__,
                            __LINE__);
    } else {
      throw InternalError("copy_to_gpu: only flat and IVF indices go to the GPU", __FILE__,
                          __LINE__);
    }
  } catch (const faiss::FaissException& e) {
    fail(
        "index: GPU Faiss could not put the index on cuda:{}: {} (index.device cpu keeps it on "
        "the CPU)",
        ordinal, first_line(e));
  }
  return std::make_unique<FaissGpuIndex>(std::move(res), std::move(gpu), ordinal);
}

void gpu_flat_l2_search(int ordinal, const float* base, int64_t nb, int d, const float* queries,
                        int64_t nq, int k, float* distances, int64_t* labels) {
  RF_ASSERT(k >= 1 && k <= kGpuMaxSelect, "gpu_flat_l2_search: k above the GPU limit");
  std::shared_ptr<Resources> res = resources_for(ordinal);
  std::lock_guard<std::mutex> lock(res->mutex);
  try {
    faiss::gpu::GpuIndexFlatConfig config;
    config.device = ordinal;
    faiss::gpu::GpuIndexFlatL2 index(&res->res, d, config);
    index.add(nb, base);
    index.search(nq, queries, k, distances, labels);
  } catch (const faiss::FaissException& e) {
    throw InternalError(
        fmt::format("GPU Faiss L2 search on cuda:{} failed: {}", ordinal, first_line(e)), __FILE__,
        __LINE__);
  }
}

}  // namespace recforge::index::detail

#endif  // RECFORGE_WITH_FAISS_GPU
