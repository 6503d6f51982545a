#include "data/retention.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/text.h"
#include "data/load.h"

namespace recforge::data {
namespace {

// Days from 1970-01-01 to year-month-day in the proleptic Gregorian calendar (H. Hinnant's
// days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

}  // namespace

TimeUnit time_unit_from(const std::string& name) {
  if (name == "seconds") return TimeUnit::kSeconds;
  if (name == "milliseconds") return TimeUnit::kMilliseconds;
  if (name == "microseconds") return TimeUnit::kMicroseconds;
  if (name == "days") return TimeUnit::kDays;
  fail("data.time_unit \"{}\": expected seconds, milliseconds, microseconds or days", name);
}

int64_t units_per_day(TimeUnit unit) {
  switch (unit) {
    case TimeUnit::kSeconds: return 86400;
    case TimeUnit::kMilliseconds: return 86400LL * 1000;
    case TimeUnit::kMicroseconds: return 86400LL * 1000 * 1000;
    case TimeUnit::kDays: return 1;
  }
  return 86400;
}

std::optional<int64_t> utc_date_days(std::string_view v) {
  if (v.size() != 10 || v[4] != '-' || v[7] != '-') return std::nullopt;
  const std::optional<int64_t> y = parse_int64(v.substr(0, 4)), m = parse_int64(v.substr(5, 2)),
                               d = parse_int64(v.substr(8, 2));
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (!y || !m || !d || *y < 0 || *m < 1 || *m > 12 || *d < 1 ||
      *d > kDays[*m - 1] + (*m == 2 && leap(*y) ? 1 : 0))
    return std::nullopt;
  return days_from_civil(*y, *m, *d);
}

int64_t retention_reference(const std::string& v, TimeUnit unit) {
  const bool date_shape = v.size() == 10 && v[4] == '-' && v[7] == '-';
  if (!date_shape) {
    const std::optional<int64_t> t = parse_int64(v);
    if (!t)
      fail("data.max_age_from \"{}\": expected a UTC date YYYY-MM-DD or an integer timestamp in "
           "data.time_unit",
           v);
    return *t;
  }
  const std::optional<int64_t> days = utc_date_days(v);
  if (!days)
    fail("data.max_age_from \"{}\": not a valid date; expected a UTC date YYYY-MM-DD such as "
         "2024-01-31",
         v);
  // Within int64 for every unit: |days| < 4e6, times 8.64e10 microseconds per day < 3.5e17.
  return *days * units_per_day(unit);
}

int64_t retention_cutoff(int64_t reference, int64_t max_age_days, TimeUnit unit) {
  int64_t span = 0, cutoff = 0;
  if (__builtin_mul_overflow(max_age_days, units_per_day(unit), &span) ||
      __builtin_sub_overflow(reference, span, &cutoff))
    return std::numeric_limits<int64_t>::min();
  return cutoff;
}

void apply_retention(Loaded& d, const LoadOptions& o, const std::string& source) {
  if (o.max_age_days <= 0) return;
  LoadReport& r = d.report;
  int64_t newest = std::numeric_limits<int64_t>::min();
  offset_t total = 0;
  for (const Interactions& part : d.parts) {
    if (!part.has_times() && part.size() > 0)
      fail("{}: data.max_age_days needs a timestamp on every interaction; set data.time_col to "
           "the timestamp column",
           source);
    for (const int64_t t : part.times) newest = std::max(newest, t);
    total += part.size();
  }
  if (total == 0) return;
  r.retention_max_age_days = o.max_age_days;
  r.retention_reference =
      o.max_age_from.empty() ? newest : retention_reference(o.max_age_from, o.time_unit);
  r.retention_cutoff = retention_cutoff(r.retention_reference, o.max_age_days, o.time_unit);
  const int64_t cutoff = r.retention_cutoff;
  for (Interactions& part : d.parts) {
    offset_t w = 0;
    for (offset_t k = 0; k < part.size(); ++k) {
      if (part.times[k] < cutoff) continue;
      part.users[w] = part.users[k];
      part.items[w] = part.items[k];
      part.weights[w] = part.weights[k];
      part.times[w] = part.times[k];
      ++w;
    }
    r.retention_dropped += part.size() - w;
    part.users.resize(w);
    part.items.resize(w);
    part.weights.resize(w);
    part.times.resize(w);
  }
  if (d.parts.front().size() == 0)
    fail("{}: data.max_age_days {} drops every interaction: none is at or after the cutoff {} "
         "({} days before {}; the newest is {}); raise data.max_age_days or change "
         "data.max_age_from",
         source, o.max_age_days, cutoff, o.max_age_days, r.retention_reference,
         newest);
}

}  // namespace recforge::data
