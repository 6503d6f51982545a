#pragma once
/// @file interactions.h
/// In-memory interactions (COO) and the maps between external ids and dense indices.

#include <cstdint>
#include <limits>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace recforge::data {

/// Dense index of a user or an item (0 .. n-1). 32 bits: up to 2^31 users or items.
using index_t = int32_t;
/// Offset into interaction arrays. 64 bits: more than 2^31 interactions are representable.
using offset_t = int64_t;
/// The most users, and the most items, a data set may hold: their indices are index_t.
constexpr int64_t kMaxIds = std::numeric_limits<index_t>::max();

/// Maps external ids (kept as text) to dense indices 0..n-1 and back.
class IdMap {
 public:
  IdMap() = default;
  /// Builds a map from external ids listed in dense-index order (ids must be unique). Throws
  /// recforge::Error for more than kMaxIds ids.
  explicit IdMap(std::vector<std::string> ids);
  /// A copy builds its own lookup table (the original's points into the original's strings).
  IdMap(const IdMap& other) : ids_(other.ids_) {}
  /// A move keeps the table: the strings stay where they are.
  IdMap(IdMap&& other) noexcept;
  IdMap& operator=(const IdMap& other);
  IdMap& operator=(IdMap&& other) noexcept;
  /// Number of ids.
  int64_t size() const { return static_cast<int64_t>(ids_.size()); }
  /// External id of dense index `i`.
  const std::string& external(index_t i) const { return ids_[static_cast<size_t>(i)]; }
  /// Dense index of an external id, if present. Safe to call from many threads at once: the
  /// lookup table is built once, on the first call, under a lock.
  std::optional<index_t> find(std::string_view id) const;
  /// All external ids in dense-index order.
  const std::vector<std::string>& ids() const { return ids_; }
  /// Keeps only the dense indices with keep[i] != 0 and renumbers them in order; returns the
  /// old→new index table (-1 for removed ids).
  std::vector<index_t> compact(const std::vector<uint8_t>& keep);

 private:
  void build_lookup() const;
  std::vector<std::string> ids_;
  mutable std::unordered_map<std::string_view, index_t> lookup_;
  mutable std::atomic<bool> built_{false};  // lookup_ holds every id of ids_
  mutable std::mutex build_mutex_;
};

/// Interactions as parallel arrays (COO). `times` is empty when there are no timestamps.
struct Interactions {
  std::vector<index_t> users;   ///< dense user index per interaction
  std::vector<index_t> items;   ///< dense item index per interaction
  std::vector<float> weights;   ///< raw weight (1 for unweighted data)
  std::vector<int64_t> times;   ///< timestamp per interaction, or empty

  /// Number of interactions.
  offset_t size() const { return static_cast<offset_t>(users.size()); }
  /// True when every interaction has a timestamp.
  bool has_times() const { return !times.empty(); }
  /// Reserves room for `n` interactions.
  void reserve(offset_t n, bool with_times);
  /// Appends one interaction (`time` ignored when the set has no timestamps).
  void push(index_t u, index_t i, float w, int64_t t = 0) {
    users.push_back(u);
    items.push_back(i);
    weights.push_back(w);
    if (!times.empty() || with_times_) times.push_back(t);
  }
  /// Declares that timestamps are stored (call before the first push on an empty set).
  void enable_times() { with_times_ = true; }
  /// Copies interaction `k` of `other` onto the end of this set.
  void push_from(const Interactions& other, offset_t k) {
    push(other.users[k], other.items[k], other.weights[k], other.has_times() ? other.times[k] : 0);
  }
  /// An empty set with the same timestamp layout as this one.
  Interactions empty_like() const {
    Interactions out;
    if (has_times() || with_times_) out.enable_times();
    return out;
  }
  /// Renumbers users and items through old→new tables, dropping interactions mapped to -1.
  void remap(const std::vector<index_t>& user_map, const std::vector<index_t>& item_map);

 private:
  bool with_times_ = false;
};

/// Rule for combining repeated (user, item) pairs.
enum class Duplicates { kSum, kMax, kLast };

/// Sorts by (user, item) and combines repeated pairs by `rule`. "last" keeps the latest
/// timestamp (file order breaks ties, and decides alone without timestamps). Combined pairs keep
/// the latest timestamp. Returns the number of interactions removed by combining.
offset_t combine_duplicates(Interactions& x, int64_t n_users, Duplicates rule);

/// Throws recforge::Error when a weight of `x` is not finite after combine_duplicates: every
/// weight was read finite, so a sum of repeated pairs went past float32's largest value. Names
/// `file`, the item and the user by the length of their id (errors hold no raw user ids).
/// Called before anything is cached or trained, on every part (test included).
void check_combined_weights(const Interactions& x, const IdMap& users, const IdMap& items,
                            const std::string& file);

}  // namespace recforge::data
