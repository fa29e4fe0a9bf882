#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "herald/common/errors.hpp"
#include "herald/common/time.hpp"
#include "herald/timing/window.hpp"

// Every expected instant below is written out by hand and was checked with zdump and
// `date -u -d 'TZ="Zone" 2026-11-22 10:00'`, never computed by the code under test.
// Transitions used (zdump -v):
//   America/New_York     2026-03-08T07:00:00Z 01:59:59 EST -> 03:00 EDT (gap 02:00-03:00)
//                        2026-11-01T06:00:00Z 01:59:59 EDT -> 01:00 EST (01:00-02:00 twice)
//   Australia/Lord_Howe  2026-04-04T15:00:00Z 01:59:59 +11 -> 01:30 +1030 (01:30-02:00 twice)
//                        2026-10-03T15:30:00Z 01:59:59 +1030 -> 02:30 +11 (gap 02:00-02:30)

using herald::timing::FindZone;
using herald::timing::FirstAllowed;
using herald::timing::LocalWindow;
using herald::timing::ParseWindow;

namespace {

std::chrono::sys_seconds At(std::string_view rfc3339) {
  auto tp = herald::ParseRfc3339(rfc3339);
  REQUIRE(tp);
  return std::chrono::time_point_cast<std::chrono::seconds>(*tp);
}

std::string Utc(std::chrono::sys_seconds t) {
  return date::format("%FT%TZ", t);
}

const date::time_zone* Zone(std::string_view name) {
  const date::time_zone* tz = FindZone(name);
  REQUIRE(tz != nullptr);
  return tz;
}

std::optional<LocalWindow> W(std::string_view from, std::string_view to) {
  return ParseWindow(from, to);
}

// FirstAllowed from `t` (UTC RFC 3339), as UTC RFC 3339 text.
std::string First(std::string_view zone, std::string_view t, const std::optional<LocalWindow>& allowed,
                  const std::optional<LocalWindow>& quiet = std::nullopt) {
  return Utc(FirstAllowed(At(t), Zone(zone), allowed, quiet));
}

std::string ParseError(std::string_view from, std::string_view to) {
  try {
    ParseWindow(from, to);
  } catch (const herald::InvalidInput& e) {
    return e.what();
  }
  return "no error";
}

const std::optional<LocalWindow> kMarketing = LocalWindow{10 * 60, 21 * 60};
const std::optional<LocalWindow> kNone = std::nullopt;

}  // namespace

TEST_CASE("window: ParseWindow", "[timing]") {
  CHECK(ParseWindow("10:00", "21:00") == LocalWindow{600, 1260});
  CHECK(ParseWindow("23:00", "08:00") == LocalWindow{1380, 480});
  CHECK(ParseWindow("00:00", "00:00") == LocalWindow{0, 0});
  CHECK(ParseWindow("18:30", "24:00") == LocalWindow{1110, 1440});
  CHECK(ParseWindow("23:59", "00:01") == LocalWindow{1439, 1});
}

TEST_CASE("window: ParseWindow errors name the bad value", "[timing]") {
  CHECK(ParseError("10:00", "25:00") ==
        "local time window \"10:00\"-\"25:00\": to \"25:00\" is not a time of day "
        "(expected HH:MM from 00:00 to 23:59, or 24:00)");
  CHECK(ParseError("24:00", "08:00") ==
        "local time window \"24:00\"-\"08:00\": from \"24:00\" is not a time of day "
        "(expected HH:MM from 00:00 to 23:59; 24:00 is allowed only as the end)");
  for (std::string_view bad : {"10:60", "9:00", "09:0", "10:00 ", " 10:00", "", "ab:cd", "10-00", "1000",
                               "24:01", "-1:00", "10:00:00", "+9:00"}) {
    INFO("value " << bad);
    const std::string from_error = ParseError(bad, "21:00");
    CHECK_THAT(from_error, Catch::Contains("from \"" + std::string(bad) + "\" is not a time of day"));
    const std::string to_error = ParseError("10:00", bad);
    CHECK_THAT(to_error, Catch::Contains("to \"" + std::string(bad) + "\" is not a time of day"));
  }
  CHECK_THROWS_AS(ParseWindow("10:00", "99:99"), herald::InvalidInput);
}

TEST_CASE("window: FindZone", "[timing]") {
  REQUIRE(FindZone("Asia/Kathmandu") != nullptr);
  CHECK(FindZone("Asia/Kathmandu")->name() == "Asia/Kathmandu");
  CHECK(FindZone("Europe/Moscow") == FindZone("Europe/Moscow"));
  CHECK(FindZone("Mars/Olympus_Mons") == nullptr);
  CHECK(FindZone("") == nullptr);
  CHECK(FindZone("europe/moscow") == nullptr);  // names are case-sensitive
  CHECK(FindZone("../../etc/passwd") == nullptr);
}

