#pragma once
/// @file index.h
/// Faiss indices over trained item factors: flat (exact), IVF-Flat, IVF-PQ and HNSW, by inner
/// product or by cosine (vectors normalized to unit length). In a build with GPU Faiss
/// (RECFORGE_FAISS_GPU=ON) flat and IVF indices can also be searched on a GPU (`index.device`).
/// Faiss types stay out of this header; the index written is always a plain CPU Faiss index that
/// `faiss::write_index` writes and any stock Faiss (`faiss.read_index` in Python) reads.

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/npy.h"

namespace faiss {
struct Index;
}

namespace recforge::index {

namespace detail {
class GpuIndex;  // index/faiss_cuda.h: the GPU copy (GPU Faiss builds only)
}  // namespace detail

/// The kind of Faiss index (`index.type`).
enum class Type { kFlat, kIvfFlat, kIvfPq, kHnsw };
/// The similarity (`index.metric`): inner product, or cosine = inner product of unit vectors.
enum class Metric { kInnerProduct, kCosine };

/// "flat", "ivf_flat", "ivf_pq", "hnsw".
const char* type_name(Type t);
/// Parses a type name; throws recforge::Error naming `what` for an unknown one.
Type parse_type(const std::string& name, const std::string& what);
/// "inner_product" or "cosine".
const char* metric_name(Metric m);
/// Parses a metric name; throws recforge::Error naming `what` for an unknown one.
Metric parse_metric(const std::string& name, const std::string& what);

/// Where an index is searched (`index.device`): `kAuto` takes GPU 0 when this build has GPU Faiss
/// and a GPU answers (and the index type has a GPU version), else the CPU.
enum class IndexDevice { kAuto, kCpu, kCuda };
/// "auto", "cpu", "cuda".
const char* device_name(IndexDevice d);
/// Parses a device name; throws recforge::Error naming `what` for an unknown one.
IndexDevice parse_index_device(const std::string& name, const std::string& what);

/// True when this binary links GPU Faiss (built with RECFORGE_FAISS_GPU=ON).
bool faiss_gpu_compiled();

/// The largest k, and nprobe, that a GPU search of Faiss 1.7.3 accepts (its k-selection rejects
/// 2048). Searches asking for more run on the index's CPU copy.
inline constexpr int64_t kGpuMaxSelect = 2047;

/// How to build an index (the `index:` config section, see docs/configuration.md).
struct Options {
  Type type = Type::kFlat;                ///< index.type
  Metric metric = Metric::kInnerProduct;  ///< index.metric
  int64_t nlist = 0;                      ///< IVF cells; 0 = 4 * sqrt(n), at most the sample
  int64_t nprobe = 16;                    ///< IVF cells probed per query
  int64_t pq_m = 0;                       ///< PQ sub-quantizers; 0 = auto (see resolve_pq_m)
  int64_t pq_nbits = 8;                   ///< bits per PQ code
  int64_t hnsw_m = 32;                    ///< HNSW neighbours per node
  int64_t ef_construction = 200;          ///< HNSW build-time candidate list
  int64_t ef_search = 128;                ///< HNSW search-time candidate list
  int64_t train_sample = 100000;          ///< vectors sampled to train IVF / PQ
  uint64_t seed = 42;                     ///< k-means, sampling and HNSW level seed
  /// index.device (whose config default is auto; a bare Options stays on the CPU).
  IndexDevice device = IndexDevice::kCpu;
};

/// The automatic number of PQ sub-quantizers for dimension d: the largest divisor of d that is
/// at most d / 4 (at least 1).
int64_t resolve_pq_m(int64_t d);

/// Checks the options that can be refused before any index exists, so that a training run can
/// refuse them before it trains: index.pq_m must divide the dimension, and index.device cuda
/// needs GPU Faiss, a GPU that answers and an index type (and PQ shape) that GPU Faiss has.
/// Throws recforge::Error naming the key.
void check_dimension(const Options& options, int64_t d);

/// The IVF cells for `n_items` items: index.nlist, or when it is 0 about 4·sqrt(n) but at most
/// one cell per 39 training vectors (Faiss's minimum), at least 1.
int64_t resolve_nlist(const Options& options, int64_t n_items);

/// Checks the options that depend on the number of items (known once the data is read, before
/// training): an IVF index's nlist and an IVF-PQ's 2^pq_nbits codes need that many training
/// vectors (the items, or index.train_sample when smaller). Throws recforge::Error naming the
/// key.
void check_item_count(const Options& options, int64_t n_items);

/// Scales each row of an n × d row-major matrix to unit L2 norm (zero rows stay zero).
void normalize_rows(float* x, int64_t n, int d);

/// A Faiss index over item vectors whose labels are item rows 0..n-1.
class ItemIndex {
 public:
  ItemIndex();
  ~ItemIndex();
  ItemIndex(ItemIndex&&) noexcept;
  ItemIndex& operator=(ItemIndex&&) noexcept;

