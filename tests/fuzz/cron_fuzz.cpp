// Cron expressions: parse arbitrary text, and for each valid one the next occurrences in a
// zone with daylight saving must move strictly forward.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <date/tz.h>

#include "herald/common/errors.hpp"
#include "herald/schedule/cron.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const date::time_zone* zones[] = {date::locate_zone("UTC"), date::locate_zone("Europe/London"),
                                           date::locate_zone("Asia/Kathmandu")};
  if (size == 0) return 0;
  const auto* tz = zones[data[0] % 3];
  std::string_view expr(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    auto cron = herald::schedule::Cron::Parse(expr);
    auto reparsed = herald::schedule::Cron::Parse(cron.Expression());  // the canonical form parses
    (void)reparsed;
    std::chrono::sys_seconds t{std::chrono::seconds(1'795'000'000)};
    for (int i = 0; i < 3; ++i) {
      auto next = cron.Next(t, tz);
      if (!next) break;
      if (*next <= t) __builtin_trap();
      t = *next;
    }
  } catch (const herald::InvalidInput&) {
  }
  return 0;
}