TEST_CASE("window: 10:00-21:00 opens at 10:00 local in every kind of zone", "[timing]") {
  struct Case {
    std::string_view zone;
    std::string_view at_0600;    // 2026-11-22 06:00 local: before the window
    std::string_view at_1000;    // 2026-11-22 10:00 local: the window opens
    std::string_view at_2059;    // 20:59 local: still inside
    std::string_view at_2100;    // 21:00 local: closed
    std::string_view next_1000;  // 2026-11-23 10:00 local
  };
  const Case cases[] = {
      {"Europe/Kaliningrad", "2026-11-22T04:00:00Z", "2026-11-22T08:00:00Z", "2026-11-22T18:59:00Z",
       "2026-11-22T19:00:00Z", "2026-11-23T08:00:00Z"},
      {"Europe/Moscow", "2026-11-22T03:00:00Z", "2026-11-22T07:00:00Z", "2026-11-22T17:59:00Z",
       "2026-11-22T18:00:00Z", "2026-11-23T07:00:00Z"},
      {"Asia/Vladivostok", "2026-11-21T20:00:00Z", "2026-11-22T00:00:00Z", "2026-11-22T10:59:00Z",
       "2026-11-22T11:00:00Z", "2026-11-23T00:00:00Z"},
      {"Asia/Kolkata", "2026-11-22T00:30:00Z", "2026-11-22T04:30:00Z", "2026-11-22T15:29:00Z",
       "2026-11-22T15:30:00Z", "2026-11-23T04:30:00Z"},
      {"Asia/Kathmandu", "2026-11-22T00:15:00Z", "2026-11-22T04:15:00Z", "2026-11-22T15:14:00Z",
       "2026-11-22T15:15:00Z", "2026-11-23T04:15:00Z"},
      {"America/New_York", "2026-11-22T11:00:00Z", "2026-11-22T15:00:00Z", "2026-11-23T01:59:00Z",
       "2026-11-23T02:00:00Z", "2026-11-23T15:00:00Z"},
      // Lord Howe is on daylight time (+11) in November.
      {"Australia/Lord_Howe", "2026-11-21T19:00:00Z", "2026-11-21T23:00:00Z", "2026-11-22T09:59:00Z",
       "2026-11-22T10:00:00Z", "2026-11-22T23:00:00Z"},
  };
  for (const Case& c : cases) {
    INFO("zone " << c.zone);
    CHECK(First(c.zone, c.at_0600, kMarketing) == c.at_1000);
    CHECK(First(c.zone, c.at_1000, kMarketing) == c.at_1000);  // inside: t itself
    CHECK(First(c.zone, c.at_2059, kMarketing) == c.at_2059);
    CHECK(First(c.zone, c.at_2100, kMarketing) == c.next_1000);  // `to` is exclusive
  }
  // Seconds are kept: Kathmandu 09:59:30 waits 30 s, 12:34:56 is returned as is.
  CHECK(First("Asia/Kathmandu", "2026-11-22T04:14:30Z", kMarketing) == "2026-11-22T04:15:00Z");
  CHECK(First("Asia/Kathmandu", "2026-11-22T06:49:56Z", kMarketing) == "2026-11-22T06:49:56Z");
}

TEST_CASE("window: America/New_York spring forward 2026-03-08", "[timing]") {
  // 23-hour day: 10:00 EDT is 14:00Z, one hour earlier in UTC than the day before.
  CHECK(First("America/New_York", "2026-03-07T02:00:00Z", kMarketing) == "2026-03-07T15:00:00Z");
  CHECK(First("America/New_York", "2026-03-08T02:00:00Z", kMarketing) == "2026-03-08T14:00:00Z");
  CHECK(First("America/New_York", "2026-03-08T05:00:00Z", kMarketing) == "2026-03-08T14:00:00Z");
  // A window opening inside the gap (02:30 does not exist) opens when the gap ends.
  CHECK(First("America/New_York", "2026-03-08T05:00:00Z", W("02:30", "04:00")) == "2026-03-08T07:00:00Z");
  CHECK(First("America/New_York", "2026-03-08T06:59:59Z", W("02:30", "04:00")) == "2026-03-08T07:00:00Z");
  CHECK(First("America/New_York", "2026-03-08T07:30:00Z", W("02:30", "04:00")) == "2026-03-08T07:30:00Z");
  // A window entirely inside the gap has no instant that day: next day 02:00 EDT.
  CHECK(First("America/New_York", "2026-03-08T05:00:00Z", W("02:00", "02:30")) == "2026-03-09T06:00:00Z");
  // Quiet hours ending inside the gap end when the gap ends.
  CHECK(First("America/New_York", "2026-03-08T04:30:00Z", kNone, W("23:00", "02:30")) ==
        "2026-03-08T07:00:00Z");
}

