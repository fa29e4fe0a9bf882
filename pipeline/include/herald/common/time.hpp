#pragma once
// Wall-clock helpers: RFC 3339 parsing/formatting and an injectable clock.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<Clock, std::chrono::milliseconds>;

/// Parses an RFC 3339 timestamp ("2026-11-21T10:00:00Z", "...T10:00:00.123+03:00").
/// Returns nullopt when the text is not a valid RFC 3339 date-time.
std::optional<TimePoint> ParseRfc3339(std::string_view text);

/// Formats as UTC with milliseconds: "2026-11-21T10:00:00.000Z".
std::string FormatRfc3339(TimePoint tp);

TimePoint NowMs();

/// Where a stage's "now" comes from for timing decisions (windows, quiet hours, releasing
/// parked notifications, cron schedules): the system clock, or a file holding one RFC 3339
/// instant, which tests and drills rewrite to move time forward instead of sleeping.
/// Thread-safe.
class TimeSource {
 public:
  /// "system" or "file:/path/to/now". Throws ConfigError for anything else.
  static std::shared_ptr<const TimeSource> FromSpec(const std::string& spec);
  virtual ~TimeSource() = default;
  /// Throws TransientError when a file clock cannot be read or parsed.
  virtual TimePoint Now() const = 0;
};

}  // namespace herald
