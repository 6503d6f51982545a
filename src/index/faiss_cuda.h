#pragma once
/// @file faiss_cuda.h
/// Internal to src/index: the GPU side of ItemIndex. Faiss GPU types (GpuIndexFlatIP,
/// GpuIndexIVFFlat, GpuIndexIVFPQ, StandardGpuResources) stay in gpu_faiss.cpp, which is compiled
/// only with RECFORGE_WITH_FAISS_GPU; index.cpp holds the stubs of other builds.
///
/// Callers must have checked that a GPU answers (backend::cuda_device_count() > 0) before calling
/// anything here: Faiss 1.7.3's own device queries abort the process when no driver is present.

#include <atomic>
#include <cstdint>
#include <memory>

namespace faiss {
struct Index;
}

namespace recforge::index::detail {

/// A GPU copy of a CPU Faiss index (flat or IVF, inner product). Every call is serialized on the
/// GPU's Faiss resources (they are not thread-safe) and Faiss errors become recforge::Error.
class GpuIndex {
 public:
  virtual ~GpuIndex() = default;
  /// Adds n vectors (labels continue from the current count).
  virtual void add(int64_t n, const float* x) = 0;
  /// k-NN of n queries; requires k <= kGpuMaxSelect and, for IVF, 1 <= nprobe <= kGpuMaxSelect
  /// (ignored for flat).
  virtual void search(const float* x, int64_t n, int k, int64_t nprobe, float* scores,
                      int64_t* labels) const = 0;
  /// A CPU index holding the same vectors (faiss::gpu::index_gpu_to_cpu).
  virtual std::unique_ptr<faiss::Index> to_cpu() const = 0;
  /// The CUDA device number.
  virtual int ordinal() const = 0;

  /// Set once the first search above the GPU limits has been logged.
  mutable std::atomic<bool> fallback_logged{false};
};

/// Copies `cpu` (IndexFlat or IndexIVFFlat/IndexIVFPQ with the inner-product metric, trained;
/// empty or not) to GPU `ordinal` through GpuIndexFlatIP or faiss::gpu::index_cpu_to_gpu,
/// reserving room for `reserve` vectors in IVF lists. The CPU index is left as it was (its nprobe
/// is capped at kGpuMaxSelect for the copy only). Throws recforge::Error when GPU Faiss refuses.
std::unique_ptr<GpuIndex> copy_to_gpu(faiss::Index& cpu, int ordinal, int64_t reserve);

/// Exact L2 k-NN of `nq` queries among `nb` base vectors (d dimensions) on GPU `ordinal`,
/// through GpuIndexFlatL2: squared distances ascending. recforge's indices use inner products;
/// this exists so that tests can check the L2-norm kernel patch
/// (tools/faiss-gpu/patches/0002-l2norm-partial-warp.patch).
void gpu_flat_l2_search(int ordinal, const float* base, int64_t nb, int d, const float* queries,
                        int64_t nq, int k, float* distances, int64_t* labels);

}  // namespace recforge::index::detail
