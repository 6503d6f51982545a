// NCCL collectives of a distributed run (nccl_comm.h). Compiled when CUDA and NCCL are found.
#include "dist/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include "core/error.h"

namespace recforge::dist {
namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    fail("NCCL {} failed: {} ({})", what, ncclGetErrorString(r), ncclGetLastError(nullptr));
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

bool nccl_available() { return true; }

struct NcclComm::Impl {
  ncclComm_t comm = nullptr;
};

NcclComm::NcclComm(const Comm& comm, int device) : impl_(std::make_unique<Impl>()) {
  rank_ = comm.rank();
  size_ = comm.size();
  ncclUniqueId id{};
  if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  comm.broadcast(&id, sizeof id, 0);
  if (cudaSetDevice(device) != cudaSuccess)
    fail("process {} of {}: cannot use CUDA device {}", rank_, size_, device);
  check(ncclCommInitRank(&impl_->comm, size_, id, rank_), "ncclCommInitRank");
}

NcclComm::~NcclComm() {
  if (impl_ && impl_->comm) ncclCommDestroy(impl_->comm);
}

void NcclComm::allreduce_sum(float* data, int64_t n, void* stream) {
  if (n == 0) return;
  check(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, impl_->comm,
                      as_stream(stream)),
        "all-reduce");
  if (size_ > 1) bytes_sent_ += n * static_cast<int64_t>(sizeof(float));
}

void NcclComm::allgatherv(const void* mine, void* out, const std::vector<int64_t>& bytes,
                          void* stream) {
  RF_ASSERT(static_cast<int>(bytes.size()) == size_, "NcclComm::allgatherv: counts");
  int64_t offset = 0;
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size_; ++r) {
    if (bytes[r] > 0)
      check(ncclBroadcast(r == rank_ ? mine : nullptr, static_cast<char*>(out) + offset,
                          static_cast<size_t>(bytes[r]), ncclChar, r, impl_->comm,
                          as_stream(stream)),
            "broadcast");
    offset += bytes[r];
  }
  check(ncclGroupEnd(), "group end");
  bytes_sent_ += bytes[rank_] * (size_ - 1);
}

void NcclComm::alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                         const std::vector<int64_t>& recv_bytes, void* stream) {
  RF_ASSERT(static_cast<int>(send_bytes.size()) == size_ && static_cast<int>(recv_bytes.size()) == size_,
            "NcclComm::alltoallv: counts");
  int64_t so = 0, ro = 0;
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size_; ++r) {
    if (send_bytes[r] > 0)
      check(ncclSend(static_cast<const char*>(send) + so, static_cast<size_t>(send_bytes[r]),
                     ncclChar, r, impl_->comm, as_stream(stream)),
            "send");
    if (recv_bytes[r] > 0)
      check(ncclRecv(static_cast<char*>(recv) + ro, static_cast<size_t>(recv_bytes[r]), ncclChar,
                     r, impl_->comm, as_stream(stream)),
            "receive");
    if (r != rank_) bytes_sent_ += send_bytes[r];
    so += send_bytes[r];
    ro += recv_bytes[r];
  }
  check(ncclGroupEnd(), "group end");
}

}  // namespace recforge::dist
