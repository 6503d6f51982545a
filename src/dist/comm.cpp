// dist::Comm over MPI (MPI_COMM_WORLD, host memory); compiled when CMake finds MPI
// (RECFORGE_MPI). comm_nompi.cpp is the stand-in of builds without MPI.
//
// Every MPI call's error goes to MPI's default handler on MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL,
// which ends the whole job: that is what we want (a rank cannot recover alone while the others
// wait in a collective), so return codes are not checked.
//
// Large messages go in pieces of at most max_piece_bytes (1 GiB, a smaller value in tests):
// reductions and broadcasts piece by piece, the v-collectives as point-to-point messages
// (MPI_Isend/MPI_Irecv with one tag per collective: MPI keeps messages between two ranks with
// the same tag in order, so the pieces arrive in sequence). Their 64-bit counts are exchanged
// first, so every rank knows how many pieces to expect.
#include "dist/comm.h"
#include "dist/comm_common.h"

// MPI's C API only: without these, mpi.h (included from C++) declares the C++ bindings that
// MPI-3 removed, which need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace recforge::dist {
namespace {

using detail::copy_bytes;
using detail::piece_bytes;
using detail::whole_elements;

bool g_initialized = false;
bool g_mpi_started = false;  // init called MPI_Init_thread (finalize ends it)
bool g_mpi_finalized = false;

enum Tag : int { kTagAllgatherv = 101, kTagGatherv = 102, kTagAlltoallv = 103 };


template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<int64_t>() { return MPI_INT64_T; }
template <>
MPI_Datatype mpi_type<uint8_t>() { return MPI_UINT8_T; }

// In place: reduce at rank 0, then broadcast rank 0's result, piece by piece, so that every
// rank holds the same bits (MPI_Allreduce may round differently on different ranks).
template <typename T>
void reduce_bcast(T* data, int64_t n, MPI_Op op, int rank) {
  const int64_t piece = std::max<int64_t>(1, piece_bytes() / static_cast<int64_t>(sizeof(T)));
  for (int64_t off = 0; off < n; off += piece) {
    const int count = static_cast<int>(std::min(piece, n - off));
    T* p = data + off;
    if (rank == 0) {
      MPI_Reduce(MPI_IN_PLACE, p, count, mpi_type<T>(), op, 0, MPI_COMM_WORLD);
    } else {
      MPI_Reduce(p, nullptr, count, mpi_type<T>(), op, 0, MPI_COMM_WORLD);
    }
    MPI_Bcast(p, count, mpi_type<T>(), 0, MPI_COMM_WORLD);
  }
}

// Posts the sends or receives of `bytes` bytes to/from `peer` in pieces.
void post_send(const void* data, int64_t bytes, int peer, int tag, std::vector<MPI_Request>& reqs) {
  const auto* p = static_cast<const char*>(data);
  for (int64_t off = 0; off < bytes; off += piece_bytes()) {
    const int count = static_cast<int>(std::min(piece_bytes(), bytes - off));
    reqs.emplace_back();
    MPI_Isend(p + off, count, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &reqs.back());
  }
}
void post_recv(void* data, int64_t bytes, int peer, int tag, std::vector<MPI_Request>& reqs) {
  auto* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += piece_bytes()) {
    const int count = static_cast<int>(std::min(piece_bytes(), bytes - off));
    reqs.emplace_back();
    MPI_Irecv(p + off, count, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &reqs.back());
  }
}
void wait_all(std::vector<MPI_Request>& reqs) {
  if (!reqs.empty()) {
    MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
  }
}


}  // namespace

bool mpi_available() { return true; }

void init(int* argc, char*** argv) {
  if (g_initialized) return;
  if (launched_by_mpi()) {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
      g_mpi_started = true;
      if (provided < MPI_THREAD_FUNNELED) {
        // The same answer on every rank: all of them stop here.
        MPI_Finalize();
        g_mpi_finalized = true;
        RF_ASSERT(false, "dist: this MPI does not provide MPI_THREAD_FUNNELED");
      }
    }
    Comm& w = world();
    MPI_Comm_rank(MPI_COMM_WORLD, &w.rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &w.size_);
  }
  g_initialized = true;
}

void finalize() {
  if (g_mpi_started && !g_mpi_finalized) {
    MPI_Finalize();
    g_mpi_finalized = true;
  }
}

void abort(int code) {
  int up = 0;
  MPI_Initialized(&up);
  int down = 0;
  MPI_Finalized(&down);
  if (up && !down) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

void Comm::barrier() const {
  if (size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
}

void Comm::allreduce_sum(double* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_SUM, rank_);
  bytes_sent_ += n * static_cast<int64_t>(sizeof(double));
}
void Comm::allreduce_sum(float* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_SUM, rank_);
  bytes_sent_ += n * static_cast<int64_t>(sizeof(float));
}
void Comm::allreduce_sum(int64_t* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_SUM, rank_);
  bytes_sent_ += n * static_cast<int64_t>(sizeof(int64_t));
}
void Comm::allreduce_max(int64_t* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_MAX, rank_);
  bytes_sent_ += n * static_cast<int64_t>(sizeof(int64_t));
}
void Comm::allreduce_min(int64_t* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_MIN, rank_);
  bytes_sent_ += n * static_cast<int64_t>(sizeof(int64_t));
}
void Comm::allreduce_or(uint8_t* data, int64_t n) const {
  if (size_ == 1 || n <= 0) return;
  reduce_bcast(data, n, MPI_BOR, rank_);
  bytes_sent_ += n;
}