TEST_CASE("window: America/New_York fall back 2026-11-01", "[timing]") {
  // 25-hour day: from 21:00 EDT on Oct 31 to 10:00 EST on Nov 1.
  CHECK(First("America/New_York", "2026-11-01T01:00:00Z", kMarketing) == "2026-11-01T15:00:00Z");
  CHECK(First("America/New_York", "2026-11-01T04:00:00Z", kMarketing) == "2026-11-01T15:00:00Z");
  // The repeated hour is evaluated on real instants: a window 01:00-01:30 is open at
  // 01:00-01:30 EDT (05:00-05:30Z) and again at 01:00-01:30 EST (06:00-06:30Z).
  CHECK(First("America/New_York", "2026-11-01T04:00:00Z", W("01:00", "01:30")) == "2026-11-01T05:00:00Z");
  CHECK(First("America/New_York", "2026-11-01T05:30:00Z", W("01:00", "01:30")) == "2026-11-01T06:00:00Z");
  CHECK(First("America/New_York", "2026-11-01T06:15:00Z", W("01:00", "01:30")) == "2026-11-01T06:15:00Z");
  CHECK(First("America/New_York", "2026-11-01T06:30:00Z", W("01:00", "01:30")) == "2026-11-02T06:00:00Z");
  // Quiet hours 23:00-01:30 end at the first 01:30 (EDT) and are quiet again at 01:00 EST.
  const auto quiet = W("23:00", "01:30");
  CHECK(First("America/New_York", "2026-11-01T03:30:00Z", kNone, quiet) == "2026-11-01T05:30:00Z");
  CHECK(First("America/New_York", "2026-11-01T05:45:00Z", kNone, quiet) == "2026-11-01T05:45:00Z");
  CHECK(First("America/New_York", "2026-11-01T06:15:00Z", kNone, quiet) == "2026-11-01T06:30:00Z");
}

TEST_CASE("window: Australia/Lord_Howe half-hour shifts 2026-04-05 and 2026-10-04", "[timing]") {
  // 2026-04-05: +11 -> +10:30 at 02:00 local; 10:00 is then +10:30 = 23:30Z the day before.
  CHECK(First("Australia/Lord_Howe", "2026-04-04T13:00:00Z", kMarketing) == "2026-04-04T23:30:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-04-04T10:00:00Z", kMarketing) == "2026-04-04T23:30:00Z");
  // 01:30-02:00 happens twice; quiet hours 00:00-01:45 are quiet in both passes.
  const auto quiet = W("00:00", "01:45");
  CHECK(First("Australia/Lord_Howe", "2026-04-04T14:00:00Z", kNone, quiet) == "2026-04-04T14:45:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-04-04T14:50:00Z", kNone, quiet) == "2026-04-04T14:50:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-04-04T15:10:00Z", kNone, quiet) == "2026-04-04T15:15:00Z");

  // 2026-10-04: +10:30 -> +11 at 02:00 local (gap 02:00-02:30); 10:00 is +11 = 23:00Z.
  CHECK(First("Australia/Lord_Howe", "2026-10-03T10:30:00Z", kMarketing) == "2026-10-03T23:00:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-10-03T13:30:00Z", kMarketing) == "2026-10-03T23:00:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-10-03T13:30:00Z", W("02:15", "04:00")) == "2026-10-03T15:30:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-10-03T15:29:00Z", W("02:15", "04:00")) == "2026-10-03T15:30:00Z");
  CHECK(First("Australia/Lord_Howe", "2026-10-03T13:30:00Z", W("02:00", "02:30")) == "2026-10-04T15:00:00Z");
}

