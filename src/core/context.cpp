#include "core/context.h"

#include <omp.h>

#include <cctype>
#include <mutex>

#include "core/error.h"
#include "core/log.h"

namespace recforge {

struct Context::CudaSlot {
  std::mutex mutex;
  std::shared_ptr<backend::cuda::CudaResources> resources;
};

std::shared_ptr<backend::cuda::CudaResources> Context::cuda() const {
  RF_ASSERT(device_.kind == Device::Kind::kCuda && gpu_slot_,
            "Context::cuda() called for a context whose device is not a GPU");
  std::lock_guard<std::mutex> lock(gpu_slot_->mutex);
  if (!gpu_slot_->resources) gpu_slot_->resources = backend::cuda::create_resources(device_.ordinal);
  return gpu_slot_->resources;
}

std::string Device::name() const {
  return kind == Kind::kCpu ? "cpu" : fmt::format("cuda:{}", ordinal);
}

DeviceRequest parse_device(const std::string& spec) {
  DeviceRequest r;
  if (spec == "auto") return r;
  r.is_auto = false;
  if (spec == "cpu") return r;
  if (spec == "cuda") {
    r.device = {Device::Kind::kCuda, 0};
    return r;
  }
  if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.size() <= 8) {
    bool digits = true;
    for (size_t i = 5; i < spec.size(); ++i) digits &= std::isdigit(static_cast<unsigned char>(spec[i])) != 0;
    if (digits) {
      r.device = {Device::Kind::kCuda, std::stoi(spec.substr(5))};
      return r;
    }
  }
  fail("device \"{}\": expected auto, cpu, cuda or cuda:N", spec);
}

Context Context::create(const std::string& device_spec, int threads) {
  const DeviceRequest req = parse_device(device_spec);
  Context ctx;
  if (req.is_auto) {
    if (backend::cuda_device_count() > 0) ctx.device_ = {Device::Kind::kCuda, 0};
  } else if (req.device.kind == Device::Kind::kCuda) {
    if (!backend::cuda_compiled())
      fail("device \"{}\" asks for CUDA, but this recforge was built without it; rebuild with "
           "`cmake --preset release -DRECFORGE_CUDA=ON` on a machine with the CUDA toolkit",
           device_spec);
    const int n = backend::cuda_device_count();
    if (req.device.ordinal >= n)
      fail("device \"{}\": {} CUDA device(s) answer on this machine", device_spec, n);
    ctx.device_ = req.device;
  }
  if (ctx.device_.kind == Device::Kind::kCuda) ctx.gpu_slot_ = std::make_shared<CudaSlot>();
  ctx.threads_ = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(ctx.threads_);
  log().debug("context: device {}, {} CPU threads", ctx.device_.name(), ctx.threads_);
  return ctx;
}

}  // namespace recforge
