// The stand-ins of a build without CUDA or NCCL: distributed training on GPUs refuses, saying
// how to rebuild (ials_dist_cuda.h, nccl_comm.h).
#include "core/error.h"
#include "dist/ials_dist_cuda.h"
#include "dist/nccl_comm.h"

namespace recforge::dist {

bool nccl_available() { return false; }

struct NcclComm::Impl {};

std::unique_ptr<IalsDistGpu> IalsDistGpu::make(const models::IalsOptions&, const Context&,
                                               const Comm&, const IalsShard&, const RowExchange&,
                                               const RowExchange&, const std::vector<float>&) {
  fail("train.device cuda across processes needs a build with CUDA and NCCL (NCCL comes with "
       "the CUDA toolkit: configure with -DRECFORGE_CUDA=ON where nvcc and libnccl are found); "
       "set train.device: cpu");
}

NcclComm::NcclComm(const Comm&, int) { fail("this recforge was built without NCCL"); }
NcclComm::~NcclComm() = default;
void NcclComm::allreduce_sum(float*, int64_t, void*) {}
void NcclComm::allgatherv(const void*, void*, const std::vector<int64_t>&, void*) {}
void NcclComm::alltoallv(const void*, const std::vector<int64_t>&, void*,
                         const std::vector<int64_t>&, void*) {}

}  // namespace recforge::dist
