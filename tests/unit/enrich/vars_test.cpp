#include <catch2/catch.hpp>

#include "enrich/enrich.hpp"
#include "enrich/enricher.hpp"

using namespace herald::consumers::enrich;
using herald::model::NotificationRequest;
using nlohmann::json;

namespace {

NotificationRequest Req(const std::string& type, json data = json::object(), std::vector<std::string> content = {}) {
  NotificationRequest r;
  r.request_id = "r";
  r.event_id = "e-1";
  r.event_type = type;
  r.user_id = "u-1";
  r.created = *herald::ParseRfc3339("2026-11-21T10:00:00Z");
  r.data = std::move(data);
  r.content = std::move(content);
  return r;
}

const json kUser = {{"user_id", "u-1"}, {"first_name", "Ольга"}, {"last_name", "Иванова"}, {"email", "u-1@example.test"},
                    {"phone", nullptr}, {"telegram_chat_id", 5}, {"push_tokens", json::array()},
                    {"locale", "ru"}, {"timezone", "Asia/Kathmandu"}, {"channels", {"telegram", "email"}},
                    {"marketing_opt_in", false}};

herald::schema::EventTypeInfo Type(std::string name, std::vector<std::string> channels, bool marketing = false) {
  herald::schema::EventTypeInfo t;
  t.name = std::move(name);
  t.channels = std::move(channels);
  t.marketing = marketing;
  return t;
}

}  // namespace

TEST_CASE("the channel follows the user's order within the type's channels", "[enrich]") {
  auto d = Decide(Req("comment.liked"), kUser, Type("comment.liked", {"push", "telegram", "email"}));
  REQUIRE(d.delivery);
  CHECK(d.delivery->channel == "telegram");
  CHECK(d.delivery->address == "5");
  CHECK(d.delivery->fallback == std::vector<std::string>{"email"});
  CHECK(d.delivery->locale == "ru");
  // A type the user's first channel does not serve uses the next one.
  auto e = Decide(Req("user.registered"), kUser, Type("user.registered", {"email"}));
  REQUIRE(e.delivery);
  CHECK(e.delivery->channel == "email");
}

TEST_CASE("a missing contact moves to the next channel; none at all suppresses", "[enrich]") {
  auto user = kUser;
  user["telegram_chat_id"] = nullptr;
  auto d = Decide(Req("comment.liked"), user, Type("comment.liked", {"push", "telegram", "email"}));
  REQUIRE(d.delivery);
  CHECK(d.delivery->channel == "email");
  user["email"] = nullptr;
  auto none = Decide(Req("comment.liked"), user, Type("comment.liked", {"push", "telegram", "email"}));
  CHECK_FALSE(none.delivery);
  CHECK(none.status == herald::model::Status::kSuppressed);
}

TEST_CASE("marketing needs an opt-in, critical types do not", "[enrich]") {
  auto d = Decide(Req("promo.new_releases"), kUser, Type("promo.new_releases", {"email"}, true));
  CHECK_FALSE(d.delivery);
  CHECK(d.reason.find("opted in") != std::string::npos);
  auto opted = kUser;
  opted["marketing_opt_in"] = true;
  CHECK(Decide(Req("promo.new_releases"), opted, Type("promo.new_releases", {"email"}, true)).delivery);
}

TEST_CASE("an opted-out category is suppressed, except for critical types", "[enrich]") {
  auto user = kUser;
  user["opted_out"] = {"social"};
  auto type = Type("comment.liked", {"telegram", "email"});
  type.category = "social";
  auto d = Decide(Req("comment.liked"), user, type);
  CHECK_FALSE(d.delivery);
  CHECK(d.status == herald::model::Status::kSuppressed);
  CHECK(d.reason == "user opted out of social");
  CHECK(d.channel == "telegram");
  user["opted_out"] = {"marketing"};
  CHECK(Decide(Req("comment.liked"), user, type).delivery);  // another category
  auto reset = Type("user.password_reset", {"email"});
  reset.category = "social";
  reset.critical = true;
  user["opted_out"] = {"social"};
  CHECK(Decide(Req("user.password_reset"), user, reset).delivery);
}

