#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "herald/model/event.hpp"

using herald::InvalidInput;
using herald::model::ParseEvent;
using herald::model::Priority;

namespace {

const herald::schema::Registry& Reg() {
  static auto registry = herald::schema::Registry::Load();
  return *registry;
}

// The seed projects' incoming model, verbatim in shape.
const char* kSeedEvent = R"({
  "event_type": "user.registered",
  "created_dt": "2026-11-21T10:00:00Z",
  "schedule": "5 4 * * *",
  "start_dt": null,
  "priority": 1,
  "payload": {"user": ["u-1", "u-2"], "content": ["movie-7", 42]}
})";

std::string FieldOf(const std::string& text) {
  try {
    ParseEvent(text, Reg(), std::nullopt);
  } catch (const InvalidInput& e) {
    return e.Field();
  }
  return "<valid>";
}

}  // namespace

TEST_CASE("the seed model is accepted and normalised", "[envelope]") {
  auto e = ParseEvent(kSeedEvent, Reg(), herald::model::Origin{"events.auth.v1", 3, 17});
  CHECK(e.event_type == "user.registered");
  CHECK(e.priority == Priority::kNormal);
  CHECK(e.schedule == std::optional<std::string>("5 4 * * *"));
  CHECK_FALSE(e.start.has_value());
  CHECK(e.users == std::vector<std::string>{"u-1", "u-2"});
  CHECK(e.content == std::vector<std::string>{"movie-7", "42"});
  CHECK(e.source == "auth");  // the type's source when the event names none
  CHECK(e.event_id_derived);
  // Derived ids depend only on where the event was read, so a re-read yields the same id.
  auto again = ParseEvent(kSeedEvent, Reg(), herald::model::Origin{"events.auth.v1", 3, 17});
  auto other = ParseEvent(kSeedEvent, Reg(), herald::model::Origin{"events.auth.v1", 3, 18});
  CHECK(e.event_id == again.event_id);
  CHECK(e.event_id != other.event_id);
}

TEST_CASE("priority is accepted as a name or 0..2", "[envelope]") {
  auto with = [](const std::string& p) {
    return ParseEvent(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00+03:00","priority":)" + p +
                          R"(,"payload":{"user":["u-1"]}})",
                      Reg(), std::nullopt)
        .priority;
  };
  CHECK(with("0") == Priority::kHigh);
  CHECK(with("2") == Priority::kLow);
  CHECK(with("\"high\"") == Priority::kHigh);
  CHECK(with("\"low\"") == Priority::kLow);
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","priority":3,"payload":{"user":["u-1"]}})") == "/priority");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","priority":"urgent","payload":{"user":["u-1"]}})") == "/priority");
}

TEST_CASE("a missing priority takes the event type's default", "[envelope]") {
  auto e = ParseEvent(R"({"event_type":"promo.new_releases","created_dt":"2026-11-21T10:00:00Z","payload":{"segment":{"tags":["premium"]},"content":["movie-1"]}})",
                      Reg(), std::nullopt);
  CHECK(e.priority == Priority::kLow);
  CHECK(e.segment["tags"][0] == "premium");
}

TEST_CASE("invalid events name the offending field", "[envelope]") {
  CHECK(FieldOf("not json") == "");
  CHECK(FieldOf("[1,2]") == "");
  CHECK(FieldOf(R"({"created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"]}})") == "");  // required: reported at the root
  CHECK(FieldOf(R"({"event_type":"user.exploded","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"]}})") == "/event_type");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"yesterday","payload":{"user":["u-1"]}})") == "/created_dt");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-13-21T10:00:00Z","payload":{"user":["u-1"]}})") == "/created_dt");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":[]}})") == "/payload/user");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":[{"id":1}]}})") == "/payload/user/0");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"]},"priorty":1})") == "");
  CHECK(FieldOf(R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"]},"deliver_window":{"from":"25:00","to":"21:00"}})") == "/deliver_window/from");
}

TEST_CASE("an event needs recipients", "[envelope]") {
  CHECK(FieldOf(R"({"event_type":"comment.liked","created_dt":"2026-11-21T10:00:00Z","payload":{"data":{"liked_by":"Ann"}}})") == "/payload");
}

TEST_CASE("each type's payload schema applies", "[envelope][types]") {
  // password reset needs its link
  CHECK(FieldOf(R"({"event_type":"user.password_reset","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"]}})") == "/payload");
  CHECK(FieldOf(R"j({"event_type":"user.password_reset","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"],"data":{"reset_url":"javascript:alert(1)"}}})j") == "/payload/data/reset_url");
  CHECK(FieldOf(R"({"event_type":"user.password_reset","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"],"data":{"reset_url":"https://cinema.example/r/abc"}}})") == "<valid>");
  // an episode release names the episode
  CHECK(FieldOf(R"({"event_type":"episode.released","created_dt":"2026-11-21T10:00:00Z","payload":{"followers_of":"series-42"}})") == "/payload");
  CHECK(FieldOf(R"({"event_type":"episode.released","created_dt":"2026-11-21T10:00:00Z","payload":{"followers_of":"series-42","content":["ep-42-3-1"]}})") == "<valid>");
  CHECK(FieldOf(R"({"event_type":"stats.monthly","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-1"],"data":{"month":"2026-13"}}})") == "/payload/data/month");
}

TEST_CASE("every built-in type is registered with its metadata", "[types]") {
  for (const char* t : {"user.registered", "user.password_reset", "comment.liked", "episode.released",
                        "bookmark.reminder", "promo.new_releases", "stats.monthly"}) {
    INFO(t);
    const auto* info = Reg().Find(t);
    REQUIRE(info != nullptr);
    CHECK_FALSE(info->channels.empty());
    CHECK_FALSE(info->source.empty());
  }
  CHECK(Reg().Find("user.password_reset")->critical);
  CHECK(Reg().Find("promo.new_releases")->marketing);
  CHECK(Reg().Find("user.registered")->default_priority == "high");
}

TEST_CASE("ToJson round-trips through ParseEvent", "[envelope]") {
  auto e = ParseEvent(kSeedEvent, Reg(), herald::model::Origin{"events.auth.v1", 0, 1});
  auto again = ParseEvent(herald::model::ToJson(e).dump(), Reg(), std::nullopt);
  CHECK(again.event_id == e.event_id);
  CHECK(again.created == e.created);
  CHECK(again.users == e.users);
  CHECK(again.priority == e.priority);
}
