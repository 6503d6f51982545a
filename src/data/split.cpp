#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace recforge::data {
namespace {

// Which part an interaction ends in.
enum Part : uint8_t { kTrain, kValidation, kTest, kValidationFoldin, kTestFoldin };

// Stream offsets: user u of the test split draws from derive_seed(seed, u), of the validation
// split from derive_seed(seed, kValidationStream + u); users are < 2^31, so these never collide.
constexpr uint64_t kTestStream = 0;
constexpr uint64_t kValidationStream = 1ULL << 32;
constexpr uint64_t kTestPickStream = 1ULL << 33;              // choice of held-out test users
constexpr uint64_t kValidationPickStream = (1ULL << 33) + 1;  // ... of held-out validation users

const char* method_name(SplitMethod m) {
  switch (m) {
    case SplitMethod::kGiven:
      return "given";
    case SplitMethod::kRandom:
      return "random";
    case SplitMethod::kLeaveLast:
      return "leave_last";
    case SplitMethod::kTime:
      return "time";
    case SplitMethod::kUsers:
      return "users";
    case SplitMethod::kNone:
      return "none";
  }
  return "?";
}

// Marks `h` of `idx` (chosen uniformly at random by a partial Fisher-Yates shuffle) as `to`.
void mark_random(std::vector<offset_t>& idx, int64_t h, Rng& rng, std::vector<uint8_t>& part,
                 Part to) {
  const int64_t n = static_cast<int64_t>(idx.size());
  for (int64_t j = 0; j < h; ++j) {
    const int64_t k = j + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - j)));
    std::swap(idx[j], idx[k]);
    part[idx[j]] = to;
  }
}

// Number held out of n: round(n · fraction), but at least one stays.
int64_t holdout_count(int64_t n, double fraction) {
  if (n <= 1) return 0;
  return std::min<int64_t>(std::llround(static_cast<double>(n) * fraction), n - 1);
}

// The cutoff at the q-quantile of `v`, linearly interpolated between order statistics (numpy's
// default): the smallest integer at or above that quantile, so `time >= cutoff` takes exactly
// the times at or above it.
int64_t quantile_cutoff(std::vector<int64_t> v, double q) {
  RF_ASSERT(!v.empty(), "quantile of an empty set");
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const int64_t v_lo = v[lo];
  const double frac = pos - static_cast<double>(lo);
  if (frac <= 0 || lo + 1 >= v.size()) return v_lo;
  const int64_t v_hi = *std::min_element(v.begin() + lo + 1, v.end());
  // v_lo + ceil(frac * (v_hi - v_lo)) in integers: never above v_hi, exact for any int64 times.
  const uint64_t gap = static_cast<uint64_t>(v_hi) - static_cast<uint64_t>(v_lo);
  const auto step = static_cast<uint64_t>(
      std::min(std::ceil(static_cast<long double>(frac) * static_cast<long double>(gap)),
               static_cast<long double>(gap)));
  return static_cast<int64_t>(static_cast<uint64_t>(v_lo) + step);
}

// Labels every interaction with its part; each pass moves some kTrain interactions elsewhere.
class Splitter {
 public:
  Splitter(const Interactions& x, int64_t n_users, uint64_t seed)
      : x_(x), n_users_(n_users), seed_(seed), part_(static_cast<size_t>(x.size()), kTrain) {
    // Stable counting sort by user: order_[start_[u] .. start_[u+1]) is u's input-order list.
    const offset_t n = x.size();
    start_.assign(static_cast<size_t>(n_users) + 1, 0);
    for (offset_t k = 0; k < n; ++k) {
      RF_ASSERT(x.users[k] >= 0 && x.users[k] < n_users, "split_interactions: user out of range");
      ++start_[x.users[k] + 1];
    }
    std::partial_sum(start_.begin(), start_.end(), start_.begin());
    order_.resize(static_cast<size_t>(n));
    std::vector<offset_t> pos(start_.begin(), start_.end() - 1);
    for (offset_t k = 0; k < n; ++k) order_[pos[x.users[k]]++] = k;
  }

