#include "herald/schedule/cron.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include "herald/common/errors.hpp"

namespace herald::schedule {
namespace {

// A bit over 8 years: the longest gap between two occurrences of a satisfiable day-of-month
// schedule is between leap days across a non-leap century year (2096-02-29 -> 2104-02-29).
constexpr std::chrono::days kSearchHorizon{3000};

constexpr std::array<std::string_view, 12> kMonthNames{"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct FieldSpec {
  std::string_view name;
  int min;
  int max;
  std::span<const std::string_view> names;  // names[i] stands for min + i
};

constexpr FieldSpec kMinute{"minute", 0, 59, {}};
constexpr FieldSpec kHour{"hour", 0, 23, {}};
constexpr FieldSpec kDayOfMonth{"day-of-month", 1, 31, {}};
constexpr FieldSpec kMonth{"month", 1, 12, kMonthNames};
constexpr FieldSpec kDayOfWeek{"day-of-week", 0, 7, kDayNames};  // 7 is Sunday again

struct Macro {
  std::string_view name;
  std::string_view expansion;
};
constexpr std::array<Macro, 7> kMacros{{{"@yearly", "0 0 1 1 *"},
                                        {"@annually", "0 0 1 1 *"},
                                        {"@monthly", "0 0 1 * *"},
                                        {"@weekly", "0 0 * * 0"},
                                        {"@daily", "0 0 * * *"},
                                        {"@midnight", "0 0 * * *"},
                                        {"@hourly", "0 * * * *"}}};

bool IsSpace(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char Upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string UpperCase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), Upper);
  return out;
}

std::string Quote(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string DescribeChar(char c) {
  if (std::isprint(static_cast<unsigned char>(c))) return std::string("character '") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02X", static_cast<unsigned>(static_cast<unsigned char>(c)));
  return buf;
}

std::vector<std::string_view> SplitFields(std::string_view expr) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < expr.size()) {
    while (i < expr.size() && IsSpace(expr[i])) ++i;
    std::size_t start = i;
    while (i < expr.size() && !IsSpace(expr[i])) ++i;
    if (i > start) fields.push_back(expr.substr(start, i - start));
  }
  return fields;
}

struct ParsedField {
  std::uint64_t bits = 0;  // bit v set when value v is selected
  bool star = false;       // starts with `*`: unrestricted for the Vixie day rule
  bool periodic = false;   // some item is `*` or has a step
};

// Parses one field; every failure names the whole expression, the field and the problem.
class FieldParser {
 public:
  FieldParser(std::string_view expr, const FieldSpec& spec, std::string_view text)
      : expr_(expr), spec_(spec), text_(text) {}

