#pragma once
/// @file ials_dist_cuda.h
/// The GPU side of dist::IalsDist (`mpirun -np P recforge train` with train.device cuda): each
/// rank's rows and interactions on its GPU (backend::cuda::IalsCudaShard), the Gram matrices
/// summed and the other side's rows moved by NCCL (dist::NcclComm), following the host's
/// exchange plans (dist::RowExchange: an all-gather as grouped broadcasts, or the targeted rows
/// as grouped sends and receives). Compiled with CUDA and NCCL; otherwise `make` refuses, saying
/// how to rebuild.

#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/npy.h"
#include "dist/comm.h"
#include "dist/ials_dist.h"
#include "models/ials/ials.h"

namespace recforge::dist {

class IalsDistGpu {
 public:
  virtual ~IalsDistGpu() = default;
  /// The rank's part on the GPU of `ctx`. Collective (creates the NCCL communicator).
  static std::unique_ptr<IalsDistGpu> make(const models::IalsOptions& options, const Context& ctx,
                                           const Comm& comm, const IalsShard& shard,
                                           const RowExchange& for_users,
                                           const RowExchange& for_items,
                                           const std::vector<float>& item_weights_own);
  /// Uploads / downloads the rank's own rows.
  virtual void set_rows(const Matrix& users, const Matrix& items) = 0;
  virtual void get_rows(Matrix& users, Matrix& items) = 0;
  /// One iteration (users, then items). Collective.
  virtual void iterate(int iteration) = 0;
  /// The objective, the same on every rank. Collective.
  virtual double loss() = 0;
  /// Bytes this rank sent through NCCL.
  virtual int64_t bytes_sent() const = 0;
  /// The GPU, in words.
  virtual std::string description() const = 0;
};

}  // namespace recforge::dist
