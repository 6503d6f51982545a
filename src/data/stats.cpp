#include "data/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace recforge::data {

nlohmann::json quantiles(std::vector<double>& v) {
  nlohmann::json q = nlohmann::json::object();
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  auto at = [&](double p) {
    // Linear interpolation between closest ranks (NumPy's default).
    const double pos = p * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
  };
  q["min"] = v.front();
  q["p25"] = at(0.25);
  q["p50"] = at(0.50);
  q["p75"] = at(0.75);
  q["p90"] = at(0.90);
  q["p99"] = at(0.99);
  q["max"] = v.back();
  q["mean"] = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  return q;
}

nlohmann::json interaction_stats(const Interactions& x, int64_t n_users, int64_t n_items) {
  nlohmann::json s;
  const offset_t n = x.size();
  std::vector<int64_t> per_user(n_users, 0), per_item(n_items, 0);
  for (offset_t k = 0; k < n; ++k) {
    ++per_user[x.users[k]];
    ++per_item[x.items[k]];
  }
  std::vector<double> ua, ip;
  for (auto c : per_user)
    if (c > 0) ua.push_back(static_cast<double>(c));
  for (auto c : per_item)
    if (c > 0) ip.push_back(static_cast<double>(c));
  s["interactions"] = n;
  s["users_with_interactions"] = ua.size();
  s["items_with_interactions"] = ip.size();
  s["density"] = n_users > 0 && n_items > 0
                     ? static_cast<double>(n) / (static_cast<double>(n_users) * n_items)
                     : 0.0;
  s["user_activity"] = quantiles(ua);
  s["item_popularity"] = quantiles(ip);  // sorted ascending now
  if (!ip.empty() && n > 0) {
    auto top_share = [&](double frac) {
      const size_t k = std::max<size_t>(1, static_cast<size_t>(std::ceil(frac * ip.size())));
      double sum = 0;
      for (size_t j = 0; j < k; ++j) sum += ip[ip.size() - 1 - j];
      return sum / static_cast<double>(n);
    };
    s["top1pct_item_share"] = top_share(0.01);
    s["top10pct_item_share"] = top_share(0.10);
    // Gini over all n_items (items without interactions count as zeros).
    std::vector<double> all(static_cast<size_t>(n_items) - ip.size(), 0.0);
    all.insert(all.end(), ip.begin(), ip.end());
    double weighted = 0;
    for (size_t j = 0; j < all.size(); ++j) weighted += (2.0 * (j + 1) - all.size() - 1) * all[j];
    s["item_gini"] = weighted / (static_cast<double>(all.size()) * static_cast<double>(n));
  }
  std::vector<double> w(x.weights.begin(), x.weights.end());
  s["weight"] = quantiles(w);
  if (x.has_times() && n > 0) {
    const auto [lo, hi] = std::minmax_element(x.times.begin(), x.times.end());
    s["time_min"] = *lo;
    s["time_max"] = *hi;
  }
  return s;
}

}  // namespace recforge::data
