#pragma once
/// @file checkpoint_dist.h
/// Checkpoints of a distributed run (`train.checkpoint_every` under mpirun): each rank writes its
/// own rows, rank 0 commits. In `<run.dir>/.<name>.checkpoint/` (pipeline::checkpoint_dir):
///
///   it-<N>/rank-<R>/users.npy, items.npy      rank R's rows after iteration N (and its best
///                                             rows of model.patience: best_users, best_items)
///   checkpoint.json                           written by rank 0 once every rank's files of
///                                             iteration N are on disk: the commit
///
/// 1. every rank writes and syncs its files into it-N/rank-R; 2. the ranks agree that all
/// succeeded; 3. rank 0 replaces checkpoint.json (synced, renamed) naming it-N; 4. rank 0 removes
/// the other it-* directories. A kill at any moment leaves the previous commit whole: its it-M
/// is removed only after the new checkpoint.json is in place. The directory must be one that
/// every rank and rank 0 see (a shared file system across machines).
///
/// A checkpoint is resumed only by a job of the same number of processes, config (the keys of
/// pipeline::checkpoint_config) and data (the unordered fingerprint and the values digest).

#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "core/npy.h"
#include "dist/comm.h"

namespace recforge::dist {

/// checkpoint.json's "format" of a distributed run's checkpoint.
inline constexpr const char* kDistCheckpointFormat = "recforge-distributed-checkpoint";

/// The state a distributed run checkpoints: the rank's rows and the training loop's progress.
struct DistCheckpoint {
  int iteration = 0;                                 ///< iterations done
  Matrix users, items;                               ///< the rank's rows
  Matrix best_users, best_items;                     ///< its best rows (model.patience), or empty
  nlohmann::json history = nlohmann::json::array();  ///< run.json's history so far (rank 0)
  double best = -1;                                  ///< best validation value so far
  int best_iter = 0;                                 ///< its iteration
  int64_t since_best = 0;                            ///< evaluations since it
};

/// Writes the checkpoint of iteration c.iteration into `dir` (see the file comment). Collective;
/// throws CollectiveError on every rank when any rank could not write.
void write_dist_checkpoint(const Comm& comm, const std::string& dir, const config::Config& cfg,
                           const std::string& fingerprint, const std::string& values,
                           const DistCheckpoint& c);

/// Reads the checkpoint in `dir` when there is one: false on every rank without one. Refuses
/// (CollectiveError) a checkpoint of another number of processes, config or data, or whose
/// rows do not match the rank's `users` × `items` rows of `k` factors. Collective.
bool read_dist_checkpoint(const Comm& comm, const std::string& dir, const config::Config& cfg,
                          const std::string& fingerprint, const std::string& values,
                          int64_t users, int64_t items, int k,
                          DistCheckpoint& c);

}  // namespace recforge::dist
