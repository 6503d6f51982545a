#include "data/synthetic.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recforge::data {
namespace {

// Stream of the shared structure (rankings, communities). User streams are 0 .. users-1 < 2^31,
// so this never collides with them.
constexpr uint64_t kStructureStream = 0xFFFFFFFF00000000ULL;

// Walker/Vose alias table: O(n) to build, O(1) per draw. Built without randomness, so it is the
// same on every platform.
class AliasTable {
 public:
  explicit AliasTable(const std::vector<double>& weights) {
    const size_t n = weights.size();
    RF_ASSERT(n > 0, "AliasTable: no outcomes");
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    RF_ASSERT(total > 0, "AliasTable: weights sum to zero");
    prob_.resize(n);
    alias_.resize(n);
    std::vector<double> scaled(n);
    std::vector<uint32_t> small, large;
    for (size_t k = 0; k < n; ++k) {
      scaled[k] = weights[k] * static_cast<double>(n) / total;
      (scaled[k] < 1.0 ? small : large).push_back(static_cast<uint32_t>(k));
    }
    while (!small.empty() && !large.empty()) {
      const uint32_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // Leftovers are 1 up to rounding.
    for (uint32_t k : large) prob_[k] = 1.0, alias_[k] = k;
    for (uint32_t k : small) prob_[k] = 1.0, alias_[k] = k;
  }

  // Draws an outcome index in [0, n).
  uint32_t sample(Rng& rng) const {
    const uint32_t k = static_cast<uint32_t>(rng.below(prob_.size()));
    return rng.uniform() < prob_[k] ? k : alias_[k];
  }

 private:
  std::vector<double> prob_;
  std::vector<uint32_t> alias_;
};

// Fisher-Yates shuffle with the portable generator.
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t k = v.size(); k > 1; --k) std::swap(v[k - 1], v[rng.below(k)]);
}

void check_options(const SyntheticOptions& o) {
  constexpr int64_t kMaxIndex = std::numeric_limits<index_t>::max();
  if (o.users < 1 || o.users > kMaxIndex)
    fail("synthetic.users must be between 1 and {}, got {}", kMaxIndex, o.users);
  if (o.items < 1 || o.items > kMaxIndex)
    fail("synthetic.items must be between 1 and {}, got {}", kMaxIndex, o.items);
  if (o.interactions < o.users)
    fail(
        "synthetic.interactions must be at least synthetic.users ({}) since every user makes "
        "at least one draw, got {}",
        o.users, o.interactions);
  if (o.communities < 1 || o.communities > o.items)
    fail("synthetic.communities must be between 1 and synthetic.items ({}), got {}", o.items,
         o.communities);
  if (!(o.community_strength >= 0.0 && o.community_strength <= 1.0))
    fail("synthetic.community_strength must be between 0 and 1, got {}", o.community_strength);
  if (!(o.popularity_exponent >= 0.0 && std::isfinite(o.popularity_exponent)))
    fail("synthetic.popularity_exponent must be a finite number >= 0, got {}",
         o.popularity_exponent);
  if (!(o.activity_sigma >= 0.0 && std::isfinite(o.activity_sigma)))
    fail("synthetic.activity_sigma must be a finite number >= 0, got {}", o.activity_sigma);
  if (o.days < 1 || o.days > 365LL * 1000)
    fail("synthetic.days must be between 1 and 365000, got {}", o.days);
}

// Number of draws per user: max(1, round(activity · scale)), with the scale found by bisection
// so that the total is as close as possible to `target`.
std::vector<int64_t> draws_per_user(const std::vector<double>& activity, int64_t target) {
  const size_t n = activity.size();
  auto total_at = [&](double scale) {
    int64_t total = 0;
    for (double a : activity) total += std::max<int64_t>(1, std::llround(a * scale));
    return total;
  };
  double lo = 0.0;
  double hi = static_cast<double>(target) / std::accumulate(activity.begin(), activity.end(), 0.0);
  while (total_at(hi) < target) hi *= 2;
  int64_t total_lo = total_at(lo), total_hi = total_at(hi);
  for (int iter = 0; iter < 100 && total_hi - total_lo > 1; ++iter) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    const int64_t t = total_at(mid);
    if (t < target) {
      lo = mid, total_lo = t;
    } else {
      hi = mid, total_hi = t;
    }
  }
  const double scale = (target - total_lo <= total_hi - target) ? lo : hi;
  std::vector<int64_t> draws(n);
  for (size_t u = 0; u < n; ++u) draws[u] = std::max<int64_t>(1, std::llround(activity[u] * scale));
  return draws;
}

