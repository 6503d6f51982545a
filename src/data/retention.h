#pragma once
/// @file retention.h
/// Retention (`data.max_age_days`): interactions older than a cutoff are dropped from every
/// input part after the ids are numbered and before any cleaning, so a user or item left
/// without interactions vanishes as if it had never been in the files.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace recforge::data {

struct Loaded;
struct LoadOptions;

/// Unit of the timestamps (`data.time_unit`).
enum class TimeUnit { kSeconds, kMilliseconds, kMicroseconds, kDays };

/// The unit named by `data.time_unit` ("seconds", "milliseconds", "microseconds", "days").
TimeUnit time_unit_from(const std::string& name);
/// Timestamp units in one day (86400 for seconds, 1 for days).
int64_t units_per_day(TimeUnit unit);

/// Days from 1970-01-01 to the UTC date `v` ("YYYY-MM-DD", a day of the proleptic Gregorian
/// calendar); nullopt for anything else (another shape, or a day that does not exist such as
/// 2023-02-29). The one reading of a date, for retention_reference and config::check.
std::optional<int64_t> utc_date_days(std::string_view v);

/// The reference moment named by `data.max_age_from`, in `unit`: an integer is a timestamp as it
/// is; a UTC date YYYY-MM-DD is the start of that day (00:00:00 UTC). Throws recforge::Error
/// naming data.max_age_from for anything else (such as 2024-02-30).
int64_t retention_reference(const std::string& max_age_from, TimeUnit unit);

/// The cutoff `reference - max_age_days` days in `unit`; the smallest int64 when that would
/// overflow (nothing is old enough to drop).
int64_t retention_cutoff(int64_t reference, int64_t max_age_days, TimeUnit unit);

/// With options.max_age_days > 0: drops from every part of `d` the interactions with a
/// timestamp before the cutoff (an interaction exactly at the cutoff is kept), where the
/// reference is options.max_age_from or, when that is empty, the newest timestamp of all parts.
/// Records max_age_days, reference, cutoff and the number dropped in d.report. `source` names
/// the data in errors: every part must have timestamps, and the first part must keep at least
/// one interaction. Does nothing with max_age_days 0.
void apply_retention(Loaded& d, const LoadOptions& options, const std::string& source);

}  // namespace recforge::data
