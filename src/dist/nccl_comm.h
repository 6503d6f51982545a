#pragma once
/// @file nccl_comm.h
/// The GPU collectives of a distributed run: NCCL over the job's ranks, one GPU per rank, on
/// device memory and a CUDA stream (given as void*: this header stays free of CUDA types). The
/// communicator is created collectively: rank 0 draws NCCL's unique id and broadcasts it over
/// MPI (dist::Comm). Compiled when CUDA and NCCL are found (RECFORGE_WITH_NCCL).

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/comm.h"

namespace recforge::dist {

/// Whether this build has NCCL (distributed training on GPUs).
bool nccl_available();

class NcclComm {
 public:
  /// The job's NCCL communicator with this rank on CUDA device `device`. Collective. Throws
  /// recforge::Error when NCCL fails to start (with its message) or is not built in.
  NcclComm(const Comm& comm, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  /// In place: data[j] ← Σ over ranks (float32, n values on the device), the same on every
  /// rank (NCCL's all-reduce ends with every rank holding the reduced buffer).
  void allreduce_sum(float* data, int64_t n, void* stream);
  /// out ← every rank's `mine` (bytes[r] bytes from rank r) concatenated in rank order: one
  /// broadcast per rank, grouped (NCCL's all-gather takes equal counts only).
  void allgatherv(const void* mine, void* out, const std::vector<int64_t>& bytes, void* stream);
  /// Personalised all-to-all of bytes: send_bytes[r] bytes of `send` (rank order) to rank r,
  /// recv_bytes[r] bytes from rank r into `recv` (rank order); grouped sends and receives.
  void alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                 const std::vector<int64_t>& recv_bytes, void* stream);
  /// Bytes this rank has sent through NCCL (the same accounting as Comm::bytes_sent).
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  // Used by nccl_comm.cpp only, which builds without NCCL do not compile.
  [[maybe_unused]] int rank_ = 0;
  [[maybe_unused]] int size_ = 1;
  int64_t bytes_sent_ = 0;
};

}  // namespace recforge::dist