std::vector<std::string> integer_ids(int64_t n) {
  std::vector<std::string> ids(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) ids[static_cast<size_t>(k)] = std::to_string(k);
  return ids;
}

}  // namespace

SyntheticData generate_synthetic(const SyntheticOptions& o) {
  check_options(o);
  const int64_t n_users = o.users, n_items = o.items;
  const int n_comm = o.communities;
  Rng structure(derive_seed(o.seed, kStructureStream));

  // Item popularity: Zipf over a random ranking (rank_order[r] is the item of rank r).
  std::vector<index_t> rank_order(static_cast<size_t>(n_items));
  std::iota(rank_order.begin(), rank_order.end(), 0);
  shuffle(rank_order, structure);
  std::vector<double> popularity(static_cast<size_t>(n_items));
  for (int64_t r = 0; r < n_items; ++r)
    popularity[rank_order[r]] = std::pow(static_cast<double>(r + 1), -o.popularity_exponent);

  // Communities: deal items round-robin along the ranking, reshuffling the community order each
  // round so that no community is systematically dealt the more popular items.
  std::vector<int> item_community(static_cast<size_t>(n_items));
  std::vector<int> deal(static_cast<size_t>(n_comm));
  std::iota(deal.begin(), deal.end(), 0);
  for (int64_t r = 0; r < n_items; ++r) {
    if (r % n_comm == 0) shuffle(deal, structure);
    item_community[rank_order[r]] = deal[r % n_comm];
  }
  std::vector<std::vector<index_t>> community_items(static_cast<size_t>(n_comm));
  for (int64_t i = 0; i < n_items; ++i)
    community_items[item_community[i]].push_back(static_cast<index_t>(i));
  const AliasTable global(popularity);
  std::vector<AliasTable> community_tables;
  community_tables.reserve(static_cast<size_t>(n_comm));
  for (const auto& members : community_items) {
    std::vector<double> w(members.size());
    for (size_t k = 0; k < members.size(); ++k) w[k] = popularity[members[k]];
    community_tables.emplace_back(w);
  }

  // Per-user community, activity and start time, each user from its own stream; the stream then
  // continues for the user's draws.
  const int64_t span = o.days * 86400;
  const int64_t end_time = kSyntheticStartTime + span;
  std::vector<int> user_community(static_cast<size_t>(n_users));
  std::vector<double> activity(static_cast<size_t>(n_users));
  std::vector<int64_t> user_start(static_cast<size_t>(n_users));
  std::vector<Rng> streams(static_cast<size_t>(n_users));
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < n_users; ++u) {
    Rng rng(derive_seed(o.seed, static_cast<uint64_t>(u)));
    user_community[u] = static_cast<int>(rng.below(static_cast<uint64_t>(n_comm)));
    activity[u] = std::exp(o.activity_sigma * rng.normal());
    user_start[u] =
        kSyntheticStartTime + static_cast<int64_t>(rng.uniform() * static_cast<double>(span / 2));
    streams[u] = rng;
  }
  const std::vector<int64_t> draws = draws_per_user(activity, o.interactions);
  std::vector<offset_t> offset(static_cast<size_t>(n_users) + 1, 0);
  for (int64_t u = 0; u < n_users; ++u) offset[u + 1] = offset[u] + draws[u];
  const offset_t total = offset.back();

  Interactions x;
  x.enable_times();
  x.users.resize(total);
  x.items.resize(total);
  x.weights.assign(total, 1.0f);
  x.times.resize(total);

  Progress progress("datagen", n_users, "users");
  std::atomic<int64_t> done{0};