  /// Builds an index of `items` (n × d). With Metric::kCosine the rows are normalized first.
  /// Throws recforge::Error naming the `index.*` key when a parameter does not fit the data
  /// (pq_m not dividing d, nlist or 2^pq_nbits above the number of training vectors) or
  /// index.device cuda cannot be honoured. On a GPU (options.device), IVF cells and PQ codebooks
  /// are trained on the CPU (seeded, the same as a CPU build) and the vectors added on the GPU;
  /// the index keeps a CPU copy (index_gpu_to_cpu) for write() and for searches above
  /// kGpuMaxSelect.
  static ItemIndex build(const Matrix& items, const Options& options);

  /// Reads a Faiss index file written by write(); `type` and `metric` come from the manifest.
  /// Throws recforge::Error naming the file when Faiss cannot read it or its kind differs.
  static ItemIndex read(const std::string& path, Type type, Metric metric);
  /// The same from the bytes of a whole index file already in memory, named `path` in errors.
  /// The bytes are checked to be an index of the kinds recforge writes, with consistent shapes,
  /// before Faiss reads them (Faiss 1.7.3 leaks what it allocated when it rejects a file).
  static ItemIndex from_bytes(std::string_view bytes, const std::string& path, Type type,
                              Metric metric);

  /// Writes the index with faiss::write_index, atomically (temporary file + rename).
  void write(const std::string& path) const;

  /// Searches n queries (n × dim, row-major) for k results each; labels[q * k + j] is an item
  /// row or -1 (fewer than k found), scores the similarity (descending). Cosine queries are
  /// normalized on a copy. k may exceed size() (the tail is -1). On a GPU index, k or nprobe
  /// above kGpuMaxSelect is searched on the CPU copy (logged once).
  void search(const float* queries, int64_t n, int k, float* scores, int64_t* labels) const;

  /// Moves searching to `device` (kAuto: the GPU when possible, see IndexDevice), e.g. for an
  /// index read from a file; kCpu drops the GPU copy. Throws recforge::Error naming
  /// index.device when kCuda cannot be honoured.
  void place(IndexDevice device);
  /// "cpu", or "cuda:N" when searches run on GPU N.
  std::string device() const;

  /// Sets the IVF cells probed per query (clamped to nlist); no effect on other types.
  void set_nprobe(int64_t nprobe);
  /// Sets HNSW's search candidate list; no effect on other types.
  void set_ef_search(int64_t ef);

  /// Number of indexed vectors.
  int64_t size() const;
  /// Vector dimension.
  int dim() const;
  /// The index type.
  Type type() const { return type_; }
  /// The metric (cosine: vectors are normalized).
  Metric metric() const { return metric_; }
  /// Type, metric, device and the parameters in effect (nlist, nprobe, M, nbits, ef...), for
  /// manifests.
  nlohmann::json describe() const;

 private:
  std::unique_ptr<faiss::Index> index_;    // the CPU index (always; written by write())
  std::unique_ptr<detail::GpuIndex> gpu_;  // its GPU copy, when searches run on a GPU
  Type type_ = Type::kFlat;
  Metric metric_ = Metric::kInnerProduct;
  nlohmann::json build_info_ = nlohmann::json::object();
  // An IVF index's largest centroid norm (eval::max_row_norm), which eval::topk needs to choose
  // each query's cells: computed once when the index is built or read, not per search; -1 for
  // other indices.
  double cell_norm_ = -1;
  void note_cells();
};

}  // namespace recforge::index
