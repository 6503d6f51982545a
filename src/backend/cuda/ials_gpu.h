#pragma once
/// @file ials_gpu.h
/// iALS on a CUDA GPU behind a CUDA-free interface: the same objective and row solves as
/// backend/cpu/ials_cpu.h (Gram matrix with cuBLAS, warm-started conjugate gradient for any
/// factor count, or an exact per-row Cholesky), factors stored as float32, float16 or bfloat16
/// with float32 arithmetic, interactions resident in GPU memory or streamed from pinned host
/// memory. The implementation is in ials_gpu.cpp and kernels/ials_*.cu; a build without CUDA
/// links stand-ins (no_cuda.cpp) that refuse with a sentence saying how to rebuild.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/ials_cpu.h"
#include "core/error.h"
#include "core/npy.h"
#include "data/csr.h"

namespace recforge::backend::cuda {

class GpuResources;

/// Storage type of factor matrices on the GPU; arithmetic is float32 whatever the storage.
enum class Storage { kFloat32, kFloat16, kBFloat16 };

/// "float32", "float16" or "bfloat16".
inline const char* storage_name(Storage s) {
  return s == Storage::kFloat16 ? "float16" : s == Storage::kBFloat16 ? "bfloat16" : "float32";
}

/// Parses a `model.dtype` value; throws recforge::Error naming `where` for anything else.
inline Storage parse_storage(const std::string& name, const std::string& where) {
  if (name == "float32") return Storage::kFloat32;
  if (name == "float16") return Storage::kFloat16;
  if (name == "bfloat16") return Storage::kBFloat16;
  fail("{}: model.dtype is \"{}\"; expected float32, float16 or bfloat16", where, name);
}

/// Whether training streams the interactions from pinned host memory (`train.gpu_streaming`).
enum class Streaming {
  kAuto,  ///< stream only when the interactions do not fit in free GPU memory
  kOn,    ///< always stream (tests, or to leave GPU memory to others)
  kOff,   ///< never stream; refuse when the interactions do not fit
};

/// Parses `auto`, `on` or `off`; throws recforge::Error naming `where` for anything else.
inline Streaming parse_streaming(const std::string& name, const std::string& where) {
  if (name == "auto") return Streaming::kAuto;
  if (name == "on") return Streaming::kOn;
  if (name == "off") return Streaming::kOff;
  fail("{}: train.gpu_streaming is \"{}\"; expected auto, on or off", where, name);
}

/// Options of the GPU solver.
struct IalsGpuOptions {
  cpu::IalsSolveParams solve;            ///< λ, exponent, offset, α0, alpha, solver, CG steps
  Storage storage = Storage::kFloat32;   ///< factor storage type
  Streaming streaming = Streaming::kAuto;
  int64_t stream_batch_nnz = 0;          ///< interactions per streamed batch (0: from free memory)
};

/// Largest factor count the GPU solver accepts (bounded by shared memory per block).
int max_factors();

/// Largest factor count of `model.solver: cholesky` on the GPU. kernels/ials_cholesky.cu factors
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
class IalsGpu {
 public:
  virtual ~IalsGpu() = default;
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
std::unique_ptr<IalsGpu> make_ials_gpu(std::shared_ptr<GpuResources> gpu, int64_t n_users,
                                       int64_t n_items, int factors, const IalsGpuOptions& options);

}  // namespace recforge::backend::cuda
