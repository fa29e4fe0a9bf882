#include "herald/timing/window.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "herald/common/errors.hpp"

namespace herald::timing {
namespace {

using std::chrono::seconds;

constexpr seconds kDay{24 * 60 * 60};
constexpr int kMinutesPerDay = 24 * 60;

std::string Quote(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// "HH:MM" -> minutes since midnight; nullopt when malformed or out of range.
std::optional<int> ParseTimeOfDay(std::string_view text, bool allow_midnight_end) {
  if (text.size() != 5 || text[2] != ':' || !IsDigit(text[0]) || !IsDigit(text[1]) || !IsDigit(text[3]) ||
      !IsDigit(text[4])) {
    return std::nullopt;
  }
  const int hour = (text[0] - '0') * 10 + (text[1] - '0');
  const int minute = (text[3] - '0') * 10 + (text[4] - '0');
  if (allow_midnight_end && hour == 24 && minute == 0) return kMinutesPerDay;
  if (hour > 23 || minute > 59) return std::nullopt;
  return hour * 60 + minute;
}

void Validate(const LocalWindow& window, std::string_view what) {
  if (window.from_min < 0 || window.from_min >= kMinutesPerDay || window.to_min < 0 ||
      window.to_min > kMinutesPerDay) {
    throw InvalidInput(std::string(what) + " {from_min=" + std::to_string(window.from_min) +
                       ", to_min=" + std::to_string(window.to_min) +
                       "} is out of range (from_min 0..1439, to_min 0..1440); build it with ParseWindow()");
  }
}

// A half-open range of local time of day, [begin, end), in seconds since local midnight.
struct Span {
  seconds begin;
  seconds end;
};
// Sorted, disjoint, non-empty spans within [0, 24h): the local times of any day that qualify.
using DaySpans = std::vector<Span>;

DaySpans Spans(const LocalWindow& window) {
  const seconds from = std::chrono::minutes(window.from_min);
  const seconds to = std::chrono::minutes(window.to_min);
  if (from == to) return {{seconds(0), kDay}};
  if (from < to) return {{from, to}};
  DaySpans out;  // overnight: the end of the morning, then the evening
  if (to > seconds(0)) out.push_back({seconds(0), to});
  out.push_back({from, kDay});
  return out;
}

// `spans` minus `holes`; both sorted and disjoint, and so is the result.
DaySpans Subtract(const DaySpans& spans, const DaySpans& holes) {
  DaySpans out;
  for (const Span& span : spans) {
    seconds cursor = span.begin;
    for (const Span& hole : holes) {
      if (hole.end <= cursor || hole.begin >= span.end) continue;
      if (hole.begin > cursor) out.push_back({cursor, hole.begin});
      cursor = hole.end;
    }
    if (cursor < span.end) out.push_back({cursor, span.end});
  }
  return out;
}

// The first local time >= from whose time of day is in `spans` (not empty). Local time
// here is a plain timeline with 24-hour days; gaps and repeats are the caller's business.
date::local_seconds NextLocal(date::local_seconds from, const DaySpans& spans) {
  const date::local_days day = date::floor<date::days>(from);
  const seconds into_day = from - day;
  for (const Span& span : spans) {
    if (into_day < span.end) return day + std::max(span.begin, into_day);
  }
  return day + date::days(1) + spans.front().begin;
}

}  // namespace

LocalWindow ParseWindow(std::string_view from, std::string_view to) {
  const auto fail = [&](std::string_view which, std::string_view value, std::string_view expected) {
    throw InvalidInput("local time window " + Quote(from) + "-" + Quote(to) + ": " + std::string(which) +
                       " " + Quote(value) + " is not a time of day (expected " + std::string(expected) + ")");
  };
  const std::optional<int> from_min = ParseTimeOfDay(from, false);
  if (!from_min) fail("from", from, "HH:MM from 00:00 to 23:59; 24:00 is allowed only as the end");
  const std::optional<int> to_min = ParseTimeOfDay(to, true);
  if (!to_min) fail("to", to, "HH:MM from 00:00 to 23:59, or 24:00");
  return LocalWindow{*from_min, *to_min};
}

const date::time_zone* FindZone(std::string_view name) noexcept {
  if (name.empty()) return nullptr;
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    // Unknown name (std::runtime_error), or a tz database that cannot be read: the caller
    // decides what an unusable zone means (reject the request, fall back to a default).
    return nullptr;
  }
}

std::chrono::sys_seconds FirstAllowed(std::chrono::sys_seconds t, const date::time_zone* tz,
                                      const std::optional<LocalWindow>& allowed,
                                      const std::optional<LocalWindow>& quiet) {
  if (tz == nullptr) throw InvalidInput("local time window: no time zone given");
  if (allowed) Validate(*allowed, "delivery window");
  if (quiet) Validate(*quiet, "quiet hours");

  DaySpans spans = allowed ? Spans(*allowed) : DaySpans{{seconds(0), kDay}};
  if (quiet) {
    // Quiet hours yield to the window when they would leave nothing of it.
    DaySpans narrowed = Subtract(spans, Spans(*quiet));
    if (!narrowed.empty()) spans = std::move(narrowed);
  }
  if (spans.size() == 1 && spans.front().begin == seconds(0) && spans.front().end == kDay) return t;

  // Walk the zone's periods of constant UTC offset. Inside one, local time is UTC + offset,
  // so a candidate found on the local timeline is real if it maps back inside the period;
  // otherwise the offset changes first and the search continues in the next period. This
  // is what evaluates windows on real instants: local times in a gap are never produced,
  // repeated ones are produced once per period. Terminates: `spans` is not empty, so
  // every day has a qualifying local time, and past the last period of the tz data (which
  // ends in the year 32767; get_info() then keeps returning it) its offset just continues.
  // The comparison is made in UTC: adding an offset to that far end could overflow.
  std::chrono::sys_seconds from = t;
  date::sys_info period = tz->get_info(from);
  while (true) {
    const date::local_seconds candidate =
        NextLocal(date::local_seconds{from.time_since_epoch() + period.offset}, spans);
    const std::chrono::sys_seconds instant{candidate.time_since_epoch() - period.offset};
    if (instant < period.end || period.end <= from) return instant;
    from = period.end;
    period = tz->get_info(from);
  }
}

}  // namespace herald::timing
