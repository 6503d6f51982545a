#pragma once
/// @file topk_cuda.h
/// Exact top-k and ranking metrics on a CUDA GPU, with the contract of eval::topk and
/// eval::compute_metrics: scores by cuBLAS SGEMM in tiles of queries × items, each query's
/// excluded items masked, a running per-query selection fused after every tile (the score matrix
/// is never materialised), ties broken by the lower item index, NaN scores counted as -inf.
/// Implementation: topk_cuda.cpp, topk_cuda.cu and metrics_cuda.cu; stand-ins that refuse in
/// a build without CUDA.

#include <cstdint>
#include <vector>

#include "data/csr.h"
#include "eval/metrics.h"
#include "eval/topk.h"

namespace recforge::backend::cuda {

class CudaResources;

/// Largest k the GPU selection supports (its candidate buffer lives in shared memory).
int max_topk();

/// Exact top-k on the GPU: the contract of eval::topk without `global_exclude` (queries and
/// items are host float32 matrices, uploaded). k from 1 to max_topk(); throws recforge::Error
/// for larger k or invalid arguments.
eval::TopK topk(CudaResources& gpu, const float* queries, int64_t n_q, const float* items,
                int64_t n_items, int d, int k, const data::Csr* exclude = nullptr,
                const std::vector<data::index_t>& query_rows = {});

/// eval::compute_metrics computed on the GPU from host lists (same checks and results, up to
/// the order of floating-point sums).
eval::Metrics compute_metrics(CudaResources& gpu, const eval::TopK& ranked,
                              const std::vector<data::index_t>& query_rows,
                              const data::Csr& truth, int64_t n_items,
                              const eval::MetricsOptions& options);

/// Top-k lists (k = the largest cutoff) and their metrics in one pass, the lists never leaving
/// the GPU: the queries' top-k with rows `exclude_rows` of `exclude` masked (as eval::topk's
/// `query_rows`), scored against rows `truth_rows` of `truth` (as eval::compute_metrics).
eval::Metrics topk_metrics(CudaResources& gpu, const float* queries, int64_t n_q,
                           const float* items, int64_t n_items, int d, const data::Csr* exclude,
                           const std::vector<data::index_t>& exclude_rows, const data::Csr& truth,
                           const std::vector<data::index_t>& truth_rows,
                           const eval::MetricsOptions& options);

/// Bytes of GPU memory topk_metrics needs for these sizes (inputs, lists and working buffers),
/// so that callers can fall back to the CPU when it does not fit.
int64_t topk_memory_bytes(int64_t n_q, int64_t n_items, int d, int k, int64_t exclude_nnz,
                          int64_t truth_nnz);

/// Free GPU memory in bytes (cudaMemGetInfo, after returning cached pool memory).
int64_t free_memory(CudaResources& gpu);

/// Exact top-k throughput on random factors drawn with cuRAND (no masks).
struct TopkTiming {
  int64_t users = 0;          ///< queries ranked
  double topk_seconds = 0;    ///< GEMM tiles + fused selection + final sort, all users
  double gemm_seconds = 0;    ///< the same GEMM tiles alone
};

/// Times top-k of `users` queries over `items` items with `d` factors, k = `k`.
TopkTiming time_topk(CudaResources& gpu, int64_t users, int64_t items, int d, int k);

}  // namespace recforge::backend::cuda
