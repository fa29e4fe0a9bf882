#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "herald/model/records.hpp"

using namespace herald::model;

TEST_CASE("delivery and status records round-trip", "[records]") {
  Delivery d;
  d.request.request_id = "r1";
  d.request.event_id = "e1";
  d.request.event_type = "user.registered";
  d.request.user_id = "u-1";
  d.request.priority = Priority::kHigh;
  d.request.created = *herald::ParseRfc3339("2026-11-21T10:00:00Z");
  d.notification_id = "n1";
  d.channel = "email";
  d.address = "u-1@example.test";
  d.locale = "ru";
  d.vars = {{"first_name", "Ольга"}};
  auto back = DeliveryFromJson(ToJson(d));
  CHECK(back.notification_id == "n1");
  CHECK(back.request.priority == Priority::kHigh);
  CHECK(back.vars["first_name"] == "Ольга");
  CHECK(back.request.created == d.request.created);

  auto s = MakeStatus(d, Status::kSent);
  auto sb = StatusFromJson(ToJson(s));
  CHECK(sb.status == Status::kSent);
  CHECK(sb.user_id == "u-1");
  CHECK(sb.created == d.request.created);
}

TEST_CASE("malformed records are InvalidInput", "[records]") {
  CHECK_THROWS_AS(DeliveryFromJson(nlohmann::json::object()), herald::InvalidInput);
  CHECK_THROWS_AS(StatusFromJson({{"notification_id", "n"}}), herald::InvalidInput);
  auto s = ToJson(StatusRecord{});
  s["status"] = "teleported";
  CHECK_THROWS_AS(StatusFromJson(s), herald::InvalidInput);
}

TEST_CASE("status ranks never let a terminal status be overtaken by an earlier one", "[records]") {
  CHECK(StatusRank(Status::kAccepted) < StatusRank(Status::kSent));
  CHECK(StatusRank(Status::kRetried) < StatusRank(Status::kFailed));
  CHECK(IsTerminal(Status::kSent));
  CHECK_FALSE(IsTerminal(Status::kScheduled));
}

TEST_CASE("dead letters keep the original bytes exactly, even when not UTF-8", "[records]") {
  DeadLetter d;
  d.stage = "plan";
  d.error_class = "invalid_json";
  d.reason = "bad";
  d.origin = {"events.auth.v1", 2, 99};
  d.original = std::string("\xff\xfe{", 3);
  d.at = herald::NowMs();
  auto j = ToJson(d);
  auto back = DeadLetterFromJson(nlohmann::json::parse(j.dump()));
  CHECK(back.original == d.original);
  CHECK(back.origin.offset == 99);
  d.original = "plain text";
  CHECK(DeadLetterFromJson(ToJson(d)).original == "plain text");
}
