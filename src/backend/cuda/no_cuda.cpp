// Stand-ins used when recforge is built without CUDA (RECFORGE_CUDA=OFF or no nvcc). Discovery
// answers "no GPU"; everything that would compute on a GPU refuses with one sentence saying how
// to rebuild. Context::create already refuses `cuda` devices, so these are reached only by
// direct calls.
#include "models/batch/batch_cuda_trainer.h"
#include "backend/cuda/csr_cuda.h"
#include "models/ials/ials_cuda_solver.h"
#include "eval/topk_cuda.h"
#include "core/context.h"
#include "core/error.h"

namespace recforge::backend {

bool cuda_compiled() { return false; }
int cuda_device_count() noexcept { return 0; }
std::string cuda_device_description(int) { return "CUDA not built in"; }
std::string cuda_version_text() { return "not built (RECFORGE_CUDA=OFF or no nvcc at build time)"; }

namespace cuda {
namespace {

[[noreturn]] void refuse(const char* what) {
  fail("{} needs the CUDA backend, but this recforge was built without it; rebuild with "
       "`cmake --preset release -DRECFORGE_CUDA=ON` on a machine with the CUDA toolkit",
       what);
}

}  // namespace

std::shared_ptr<CudaResources> create_resources(int) { refuse("a CUDA device"); }

int max_factors() { return 0; }
std::unique_ptr<IalsCudaSolver> make_ials_cuda_solver(std::shared_ptr<CudaResources>, int64_t, int64_t, int,
                                       const IalsCudaSolverOptions&) {
  refuse("iALS on a GPU");
}

std::unique_ptr<IalsCudaShard> make_ials_cuda_shard(std::shared_ptr<CudaResources>, const data::Csr&,
                                                   const data::Csr&, int, const IalsCudaSolverOptions&,
                                                   const std::vector<float>&) {
  refuse("distributed iALS on GPUs");
}

int max_topk() { return 0; }
eval::TopK topk(CudaResources&, const float*, int64_t, const float*, int64_t, int, int,
                const data::Csr*, const std::vector<data::index_t>&) {
  refuse("top-k on a GPU");
}
eval::Metrics compute_metrics(CudaResources&, const eval::TopK&, const std::vector<data::index_t>&,
                              const data::Csr&, int64_t, const eval::MetricsOptions&) {
  refuse("metrics on a GPU");
}
eval::Metrics topk_metrics(CudaResources&, const float*, int64_t, const float*, int64_t, int,
                           const data::Csr*, const std::vector<data::index_t>&, const data::Csr&,
                           const std::vector<data::index_t>&, const eval::MetricsOptions&) {
  refuse("evaluation on a GPU");
}
int64_t topk_memory_bytes(int64_t, int64_t, int, int, int64_t, int64_t) { return 0; }
int64_t free_memory(CudaResources&) { return 0; }

data::Csr transpose_on_gpu(CudaResources&, const data::Csr&) { refuse("a CSR transpose on a GPU"); }
data::Csr csr_from_coo_on_gpu(CudaResources&, int64_t, int64_t, const std::vector<data::index_t>&,
                              const std::vector<data::index_t>&, const std::vector<float>&) {
  refuse("a CSR build on a GPU");
}

TopkTiming time_topk(CudaResources&, int64_t, int64_t, int, int) { refuse("the GPU benchmark"); }

std::unique_ptr<BatchTrainerCuda> make_batch_trainer_cuda(std::shared_ptr<CudaResources>, int64_t, int64_t,
                                         const BatchParams&) {
  refuse("BPR and sampled softmax on a GPU");
}

}  // namespace cuda
}  // namespace recforge::backend