  ParsedField Parse() {
    ParsedField out;
    out.star = !text_.empty() && text_.front() == '*';
    std::size_t start = 0;
    while (true) {
      std::size_t comma = text_.find(',', start);
      std::string_view item = text_.substr(start, comma == std::string_view::npos ? comma : comma - start);
      if (ParseItem(item, out.bits)) out.periodic = true;
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return out;
  }

 private:
  [[noreturn]] void Fail(const std::string& problem) const {
    throw InvalidInput("cron " + Quote(expr_) + ": " + problem);
  }
  std::string InField() const { return " in " + std::string(spec_.name) + " " + Quote(text_); }

  // Returns true when the item is `*` or has a step.
  bool ParseItem(std::string_view item, std::uint64_t& bits) const {
    if (item.empty()) Fail("empty list item" + InField());
    std::size_t pos = 0;
    int lo = spec_.min;
    int hi = spec_.max;
    bool single = false;
    const bool star = item[0] == '*';
    if (star) {
      pos = 1;
    } else {
      std::size_t lo_start = pos;
      lo = ParseValue(item, pos);
      hi = lo;
      single = true;
      if (pos < item.size() && item[pos] == '-') {
        ++pos;
        hi = ParseValue(item, pos);
        single = false;
        if (lo > hi) {
          Fail("range " + Quote(item.substr(lo_start, pos - lo_start)) + " is reversed" + InField() +
               " (ranges do not wrap; write the smaller value first or use a list)");
        }
      }
    }
    int step = 1;
    bool stepped = false;
    if (pos < item.size() && item[pos] == '/') {
      ++pos;
      std::size_t step_start = pos;
      while (pos < item.size() && IsDigit(item[pos])) ++pos;
      std::string_view digits = item.substr(step_start, pos - step_start);
      if (digits.empty()) Fail("expected a step number after '/'" + InField());
      step = ToInt(digits);
      if (step < 1) Fail("step must be at least 1" + InField());
      if (step > spec_.max) {
        Fail("step " + std::string(digits) + " is out of range 1-" + std::to_string(spec_.max) + InField());
      }
      if (single) hi = spec_.max;  // "5/15" means 5-max/15
      stepped = true;
    }
    if (pos < item.size()) Fail("unexpected " + DescribeChar(item[pos]) + InField());
    for (int v = lo; v <= hi; v += step) bits |= std::uint64_t{1} << v;
    return star || stepped;
  }

  // A number or, in month and day-of-week, a three-letter name.
  int ParseValue(std::string_view item, std::size_t& pos) const {
    if (pos >= item.size()) Fail("expected a value after '-'" + InField());
    std::size_t start = pos;
    if (IsDigit(item[pos])) {
      while (pos < item.size() && IsDigit(item[pos])) ++pos;
      std::string_view digits = item.substr(start, pos - start);
      int value = ToInt(digits);
      if (value < spec_.min || value > spec_.max) {
        Fail(std::string(spec_.name) + " " + std::string(digits) + " is out of range " +
             std::to_string(spec_.min) + "-" + std::to_string(spec_.max));
      }
      return value;
    }
    if (IsAlpha(item[pos]) && !spec_.names.empty()) {
      while (pos < item.size() && IsAlpha(item[pos])) ++pos;
      std::string name = UpperCase(item.substr(start, pos - start));
      for (std::size_t i = 0; i < spec_.names.size(); ++i) {
        if (spec_.names[i] == name) return spec_.min + static_cast<int>(i);
      }
      Fail("unknown " + std::string(spec_.name) + " name " + Quote(item.substr(start, pos - start)));
    }
    Fail("unexpected " + DescribeChar(item[pos]) + InField());
  }

  // Saturates: anything past the largest field maximum is out of range anyway.
  static int ToInt(std::string_view digits) {
    int value = 0;
    for (char c : digits) {
      value = value * 10 + (c - '0');
      if (value > 1000) return 1000;
    }
    return value;
  }

  std::string_view expr_;
  const FieldSpec& spec_;
  std::string_view text_;
};

date::local_seconds ToLocal(std::chrono::sys_seconds t, std::chrono::seconds offset) {
  return date::local_seconds{t.time_since_epoch() + offset};
}

std::chrono::sys_seconds ToSys(date::local_seconds t, std::chrono::seconds offset) {
  return std::chrono::sys_seconds{t.time_since_epoch() - offset};
}

}  // namespace

Cron Cron::Parse(std::string_view expr) {
  std::vector<std::string_view> fields = SplitFields(expr);
  if (!fields.empty() && fields.front().starts_with('@')) {
    std::string name(fields.front());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    auto macro = std::find_if(kMacros.begin(), kMacros.end(), [&](const Macro& m) { return m.name == name; });
    if (macro == kMacros.end()) {
      throw InvalidInput("cron " + Quote(expr) + ": unknown macro " + Quote(fields.front()) +
                         " (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)");
    }
    if (fields.size() != 1) {
      throw InvalidInput("cron " + Quote(expr) + ": " + std::string(macro->name) +
                         " must be the whole expression");
    }
    return Parse(macro->expansion);
  }
  if (fields.size() != 5) {
    throw InvalidInput("cron " + Quote(expr) +
                       ": expected 5 fields (minute hour day-of-month month day-of-week), got " +
                       std::to_string(fields.size()));
  }

  Cron cron;
  ParsedField minute = FieldParser(expr, kMinute, fields[0]).Parse();
  ParsedField hour = FieldParser(expr, kHour, fields[1]).Parse();
  ParsedField day_of_month = FieldParser(expr, kDayOfMonth, fields[2]).Parse();
  ParsedField month = FieldParser(expr, kMonth, fields[3]).Parse();
  ParsedField day_of_week = FieldParser(expr, kDayOfWeek, fields[4]).Parse();
  if (day_of_week.bits & (std::uint64_t{1} << 7)) day_of_week.bits |= 1;  // 7 is Sunday

  cron.minutes_ = std::bitset<60>(minute.bits);
  cron.hours_ = std::bitset<24>(hour.bits);
  cron.days_of_month_ = std::bitset<32>(day_of_month.bits);
  cron.months_ = std::bitset<13>(month.bits);
  cron.days_of_week_ = std::bitset<7>(day_of_week.bits & 0x7F);
  cron.day_of_month_star_ = day_of_month.star;
  cron.day_of_week_star_ = day_of_week.star;
  cron.periodic_ = minute.periodic || hour.periodic;
  for (std::string_view field : fields) {
    if (!cron.expression_.empty()) cron.expression_ += ' ';
    cron.expression_ += UpperCase(field);
  }
  return cron;
}

