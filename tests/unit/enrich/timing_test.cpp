// When an enriched notification may go out: expiry, start, windows, quiet hours, critical.

#include <catch2/catch.hpp>

#include "enrich/timing.hpp"
#include "herald/common/time.hpp"

using herald::consumers::enrich::DecideTiming;
using herald::consumers::enrich::TimingDecision;
using Kind = TimingDecision::Kind;

namespace {

herald::TimePoint At(const char* s) { return *herald::ParseRfc3339(s); }

const herald::schema::EventTypeInfo& Type(const char* name) {
  static auto registry = herald::schema::Registry::Load();
  return *registry->Find(name);
}

herald::model::Delivery Delivery(const char* type, const char* created, const char* tz) {
  herald::model::Delivery d;
  d.request.event_type = type;
  d.request.created = At(created);
  d.request.priority = herald::model::Priority::kLow;
  d.timezone = tz;
  return d;
}

}  // namespace

TEST_CASE("marketing waits for the type's 10:00-21:00 window in the user's zone", "[timing]") {
  auto d = Delivery("promo.new_releases", "2026-11-21T02:00:00Z", "Europe/Moscow");  // 05:00 in Moscow
  auto t = DecideTiming(d, Type("promo.new_releases"), At("2026-11-21T02:00:00Z"));
  REQUIRE(t.kind == Kind::kPark);
  CHECK(herald::FormatRfc3339(t.due) == "2026-11-21T07:00:00.000Z");
  // Inside the window: now.
  CHECK(DecideTiming(d, Type("promo.new_releases"), At("2026-11-21T08:00:00Z")).kind == Kind::kNow);
  // The event's own window wins over the type's.
  d.request.deliver_window = herald::model::Window{"06:00", "07:00"};
  t = DecideTiming(d, Type("promo.new_releases"), At("2026-11-21T02:00:00Z"));
  REQUIRE(t.kind == Kind::kPark);
  CHECK(herald::FormatRfc3339(t.due) == "2026-11-21T03:00:00.000Z");
}

TEST_CASE("start_dt defers, also for critical types", "[timing]") {
  auto d = Delivery("user.password_reset", "2026-11-21T10:00:00Z", "UTC");
  d.request.not_before = At("2026-11-21T10:20:00Z");
  auto t = DecideTiming(d, Type("user.password_reset"), At("2026-11-21T10:00:00Z"));
  REQUIRE(t.kind == Kind::kPark);
  CHECK(herald::FormatRfc3339(t.due) == "2026-11-21T10:20:00.000Z");
  CHECK(t.reason == "start_dt");
}

TEST_CASE("quiet hours hold normal and low, not high or critical", "[timing]") {
  auto d = Delivery("comment.liked", "2026-11-21T20:30:00Z", "Europe/Moscow");  // 23:30 in Moscow
  d.quiet_hours = herald::model::Window{"22:00", "08:00"};
  d.request.priority = herald::model::Priority::kNormal;
  auto t = DecideTiming(d, Type("comment.liked"), At("2026-11-21T20:30:00Z"));
  REQUIRE(t.kind == Kind::kPark);
  CHECK(herald::FormatRfc3339(t.due) == "2026-11-22T05:00:00.000Z");
  d.request.priority = herald::model::Priority::kHigh;
  CHECK(DecideTiming(d, Type("comment.liked"), At("2026-11-21T20:30:00Z")).kind == Kind::kNow);
  auto reset = Delivery("user.password_reset", "2026-11-21T20:30:00Z", "Europe/Moscow");
  reset.quiet_hours = d.quiet_hours;
  reset.request.priority = herald::model::Priority::kNormal;
  CHECK(DecideTiming(reset, Type("user.password_reset"), At("2026-11-21T20:30:00Z")).kind == Kind::kNow);
  // Malformed quiet hours from the user service are ignored, not fatal.
  d.request.priority = herald::model::Priority::kNormal;
  d.quiet_hours = herald::model::Window{"late", "early"};
  CHECK(DecideTiming(d, Type("comment.liked"), At("2026-11-21T20:30:00Z")).kind == Kind::kNow);
}

TEST_CASE("stale notifications expire: expires_dt, the type's max_age, a window after expiry", "[timing]") {
  auto reset = Delivery("user.password_reset", "2026-11-21T10:00:00Z", "UTC");  // max_age 1h
  CHECK(DecideTiming(reset, Type("user.password_reset"), At("2026-11-21T10:59:00Z")).kind == Kind::kNow);
  auto t = DecideTiming(reset, Type("user.password_reset"), At("2026-11-21T11:00:00Z"));
  CHECK(t.kind == Kind::kExpire);
  CHECK(t.reason == "not delivered by 2026-11-21T11:00:00.000Z");
  auto promo = Delivery("promo.new_releases", "2026-11-21T02:00:00Z", "Europe/Moscow");
  promo.request.expires_at = At("2026-11-21T06:00:00Z");  // before the window opens at 07:00Z
  t = DecideTiming(promo, Type("promo.new_releases"), At("2026-11-21T02:00:00Z"));
  CHECK(t.kind == Kind::kExpire);
  CHECK(t.reason.find("after it expires") != std::string::npos);
}

TEST_CASE("an unknown time zone is treated as UTC", "[timing]") {
  auto d = Delivery("promo.new_releases", "2026-11-21T02:00:00Z", "Mars/Olympus_Mons");
  auto t = DecideTiming(d, Type("promo.new_releases"), At("2026-11-21T02:00:00Z"));
  REQUIRE(t.kind == Kind::kPark);
  CHECK(herald::FormatRfc3339(t.due) == "2026-11-21T10:00:00.000Z");
}
