#pragma once
// Local-time delivery windows and quiet hours, evaluated in the recipient's IANA time zone.
// Pure functions: no I/O, no clock. All of them are safe to call from several threads.
//
// A LocalWindow is a daily range of local wall-clock time [from, to), in minutes since
// local midnight:
//   - from < to: the same day ("10:00"-"21:00"; "00:00"-"24:00" is the whole day);
//   - from > to: overnight, across midnight ("23:00"-"08:00" = 23:00-24:00 and 00:00-08:00);
//   - from == to: the whole day.
// `to` is exclusive: with a 10:00-21:00 window, 21:00 local is outside and the next
// allowed instant is 10:00 the next day. A notification may be delivered at an instant
// whose local time is inside the delivery window (if any) and outside the quiet hours
// (if any).
//
// Daylight saving. Windows are evaluated on real instants: an instant qualifies when its
// local wall time (UTC + the zone's offset at that instant) is inside the window. This is
// the rule cron.hpp uses for periodic schedules, and it gives the same answer as cron.hpp's
// fixed-time rule at a window edge:
//   - spring forward (local times in the gap do not exist): an edge inside the gap takes
//     effect at the first instant after the gap. A window 02:30-04:00 on a day New York
//     jumps 02:00 EST -> 03:00 EDT opens at 03:00 EDT (07:00Z); quiet hours ending at
//     02:30 end at 03:00 EDT. A window lying entirely inside the gap (02:00-02:30) has no
//     instant that day and opens on the next day.
//   - fall back (local times repeat): a repeated local time inside the window is allowed
//     at both occurrences, and a repeated time inside the quiet hours is quiet at both.
//     The window may therefore reopen for the repeated stretch; that is harmless, because
//     FirstAllowed returns the earliest qualifying instant and a notification is released
//     once. An edge at a repeated local time first takes effect at its first (earlier,
//     daylight-time) occurrence.
// Zones with 30- and 45-minute offsets (Asia/Kolkata, Asia/Kathmandu) and 30-minute
// daylight-saving shifts (Australia/Lord_Howe) need nothing special.
//
// Quiet hours never block a notification forever: when the quiet hours cover all of the
// delivery window (window 10:00-21:00, quiet 09:00-22:00; or quiet hours from == to with
// no window), they are ignored and FirstAllowed returns the first instant inside the
// delivery window (t itself when there is no window). The decision depends only on the
// two windows, not on the day, so it is the same every day.
//
// Limitation (as in cron.hpp): with USE_OS_TZDB the tz library reads only the explicit
// transitions of /usr/share/zoneinfo, so daylight saving after 2037 is not modelled.

#include <chrono>
#include <optional>
#include <string_view>

#include <date/tz.h>

namespace herald::timing {

/// Minutes since local midnight; [from_min, to_min). from_min is 0..1439, to_min 0..1440.
/// from_min > to_min is overnight (22:00-08:00); from_min == to_min is the whole day.
struct LocalWindow {
  int from_min = 0;
  int to_min = 0;

  bool operator==(const LocalWindow&) const = default;
};

/// Parses "HH:MM" bounds: 00:00..23:59 for both, and "24:00" also allowed as `to`
/// ("18:00"-"24:00" runs to midnight). Exactly two digits each side of the colon.
/// Throws herald::InvalidInput naming the bad value, e.g.
/// `delivery window "10:00"-"25:00": to "25:00" is not a time of day (expected HH:MM ...)`.
LocalWindow ParseWindow(std::string_view from, std::string_view to);

/// The IANA zone called `name` ("Europe/Moscow", "Asia/Kathmandu", links such as
/// "US/Eastern"), or nullptr for an unknown or empty name. Never throws (a time zone
/// database that cannot be loaded also gives nullptr). The pointer stays valid for the
/// life of the process.
const date::time_zone* FindZone(std::string_view name) noexcept;

/// The first instant >= t at which the local time in `tz` is inside `allowed` (if given)
/// and outside `quiet` (if given), under the daylight-saving and quiet-hours rules above.
/// Returns t itself when t already qualifies, and t when neither window is given.
/// `tz` must not be null, and a window's minutes must be in the ranges above (from_min
/// 0..1439, to_min 0..1440); otherwise throws herald::InvalidInput. Get `tz` from FindZone().
std::chrono::sys_seconds FirstAllowed(std::chrono::sys_seconds t, const date::time_zone* tz,
                                      const std::optional<LocalWindow>& allowed,
                                      const std::optional<LocalWindow>& quiet);

}  // namespace herald::timing
