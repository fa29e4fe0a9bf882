#pragma once
// Five-field cron expressions (Vixie cron syntax) evaluated in an IANA time zone.
//
// Syntax: "minute hour day-of-month month day-of-week", fields separated by spaces or tabs.
//   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC,
//   day-of-week 0-7 or SUN-SAT (0 and 7 are both Sunday). Names are case-insensitive.
//   Each field is a comma-separated list of items; an item is `*`, a value `5`, a range
//   `1-5`, or any of those with a step: `*/15`, `10-50/10`, `5/15` (= 5-max/15).
//   Ranges do not wrap (`5-1` is an error). Macros stand alone: @yearly = @annually =
//   "0 0 1 1 *", @monthly = "0 0 1 * *", @weekly = "0 0 * * 0", @daily = @midnight =
//   "0 0 * * *", @hourly = "0 * * * *". Seconds fields, `?`, `L`, `W`, `#` and @reboot are
//   not supported.
//
// Day rule (Vixie cron): when both day-of-month and day-of-week are restricted, a day
// matches if EITHER matches ("0 9 1 * MON": the 1st of the month and every Monday);
// otherwise both must. As in Vixie cron, a day field that starts with `*` (`*`, `*/2`)
// counts as unrestricted.
//
// Daylight saving. The schedule picks local wall-clock times in the time zone; each is
// turned into an instant as follows.
//   - Fixed-time schedules (minute and hour are values, lists or ranges without a step,
//     e.g. "30 2 * * *"):
//       * a local time that does not exist (spring-forward gap) fires once, at the first
//         instant after the gap: 02:30 on a day clocks jump 02:00 -> 03:00 fires at 03:00;
//       * a local time that occurs twice (fall-back) fires once, at its first (earlier,
//         daylight-time) occurrence.
//   - Periodic schedules (minute or hour contains `*` or a step, e.g. "*/15 * * * *",
//     "0 */2 * * *") follow real instants: they fire at every instant whose local time
//     matches, so local times in a gap are skipped and repeated local times fire twice.
//
// Limitation: with USE_OS_TZDB, Howard Hinnant's tz library reads only the explicit
// transitions of /usr/share/zoneinfo and ignores the TZif footer rule. Debian's "fat"
// files list transitions up to 2037, so daylight saving after 2037 is not modelled.
//
// A Cron is an immutable value: copyable, and safe to use from several threads.

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <date/tz.h>

namespace herald::schedule {

class Cron {
 public:
  /// Parses a 5-field expression or a macro. Throws herald::InvalidInput with a message
  /// naming the expression, the field and the problem, e.g.
  /// `cron "61 * * * *": minute 61 is out of range 0-59`.
  static Cron Parse(std::string_view expr);

  /// The first occurrence strictly after `after`, evaluated in local time of `tz` (see the
  /// daylight-saving rule above). Returns nullopt when there is none within the search
  /// horizon of 3000 days (a bit over 8 years: long enough for the longest gap between
  /// leap days, 2096-02-29 -> 2104-02-29), e.g. for "0 0 30 2 *".
  /// `tz` must not be null (throws herald::InvalidInput); get one from date::locate_zone().
  std::optional<std::chrono::sys_seconds> Next(std::chrono::sys_seconds after,
                                               const date::time_zone* tz) const;

  /// The normalized expression: macros expanded, fields separated by one space, names
  /// upper-case ("@daily" -> "0 0 * * *", "0  9 * jan mon" -> "0 9 * JAN MON").
  const std::string& Expression() const noexcept { return expression_; }

 private:
  Cron() = default;

  bool DayMatches(const date::year_month_day& ymd) const;
  /// The first local minute in [from, to) that the fields match.
  std::optional<date::local_seconds> NextLocalMatch(date::local_seconds from, date::local_seconds to) const;

  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // bits 1-31
  std::bitset<13> months_;         // bits 1-12
  std::bitset<7> days_of_week_;    // 0 = Sunday
  bool day_of_month_star_ = false;
  bool day_of_week_star_ = false;
  bool periodic_ = false;  // minute or hour is `*` or stepped: follow real instants
  std::string expression_;
};

}  // namespace herald::schedule
