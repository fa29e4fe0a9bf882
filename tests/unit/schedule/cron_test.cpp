#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "herald/common/errors.hpp"
#include "herald/common/time.hpp"
#include "herald/schedule/cron.hpp"

// Every expected instant below is written out by hand (and was cross-checked against
// Python's zoneinfo), never computed by the code under test.

using herald::schedule::Cron;

namespace {

std::chrono::sys_seconds At(std::string_view rfc3339) {
  auto tp = herald::ParseRfc3339(rfc3339);
  REQUIRE(tp);
  return std::chrono::time_point_cast<std::chrono::seconds>(*tp);
}

std::string Utc(std::optional<std::chrono::sys_seconds> t) {
  return t ? date::format("%FT%TZ", *t) : std::string("none");
}

// The next `n` occurrences after `after`, as UTC RFC 3339 text.
std::vector<std::string> Fires(std::string_view expr, std::string_view after, int n,
                               std::string_view zone = "UTC") {
  Cron cron = Cron::Parse(expr);
  const date::time_zone* tz = date::locate_zone(zone);
  std::vector<std::string> out;
  std::optional<std::chrono::sys_seconds> t = At(after);
  for (int i = 0; i < n && t; ++i) {
    t = cron.Next(*t, tz);
    out.push_back(Utc(t));
  }
  return out;
}

std::string Next(std::string_view expr, std::string_view after, std::string_view zone = "UTC") {
  return Utc(Cron::Parse(expr).Next(At(after), date::locate_zone(zone)));
}

std::string ParseError(std::string_view expr) {
  try {
    Cron::Parse(expr);
  } catch (const herald::InvalidInput& e) {
    return e.what();
  }
  return "no error";
}

using Instants = std::vector<std::string>;

}  // namespace