TEST_CASE("window: overnight quiet hours", "[timing]") {
  const auto quiet = W("23:00", "08:00");
  // Moscow (+03): 23:30 on Nov 22 is 20:30Z; 08:00 on Nov 23 is 05:00Z.
  CHECK(First("Europe/Moscow", "2026-11-22T20:30:00Z", kNone, quiet) == "2026-11-23T05:00:00Z");
  CHECK(First("Europe/Moscow", "2026-11-23T01:00:00Z", kNone, quiet) == "2026-11-23T05:00:00Z");  // 04:00
  CHECK(First("Europe/Moscow", "2026-11-22T19:59:59Z", kNone, quiet) == "2026-11-22T19:59:59Z");  // 22:59:59
  CHECK(First("Europe/Moscow", "2026-11-23T05:00:00Z", kNone, quiet) == "2026-11-23T05:00:00Z");
  // With the marketing window too, the later of the two edges wins: 10:00 = 07:00Z.
  CHECK(First("Europe/Moscow", "2026-11-22T20:30:00Z", kMarketing, quiet) == "2026-11-23T07:00:00Z");
  // Quiet hours cutting into the window: window 10-21, quiet 09:00-12:00 -> 12:00 = 09:00Z.
  CHECK(First("Europe/Moscow", "2026-11-22T04:00:00Z", kMarketing, W("09:00", "12:00")) ==
        "2026-11-22T09:00:00Z");
  // Quiet hours splitting the window: 10-21 minus 13:00-14:00; at 13:30 wait for 14:00 = 11:00Z.
  CHECK(First("Europe/Moscow", "2026-11-22T10:30:00Z", kMarketing, W("13:00", "14:00")) ==
        "2026-11-22T11:00:00Z");
  // An overnight delivery window (22:00-08:00) in Kolkata: at 10:00 IST wait for 22:00 IST.
  CHECK(First("Asia/Kolkata", "2026-11-22T04:30:00Z", W("22:00", "08:00")) == "2026-11-22T16:30:00Z");
  // A window ending at 24:00: Moscow 23:59:59 is inside, 00:00 waits for 18:00 (15:00Z).
  CHECK(First("Europe/Moscow", "2026-11-22T20:59:59Z", W("18:00", "24:00")) == "2026-11-22T20:59:59Z");
  CHECK(First("Europe/Moscow", "2026-11-22T21:00:00Z", W("18:00", "24:00")) == "2026-11-23T15:00:00Z");
}

TEST_CASE("window: quiet hours covering the whole window yield to the window", "[timing]") {
  const auto quiet = W("09:00", "22:00");
  // Moscow: 07:00 -> 10:00 (07:00Z); inside the window -> t; 21:30 -> next day 10:00.
  CHECK(First("Europe/Moscow", "2026-11-22T04:00:00Z", kMarketing, quiet) == "2026-11-22T07:00:00Z");
  CHECK(First("Europe/Moscow", "2026-11-22T10:00:00Z", kMarketing, quiet) == "2026-11-22T10:00:00Z");
  CHECK(First("Europe/Moscow", "2026-11-22T18:30:00Z", kMarketing, quiet) == "2026-11-23T07:00:00Z");
  // Quiet all day (from == to) and no window: t itself.
  CHECK(First("Europe/Moscow", "2026-11-22T20:30:00Z", kNone, W("00:00", "00:00")) == "2026-11-22T20:30:00Z");
  CHECK(First("Europe/Moscow", "2026-11-22T20:30:00Z", kNone, W("00:00", "24:00")) == "2026-11-22T20:30:00Z");
}

TEST_CASE("window: no restriction, whole-day windows and bad arguments", "[timing]") {
  CHECK(First("America/New_York", "2026-03-08T06:30:00Z", kNone) == "2026-03-08T06:30:00Z");
  CHECK(First("Asia/Kathmandu", "2026-11-22T00:00:00Z", W("07:00", "07:00")) == "2026-11-22T00:00:00Z");
  CHECK(First("Asia/Kathmandu", "2026-11-22T00:00:00Z", W("00:00", "24:00")) == "2026-11-22T00:00:00Z");
  CHECK(First("Etc/UTC", "2026-11-22T21:00:00Z", kMarketing) == "2026-11-23T10:00:00Z");
  // Far beyond the explicit transitions of the tz data the last offset continues.
  CHECK(First("Asia/Kolkata", "2100-01-01T00:00:00Z", kMarketing) == "2100-01-01T04:30:00Z");

  CHECK_THROWS_AS(FirstAllowed(At("2026-11-22T00:00:00Z"), nullptr, kMarketing, std::nullopt),
                  herald::InvalidInput);
  CHECK_THROWS_AS(FirstAllowed(At("2026-11-22T00:00:00Z"), Zone("Europe/Moscow"), LocalWindow{600, 1441},
                               std::nullopt),
                  herald::InvalidInput);
  CHECK_THROWS_AS(FirstAllowed(At("2026-11-22T00:00:00Z"), Zone("Europe/Moscow"), std::nullopt,
                               LocalWindow{-1, 480}),
                  herald::InvalidInput);
  CHECK_THROWS_AS(FirstAllowed(At("2026-11-22T00:00:00Z"), Zone("Europe/Moscow"), LocalWindow{1440, 0},
                               std::nullopt),
                  herald::InvalidInput);
}
