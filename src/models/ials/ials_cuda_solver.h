#pragma once
/// @file ials_cuda_solver.h
/// iALS on a CUDA GPU behind a CUDA-free interface: the same objective and row solves as
/// ials_cpu.h (Gram matrix with cuBLAS, warm-started conjugate gradient for any
/// factor count, or an exact per-row Cholesky), factors stored as float32, float16 or bfloat16
/// with float32 arithmetic, interactions resident in GPU memory or streamed from pinned host
/// memory. The implementation is in ials_cuda_solver.cpp and ials_*.cu; a build without CUDA
/// links stand-ins (no_cuda.cpp) that refuse with a sentence saying how to rebuild.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/ials/ials_cpu.h"
#include "models/ials/ials_storage.h"
#include "core/error.h"
#include "core/npy.h"
#include "data/csr.h"

namespace recforge::backend::cuda {

class CudaResources;

/// Options of the GPU solver.
struct IalsCudaSolverOptions {
  cpu::IalsSolveParams solve;            ///< λ, exponent, offset, α0, alpha, solver, CG steps
  Storage storage = Storage::kFloat32;   ///< factor storage type
  Streaming streaming = Streaming::kAuto;
  int64_t stream_batch_nnz = 0;          ///< interactions per streamed batch (0: from free memory)
};

/// Largest factor count the GPU solver accepts (bounded by shared memory per block).
int max_factors();

/// Largest factor count of `model.solver: cholesky` on the GPU. models/ials/ials_cholesky.cu factors
/// one row's k × k matrix per thread block, above 90 factors in a per-block slot of global
/// memory, right-looking, reading column j of L at stride k: k³/3 multiply-adds per row, each
/// touching about 40 bytes (an entry of column j at stride k, a 32-byte sector per thread, and a
/// coalesced read-modify-write; the other column entry is a broadcast), so an H200 (4.8 TB/s)
/// manages about 1.2e11 of them per second over all its blocks. At k = 512 that is 4.5e7 per row, 0.37 ms of the whole GPU: a MovieLens-20M-sized
/// iteration (165k users + items) takes about a minute, already ~100× CG's time. Every doubling
/// of k costs 8×: 8 minutes at 1,024, 9 hours at 4,096. Above 512 the GPU refuses (CG, or the
/// CPU's LAPACK-backed Cholesky, remain).
constexpr int kMaxCholeskyFactors = 512;

/// Refuses, before any GPU work, options the GPU solver cannot run in reasonable time: throws
/// recforge::Error when `solve.cholesky` is set with more than kMaxCholeskyFactors factors.
/// CUDA-free (checked by models::IalsCuda's constructor, testable in every build).
inline void check_gpu_solver(int factors, const cpu::IalsSolveParams& solve) {
  if (solve.cholesky && factors > kMaxCholeskyFactors)
    fail("model.factors is {} with model.solver cholesky; the GPU's exact solve supports at most "
         "{} factors (its cost grows as k³ per row), so set model.solver: cg or "
         "train.device: cpu",
         factors, kMaxCholeskyFactors);
}

/// One iALS model's state on a GPU: both factor matrices, the interactions (or their streaming
/// buffers) and the solver workspace.
class IalsCudaSolver {
 public:
  virtual ~IalsCudaSolver() = default;
  /// Uploads both factor matrices (n_users × k and n_items × k, float32), converting them to
  /// the storage type.
  virtual void set_factors(const Matrix& users, const Matrix& items) = 0;
  /// Downloads both factor matrices as float32 (the stored values, exactly).
  virtual void get_factors(Matrix& users, Matrix& items) = 0;
  /// One iteration: all users against the items, then all items against the users.
  /// `item_weights` are the per-item unobserved weights (empty: uniform, see
  /// cpu::popularity_weights). The first call moves the interactions to the GPU (or prepares
  /// their streaming); later calls with the same matrices reuse them, so the matrices must not
  /// change between calls. `iteration` (1-based) names the iteration in errors: non-finite
  /// factors throw recforge::Error.
  virtual void iterate(const data::Csr& user_items, const data::Csr& item_users,
                       const std::vector<float>& item_weights, int iteration) = 0;
  /// The objective of cpu::objective at the current factors, computed on the GPU.
  virtual double loss(const data::Csr& user_items, const data::Csr& item_users,
                      const std::vector<float>& item_weights) = 0;
  /// Factors of new rows (confidences, one column per item) by the training solve from zero.
  virtual Matrix fold_in(const data::Csr& rows, const std::vector<float>& item_weights) = 0;
  /// "resident" or "streaming" once the interactions have been seen, else "".
  virtual std::string data_mode() const = 0;
};

/// Creates the GPU state for an n_users × n_items model with `factors` factors (factors start at
/// zero; call set_factors). Throws recforge::Error when `factors` exceeds max_factors() or the
/// factors do not fit in GPU memory, and in a build without CUDA.
std::unique_ptr<IalsCudaSolver> make_ials_cuda_solver(std::shared_ptr<CudaResources> gpu, int64_t n_users,
                                       int64_t n_items, int factors, const IalsCudaSolverOptions& options);

/// One rank's share of a distributed iALS model on its GPU (src/dist, `mpirun` with
/// train.device cuda): the rank's own user and item rows, the other side's rows its solves need
/// (fetched by the caller's collectives into the shard's buffers), and its users' and items'
/// interactions, whose columns index those fetched rows. float32 factors, interactions resident.
/// A half-iteration computes the Gram matrix of the rank's own rows of the other side, has the
/// caller sum it over ranks, has the caller fetch the rows, and solves (the single-GPU solver's
/// CG or Cholesky, with the summed Gram matrix).
class IalsCudaShard {
 public:
  /// What a half-iteration asks of the caller, on device pointers, on the shard's stream
  /// (`stream` is a cudaStream_t).
  struct Collectives {
    virtual ~Collectives() = default;
    /// In place: data (n floats on the device) ← its sum over ranks, the same on every rank.
    virtual void allreduce_sum(float* data, int64_t n, void* stream) = 0;
    /// The other side's rows this rank's `user_half` (else item half) solves need, from every
    /// rank's own rows `own` (rows of `row_floats` floats, device) into `needed` (device).
    virtual void exchange(bool user_half, const float* own, float* needed, int row_floats,
                          void* stream) = 0;
  };
  virtual ~IalsCudaShard() = default;
  /// Uploads the rank's own rows (float32, k columns).
  virtual void set_rows(const Matrix& users, const Matrix& items) = 0;
  /// Downloads them.
  virtual void get_rows(Matrix& users, Matrix& items) = 0;
  /// One half-iteration: the rank's users against the items (user_half), or its items against
  /// the users. `iteration` names the iteration in errors (non-finite factors throw Error).
  virtual void half(bool user_half, Collectives& c, int iteration) = 0;
  /// The rank's terms of the objective: [0] the observed term over its item rows, [1] the
  /// regularisation of its rows, [2] the unobserved term α0 ⟨XᵀX, YᵀCY⟩ of the Gram matrices
  /// summed over ranks (the same on every rank). Collective (through `c`).
  virtual void loss_terms(Collectives& c, double terms[3]) = 0;
  /// Device padding of a row: rows on the device are `row_floats()` floats apart.
  virtual int row_floats() const = 0;
  /// The GPU, in words.
  virtual std::string description() const = 0;
};

/// Creates a rank's shard on `gpu`: `user_items` (the rank's users × the fetched item rows,
/// columns rewritten by the caller's exchange plan), `item_users` (its items × the fetched user
/// rows), `item_weights` (the per-item unobserved weights of the rank's items, or empty), and
/// `factors`. Throws recforge::Error as make_ials_cuda_solver does, and for storage types other
/// than float32; in a build without CUDA, says how to rebuild.
std::unique_ptr<IalsCudaShard> make_ials_cuda_shard(std::shared_ptr<CudaResources> gpu,
                                                   const data::Csr& user_items,
                                                   const data::Csr& item_users, int factors,
                                                   const IalsCudaSolverOptions& options,
                                                   const std::vector<float>& item_weights);

}  // namespace recforge::backend::cuda