TEST_CASE("a campaign's channels restrict the choice, in the user's order", "[enrich]") {
  auto req = Req("comment.liked");
  req.channels = {"email", "push"};
  auto d = Decide(req, kUser, Type("comment.liked", {"push", "telegram", "email"}));
  REQUIRE(d.delivery);
  CHECK(d.delivery->channel == "email");  // telegram comes first for the user, but is not allowed
  CHECK(d.delivery->fallback.empty());    // no push token
  req.channels = {"push"};
  auto none = Decide(req, kUser, Type("comment.liked", {"push", "telegram", "email"}));
  CHECK_FALSE(none.delivery);
  CHECK(none.channel == "push");
  CHECK(none.reason.find("no address") != std::string::npos);
}

TEST_CASE("episode variables come from the movies API in the user's language", "[enrich]") {
  std::map<std::string, json> movies = {
      {"ep-5", {{"movie_id", "ep-5"}, {"title", "Night Shift"}, {"title_ru", "Ночная смена"}, {"season", 2}, {"episode", 5},
                {"url", "https://cinema.example/ep-5"}, {"genres", {"drama"}}}}};
  auto vars = BuildVars(Req("episode.released", json::object(), {"ep-5"}), kUser, movies, nullptr);
  CHECK(vars["series_title"] == "Ночная смена");
  CHECK(vars["season"] == 2);
  CHECK(vars["episode"] == 5);
  CHECK(vars["first_name"] == "Ольга");
  CHECK(MovieIdsNeeded(Req("episode.released", json::object(), {"ep-5", "ep-5"}), nullptr) == std::vector<std::string>{"ep-5"});
}

TEST_CASE("monthly statistics aggregate minutes and genres", "[enrich]") {
  json history = {{"items",
                   {{{"movie_id", "m1"}, {"seconds", 3600}}, {{"movie_id", "m2"}, {"seconds", 1800}},
                    {{"movie_id", "m1"}, {"seconds", 600}}}}};
  std::map<std::string, json> movies = {{"m1", {{"movie_id", "m1"}, {"title", "A"}, {"genres", {"drama", "crime"}}}},
                                        {"m2", {{"movie_id", "m2"}, {"title", "B"}, {"genres", {"comedy"}}}}};
  auto req = Req("stats.monthly", {{"month", "2026-10"}});
  CHECK(MovieIdsNeeded(req, history) == std::vector<std::string>{"m1", "m2"});
  auto vars = BuildVars(req, kUser, movies, history);
  CHECK(vars["month"] == "2026-10");
  CHECK(vars["minutes_watched"] == 100);
  CHECK(vars["titles_watched"] == 2);
  CHECK(vars["top_genres"].size() == 3);
  CHECK(vars["top_genres"][0]["minutes"] == 70);
  CHECK(vars["top_genres"][2] == json{{"genre", "comedy"}, {"minutes", 30}});
}

TEST_CASE("the statistics month defaults to the month before the event", "[enrich]") {
  std::string label;
  auto [from, to] = StatsMonth(Req("stats.monthly"), &label);
  CHECK(label == "2026-10");
  CHECK(herald::FormatRfc3339(from) == "2026-10-01T00:00:00.000Z");
  CHECK(herald::FormatRfc3339(to) == "2026-11-01T00:00:00.000Z");
  auto jan = Req("stats.monthly");
  jan.created = *herald::ParseRfc3339("2027-01-01T03:00:00Z");
  StatsMonth(jan, &label);
  CHECK(label == "2026-12");
  auto given = Req("stats.monthly", {{"month", "2026-02"}});
  auto [f2, t2] = StatsMonth(given, &label);
  CHECK(herald::FormatRfc3339(t2) == "2026-03-01T00:00:00.000Z");
}

TEST_CASE("bookmark reminders list the bookmarked titles", "[enrich]") {
  json bookmarks = {{"items", {{{"movie_id", "m2"}}, {{"movie_id", "gone"}}}}};
  std::map<std::string, json> movies = {{"m2", {{"movie_id", "m2"}, {"title", "B"}, {"title_ru", "Б"}, {"url", "u2"}}}};
  auto vars = BuildVars(Req("bookmark.reminder"), kUser, movies, bookmarks);
  CHECK(vars["bookmark_count"] == 1);
  CHECK(vars["bookmarks"][0] == json{{"title", "Б"}, {"url", "u2"}});
}