#pragma omp parallel
  {
    std::vector<double> gaps;
#pragma omp for schedule(dynamic, 64)
    for (int64_t u = 0; u < n_users; ++u) {
      Rng& rng = streams[u];
      const AliasTable& own = community_tables[user_community[u]];
      const std::vector<index_t>& own_items = community_items[user_community[u]];
      const offset_t b = offset[u];
      const int64_t n = draws[u];
      gaps.resize(static_cast<size_t>(n) + 1);
      double gap_sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        const bool in_community = rng.uniform() < o.community_strength;
        const index_t item =
            in_community ? own_items[own.sample(rng)] : static_cast<index_t>(global.sample(rng));
        x.users[b + k] = static_cast<index_t>(u);
        x.items[b + k] = item;
        gaps[k] = -std::log(1.0 - rng.uniform());  // exponential, mean 1
        gap_sum += gaps[k];
      }
      gaps[n] = -std::log(1.0 - rng.uniform());
      gap_sum += gaps[n];
      // Cumulative gaps over the sum of n+1 gaps fall in [0, 1): times stay before the end.
      const double room = static_cast<double>(end_time - user_start[u]);
      double cum = 0;
      for (int64_t k = 0; k < n; ++k) {
        cum += gaps[k];
        const int64_t t = user_start[u] + static_cast<int64_t>(room * (cum / gap_sum));
        x.times[b + k] = std::min(t, end_time - 1);
      }
      const int64_t d = done.fetch_add(1, std::memory_order_relaxed) + 1;
#ifdef _OPENMP
      if (omp_get_thread_num() == 0) progress.update(d);
#else
      progress.update(d);
#endif
    }
  }
  progress.finish(n_users);

  combine_duplicates(x, n_users, Duplicates::kSum);
  if (o.binary_weights) std::fill(x.weights.begin(), x.weights.end(), 1.0f);

  SyntheticData out;
  out.users = IdMap(integer_ids(n_users));
  out.items = IdMap(integer_ids(n_items));
  out.x = std::move(x);
  out.user_community = std::move(user_community);
  out.item_community = std::move(item_community);
  return out;
}

void write_synthetic_csv(const SyntheticData& d, const std::string& out) {
  const Interactions& x = d.x;
  RF_ASSERT(x.has_times() || x.size() == 0, "write_synthetic_csv: interactions without times");
  // As write_output_file: through a symbolic link, keeping an existing file's permission bits.
  int mode = -1;
  const std::string path = output_target(out, &mode);
  const std::string tmp = fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
  // Removed if SIGINT or SIGTERM stops the process while it is written.
  const InterruptCleanup cleanup(tmp);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write synthetic data to {}: {}", path, std::strerror(errno));
  int err = 0;  // errno of the first failure
  if (mode >= 0 && ::fchmod(::fileno(f), static_cast<mode_t>(mode)) != 0) err = errno;
  auto flush = [&](fmt::memory_buffer& b) {
    if (err == 0 && std::fwrite(b.data(), 1, b.size(), f) != b.size()) err = errno ? errno : EIO;
    b.clear();
  };
  fmt::memory_buffer buf;
  fmt::format_to(std::back_inserter(buf), "user,item,weight,timestamp\n");
  for (offset_t k = 0; k < x.size() && err == 0; ++k) {
    fmt::format_to(std::back_inserter(buf), "{},{},{},{}\n", d.users.external(x.users[k]),
                   d.items.external(x.items[k]), x.weights[k], x.times[k]);
    if (buf.size() >= (1u << 20)) flush(buf);
  }
  flush(buf);
  // On disk before the name: a crash must not leave a short file under the final name.
  if (err == 0 && (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0)) err = errno ? errno : EIO;
  if (std::fclose(f) != 0 && err == 0) err = errno ? errno : EIO;
  if (err == 0)
    without_interrupt_cleanup([&] {
      if (std::rename(tmp.c_str(), path.c_str()) != 0) err = errno ? errno : EIO;
    });
  if (err != 0) {
    std::remove(tmp.c_str());
    fail("cannot write synthetic data to {}: {}", path, std::strerror(err));
  }
}

}  // namespace recforge::data