  // Per user, round(n_train · fraction) random train interactions (at least one stays) → `to`.
  void random_holdout(double fraction, Part to, uint64_t stream) {
#pragma omp parallel
    {
      std::vector<offset_t> idx;
#pragma omp for schedule(dynamic, 256)
      for (int64_t u = 0; u < n_users_; ++u) {
        train_of(u, idx);
        const int64_t h = holdout_count(static_cast<int64_t>(idx.size()), fraction);
        if (h == 0) continue;
        Rng rng(derive_seed(seed_, stream + static_cast<uint64_t>(u)));
        mark_random(idx, h, rng, part_, to);
      }
    }
  }

  // Per user with more than k train interactions, the last k by (time, input order) → `to`.
  void leave_last(int k, Part to) {
#pragma omp parallel
    {
      std::vector<offset_t> idx;
#pragma omp for schedule(dynamic, 256)
      for (int64_t u = 0; u < n_users_; ++u) {
        train_of(u, idx);
        if (static_cast<int64_t>(idx.size()) <= k) continue;
        std::sort(idx.begin(), idx.end(), [&](offset_t a, offset_t b) {
          return x_.times[a] != x_.times[b] ? x_.times[a] < x_.times[b] : a < b;
        });
        for (size_t j = idx.size() - static_cast<size_t>(k); j < idx.size(); ++j)
          part_[idx[j]] = to;
      }
    }
  }

  // Train interactions with time >= cutoff → `to`.
  void time_cutoff(int64_t cutoff, Part to) {
    const offset_t n = x_.size();
#pragma omp parallel for schedule(static)
    for (offset_t k = 0; k < n; ++k)
      if (part_[k] == kTrain && x_.times[k] >= cutoff) part_[k] = to;
  }

  // Timestamps of the current train interactions.
  std::vector<int64_t> train_times() const {
    std::vector<int64_t> t;
    for (offset_t k = 0; k < x_.size(); ++k)
      if (part_[k] == kTrain) t.push_back(x_.times[k]);
    return t;
  }

  // Holds out round(m · user_fraction) (clamped to [1, m-1]) of the m users with train
  // interactions; each one's train interactions are split: round(n · fraction) at random → `to`,
  // the rest (at least one) → `foldin`. Returns m.
  int64_t held_out_users(double user_fraction, double fraction, Part to, Part foldin,
                         uint64_t stream, uint64_t pick_stream) {
    std::vector<uint8_t> has_train(static_cast<size_t>(n_users_), 0);
    for (offset_t k = 0; k < x_.size(); ++k)
      if (part_[k] == kTrain) has_train[x_.users[k]] = 1;
    std::vector<int64_t> active;
    for (int64_t u = 0; u < n_users_; ++u)
      if (has_train[u]) active.push_back(u);
    const int64_t m = static_cast<int64_t>(active.size());
    if (m < 2) return m;
    const int64_t h =
        std::clamp<int64_t>(std::llround(static_cast<double>(m) * user_fraction), 1, m - 1);
    Rng pick(derive_seed(seed_, pick_stream));
    std::vector<uint8_t> chosen(static_cast<size_t>(n_users_), 0);
    for (int64_t j = 0; j < h; ++j) {
      const int64_t k = j + static_cast<int64_t>(pick.below(static_cast<uint64_t>(m - j)));
      std::swap(active[j], active[k]);
      chosen[active[j]] = 1;
    }
#pragma omp parallel
    {
      std::vector<offset_t> idx;
#pragma omp for schedule(dynamic, 256)
      for (int64_t u = 0; u < n_users_; ++u) {
        if (!chosen[u]) continue;
        train_of(u, idx);
        for (offset_t k : idx) part_[k] = foldin;
        const int64_t hu = holdout_count(static_cast<int64_t>(idx.size()), fraction);
        if (hu == 0) continue;
        Rng rng(derive_seed(seed_, stream + static_cast<uint64_t>(u)));
        mark_random(idx, hu, rng, part_, to);
      }
    }
    return m;
  }

  // Number of interactions currently in part `p`.
  offset_t count(Part p) const {
    return static_cast<offset_t>(std::count(part_.begin(), part_.end(), static_cast<uint8_t>(p)));
  }

