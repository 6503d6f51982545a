// Stand-ins used when recforge is built without CUDA (RECFORGE_CUDA=OFF or no nvcc).
#include "core/context.h"

namespace recforge::backend {

bool cuda_compiled() { return false; }
int cuda_device_count() noexcept { return 0; }
std::string cuda_device_description(int) { return "CUDA not built in"; }
std::string cuda_version_text() { return "not built (RECFORGE_CUDA=OFF or no nvcc at build time)"; }

}  // namespace recforge::backend
