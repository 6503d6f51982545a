// The GPU side of distributed iALS (ials_dist_cuda.h). Compiled with CUDA and NCCL.
#include "dist/ials_dist_cuda.h"

#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/launch.h"
#include "dist/nccl_comm.h"
#include "models/ials/ials_cuda_solver.h"

namespace recforge::dist {
namespace {

namespace cu = backend::cuda;

// A RowExchange carried out on the GPU: the rows of the send plan gathered on the device, moved
// by NCCL.
class DeviceExchange {
 public:
  DeviceExchange(cu::CudaResources& gpu, const RowExchange& plan) : gpu_(gpu), plan_(plan) {
    if (!plan.targeted() || plan.send_rows().empty()) return;
    std::vector<int32_t> rows(plan.send_rows().begin(), plan.send_rows().end());
    send_rows_.reset(static_cast<int64_t>(rows.size()));
    cu::copy_to_device(send_rows_.data(), rows.data(), static_cast<int64_t>(rows.size()),
                       gpu.stream());
    gpu.synchronize();
  }

  void run(NcclComm& nccl, const float* own, float* needed, int row_floats, void* stream) {
    const int64_t row_bytes = int64_t{row_floats} * static_cast<int64_t>(sizeof(float));
    if (!plan_.targeted()) {
      const std::vector<int64_t>& starts = plan_.other_starts();
      std::vector<int64_t> bytes(starts.size() - 1);
      for (size_t r = 0; r + 1 < starts.size(); ++r) bytes[r] = (starts[r + 1] - starts[r]) * row_bytes;
      nccl.allgatherv(own, needed, bytes, stream);
      return;
    }
    const int64_t n = static_cast<int64_t>(plan_.send_rows().size());
    if (send_.size() < n * row_floats) send_.reset(n * row_floats);
    if (n > 0)
      cu::launch_gather_rows(own, row_floats, send_rows_.data(), n, send_.data(),
                             static_cast<cudaStream_t>(stream));
    std::vector<int64_t> sb(plan_.send_counts()), rb(plan_.recv_counts());
    for (auto& b : sb) b *= row_bytes;
    for (auto& b : rb) b *= row_bytes;
    nccl.alltoallv(send_.data(), sb, needed, rb, stream);
  }

 private:
  cu::CudaResources& gpu_;
  const RowExchange& plan_;
  cu::DeviceBuffer<int32_t> send_rows_;
  cu::DeviceBuffer<float> send_;
};

class IalsDistGpuImpl final : public IalsDistGpu, private cu::IalsCudaShard::Collectives {
 public:
  IalsDistGpuImpl(const models::IalsOptions& o, const Context& ctx, const Comm& comm,
                  const IalsShard& shard, const RowExchange& for_users,
                  const RowExchange& for_items, const std::vector<float>& w)
      : comm_(comm),
        nccl_(comm, ctx.device().ordinal),
        gpu_(ctx.cuda()),
        users_ex_(*gpu_, for_users),
        items_ex_(*gpu_, for_items) {
    cu::IalsCudaSolverOptions so;
    so.solve = o.solve;
    so.storage = o.dtype;
    shard_ = cu::make_ials_cuda_shard(gpu_, shard.user_items, shard.item_users, o.factors, so, w);
  }

  void set_rows(const Matrix& users, const Matrix& items) override { shard_->set_rows(users, items); }
  void get_rows(Matrix& users, Matrix& items) override { shard_->get_rows(users, items); }

  void iterate(int iteration) override {
    shard_->half(true, *this, iteration);
    shard_->half(false, *this, iteration);
  }

  double loss() override {
    double terms[3];
    shard_->loss_terms(*this, terms);
    double local[2] = {terms[0], terms[1]};
    comm_.allreduce_sum(local, 2);
    return local[0] + terms[2] + local[1];
  }

  int64_t bytes_sent() const override { return nccl_.bytes_sent(); }
  std::string description() const override { return shard_->description(); }

 private:
  void allreduce_sum(float* data, int64_t n, void* stream) override {
    nccl_.allreduce_sum(data, n, stream);
  }
  void exchange(bool user_half, const float* own, float* needed, int row_floats,
                void* stream) override {
    (user_half ? users_ex_ : items_ex_).run(nccl_, own, needed, row_floats, stream);
  }

  const Comm& comm_;
  NcclComm nccl_;
  std::shared_ptr<cu::CudaResources> gpu_;
  DeviceExchange users_ex_, items_ex_;
  std::unique_ptr<cu::IalsCudaShard> shard_;
};

}  // namespace

std::unique_ptr<IalsDistGpu> IalsDistGpu::make(const models::IalsOptions& options,
                                               const Context& ctx, const Comm& comm,
                                               const IalsShard& shard,
                                               const RowExchange& for_users,
                                               const RowExchange& for_items,
                                               const std::vector<float>& item_weights_own) {
  return std::make_unique<IalsDistGpuImpl>(options, ctx, comm, shard, for_users, for_items,
                                           item_weights_own);
}

}  // namespace recforge::dist