bool Cron::DayMatches(const date::year_month_day& ymd) const {
  bool dom = days_of_month_[static_cast<unsigned>(ymd.day())];
  bool dow = days_of_week_[date::weekday(date::local_days(ymd)).c_encoding()];
  // Vixie cron: if either day field is unrestricted, both must match; otherwise either.
  if (day_of_month_star_ || day_of_week_star_) return dom && dow;
  return dom || dow;
}

std::optional<date::local_seconds> Cron::NextLocalMatch(date::local_seconds from,
                                                        date::local_seconds to) const {
  using std::chrono::hours;
  using std::chrono::minutes;
  // Skips whole months, days and hours that cannot match, so a search over years takes
  // a few thousand steps at most.
  date::local_seconds t = date::ceil<minutes>(from);
  while (t < to) {
    const date::local_days day = date::floor<date::days>(t);
    const date::year_month_day ymd(day);
    if (!months_[static_cast<unsigned>(ymd.month())]) {
      t = date::local_days((ymd.year() / ymd.month() / 1) + date::months(1));
      continue;
    }
    if (!DayMatches(ymd)) {
      t = day + date::days(1);
      continue;
    }
    const auto since_midnight = t - day;
    const int hour = static_cast<int>(std::chrono::duration_cast<hours>(since_midnight).count());
    const int minute = static_cast<int>(std::chrono::duration_cast<minutes>(since_midnight).count() % 60);
    if (!hours_[hour]) {
      int h = hour + 1;
      while (h < 24 && !hours_[h]) ++h;
      t = h < 24 ? day + hours(h) : day + date::days(1);
      continue;
    }
    int m = minute;
    while (m < 60 && !minutes_[m]) ++m;
    if (m == 60) {
      t = day + hours(hour + 1);
      continue;
    }
    t = day + hours(hour) + minutes(m);
    if (t < to) return t;
    break;
  }
  return std::nullopt;
}

std::optional<std::chrono::sys_seconds> Cron::Next(std::chrono::sys_seconds after,
                                                   const date::time_zone* tz) const {
  using std::chrono::seconds;
  if (tz == nullptr) throw InvalidInput("cron " + Quote(expression_) + ": no time zone given");
  const std::chrono::sys_seconds horizon = after + kSearchHorizon;
  // Walk the zone's periods of constant UTC offset. Inside one, local time is just
  // UTC + offset; the daylight-saving rule only matters at the boundaries.
  date::sys_info period = tz->get_info(after);
  while (true) {
    const std::chrono::sys_seconds begin = std::max(period.begin, after + seconds(1));
    const std::chrono::sys_seconds end = std::min(period.end, horizon);
    date::local_seconds from = ToLocal(begin, period.offset);
    if (!periodic_ && begin - period.begin < std::chrono::hours(24)) {
      // After a fall-back the first local times of this period already occurred (and
      // fired) in the previous one; a fixed-time schedule fires only on the first.
      date::sys_info previous = tz->get_info(period.begin - seconds(1));
      if (previous.offset > period.offset) from = std::max(from, ToLocal(period.begin, previous.offset));
    }
    if (begin < end) {
      if (auto t = NextLocalMatch(from, ToLocal(end, period.offset))) return ToSys(*t, period.offset);
    }
    if (period.end >= horizon) return std::nullopt;
    date::sys_info next = tz->get_info(period.end);
    if (!periodic_ && next.offset > period.offset &&
        NextLocalMatch(ToLocal(period.end, period.offset), ToLocal(period.end, next.offset))) {
      // A fixed local time inside the spring-forward gap fires when the gap ends.
      return period.end;
    }
    period = next;
  }
}

}  // namespace herald::schedule
