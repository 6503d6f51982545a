#pragma once
/// @file comm.h
/// The processes of a distributed run (`mpirun -np P recforge train CONFIG`) and the
/// collectives they use, over MPI on host memory. A build without MPI (RECFORGE_MPI=OFF, or no
/// MPI found) links a stand-in whose world is one process: every collective is then a copy, so
/// code written against Comm runs unchanged, and `init` refuses to start as one of several
/// processes of an mpirun job (it would train P copies of the whole model).
///
/// Large messages: every collective takes 64-bit element counts and moves them in pieces of at
/// most 1 GiB (MPI's counts are int), so a rank may send more than 2^31 elements.
///
/// Accounting: each collective adds the bytes this rank sends to `bytes_sent()` (payload only,
/// as the algorithm needs them: an all-reduce counts its whole buffer, an all-gather the
/// rank's own block once per other rank, an all-to-all what goes to other ranks, a broadcast
/// the buffer once per other rank at the root, a gather the rank's block at every rank but the
/// root; the element counts exchanged first are not counted; a world of one sends nothing), the
/// figure docs/distributed.md reports per iteration.
///
/// Errors of MPI calls are not returned: MPI's default handler (MPI_ERRORS_ARE_FATAL) ends the
/// whole job, which is what a distributed run needs (no rank can continue alone).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace recforge::dist {

/// Whether this process was started by an MPI launcher (mpirun/mpiexec of Open MPI, or a PMI
/// launcher such as srun): the environment says so (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK).
bool launched_by_mpi();

/// The number of processes the launcher started (its environment), 1 when not launched by MPI.
int launched_size();

/// Whether this build can run distributed (it was linked with MPI).
bool mpi_available();

/// Starts MPI when the process was launched by MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: only
/// the thread that called init communicates) and makes `world()` span the job; otherwise the
/// world is this process alone. Throws recforge::Error when launched as one of several
/// processes by a build without MPI, saying how to rebuild. Call once, before any other
/// function here; idempotent.
void init(int* argc, char*** argv);

/// Ends MPI when init started it (MPI_Finalize; every rank must call it). Idempotent.
void finalize();

/// Ends every process of the job at once with exit status `code` (MPI_Abort): for a rank that
/// failed while the others may wait in a collective. Without MPI: std::exit(code).
[[noreturn]] void abort(int code);

/// The processes of the job (MPI_COMM_WORLD), or this process alone.
class Comm {
 public:
  /// This process's rank, 0 .. size() - 1.
  int rank() const { return rank_; }
  /// The number of processes.
  int size() const { return size_; }
  /// True when more than one process takes part.
  bool distributed() const { return size_ > 1; }

  /// Waits for every rank.
  void barrier() const;

  /// In place: data[j] ← Σ over ranks of data[j]. Every rank gets bitwise the same result
  /// (a reduction at rank 0 followed by a broadcast, not MPI_Allreduce, whose result the MPI
  /// standard lets differ between ranks for floating point).
  void allreduce_sum(double* data, int64_t n) const;
  void allreduce_sum(float* data, int64_t n) const;
  void allreduce_sum(int64_t* data, int64_t n) const;
  /// In place: data[j] ← max over ranks.
  void allreduce_max(int64_t* data, int64_t n) const;
  /// In place: data[j] ← min over ranks.
  void allreduce_min(int64_t* data, int64_t n) const;
  /// In place: data[j] ← bitwise OR over ranks.
  void allreduce_or(uint8_t* data, int64_t n) const;

  /// One value summed / maxed over ranks (conveniences over the above).
  double sum(double v) const;
  int64_t sum(int64_t v) const;
  int64_t max(int64_t v) const;
  /// True on every rank when `v` is true on any rank.
  bool any(bool v) const;

  /// `bytes` bytes at `data` from `root` to every rank.
  void broadcast(void* data, int64_t bytes, int root) const;

  /// Every rank's `mine` (any length, possibly empty), concatenated in rank order, on every
  /// rank; `counts` (optional) receives each rank's element count. T must be trivially
  /// copyable.
  template <typename T>
  std::vector<T> allgatherv(const std::vector<T>& mine, std::vector<int64_t>* counts = nullptr) const {
    std::vector<int64_t> c;
    std::vector<T> out;
    allgatherv_bytes(mine.data(), static_cast<int64_t>(mine.size() * sizeof(T)), sizeof(T),
                     [&](int64_t total) {
                       out.resize(static_cast<size_t>(total));
                       return static_cast<void*>(out.data());
                     },
                     c);
    if (counts) *counts = std::move(c);
    return out;
  }

