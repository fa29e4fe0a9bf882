#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "plan/plan.hpp"

using namespace herald::consumers::plan;

namespace {

herald::model::Event EventWith(std::vector<std::string> users, nlohmann::json segment, std::optional<std::string> followers) {
  herald::model::Event e;
  e.event_id = "e-1";
  e.event_type = "promo.new_releases";
  e.users = std::move(users);
  e.segment = std::move(segment);
  e.followers_of = std::move(followers);
  return e;
}

}  // namespace

TEST_CASE("a fan-out job walks users, then the segment, then followers", "[plan]") {
  auto all = EventWith({"u-1", "u-1", "u-2"}, {{"tags", {"premium"}}}, "series-1");
  CHECK(InitialState(all).phase == "users");
  RecipientPager pager("http://127.0.0.1:1", "http://127.0.0.1:1");
  auto page = pager.Fetch(all, InitialState(all));
  CHECK(page.user_ids == std::vector<std::string>{"u-1", "u-2"});  // duplicates once
  CHECK(page.next.phase == "segment");
  CHECK(page.next.emitted == 2);
  CHECK(InitialState(EventWith({}, nullptr, "series-1")).phase == "followers");
  CHECK(InitialState(EventWith({}, nlohmann::json::object(), std::nullopt)).phase == "segment");
  auto only_users = EventWith({"u-9"}, nullptr, std::nullopt);
  CHECK(pager.Fetch(only_users, InitialState(only_users)).next.phase == "done");
}

TEST_CASE("an unreachable listing is a transient failure, not a lost fan-out", "[plan]") {
  auto e = EventWith({}, nlohmann::json::object(), std::nullopt);
  RecipientPager pager("http://127.0.0.1:1", "http://127.0.0.1:1");
  CHECK_THROWS_AS(pager.Fetch(e, InitialState(e)), herald::TransientError);
}

TEST_CASE("requests carry deterministic ids and the event's timing", "[plan]") {
  auto e = EventWith({"u-1"}, nullptr, std::nullopt);
  e.created = *herald::ParseRfc3339("2026-11-21T10:00:00Z");
  e.start = herald::ParseRfc3339("2026-11-22T10:00:00Z");
  auto a = MakeRequest(e, "u-1");
  auto b = MakeRequest(e, "u-1");
  CHECK(a.request_id == b.request_id);
  CHECK(a.request_id != MakeRequest(e, "u-2").request_id);
  CHECK(a.not_before == e.start);
  CHECK(a.user_id == "u-1");
}
