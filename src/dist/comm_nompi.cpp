// dist::Comm without MPI (RECFORGE_MPI=OFF, or CMake found no MPI): the world is this process
// alone, every collective is a copy and sends nothing, and init refuses to run as one of the
// processes of an mpirun job (each would train the whole model on its own).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "dist/comm.h"
#include "dist/comm_common.h"

namespace recforge::dist {
namespace {

using detail::copy_bytes;
using detail::piece_bytes;
using detail::whole_elements;

bool g_initialized = false;



}  // namespace

bool mpi_available() { return false; }

void init(int* argc, char*** argv) {
  if (g_initialized) return;
  if (launched_by_mpi() && launched_size() > 1) {
    fail("this recforge was built without MPI, so it cannot be one of the {} processes that "
         "an MPI launcher (mpirun) started (each would train the whole model alone); install "
         "Open MPI "
         "(tools/setup.sh) and rebuild, or run without mpirun",
         launched_size());
  }
  g_initialized = true;
}

void finalize() {}

void abort(int code) { std::exit(code); }

void Comm::barrier() const {}

// A world of one: the sum, maximum, minimum or OR over one rank is the data itself.
void Comm::allreduce_sum(double*, int64_t) const {}
void Comm::allreduce_sum(float*, int64_t) const {}
void Comm::allreduce_sum(int64_t*, int64_t) const {}
void Comm::allreduce_max(int64_t*, int64_t) const {}
void Comm::allreduce_min(int64_t*, int64_t) const {}
void Comm::allreduce_or(uint8_t*, int64_t) const {}

double Comm::sum(double v) const { return v; }
int64_t Comm::sum(int64_t v) const { return v; }
int64_t Comm::max(int64_t v) const { return v; }
bool Comm::any(bool v) const { return v; }

void Comm::broadcast(void*, int64_t, int root) const {
  RF_ASSERT(root == 0, "dist: broadcast root outside the world");
}

void Comm::allgatherv_bytes(const void* mine, int64_t bytes, size_t elem, const Alloc& alloc,
                            std::vector<int64_t>& counts) const {
  const int64_t n = whole_elements(bytes, elem);
  counts.assign(1, n);
  copy_bytes(alloc(n), mine, bytes);
}

void Comm::gatherv_bytes(const void* mine, int64_t bytes, size_t elem, int root,
                         const Alloc& alloc, std::vector<int64_t>& counts) const {
  RF_ASSERT(root == 0, "dist: gatherv root outside the world");
  const int64_t n = whole_elements(bytes, elem);
  counts.assign(1, n);
  copy_bytes(alloc(n), mine, bytes);
}

void Comm::alltoallv_bytes(const void* send, const std::vector<int64_t>& send_counts,
                           size_t elem, const Alloc& alloc,
                           std::vector<int64_t>& recv_counts) const {
  RF_ASSERT(send_counts.size() == 1 && send_counts[0] >= 0,
            "dist: alltoallv needs one send count per rank");
  recv_counts.assign(1, send_counts[0]);
  copy_bytes(alloc(send_counts[0]), send, send_counts[0] * static_cast<int64_t>(elem));
}

}  // namespace recforge::dist