  /// Every rank's `mine` concatenated in rank order at `root` (empty elsewhere).
  template <typename T>
  std::vector<T> gatherv(const std::vector<T>& mine, int root,
                         std::vector<int64_t>* counts = nullptr) const {
    std::vector<int64_t> c;
    std::vector<T> out;
    gatherv_bytes(mine.data(), static_cast<int64_t>(mine.size() * sizeof(T)), sizeof(T), root,
                  [&](int64_t total) {
                    out.resize(static_cast<size_t>(total));
                    return static_cast<void*>(out.data());
                  },
                  c);
    if (counts) *counts = std::move(c);
    return out;
  }

  /// Personalised all-to-all: `send` holds the elements for rank 0, then those for rank 1, ...
  /// (`send_counts[r]` of them for rank r, size() entries); returns what every rank sent to
  /// this one, in rank order, and fills `recv_counts` (size() entries) when given. The part
  /// for this rank itself is copied, not sent.
  template <typename T>
  std::vector<T> alltoallv(const std::vector<T>& send, const std::vector<int64_t>& send_counts,
                           std::vector<int64_t>* recv_counts = nullptr) const {
    std::vector<int64_t> rc;
    std::vector<T> out;
    alltoallv_bytes(send.data(), send_counts, sizeof(T),
                    [&](int64_t total) {
                      out.resize(static_cast<size_t>(total));
                      return static_cast<void*>(out.data());
                    },
                    rc);
    if (recv_counts) *recv_counts = std::move(rc);
    return out;
  }

  /// allgatherv and alltoallv from `n` elements at `mine` / `send`, into the buffer that
  /// `into(total)` returns (called once with the total element count received; T*): the
  /// caller reuses its own storage and keeps no second copy of what it sends or receives.
  template <typename T, typename Into>
  void allgatherv_into(const T* mine, int64_t n, Into&& into,
                       std::vector<int64_t>* counts = nullptr) const {
    std::vector<int64_t> c;
    allgatherv_bytes(mine, n * static_cast<int64_t>(sizeof(T)), sizeof(T),
                     [&](int64_t total) { return static_cast<void*>(into(total)); }, c);
    if (counts) *counts = std::move(c);
  }
  template <typename T, typename Into>
  void alltoallv_into(const T* send, const std::vector<int64_t>& send_counts, Into&& into,
                      std::vector<int64_t>* recv_counts = nullptr) const {
    std::vector<int64_t> rc;
    alltoallv_bytes(send, send_counts, sizeof(T),
                    [&](int64_t total) { return static_cast<void*>(into(total)); }, rc);
    if (recv_counts) *recv_counts = std::move(rc);
  }

  /// Bytes this rank has sent through the collectives since the start (see the file comment).
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  friend Comm& world();
  friend void init(int*, char***);
  Comm() = default;

  // The byte-level collectives behind the templates: `elem` is the element size; `alloc(total)`
  // is called once, on every rank that receives (all ranks; gatherv: the root), with the total
  // element count received, and returns where to put them; `counts` gets the per-rank element
  // counts (gatherv: at the root).
  using Alloc = std::function<void*(int64_t)>;
  void allgatherv_bytes(const void* mine, int64_t bytes, size_t elem, const Alloc& alloc,
                        std::vector<int64_t>& counts) const;
  void gatherv_bytes(const void* mine, int64_t bytes, size_t elem, int root, const Alloc& alloc,
                     std::vector<int64_t>& counts) const;
  void alltoallv_bytes(const void* send, const std::vector<int64_t>& send_counts, size_t elem,
                       const Alloc& alloc, std::vector<int64_t>& recv_counts) const;

  int rank_ = 0;
  int size_ = 1;
  mutable int64_t bytes_sent_ = 0;
};

/// The job's processes (after init; before it, a world of one).
Comm& world();

/// The most bytes one message carries (default and upper limit 1 GiB); returns the previous
/// value. For tests, which set a few bytes so that small data goes in several pieces; every
/// rank must set the same value, outside any collective.
int64_t set_max_piece_bytes(int64_t bytes);

/// Every rank's `mine`, by rank (an allgatherv of the bytes). Collective.
std::vector<std::string> allgather_strings(const Comm& comm, const std::string& mine);

}  // namespace recforge::dist
