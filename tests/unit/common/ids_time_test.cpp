#include <catch2/catch.hpp>

#include <regex>

#include "herald/common/ids.hpp"
#include "herald/common/time.hpp"

TEST_CASE("notification ids are deterministic per event, user and channel", "[ids]") {
  auto a = herald::NotificationId("e-1", "u-1", "email");
  CHECK(a == herald::NotificationId("e-1", "u-1", "email"));
  CHECK(a != herald::NotificationId("e-1", "u-1", "sms"));
  CHECK(a != herald::NotificationId("e-1", "u-2", "email"));
  // Joining cannot make two different tuples collide.
  CHECK(herald::DeterministicId({"ab", "c"}) != herald::DeterministicId({"a", "bc"}));
  CHECK(std::regex_match(a, std::regex("^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")));
  CHECK(herald::RandomUuid() != herald::RandomUuid());
}

TEST_CASE("RFC 3339 parsing", "[time]") {
  using herald::ParseRfc3339;
  auto z = ParseRfc3339("2026-11-21T10:00:00Z");
  REQUIRE(z);
  CHECK(ParseRfc3339("2026-11-21T13:00:00+03:00") == z);
  CHECK(ParseRfc3339("2026-11-21T06:30:00-03:30") == z);
  CHECK(ParseRfc3339("2026-11-21T10:00:00.250Z")->time_since_epoch().count() - z->time_since_epoch().count() == 250);
  CHECK(herald::FormatRfc3339(*z) == "2026-11-21T10:00:00.000Z");
  for (const char* bad : {"", "2026-11-21", "2026-11-21T10:00:00", "2026-02-30T10:00:00Z", "2026-11-21T24:00:00Z",
                          "2026-11-21T10:00:00+3:00", "2026-11-21T10:00:00Zjunk", "tomorrow"}) {
    INFO(bad);
    CHECK_FALSE(ParseRfc3339(bad));
  }
}