double Comm::sum(double v) const {
  allreduce_sum(&v, 1);
  return v;
}
int64_t Comm::sum(int64_t v) const {
  allreduce_sum(&v, 1);
  return v;
}
int64_t Comm::max(int64_t v) const {
  allreduce_max(&v, 1);
  return v;
}
bool Comm::any(bool v) const {
  uint8_t b = v ? 1 : 0;
  allreduce_or(&b, 1);
  return b != 0;
}

void Comm::broadcast(void* data, int64_t bytes, int root) const {
  RF_ASSERT(root >= 0 && root < size_, "dist: broadcast root outside the world");
  if (size_ == 1 || bytes <= 0) return;
  auto* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += piece_bytes()) {
    const int count = static_cast<int>(std::min(piece_bytes(), bytes - off));
    MPI_Bcast(p + off, count, MPI_BYTE, root, MPI_COMM_WORLD);
  }
  if (rank_ == root) bytes_sent_ += bytes * (size_ - 1);
}

void Comm::allgatherv_bytes(const void* mine, int64_t bytes, size_t elem, const Alloc& alloc,
                            std::vector<int64_t>& counts) const {
  const int64_t n = whole_elements(bytes, elem);
  counts.assign(static_cast<size_t>(size_), 0);
  if (size_ == 1) {
    counts[0] = n;
    copy_bytes(alloc(n), mine, bytes);
    return;
  }
  MPI_Allgather(&n, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
  int64_t total = 0;
  for (const int64_t c : counts) total += c;
  auto* out = static_cast<char*>(alloc(total));
  const auto esz = static_cast<int64_t>(elem);
  std::vector<MPI_Request> reqs;
  int64_t off = 0;
  for (int r = 0; r < size_; ++r) {
    const int64_t b = counts[static_cast<size_t>(r)] * esz;
    if (r == rank_) {
      copy_bytes(out + off, mine, b);
    } else {
      post_recv(out + off, b, r, kTagAllgatherv, reqs);
      post_send(mine, bytes, r, kTagAllgatherv, reqs);
    }
    off += b;
  }
  wait_all(reqs);
  bytes_sent_ += bytes * (size_ - 1);
}

void Comm::gatherv_bytes(const void* mine, int64_t bytes, size_t elem, int root,
                         const Alloc& alloc, std::vector<int64_t>& counts) const {
  RF_ASSERT(root >= 0 && root < size_, "dist: gatherv root outside the world");
  const int64_t n = whole_elements(bytes, elem);
  if (size_ == 1) {
    counts.assign(1, n);
    copy_bytes(alloc(n), mine, bytes);
    return;
  }
  if (rank_ != root) {
    counts.clear();
    MPI_Gather(&n, 1, MPI_INT64_T, nullptr, 1, MPI_INT64_T, root, MPI_COMM_WORLD);
    std::vector<MPI_Request> reqs;
    post_send(mine, bytes, root, kTagGatherv, reqs);
    wait_all(reqs);
    bytes_sent_ += bytes;
    return;
  }
  counts.assign(static_cast<size_t>(size_), 0);
  MPI_Gather(&n, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, root, MPI_COMM_WORLD);
  int64_t total = 0;
  for (const int64_t c : counts) total += c;
  auto* out = static_cast<char*>(alloc(total));
  const auto esz = static_cast<int64_t>(elem);
  std::vector<MPI_Request> reqs;
  int64_t off = 0;
  for (int r = 0; r < size_; ++r) {
    const int64_t b = counts[static_cast<size_t>(r)] * esz;
    if (r == rank_) {
      copy_bytes(out + off, mine, b);
    } else {
      post_recv(out + off, b, r, kTagGatherv, reqs);
    }
    off += b;
  }
  wait_all(reqs);
}

void Comm::alltoallv_bytes(const void* send, const std::vector<int64_t>& send_counts,
                           size_t elem, const Alloc& alloc,
                           std::vector<int64_t>& recv_counts) const {
  RF_ASSERT(send_counts.size() == static_cast<size_t>(size_),
            "dist: alltoallv needs one send count per rank");
  for (const int64_t c : send_counts) RF_ASSERT(c >= 0, "dist: alltoallv send count below 0");
  const auto esz = static_cast<int64_t>(elem);
  const auto* in = static_cast<const char*>(send);
  if (size_ == 1) {
    recv_counts.assign(1, send_counts[0]);
    copy_bytes(alloc(send_counts[0]), in, send_counts[0] * esz);
    return;
  }
  recv_counts.assign(static_cast<size_t>(size_), 0);
  MPI_Alltoall(send_counts.data(), 1, MPI_INT64_T, recv_counts.data(), 1, MPI_INT64_T,
               MPI_COMM_WORLD);
  int64_t total = 0;
  for (const int64_t c : recv_counts) total += c;
  auto* out = static_cast<char*>(alloc(total));
  // Offsets of this rank's own part in `send` and in the result.
  int64_t self_send = 0, self_recv = 0;
  std::vector<MPI_Request> reqs;
  int64_t send_off = 0, recv_off = 0;
  for (int r = 0; r < size_; ++r) {
    const int64_t sb = send_counts[static_cast<size_t>(r)] * esz;
    const int64_t rb = recv_counts[static_cast<size_t>(r)] * esz;
    if (r == rank_) {
      self_send = send_off;
      self_recv = recv_off;
    } else {
      post_recv(out + recv_off, rb, r, kTagAlltoallv, reqs);
      post_send(in + send_off, sb, r, kTagAlltoallv, reqs);
      bytes_sent_ += sb;
    }
    send_off += sb;
    recv_off += rb;
  }
  copy_bytes(out + self_recv, in + self_send, send_counts[static_cast<size_t>(rank_)] * esz);
  wait_all(reqs);
}

}  // namespace recforge::dist
