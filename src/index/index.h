#pragma once
/// @file index.h
/// Faiss indices over trained item factors (CPU Faiss): flat (exact), IVF-Flat, IVF-PQ and
/// HNSW, by inner product or by cosine (vectors normalized to unit length). Faiss types stay out
/// of this header; the index is a plain Faiss index that `faiss::write_index` writes and any stock
/// Faiss (`faiss.read_index` in Python) reads.

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "core/npy.h"

namespace faiss {
struct Index;
}

namespace recforge::index {

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
};

/// Options from the `index` section of a config (index.seed unset → run.seed).
Options options_from_config(const config::Config& cfg);

/// The automatic number of PQ sub-quantizers for dimension d: the largest divisor of d that is
/// at most d / 4 (at least 1).
int64_t resolve_pq_m(int64_t d);

/// Checks the options that depend only on the vector dimension (index.pq_m must divide it), so
/// that a training run can refuse them before it trains. Throws recforge::Error naming the key.
void check_dimension(const Options& options, int64_t d);

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
  /// (pq_m not dividing d, nlist or 2^pq_nbits above the number of training vectors).
  static ItemIndex build(const Matrix& items, const Options& options);

  /// Reads a Faiss index file written by write(); `type` and `metric` come from the manifest.
  /// Throws recforge::Error naming the file when Faiss cannot read it or its kind differs.
  static ItemIndex read(const std::string& path, Type type, Metric metric);

  /// Writes the index with faiss::write_index, atomically (temporary file + rename).
  void write(const std::string& path) const;

  /// Searches n queries (n × dim, row-major) for k results each; labels[q * k + j] is an item
  /// row or -1 (fewer than k found), scores the similarity (descending). Cosine queries are
  /// normalized on a copy. k may exceed size() (the tail is -1).
  void search(const float* queries, int64_t n, int k, float* scores, int64_t* labels) const;

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
  /// Type, metric and the parameters in effect (nlist, nprobe, M, nbits, ef...), for manifests.
  nlohmann::json describe() const;

 private:
  std::unique_ptr<faiss::Index> index_;
  Type type_ = Type::kFlat;
  Metric metric_ = Metric::kInnerProduct;
  nlohmann::json build_info_ = nlohmann::json::object();
};

}  // namespace recforge::index