TEST_CASE("cron: stars, values, lists and ranges", "[cron]") {
  // 2026-01-01 is a Thursday.
  CHECK(Fires("* * * * *", "2026-01-01T00:00:00Z", 2) ==
        Instants{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"});
  CHECK(Next("* * * * *", "2026-01-01T00:00:30Z") ==
        "2026-01-01T00:01:00Z");  // strictly after, on the minute
  CHECK(Fires("5 4 * * *", "2026-01-01T00:00:00Z", 2) ==
        Instants{"2026-01-01T04:05:00Z", "2026-01-02T04:05:00Z"});
  CHECK(Next("5 4 * * *", "2026-01-01T04:05:00Z") == "2026-01-02T04:05:00Z");
  CHECK(Fires("1,5,10 * * * *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-01T00:01:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z",
                 "2026-01-01T01:01:00Z"});
  CHECK(Fires("0 9-11 * * *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z",
                 "2026-01-02T09:00:00Z"});
  CHECK(Fires("0 0 1,15 * *", "2026-01-01T00:00:00Z", 3) ==
        Instants{"2026-01-15T00:00:00Z", "2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z"});
}

TEST_CASE("cron: steps", "[cron]") {
  CHECK(Fires("*/15 * * * *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z",
                 "2026-01-01T01:00:00Z"});
  CHECK(Fires("10-50/10 * * * *", "2026-01-01T00:00:00Z", 6) ==
        Instants{"2026-01-01T00:10:00Z", "2026-01-01T00:20:00Z", "2026-01-01T00:30:00Z",
                 "2026-01-01T00:40:00Z", "2026-01-01T00:50:00Z", "2026-01-01T01:10:00Z"});
  // "5/15" means 5-59/15.
  CHECK(Fires("5/15 * * * *", "2026-01-01T00:00:00Z", 5) ==
        Instants{"2026-01-01T00:05:00Z", "2026-01-01T00:20:00Z", "2026-01-01T00:35:00Z",
                 "2026-01-01T00:50:00Z", "2026-01-01T01:05:00Z"});
  CHECK(Fires("0 */6 * * *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T18:00:00Z",
                 "2026-01-02T00:00:00Z"});
  CHECK(Fires("0 0 1 2-12/5 *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-12-01T00:00:00Z",
                 "2027-02-01T00:00:00Z"});
  CHECK(Fires("0 0 * * */2", "2026-01-01T00:00:00Z", 3) ==  // Sun, Tue, Thu, Sat
        Instants{"2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-06T00:00:00Z"});
}

TEST_CASE("cron: month and day names, day-of-week 7 is Sunday", "[cron]") {
  CHECK(Fires("0 0 1 jan,JUL *", "2026-01-01T00:00:00Z", 2) ==
        Instants{"2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"});
  CHECK(Fires("0 0 1 mar-May *", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z",
                 "2027-03-01T00:00:00Z"});
  CHECK(Fires("0 12 * * MON-fri", "2026-01-02T12:00:00Z", 3) ==  // from a Friday
        Instants{"2026-01-05T12:00:00Z", "2026-01-06T12:00:00Z", "2026-01-07T12:00:00Z"});
  CHECK(Fires("0 0 * * Sat,sun", "2026-01-01T00:00:00Z", 3) ==
        Instants{"2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-10T00:00:00Z"});
  const Instants sundays{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"};
  CHECK(Fires("0 0 * * 0", "2026-01-01T00:00:00Z", 2) == sundays);
  CHECK(Fires("0 0 * * 7", "2026-01-01T00:00:00Z", 2) == sundays);
  CHECK(Fires("0 0 * * SUN", "2026-01-01T00:00:00Z", 2) == sundays);
  CHECK(Fires("0 0 * * 5-7", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z",
                 "2026-01-09T00:00:00Z"});
}

TEST_CASE("cron: macros", "[cron]") {
  struct Case {
    const char* macro;
    const char* expansion;
    const char* next;
  };
  for (const Case& c : {Case{"@yearly", "0 0 1 1 *", "2027-01-01T00:00:00Z"},
                        Case{"@annually", "0 0 1 1 *", "2027-01-01T00:00:00Z"},
                        Case{"@monthly", "0 0 1 * *", "2026-02-01T00:00:00Z"},
                        Case{"@weekly", "0 0 * * 0", "2026-01-04T00:00:00Z"},
                        Case{"@daily", "0 0 * * *", "2026-01-02T00:00:00Z"},
                        Case{"@midnight", "0 0 * * *", "2026-01-02T00:00:00Z"},
                        Case{"@hourly", "0 * * * *", "2026-01-01T01:00:00Z"}}) {
    INFO(c.macro);
    CHECK(Cron::Parse(c.macro).Expression() == c.expansion);
    CHECK(Next(c.macro, "2026-01-01T00:00:00Z") == c.next);
  }
  CHECK(Cron::Parse(" @DAILY\n").Expression() == "0 0 * * *");
}

TEST_CASE("cron: the expression is normalized", "[cron]") {
  CHECK(Cron::Parse("  0\t9  *  jan   mon-fri ").Expression() == "0 9 * JAN MON-FRI");
  CHECK(Cron::Parse("*/15 * * * *").Expression() == "*/15 * * * *");
}

TEST_CASE("cron: day-of-month and day-of-week follow the Vixie rule", "[cron]") {
  // Both restricted: either matches. January 2026: Fridays 2, 9, 16; the 13th is a Tuesday.
  CHECK(Fires("0 0 13 * FRI", "2026-01-01T00:00:00Z", 4) ==
        Instants{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z",
                 "2026-01-16T00:00:00Z"});
  // One of them is `*`: both must match (the `*` one always does).
  CHECK(Fires("0 0 * * FRI", "2026-01-01T00:00:00Z", 3) ==
        Instants{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-16T00:00:00Z"});
  CHECK(Fires("0 0 13 * *", "2026-01-01T00:00:00Z", 2) ==
        Instants{"2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"});
  // A day field starting with `*` counts as unrestricted: odd days that are Mondays.
  CHECK(Fires("0 0 */2 * MON", "2026-01-01T00:00:00Z", 3) ==
        Instants{"2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "2026-02-09T00:00:00Z"});
  // An impossible day-of-month still fires on the day of week when both are restricted.
  CHECK(Next("0 0 30 2 MON", "2026-03-01T00:00:00Z") == "2027-02-01T00:00:00Z");
}

TEST_CASE("cron: leap days and impossible dates", "[cron]") {
  CHECK(Next("0 0 29 2 *", "2026-03-01T00:00:00Z") == "2028-02-29T00:00:00Z");
  CHECK(Next("0 0 29 2 *", "2028-02-29T00:00:00Z") == "2032-02-29T00:00:00Z");
  // 2100 is not a leap year: eight years between leap days, still inside the horizon.
  CHECK(Next("0 0 29 2 *", "2097-01-01T00:00:00Z") == "2104-02-29T00:00:00Z");
  CHECK(Next("0 0 30 2 *", "2026-01-01T00:00:00Z") == "none");
  CHECK(Next("0 0 30 2 *", "2026-01-01T00:00:00Z", "America/New_York") == "none");
  CHECK(Next("0 0 31 4,6,9,11 *", "2026-01-01T00:00:00Z") == "none");
  CHECK(Next("0 0 31 * *", "2026-04-01T00:00:00Z") == "2026-05-31T00:00:00Z");
}

TEST_CASE("cron: @monthly in zones with odd offsets", "[cron][tz]") {
  // Asia/Kathmandu is +05:45 all year.
  CHECK(Fires("@monthly", "2026-01-15T00:00:00Z", 2, "Asia/Kathmandu") ==
        Instants{"2026-01-31T18:15:00Z", "2026-02-28T18:15:00Z"});
  // Australia/Lord_Howe is +11 in summer and +10:30 in winter (a 30-minute shift on
  // 2026-04-05 and 2026-10-04).
  CHECK(Fires("@monthly", "2026-01-15T00:00:00Z", 12, "Australia/Lord_Howe") ==
        Instants{"2026-01-31T13:00:00Z", "2026-02-28T13:00:00Z", "2026-03-31T13:00:00Z",
                 "2026-04-30T13:30:00Z", "2026-05-31T13:30:00Z", "2026-06-30T13:30:00Z",
                 "2026-07-31T13:30:00Z", "2026-08-31T13:30:00Z", "2026-09-30T13:30:00Z",
                 "2026-10-31T13:00:00Z", "2026-11-30T13:00:00Z", "2026-12-31T13:00:00Z"});
}

TEST_CASE("cron: a daily 02:30 across the New York daylight-saving changes", "[cron][tz]") {
  // 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist and fires at 03:00 EDT.
  CHECK(Fires("30 2 * * *", "2026-03-07T00:00:00Z", 3, "America/New_York") ==
        Instants{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"});
  CHECK(Next("30 2 * * *", "2026-03-08T06:59:59Z", "America/New_York") == "2026-03-08T07:00:00Z");
  CHECK(Next("30 2 * * *", "2026-03-08T07:00:00Z", "America/New_York") == "2026-03-09T06:30:00Z");
  // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 02:30 happens once, in EST.
  CHECK(Fires("30 2 * * *", "2026-10-31T00:00:00Z", 3, "America/New_York") ==
        Instants{"2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"});
}

TEST_CASE("cron: fixed times in a repeated or missing hour fire once", "[cron][tz]") {
  // 01:30 happens twice on 2026-11-01 in New York: fire at the first (EDT) one only.
  CHECK(Fires("30 1 * * *", "2026-10-31T12:00:00Z", 2, "America/New_York") ==
        Instants{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"});
  CHECK(Next("30 1 * * *", "2026-11-01T05:30:00Z", "America/New_York") == "2026-11-02T06:30:00Z");
  CHECK(Next("30 1 * * *", "2026-11-01T06:00:00Z", "America/New_York") == "2026-11-02T06:30:00Z");
  // 02:00 (missing) and 03:00 both land on 03:00 EDT: one occurrence.
  CHECK(Fires("0 2,3 * * *", "2026-03-08T06:00:00Z", 3, "America/New_York") ==
        Instants{"2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T07:00:00Z"});
  // Lord Howe: 02:00 jumps to 02:30 on 2026-10-04, and 02:00 falls back to 01:30 on 2026-04-05.
  CHECK(Fires("15 2 * * *", "2026-10-03T12:00:00Z", 2, "Australia/Lord_Howe") ==
        Instants{"2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"});
  CHECK(Fires("45 1 * * *", "2026-04-04T00:00:00Z", 2, "Australia/Lord_Howe") ==
        Instants{"2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"});
}

TEST_CASE("cron: periodic schedules follow real instants across daylight-saving changes", "[cron][tz]") {
  CHECK(Fires("*/30 * * * *", "2026-03-08T06:15:00Z", 3, "America/New_York") ==
        Instants{"2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"});
  CHECK(Fires("*/30 * * * *", "2026-11-01T04:45:00Z", 5, "America/New_York") ==
        Instants{"2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z",
                 "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"});
  // Hourly at :30: the missing 02:30 is skipped, the repeated 01:30 fires twice.
  CHECK(Fires("30 * * * *", "2026-03-08T06:00:00Z", 2, "America/New_York") ==
        Instants{"2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"});
  CHECK(Fires("30 * * * *", "2026-11-01T05:00:00Z", 3, "America/New_York") ==
        Instants{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"});
  CHECK(Fires("*/15 * * * *", "2026-04-04T14:40:00Z", 4, "Australia/Lord_Howe") ==
        Instants{"2026-04-04T14:45:00Z", "2026-04-04T15:00:00Z", "2026-04-04T15:15:00Z",
                 "2026-04-04T15:30:00Z"});
  CHECK(Fires("*/15 * * * *", "2026-10-03T15:00:00Z", 3, "Australia/Lord_Howe") ==
        Instants{"2026-10-03T15:15:00Z", "2026-10-03T15:30:00Z", "2026-10-03T15:45:00Z"});
}

TEST_CASE("cron: invalid expressions name the field and the problem", "[cron]") {
  struct Case {
    std::string expr;
    std::string message;
  };
  const std::vector<Case> cases{
      {"5 4 * *", R"(cron "5 4 * *": expected 5 fields (minute hour day-of-month month day-of-week), got 4)"},
      {"", R"(cron "": expected 5 fields (minute hour day-of-month month day-of-week), got 0)"},
      {"0 0 0 * * *",
       R"(cron "0 0 0 * * *": expected 5 fields (minute hour day-of-month month day-of-week), got 6)"},
      {"61 * * * *", R"(cron "61 * * * *": minute 61 is out of range 0-59)"},
      {"99999999999 * * * *", R"(cron "99999999999 * * * *": minute 99999999999 is out of range 0-59)"},
      {"0 24 * * *", R"(cron "0 24 * * *": hour 24 is out of range 0-23)"},
      {"0 0 0 * *", R"(cron "0 0 0 * *": day-of-month 0 is out of range 1-31)"},
      {"0 0 32 * *", R"(cron "0 0 32 * *": day-of-month 32 is out of range 1-31)"},
      {"0 0 * 13 *", R"(cron "0 0 * 13 *": month 13 is out of range 1-12)"},
      {"0 0 * * 8", R"(cron "0 0 * * 8": day-of-week 8 is out of range 0-7)"},
      {"0 0 * * 1-8", R"(cron "0 0 * * 1-8": day-of-week 8 is out of range 0-7)"},
      {"*/0 * * * *", R"(cron "*/0 * * * *": step must be at least 1 in minute "*/0")"},
      {"*/60 * * * *", R"(cron "*/60 * * * *": step 60 is out of range 1-59 in minute "*/60")"},
      {"0 */ * * *", R"(cron "0 */ * * *": expected a step number after '/' in hour "*/")"},
      {"* * * FOO *", R"(cron "* * * FOO *": unknown month name "FOO")"},
      {"* * * * FUN", R"(cron "* * * * FUN": unknown day-of-week name "FUN")"},
      {"5-1 * * * *",
       R"(cron "5-1 * * * *": range "5-1" is reversed in minute "5-1" (ranges do not wrap; write the smaller value first or use a list))"},
      {"0 0 * * FRI-MON",
       R"(cron "0 0 * * FRI-MON": range "FRI-MON" is reversed in day-of-week "FRI-MON" (ranges do not wrap; write the smaller value first or use a list))"},
      {"1,,2 * * * *", R"(cron "1,,2 * * * *": empty list item in minute "1,,2")"},
      {"1, * * * *", R"(cron "1, * * * *": empty list item in minute "1,")"},
      {"0 0 ,1 * *", R"(cron "0 0 ,1 * *": empty list item in day-of-month ",1")"},
      {"5x * * * *", R"(cron "5x * * * *": unexpected character 'x' in minute "5x")"},
      {"MON * * * *", R"(cron "MON * * * *": unexpected character 'M' in minute "MON")"},
      {"0 0 ? * *", R"(cron "0 0 ? * *": unexpected character '?' in day-of-month "?")"},
      {"*-5 * * * *", R"(cron "*-5 * * * *": unexpected character '-' in minute "*-5")"},
      {"5- * * * *", R"(cron "5- * * * *": expected a value after '-' in minute "5-")"},
      {"0\x01 * * * *", "cron \"0\x01 * * * *\": unexpected byte 0x01 in minute \"0\x01\""},
      {"@reboot",
       R"(cron "@reboot": unknown macro "@reboot" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly))"},
      {"@daily 5", R"(cron "@daily 5": @daily must be the whole expression)"},
  };
  for (const Case& c : cases) {
    INFO(c.expr);
    CHECK(ParseError(c.expr) == c.message);
  }
  CHECK_THROWS_AS(Cron::Parse("61 * * * *"), herald::InvalidInput);
}

TEST_CASE("cron: Next needs a time zone", "[cron]") {
  CHECK_THROWS_AS(Cron::Parse("* * * * *").Next(At("2026-01-01T00:00:00Z"), nullptr), herald::InvalidInput);
}
