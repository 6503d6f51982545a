#pragma once
/// @file ials_dist.h
/// iALS across the processes of a distributed run, sharded in the manner of ALX (Mehta et al.
/// 2021): each rank owns a contiguous range of the users and one of the items, with their
/// factor rows, the interactions of its users (as user rows) and those of its items (as item
/// rows). A half-iteration (users against items; then items against users) is:
///   1. G = α0 Σ_j c_j y_j y_jᵀ: each rank's SYRK over its own item rows, summed over ranks;
///   2. when CG pays off in G's eigenbasis (backend::cpu::use_eigenframe, decided on the global
///      row counts), rank 0 decomposes G and broadcasts the basis, and every rank rotates its
///      own user and item rows into it (the factors stay in the rotated frame, as in solve_half);
///   3. the item rows the rank's users interacted with are fetched from their owners (a
///      RowExchange: all-gather of the whole table, or a targeted all-to-all of the rows
///      needed, chosen by volume when the run starts);
///   4. the rank's user rows are solved (backend::cpu::solve_rows) against those rows.
/// The loss is summed over ranks: the observed term over each rank's item rows (with the user
/// rows fetched for its item half), the regularisation over its own rows, and the unobserved
/// term α0 ⟨XᵀX, YᵀCY⟩ from the two summed Gram matrices.
///
/// Each rank holds 1/P of each table plus the rows its solves need (at most the other table),
/// its shard of the interactions twice (as user rows and as item rows), and k×k matrices.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/npy.h"
#include "data/csr.h"
#include "dist/comm.h"
#include "models/ials/ials.h"

namespace recforge {
class Context;
}  // namespace recforge

namespace recforge::dist {

class IalsDistGpu;  // dist/ials_dist_cuda.h

/// A contiguous range of rows [begin, end).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

/// A split of n rows into one contiguous range per rank, in rank order; the same on every rank.
class Partition {
 public:
  Partition() = default;
  /// Range r is [starts[r], starts[r+1]); starts has ranks + 1 non-decreasing entries from 0.
  explicit Partition(std::vector<int64_t> starts);
  /// Equal ranges: rank r owns [n·r/P, n·(r+1)/P).
  static Partition even(int64_t n, int ranks);
  int ranks() const { return static_cast<int>(starts_.size()) - 1; }
  int64_t rows() const { return starts_.empty() ? 0 : starts_.back(); }
  Range range(int rank) const { return {starts_[rank], starts_[rank + 1]}; }
  /// The rank whose range holds `row`.
  int owner(int64_t row) const;
  const std::vector<int64_t>& starts() const { return starts_; }

 private:
  std::vector<int64_t> starts_{0, 0};
};

/// One rank's data for distributed iALS.
struct IalsShard {
  int64_t n_users = 0, n_items = 0;  ///< global counts
  Partition user_parts, item_parts;  ///< which rank owns which rows
  Range users, items;                ///< the rows this rank owns
  /// The rank's users × all items (rows: users.begin .. users.end - 1, columns: global item
  /// indices), values the confidences.
  data::Csr user_items;
  /// The rank's items × all users (rows: its items, columns: global user indices).
  data::Csr item_users;
  /// Every item's number of training interactions (n_items entries, the same on every rank):
  /// the per-item unobserved weights (model.unobserved_exp) need the global counts.
  std::vector<int64_t> item_counts;
};

/// How the rows of the other side reach a rank's solves.
class RowExchange {
 public:
  /// Volume of each way, in rows received summed over ranks.
  struct Volume {
    int64_t allgather = 0;  ///< every rank receives every other rank's rows
    int64_t targeted = 0;   ///< every rank receives the rows its columns index, from others
  };

  /// Plans the exchange for solving the rows of `r` (columns: global indices into the other
  /// side's rows, owned by ranks as `other` splits them). Collective. Rewrites r's
  /// columns into positions of the rows received (`rows()`): unchanged for an all-gather,
  /// positions in the sorted list of needed rows for a targeted exchange. Chooses the targeted
  /// exchange when its volume is below `targeted_below` × the all-gather's (both summed over
  /// ranks, so every rank chooses alike).
  RowExchange(const Comm& comm, data::Csr& r, const Partition& other, double targeted_below = 0.8);

  /// The other side's rows this rank needs, from every rank's own rows `own` (its range of the
  /// other side, k columns): `out` gets rows() rows. Collective.
  void exchange(const Matrix& own, Matrix& out) const;

  /// `r` (as rewritten by the constructor) with its global columns back (a copy).
  data::Csr with_global_columns(const data::Csr& r) const;

