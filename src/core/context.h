#pragma once
/// @file context.h
/// The run's Context: which device computes (chosen at run time), how many CPU threads, and the
/// GPU resources (streams, handles, memory pool) when the device is a GPU.

#include <memory>
#include <string>

namespace recforge {

namespace backend::cuda {
class CudaResources;  // backend/cuda/cuda_resources.h (CUDA builds only)
}  // namespace backend::cuda

/// A compute device: the CPU or one CUDA GPU.
struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;  ///< CPU or CUDA
  int ordinal = 0;         ///< CUDA device number (0 for the CPU)
  /// "cpu" or "cuda:N".
  std::string name() const;
};

/// What `train.device` asked for: "auto", "cpu", "cuda" (= cuda:0) or "cuda:N".
struct DeviceRequest {
  bool is_auto = true;  ///< "auto": first GPU that answers, else the CPU
  Device device;        ///< the explicit device when !is_auto
};

/// Parses a device string; throws recforge::Error for anything else.
DeviceRequest parse_device(const std::string& spec);

/// Chooses the device and thread count for a run. CUDA is only touched when asked or when
/// resolving "auto", and an absent driver means "no GPU", never an abort.
class Context {
 public:
  /// Resolves `device_spec` (see parse_device) and `threads` (0: all cores). Throws
  /// recforge::Error when CUDA is asked for but not built in, or the GPU does not exist.
  static Context create(const std::string& device_spec, int threads);
  /// The chosen device.
  const Device& device() const { return device_; }
  /// CPU threads used by OpenMP regions.
  int threads() const { return threads_; }
  /// The resources of the chosen GPU (streams, cuBLAS/cuRAND handles, temporary-memory pool),
  /// created on first use and shared by every copy of this Context, so CUDA is initialised only
  /// when GPU work starts. Throws InternalError when the device is the CPU.
  std::shared_ptr<backend::cuda::CudaResources> cuda() const;

  /// The one idiom by which recforge picks an algorithm's half for the chosen device: calls
  /// `on_cpu()` when the device is the CPU and `on_cuda()` when it is a CUDA GPU, and returns
  /// what it returns (both must return the same type). Models are created through it
  /// (models::make_ials, models::make_batch_model); code that already holds a model asks the
  /// model where it computes (models::Model::cuda).
  template <class OnCpu, class OnCuda>
  auto dispatch(OnCpu&& on_cpu, OnCuda&& on_cuda) const -> decltype(on_cpu()) {
    switch (device_.kind) {
      case Device::Kind::kCuda:
        return on_cuda();
      case Device::Kind::kCpu:
        break;
    }
    return on_cpu();
  }

 private:
  struct CudaSlot;  // the lazily created resources, shared by copies
  Device device_;
  int threads_ = 1;
  std::shared_ptr<CudaSlot> gpu_slot_;
};

namespace backend {
/// True when this binary was built with the CUDA backend.
bool cuda_compiled();
/// Number of CUDA devices that answer; 0 when CUDA is not built in, no driver or no device.
int cuda_device_count() noexcept;
/// Short description of CUDA device `ordinal` (name, memory, compute capability).
std::string cuda_device_description(int ordinal);
/// CUDA runtime and driver versions as text ("runtime 13.0, driver 13.0" or "not built").
std::string cuda_version_text();

namespace cuda {
/// Creates the resources of CUDA device `ordinal` (see Context::gpu). Throws recforge::Error in a
/// build without CUDA, InternalError with the CUDA error text when the device cannot be used.
std::shared_ptr<CudaResources> create_resources(int ordinal);
}  // namespace cuda
}  // namespace backend

}  // namespace recforge