  // The interactions of part `p`, in input order.
  Interactions collect(Part p) const {
    Interactions out = x_.empty_like();
    out.reserve(count(p), x_.has_times());
    for (offset_t k = 0; k < x_.size(); ++k)
      if (part_[k] == p) out.push_from(x_, k);
    return out;
  }

 private:
  // Indices of user u's interactions currently in train, in input order.
  void train_of(int64_t u, std::vector<offset_t>& idx) const {
    idx.clear();
    for (offset_t j = start_[u]; j < start_[u + 1]; ++j)
      if (part_[order_[j]] == kTrain) idx.push_back(order_[j]);
  }

  const Interactions& x_;
  int64_t n_users_;
  uint64_t seed_;
  std::vector<uint8_t> part_;
  std::vector<offset_t> start_, order_;
};

void check_fraction(const char* key, double v, bool allow_zero) {
  if (!(allow_zero ? v >= 0.0 : v > 0.0) || !(v < 1.0))
    fail("{} must be {} 0 and below 1, got {}", key, allow_zero ? "at least" : "above", v);
}

void check_options(const Interactions& all, const SplitOptions& o) {
  const char* name = method_name(o.method);
  switch (o.method) {
    case SplitMethod::kRandom:
      check_fraction("split.test_fraction", o.test_fraction, false);
      break;
    case SplitMethod::kUsers:
      check_fraction("split.test_fraction", o.test_fraction, false);
      check_fraction("split.heldout_users", o.heldout_users, false);
      break;
    case SplitMethod::kLeaveLast:
      if (o.leave_k < 1) fail("split.leave_k must be at least 1, got {}", o.leave_k);
      break;
    case SplitMethod::kTime:
      if (!o.cutoff) check_fraction("split.cutoff_quantile", o.cutoff_quantile, false);
      break;
    case SplitMethod::kGiven:
    case SplitMethod::kNone:
      break;
  }
  if ((o.method == SplitMethod::kLeaveLast || o.method == SplitMethod::kTime) && !all.has_times() &&
      all.size() > 0)
    fail("split.method {} needs timestamps: set data.time_col", name);
  check_fraction("split.validation_fraction", o.validation_fraction, true);
  if (o.validation_fraction > 0 && o.method == SplitMethod::kUsers)
    check_fraction("split.validation_fraction", o.validation_fraction, false);
}

}  // namespace

void require_split_parts(int64_t test_size, int64_t validation_size, const SplitOptions& o) {
  if (o.method != SplitMethod::kNone && test_size == 0) {
    switch (o.method) {
      case SplitMethod::kGiven:
        fail("split.method given: the test file (data.test_path) has no interactions left after "
             "dropping those whose user or item is not in the training data; expected at least "
             "one test interaction");
      case SplitMethod::kRandom:
        fail("split.test_fraction {} left the test set empty: no user has enough interactions "
             "for round(n * {}) >= 1 with one kept in train; expected a larger "
             "split.test_fraction or users with more interactions",
             o.test_fraction, o.test_fraction);
      case SplitMethod::kLeaveLast:
        fail("split.leave_k {} left the test set empty: no user has more than {} interaction(s), "
             "and split.method leave_last keeps such users in train",
             o.leave_k, o.leave_k);
      case SplitMethod::kTime:
        if (o.cutoff)
          fail("split.cutoff {} left the test set empty: no interaction has a timestamp at or "
               "after it; expected a cutoff at or before the latest timestamp",
               *o.cutoff);
        fail("split.cutoff_quantile {} left the test set empty; expected a quantile below 1",
             o.cutoff_quantile);
      case SplitMethod::kUsers:
        fail("split.test_fraction {} left the test set of the held-out users empty "
             "(split.heldout_users {}): none of them has enough interactions for "
             "round(n * {}) >= 1 with one kept as fold-in",
             o.test_fraction, o.heldout_users, o.test_fraction);
      case SplitMethod::kNone:
        break;
    }
  }
  if (o.validation_fraction > 0 && validation_size == 0) {
    if (o.method == SplitMethod::kLeaveLast)
      fail("split.validation_fraction {} left the validation set empty: with split.method "
           "leave_last no user has more than split.leave_k {} train interaction(s) left; set "
           "split.validation_fraction: 0 for no validation set",
           o.validation_fraction, o.leave_k);
    fail("split.validation_fraction {} left the validation set empty: the training part has too "
         "few interactions per user (or distinct timestamps) to hold any out; expected a larger "
         "fraction, or split.validation_fraction: 0 for no validation set",
         o.validation_fraction);
  }
}