  bool targeted() const { return targeted_; }
  /// The plan, for an exchange done elsewhere (on GPUs): targeted, the own rows (local index)
  /// sent to each rank in rank order, how many rows go to and come from each rank; all-gather,
  /// the other side's partition (its rows per rank).
  const std::vector<int64_t>& send_rows() const { return send_rows_; }
  const std::vector<int64_t>& send_counts() const { return send_counts_; }
  const std::vector<int64_t>& recv_counts() const { return recv_counts_; }
  const std::vector<int64_t>& other_starts() const { return other_starts_; }
  /// Number of rows `exchange` delivers to this rank.
  int64_t rows() const { return rows_; }
  /// Both volumes (the same on every rank).
  const Volume& volume() const { return volume_; }

 private:
  const Comm* comm_;
  int64_t n_other_ = 0;
  bool targeted_ = false;
  int64_t rows_ = 0;
  Volume volume_;
  std::vector<int64_t> send_counts_;   // targeted: rows for each rank
  std::vector<int64_t> send_rows_;     // targeted: own row (local index) of each row sent
  std::vector<int64_t> recv_counts_;   // targeted: rows from each rank
  std::vector<int64_t> needed_;        // targeted: the global row of each row received
  std::vector<int64_t> other_starts_;  // the other side's partition
};

/// Distributed iALS on the CPU: the rank's part of one model.
class IalsDist {
 public:
  /// `shard`'s CSRs are rewritten by the two RowExchanges (their columns) and must live as
  /// long as this object. With `gpu` (a Context on a CUDA device), the rows and solves live on
  /// that GPU and the collectives of training run through NCCL (dist/ials_dist_cuda.h);
  /// collective then.
  IalsDist(const models::IalsOptions& options, int threads, const Comm& comm, IalsShard& shard,
           const Context* gpu = nullptr);
  ~IalsDist();

  /// Draws the rank's rows of the initial factors: exactly the rows a single process draws.
  /// `start`, when given, then changes them (a warm start, model.init_from): it gets the rank's
  /// user and item rows with the global index of their first row.
  using Start = std::function<void(Matrix& users, int64_t first_user, Matrix& items,
                                   int64_t first_item)>;
  void init(const Start& start = {});
  /// One iteration (users, then items). Collective. Throws recforge::Error on every rank when
  /// any rank's factors became non-finite.
  void iterate();
  /// The objective (ials_cpu.h), the same on every rank. Collective.
  double loss();

  /// The rank's own rows (downloaded from the GPU when they changed there).
  const Matrix& users() const;
  const Matrix& items() const;
  /// Bytes this rank sent through the GPU's collectives (NCCL), 0 on the CPU.
  int64_t device_bytes_sent() const;
  /// Where it trains: "cpu", or the GPU in words.
  std::string device() const;
  /// Replaces the rank's rows (e.g. the best ones of model.patience).
  void set_own(Matrix users, Matrix items);
  /// Continues from a checkpoint: the rank's rows after `iterations_done` iterations.
  void resume(Matrix users, Matrix items, int iterations_done) {
    set_own(std::move(users), std::move(items));
    iterations_done_ = iterations_done;
  }
  /// The whole user / item table at `root` (empty elsewhere). Collective.
  Matrix gather_users(int root) const;
  Matrix gather_items(int root) const;
  /// The whole item table on every rank. Collective.
  Matrix allgather_items() const;

  /// The exchanges (their choice and volume).
  const RowExchange& user_exchange() const { return for_users_; }
  const RowExchange& item_exchange() const { return for_items_; }
  int iterations_done() const { return iterations_done_; }

 private:
  // One half: solves `mine` (rows `r`, exchanged by `ex`) against the other side's rows
  // `other_own`, whose weights are `other_w` (Gram, may be empty) and `mine_w` (row weights).
  void half(const char* side, const data::Csr& r, const RowExchange& ex, Matrix& other_own,
            Matrix& mine, Matrix& other_needed, const std::vector<float>& other_w,
            const std::vector<float>& mine_w, int64_t rows_global, int64_t other_global);
  Matrix gather(const Matrix& own, int root) const;
  // Frees the memory of a table of fetched rows.
  static void release(Matrix& m);

  models::IalsOptions o_;
  int threads_;
  const Comm& comm_;
  IalsShard& shard_;
  RowExchange for_users_, for_items_;
  std::unique_ptr<IalsDistGpu> gpu_;  // the GPU side, or null on the CPU
  void sync() const;                  // downloads the rows when the GPU changed them
  mutable bool stale_ = false;
  mutable Matrix users_, items_;
  Matrix items_needed_, users_needed_;  // the other side's rows of the last halves
  std::vector<float> item_w_own_;       // per-item unobserved weights of the rank's items
  int iterations_done_ = 0;
  bool users_needed_fresh_ = false;     // users_needed_ matches users_ and items_' frame
};

}  // namespace recforge::dist
