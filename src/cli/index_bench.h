#pragma once
/// @file index_bench.h
/// The recall / speed trade-off of an ANN index: for each nprobe (IVF) or efSearch (HNSW)
/// value, recall@k of the filtered ANN lists against the exact lists of eval::topk (same masks),
/// and queries per second of the filtered batched search.

#include <cstdint>
#include <string>
#include <vector>

#include "core/npy.h"
#include "data/csr.h"
#include "index/index.h"

namespace recforge::index {

/// One setting's measurement.
struct BenchRow {
  std::string method;  ///< "exact" (brute force, eval::topk) or the index type
  std::string param;   ///< "nprobe", "ef_search", or "-" for exact and flat
  int64_t value = 0;   ///< the setting (0 for "-")
  double recall = 0;   ///< mean over users of |ANN ∩ exact| / |exact|
  double qps = 0;      ///< users × repetitions / seconds
  double seconds = 0;  ///< wall time of one search of all users, filtering included (mean)
};

/// What to measure.
struct BenchInput {
  const Matrix* users = nullptr;    ///< query vectors: the users' factors
  const Matrix* items = nullptr;    ///< item factors (exact scoring)
  const data::Csr* seen = nullptr;  ///< masked items per user (rows = users)
  ItemIndex* index = nullptr;       ///< the index under test
  int k = 20;                       ///< list length
  std::vector<int64_t> values;      ///< nprobe or efSearch values (empty: defaults)
  int64_t max_users = 0;            ///< sample this many users (0: all), seeded
  uint64_t seed = 42;               ///< user sampling seed
  double min_seconds = 0.3;         ///< repeat each timing until it took at least this long
};

/// The default sweep for an index: powers of two up to nlist for IVF, 16..1024 for HNSW, none
/// for flat.
std::vector<int64_t> default_sweep(const ItemIndex& index);

/// The exact row first, then one row per value (a single row for flat). Restores nothing: the
/// index keeps the last value.
std::vector<BenchRow> bench(const BenchInput& in, int64_t* users_measured = nullptr);

/// The rows as CSV: index,param,value,k,users,recall,qps,seconds.
std::string bench_csv(const std::vector<BenchRow>& rows, int k, int64_t users);

}  // namespace recforge::index