Split split_interactions(const Interactions& all, int64_t n_users, const SplitOptions& o,
                         const Interactions* given_test, bool check_parts) {
  RF_ASSERT((o.method == SplitMethod::kGiven) == (given_test != nullptr),
            "split_interactions: given_test must be set exactly for method given");
  check_options(all, o);
  Splitter s(all, n_users, o.seed);
  const bool timed = all.has_times() && all.size() > 0;

  // Test split.
  switch (o.method) {
    case SplitMethod::kRandom:
      s.random_holdout(o.test_fraction, kTest, kTestStream);
      break;
    case SplitMethod::kLeaveLast:
      if (timed) s.leave_last(o.leave_k, kTest);
      break;
    case SplitMethod::kTime:
      if (timed) {
        const int64_t cutoff = o.cutoff ? *o.cutoff : quantile_cutoff(all.times, o.cutoff_quantile);
        s.time_cutoff(cutoff, kTest);
        if (s.count(kTrain) == 0) {
          const int64_t earliest = *std::min_element(all.times.begin(), all.times.end());
          if (o.cutoff)
            fail(
                "split.cutoff {} puts every interaction in test; expected a cutoff after the "
                "earliest timestamp {}",
                cutoff, earliest);
          fail("split.cutoff_quantile {} gives the cutoff {}, the earliest timestamp, which puts "
               "every interaction in test{}; set split.cutoff after it, or use another "
               "split.method",
               o.cutoff_quantile, cutoff, earliest,
               *std::max_element(all.times.begin(), all.times.end()) == earliest
                   ? " (every interaction has that timestamp)"
                   : "");
        }
      }
      break;
    case SplitMethod::kUsers: {
      const int64_t m = s.held_out_users(o.heldout_users, o.test_fraction, kTest, kTestFoldin,
                                         kTestStream, kTestPickStream);
      if (m < 2) fail("split.method users needs at least 2 users with interactions, got {}", m);
      break;
    }
    case SplitMethod::kGiven:
    case SplitMethod::kNone:
      break;
  }

  // Validation split, carved from train by the same method.
  if (o.validation_fraction > 0) {
    switch (o.method) {
      case SplitMethod::kRandom:
      case SplitMethod::kGiven:
      case SplitMethod::kNone:
        s.random_holdout(o.validation_fraction, kValidation, kValidationStream);
        break;
      case SplitMethod::kLeaveLast:
        if (timed) s.leave_last(o.leave_k, kValidation);
        break;
      case SplitMethod::kTime: {
        const std::vector<int64_t> t = s.train_times();
        if (t.empty()) break;
        const int64_t cutoff = quantile_cutoff(t, 1.0 - o.validation_fraction);
        s.time_cutoff(cutoff, kValidation);
        if (s.count(kTrain) == 0)
          fail(
              "split.validation_fraction {} puts every train interaction in validation (all "
              "train timestamps are equal); expected train timestamps that differ",
              o.validation_fraction);
        break;
      }
      case SplitMethod::kUsers: {
        const int64_t m =
            s.held_out_users(o.validation_fraction, o.test_fraction, kValidation, kValidationFoldin,
                             kValidationStream, kValidationPickStream);
        if (m < 2)
          fail(
              "split.validation_fraction with split.method users needs at least 2 train users, "
              "got {}",
              m);
        break;
      }
    }
  }

  Split out;
  out.train = s.collect(kTrain);
  out.validation = s.collect(kValidation);
  out.test = o.method == SplitMethod::kGiven ? *given_test : s.collect(kTest);
  out.validation_foldin = s.collect(kValidationFoldin);
  out.test_foldin = s.collect(kTestFoldin);
  if (check_parts && all.size() > 0) require_split_parts(out.test.size(), out.validation.size(), o);
  return out;
}

}  // namespace recforge::data
