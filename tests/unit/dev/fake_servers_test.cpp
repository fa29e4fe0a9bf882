// Fake upstream/provider servers: synthetic data, every endpoint, the control API and
// each fault kind, over real loopback HTTP.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "herald/dev/fake_servers.hpp"

namespace {

using herald::dev::FakeRole;
using herald::dev::FakeServer;
using herald::dev::FakeServerOptions;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr std::uint64_t kSeed = 42;

FakeServerOptions Options(std::uint64_t user_count = 1'000'000) {
  FakeServerOptions options;
  options.seed = kSeed;
  options.user_count = user_count;
  return options;
}

// A started server; the destructor stops it.
struct Running {
  explicit Running(FakeRole role, FakeServerOptions options = Options()) : server(role, std::move(options)) {
    server.Start();
  }
  FakeServer server;
};

void Configure(httplib::Client& client, int read_timeout_s = 10) {
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(read_timeout_s, 0);
  client.set_write_timeout(5, 0);
  client.set_keep_alive(true);
}

Json BodyOf(const httplib::Result& result) {
  REQUIRE(result);
  INFO("body: " << result->body);
  REQUIRE(Json::accept(result->body));
  return Json::parse(result->body);
}

Json PostJson(httplib::Client& client, const std::string& path, const Json& body, int expected_status) {
  const auto result = client.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(result);
  INFO(path << " -> " << result->status << " " << result->body);
  CHECK(result->status == expected_status);
  return BodyOf(result);
}

Json GetJson(httplib::Client& client, const std::string& path, int expected_status) {
  const auto result = client.Get(path.c_str());
  REQUIRE(result);
  INFO(path << " -> " << result->status << " " << result->body);
  CHECK(result->status == expected_status);
  return BodyOf(result);
}

void PutFault(httplib::Client& client, const Json& fault) {
  const auto result = client.Put("/_fake/faults", fault.dump(), "application/json");
  REQUIRE(result);
  INFO(result->body);
  REQUIRE(result->status == 200);
}

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

bool Contains(const Json& array, const std::string& value) {
  return std::find(array.begin(), array.end(), Json(value)) != array.end();
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// `shape` spells the expected text with '#' for any digit, e.g. "####-##-##".
// (No std::regex: GCC 12 warns inside <regex> under sanitizers, breaking -Werror.)
bool HasShape(const std::string& text, std::string_view shape) {
  if (text.size() != shape.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (shape[i] == '#' ? !IsDigit(text[i]) : text[i] != shape[i]) return false;
  }
  return true;
}

bool IsE164(const std::string& number) {
  return number.size() >= 9 && number.size() <= 16 && number[0] == '+' && number[1] != '0' &&
         std::all_of(number.begin() + 1, number.end(), IsDigit);
}

// Polls the request log until `path_prefix` shows up (the server logs on arrival).
void AwaitLogged(httplib::Client& control, const std::string& path_prefix) {
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (SteadyClock::now() < deadline) {
    const auto log = GetJson(control, "/_fake/requests?path=" + path_prefix, 200);
    if (!log["requests"].empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("request to " << path_prefix << " never reached the server");
}

}  // namespace

// --- synthetic data -----------------------------------------------------------------------

TEST_CASE("fake role names round-trip", "[unit][fake]") {
  for (const auto role : {FakeRole::kAuth, FakeRole::kUgc, FakeRole::kMovies, FakeRole::kSms, FakeRole::kTelegram,
                          FakeRole::kPush}) {
    CHECK(herald::dev::ParseFakeRole(herald::dev::FakeRoleName(role)) == role);
  }
  CHECK(herald::dev::FakeRoleName(FakeRole::kTelegram) == "telegram");
  CHECK_FALSE(herald::dev::ParseFakeRole("Auth").has_value());
  CHECK_FALSE(herald::dev::ParseFakeRole("").has_value());
}

TEST_CASE("synthetic users are deterministic and cover every field", "[unit][fake]") {
  const std::set<std::string> all_tags{"premium", "family", "kids", "sports", "new", "churn-risk"};
  std::map<std::string, int> zones;
  int without_phone = 0;
  int without_telegram = 0;
  int without_push = 0;
  int email_first = 0;
  int with_quiet_hours = 0;
  int ru = 0;
  int dead_tokens = 0;
  std::set<std::string> tags_seen;
  for (std::uint64_t index = 1; index <= 1000; ++index) {
    const auto user = herald::dev::SyntheticUser(kSeed, index);
    INFO(user.dump());
    REQUIRE(user == herald::dev::SyntheticUser(kSeed, index));
    CHECK(user["user_id"] == "u-" + std::to_string(index));
    CHECK(user["email"] == "u-" + std::to_string(index) + "@example.test");
    CHECK(user["first_name"].is_string());
    CHECK(user["last_name"].is_string());
    CHECK(HasShape(user["birthday_date"].get<std::string>(), "####-##-##"));
    CHECK(user["marketing_opt_in"].is_boolean());
    zones[user["timezone"].get<std::string>()]++;

    const auto locale = user["locale"].get<std::string>();
    REQUIRE((locale == "ru" || locale == "en"));
    // Russian names are Cyrillic (non-ASCII UTF-8), English ones ASCII.
    const auto first_name = user["first_name"].get<std::string>();
    const bool ascii = std::all_of(first_name.begin(), first_name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    CHECK(ascii == (locale == "en"));
    ru += locale == "ru";

    if (user["phone"].is_null()) {
      ++without_phone;
    } else {
      CHECK(IsE164(user["phone"].get<std::string>()));
    }
    if (user["telegram_chat_id"].is_null()) {
      ++without_telegram;
    } else {
      CHECK(user["telegram_chat_id"].is_number_integer());
    }
    REQUIRE(user["push_tokens"].is_array());
    without_push += user["push_tokens"].empty();
    for (const auto& token : user["push_tokens"]) dead_tokens += token.get<std::string>().starts_with("dead-");

    for (const auto& tag : user["tags"]) {
      CHECK(all_tags.count(tag.get<std::string>()) == 1);
      tags_seen.insert(tag.get<std::string>());
    }

    const auto& channels = user["channels"];
    REQUIRE(channels.is_array());
    REQUIRE_FALSE(channels.empty());
    std::set<std::string> distinct;
    for (const auto& channel : channels) {
      const auto name = channel.get<std::string>();
      distinct.insert(name);
      if (name == "sms") CHECK_FALSE(user["phone"].is_null());
      if (name == "telegram") CHECK_FALSE(user["telegram_chat_id"].is_null());
      if (name == "push") CHECK_FALSE(user["push_tokens"].empty());
      CHECK((name == "email" || name == "sms" || name == "telegram" || name == "push"));
    }
    CHECK(distinct.size() == channels.size());
    email_first += channels[0] == "email";

    if (!user["quiet_hours"].is_null()) {
      ++with_quiet_hours;
      CHECK(HasShape(user["quiet_hours"]["from"].get<std::string>(), "##:##"));
      CHECK(HasShape(user["quiet_hours"]["to"].get<std::string>(), "##:##"));
    }
  }
  // DST, no-DST, half-hour and 45-minute zones and UTC all occur.
  for (const auto zone : herald::dev::SyntheticTimezones()) {
    INFO(zone);
    CHECK(zones[std::string(zone)] > 0);
  }
  for (const char* zone : {"Europe/Berlin", "America/New_York", "Europe/London", "Europe/Moscow", "Asia/Vladivostok",
                           "Europe/Kaliningrad", "Asia/Tokyo", "Asia/Kolkata", "Australia/Adelaide",
                           "Asia/Kathmandu", "Australia/Eucla", "Australia/Lord_Howe", "UTC"}) {
    INFO(zone);
    CHECK(zones[zone] > 0);
  }
  CHECK(zones.size() == herald::dev::SyntheticTimezones().size());
  CHECK(tags_seen == all_tags);
  CHECK(without_phone > 50);
  CHECK(without_phone < 160);
  CHECK(without_telegram > 220);
  CHECK(without_telegram < 380);
  CHECK(without_push > 0);
  CHECK(dead_tokens > 0);
  CHECK(email_first > 650);
  CHECK(email_first < 850);
  CHECK(with_quiet_hours > 0);
  CHECK(with_quiet_hours < 1000);
  CHECK(ru > 200);
  CHECK(ru < 800);

  // The seed matters.
  int differing = 0;
  for (std::uint64_t index = 1; index <= 10; ++index) {
    differing += herald::dev::SyntheticUser(kSeed, index) != herald::dev::SyntheticUser(kSeed + 1, index);
  }
  CHECK(differing == 10);
}

TEST_CASE("user ids parse strictly", "[unit][fake]") {
  using herald::dev::ParseUserIndex;
  CHECK(ParseUserIndex("u-1", 10) == 1U);
  CHECK(ParseUserIndex("u-10", 10) == 10U);
  CHECK_FALSE(ParseUserIndex("u-11", 10));
  CHECK_FALSE(ParseUserIndex("u-0", 10));
  CHECK_FALSE(ParseUserIndex("u-01", 10));
  CHECK_FALSE(ParseUserIndex("u-", 10));
  CHECK_FALSE(ParseUserIndex("u-+1", 10));
  CHECK_FALSE(ParseUserIndex("u- 1", 10));
  CHECK_FALSE(ParseUserIndex("U-1", 10));
  CHECK_FALSE(ParseUserIndex("u-1x", 10));
  CHECK_FALSE(ParseUserIndex("u-99999999999999999999999", UINT64_MAX));
  CHECK(herald::dev::UserIdFromIndex(123) == "u-123");
}

TEST_CASE("user pages cover exactly the matching users even with a tiny scan budget", "[unit][fake]") {
  const herald::dev::UserFilter filter{"premium", "", "ru"};
  std::vector<std::uint64_t> expected;
  for (std::uint64_t index = 1; index <= 3000; ++index) {
    const auto user = herald::dev::SyntheticUser(kSeed, index);
    const bool matches = Contains(user["tags"], "premium") && user["locale"] == "ru";
    CHECK(herald::dev::SyntheticUserMatches(kSeed, index, filter) == matches);
    if (matches) expected.push_back(index);
  }
  std::vector<std::uint64_t> seen;
  std::uint64_t next = 1;
  int pages = 0;
  while (true) {
    const auto page = herald::dev::SyntheticUserPage(kSeed, filter, next, 7, 3000, 50);
    CHECK(page.indices.size() <= 7);
    seen.insert(seen.end(), page.indices.begin(), page.indices.end());
    ++pages;
    if (!page.next_index) break;
    REQUIRE(*page.next_index > next);
    next = *page.next_index;
  }
  CHECK(seen == expected);
  CHECK(pages >= 3000 / 50);
  // An unknown attribute value cannot match anything and ends at once.
  const auto none = herald::dev::SyntheticUserPage(kSeed, {"vip", "", ""}, 1, 10, 1'000'000);
  CHECK(none.indices.empty());
  CHECK_FALSE(none.next_index);
}

TEST_CASE("synthetic movies", "[unit][fake]") {
  using herald::dev::SyntheticMovie;
  const auto film = SyntheticMovie(kSeed, "movie-1");
  REQUIRE(film.is_object());
  CHECK(film == SyntheticMovie(kSeed, "movie-1"));
  CHECK(film["movie_id"] == "movie-1");
  CHECK(film["season"].is_null());
  CHECK(film["episode"].is_null());
  CHECK(film["title"].is_string());
  CHECK(film["title_ru"].is_string());
  CHECK_FALSE(film["genres"].empty());
  CHECK(HasShape(film["release_date"].get<std::string>(), "####-##-##"));
  CHECK(film["url"].get<std::string>().ends_with("/movie-1"));

  const auto episode = SyntheticMovie(kSeed, "ep-97");
  CHECK(episode["season"] == 1);
  CHECK(episode["episode"] == 1);
  CHECK(episode["series_id"] == "series-2");
  CHECK(SyntheticMovie(kSeed, "ep-98")["title"] == episode["title"]);

  const auto series = SyntheticMovie(kSeed, "series-big-2500");
  CHECK(series["season"].is_number_integer());
  CHECK(series["episode"].is_number_integer());

  CHECK(SyntheticMovie(kSeed, "movie-0").is_null());
  CHECK(SyntheticMovie(kSeed, "movie-x").is_null());
  CHECK(SyntheticMovie(kSeed, "series-").is_null());
  CHECK(SyntheticMovie(kSeed, "film-1").is_null());
}

// --- auth ---------------------------------------------------------------------------------

TEST_CASE("auth serves users, 404s unknown ones and batch-gets", "[unit][fake][http]") {
  Running auth(FakeRole::kAuth);
  httplib::Client client(auth.server.BaseUrl());
  Configure(client);

  CHECK(GetJson(client, "/api/v1/users/u-7", 200) == herald::dev::SyntheticUser(kSeed, 7));
  CHECK(GetJson(client, "/api/v1/users/u-1000000", 200)["user_id"] == "u-1000000");
  for (const char* missing : {"/api/v1/users/u-0", "/api/v1/users/u-1000001", "/api/v1/users/bob"}) {
    CHECK(GetJson(client, missing, 404)["error"].is_string());
  }

  const auto batch = PostJson(client, "/api/v1/users:batchGet", {{"ids", {"u-1", "u-2", "nope", "u-1", "u-0"}}}, 200);
  REQUIRE(batch["users"].size() == 2);
  CHECK(batch["users"][0] == herald::dev::SyntheticUser(kSeed, 1));
  CHECK(batch["users"][1] == herald::dev::SyntheticUser(kSeed, 2));
  CHECK(batch["missing"] == Json({"nope", "u-0"}));

  Json ids = Json::array();
  for (int i = 1; i <= 500; ++i) ids.push_back("u-" + std::to_string(i));
  CHECK(PostJson(client, "/api/v1/users:batchGet", {{"ids", ids}}, 200)["users"].size() == 500);
  ids.push_back("u-501");
  CHECK(PostJson(client, "/api/v1/users:batchGet", {{"ids", ids}}, 400)["error"].get<std::string>().find("500") !=
        std::string::npos);

  CHECK(PostJson(client, "/api/v1/users:batchGet", {{"ids", "u-1"}}, 400)["error"].is_string());
  CHECK(PostJson(client, "/api/v1/users:batchGet", {{"ids", {1, 2}}}, 400)["error"].is_string());
  const auto invalid = client.Post("/api/v1/users:batchGet", "{\"ids\": [", "application/json");
  REQUIRE(invalid);
  CHECK(invalid->status == 400);
  CHECK(BodyOf(invalid)["error"].get<std::string>().find("invalid JSON") != std::string::npos);
}

TEST_CASE("auth segment listing paginates over exactly the matching users", "[unit][fake][http]") {
  constexpr std::uint64_t kUsers = 2000;
  Running auth(FakeRole::kAuth, Options(kUsers));
  httplib::Client client(auth.server.BaseUrl());
  Configure(client);

  struct Case {
    std::string query;
    std::string tag;
    std::string timezone;
    std::string locale;
  };
  const std::vector<Case> cases{
      {"", "", "", ""},
      {"tag=premium", "premium", "", ""},
      {"timezone=Asia/Kolkata", "", "Asia/Kolkata", ""},
      {"locale=ru&tag=kids", "kids", "", "ru"},
      {"tag=churn-risk&timezone=Europe/Moscow&locale=ru", "churn-risk", "Europe/Moscow", "ru"},
  };
  for (const auto& c : cases) {
    INFO("query: " << c.query);
    std::vector<Json> expected;
    for (std::uint64_t index = 1; index <= kUsers; ++index) {
      const auto user = herald::dev::SyntheticUser(kSeed, index);
      if (!c.tag.empty() && !Contains(user["tags"], c.tag)) continue;
      if (!c.timezone.empty() && user["timezone"] != c.timezone) continue;
      if (!c.locale.empty() && user["locale"] != c.locale) continue;
      expected.push_back(user);
    }
    REQUIRE_FALSE(expected.empty());

    std::vector<Json> listed;
    std::string cursor;
    for (int page = 0; page < 1000; ++page) {
      std::string path = "/api/v1/users?limit=37&" + c.query;
      if (!cursor.empty()) path += "&cursor=" + cursor;
      const auto body = GetJson(client, path, 200);
      CHECK(body["users"].size() <= 37);
      for (const auto& user : body["users"]) listed.push_back(user);
      if (body["next_cursor"].is_null()) break;
      cursor = body["next_cursor"].get<std::string>();
    }
    CHECK(listed == expected);
  }

  // Default limit is 100.
  const auto first = GetJson(client, "/api/v1/users", 200);
  CHECK(first["users"].size() == 100);
  CHECK(first["next_cursor"].is_string());
  // A page ending exactly at the last user has no next cursor.
  CHECK(GetJson(client, "/api/v1/users?limit=1000", 200)["next_cursor"].is_string());
  const auto second = GetJson(client, "/api/v1/users?limit=1000&cursor=" + GetJson(client, "/api/v1/users?limit=1000", 200)["next_cursor"].get<std::string>(), 200);
  CHECK(second["users"].size() == 1000);
  CHECK(second["users"].back()["user_id"] == "u-2000");
  CHECK(second["next_cursor"].is_null());

  CHECK(GetJson(client, "/api/v1/users?limit=1001", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users?limit=0", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users?limit=ten", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users?cursor=bogus", 400)["error"].is_string());
  const auto unknown_tag = GetJson(client, "/api/v1/users?tag=vip", 200);
  CHECK(unknown_tag["users"].empty());
  CHECK(unknown_tag["next_cursor"].is_null());
}

// --- ugc ----------------------------------------------------------------------------------

TEST_CASE("ugc followers of series-big-N are exactly u-1..u-N", "[unit][fake][http]") {
  Running ugc(FakeRole::kUgc);
  httplib::Client client(ugc.server.BaseUrl());
  Configure(client);

  std::set<std::string> followers;
  std::string cursor;
  int pages = 0;
  while (true) {
    std::string path = "/api/v1/content/series-big-2500/followers?limit=1000";
    if (!cursor.empty()) path += "&cursor=" + cursor;
    const auto body = GetJson(client, path, 200);
    ++pages;
    CHECK(body["user_ids"].size() <= 1000);
    for (const auto& id : body["user_ids"]) CHECK(followers.insert(id.get<std::string>()).second);
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"].get<std::string>();
    REQUIRE(pages < 10);
  }
  CHECK(pages == 3);
  CHECK(followers.size() == 2500);
  for (int i = 1; i <= 2500; ++i) CHECK(followers.count("u-" + std::to_string(i)) == 1);

  CHECK(GetJson(client, "/api/v1/content/series-big-2500/followers?limit=1001", 400)["error"].is_string());

  // Other content: a deterministic pseudo-random subset of existing users.
  const auto page = GetJson(client, "/api/v1/content/movie-42/followers?limit=200", 200);
  CHECK(page == GetJson(client, "/api/v1/content/movie-42/followers?limit=200", 200));
  REQUIRE(page["user_ids"].size() == 200);
  const auto direct = herald::dev::SyntheticFollowerPage(kSeed, "movie-42", 1, 200, 1'000'000);
  REQUIRE(direct.indices.size() == 200);
  for (std::size_t i = 0; i < 200; ++i) CHECK(page["user_ids"][i] == herald::dev::UserIdFromIndex(direct.indices[i]));
  CHECK(page["next_cursor"].is_string());
  CHECK(direct.indices.back() < 200'000);  // not simply u-1..u-200
  CHECK(direct.indices.back() > 200);
}

TEST_CASE("ugc watch history and bookmarks", "[unit][fake][http]") {
  Running ugc(FakeRole::kUgc);
  httplib::Client client(ugc.server.BaseUrl());
  Configure(client);

  const std::string range = "from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z";
  int users_with_history = 0;
  for (int index = 1; index <= 20; ++index) {
    const auto user_id = "u-" + std::to_string(index);
    const auto body = GetJson(client, "/api/v1/users/" + user_id + "/watch-history?" + range, 200);
    const auto& items = body["items"];
    // 2025-01-01T00:00:00Z = 1735689600 s, 2025-02-01T00:00:00Z = 1738368000 s.
    CHECK(items == herald::dev::SyntheticWatchHistory(kSeed, static_cast<std::uint64_t>(index), 1735689600000LL, 1738368000000LL));
    std::string previous;
    for (const auto& item : items) {
      const auto at = item["watched_at"].get<std::string>();
      CHECK(at >= "2025-01-01T00:00:00Z");
      CHECK(at < "2025-02-01T00:00:00Z");
      CHECK(at >= previous);
      previous = at;
      CHECK(item["movie_id"].is_string());
      CHECK(item["seconds"].get<std::int64_t>() > 0);
    }
    users_with_history += !items.empty();
  }
  CHECK(users_with_history > 5);

  // Offsets work, also when the client forgot to percent-encode '+'.
  const auto utc = GetJson(client, "/api/v1/users/u-3/watch-history?from=2025-01-01T00:00:00Z&to=2025-01-10T00:00:00Z", 200);
  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history?from=2025-01-01T03:00:00%2B03:00&to=2025-01-10T00:00:00Z", 200) == utc);
  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history?from=2025-01-01T03:00:00+03:00&to=2025-01-10T00:00:00Z", 200) == utc);

  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history?from=yesterday", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history?from=2020-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", 400)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users/u-0/watch-history", 404)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users/u-3/watch-history", 200)["items"].is_array());  // default: last 30 days

  int users_with_bookmarks = 0;
  for (int index = 1; index <= 20; ++index) {
    const auto body = GetJson(client, "/api/v1/users/u-" + std::to_string(index) + "/bookmarks", 200);
    CHECK(body["items"] == herald::dev::SyntheticBookmarks(kSeed, static_cast<std::uint64_t>(index)));
    for (const auto& item : body["items"]) {
      CHECK(item["movie_id"].is_string());
      CHECK(HasShape(item["added_at"].get<std::string>(), "####-##-##T##:##:##Z"));
      CHECK_FALSE(herald::dev::SyntheticMovie(kSeed, item["movie_id"].get<std::string>()).is_null());
    }
    users_with_bookmarks += !body["items"].empty();
  }
  CHECK(users_with_bookmarks > 5);
  CHECK(GetJson(client, "/api/v1/users/u-1000001/bookmarks", 404)["error"].is_string());
}

// --- movies -------------------------------------------------------------------------------

TEST_CASE("movies get and batchGet", "[unit][fake][http]") {
  Running movies(FakeRole::kMovies);
  httplib::Client client(movies.server.BaseUrl());
  Configure(client);

  CHECK(GetJson(client, "/api/v1/movies/movie-1", 200) == herald::dev::SyntheticMovie(kSeed, "movie-1"));
  CHECK(GetJson(client, "/api/v1/movies/ep-12", 200)["season"].is_number_integer());
  CHECK(GetJson(client, "/api/v1/movies/bogus", 404)["error"].is_string());

  const auto batch = PostJson(client, "/api/v1/movies:batchGet", {{"ids", {"movie-1", "ep-5", "series-9", "nope"}}}, 200);
  REQUIRE(batch["movies"].size() == 3);
  CHECK(batch["movies"][0] == herald::dev::SyntheticMovie(kSeed, "movie-1"));
  CHECK(batch["movies"][1]["movie_id"] == "ep-5");
  CHECK(batch["movies"][2]["movie_id"] == "series-9");
  CHECK(batch["missing"] == Json({"nope"}));
  CHECK(PostJson(client, "/api/v1/movies:batchGet", {{"id", {"movie-1"}}}, 400)["error"].is_string());
}

// --- providers ----------------------------------------------------------------------------

TEST_CASE("sms accepts E.164 numbers once per idempotency key", "[unit][fake][http]") {
  Running sms(FakeRole::kSms);
  httplib::Client client(sms.server.BaseUrl());
  Configure(client);

  const Json message{{"to", "+79161234567"}, {"body", "Привет"}, {"idempotency_key", "n-1:sms"}};
  const auto first = PostJson(client, "/v1/messages", message, 200);
  REQUIRE(first["id"].is_string());
  CHECK(PostJson(client, "/v1/messages", message, 200)["id"] == first["id"]);
  CHECK(sms.server.DeliveredCount() == 1);

  auto other = message;
  other["idempotency_key"] = "n-2:sms";
  CHECK(PostJson(client, "/v1/messages", other, 200)["id"] != first["id"]);
  CHECK(sms.server.DeliveredCount() == 2);
  CHECK(GetJson(client, "/_fake/stats", 200)["delivered"] == 2);

  for (const char* bad : {"89161234567", "+0123456789", "+7916", "+7916123456789012", "+7916abc4567"}) {
    auto invalid = message;
    invalid["to"] = bad;
    invalid["idempotency_key"] = std::string("bad-") + bad;
    INFO(bad);
    CHECK(PostJson(client, "/v1/messages", invalid, 400)["error"].is_string());
  }
  CHECK(PostJson(client, "/v1/messages", {{"to", "+79161234567"}}, 400)["error"].is_string());
  CHECK(sms.server.DeliveredCount() == 2);
}

TEST_CASE("telegram answers 403 for chats that blocked the bot", "[unit][fake][http]") {
  Running telegram(FakeRole::kTelegram);
  httplib::Client client(telegram.server.BaseUrl());
  Configure(client);

  const auto blocked = PostJson(client, "/bot123:ABC/sendMessage", {{"chat_id", 555000113}, {"text", "hi"}, {"parse_mode", "HTML"}}, 403);
  CHECK(blocked["ok"] == false);
  CHECK(blocked["error_code"] == 403);
  CHECK(blocked["description"] == "Forbidden: bot was blocked by the user");

  const auto sent = PostJson(client, "/bot123:ABC/sendMessage", {{"chat_id", 555000142}, {"text", "hi"}, {"parse_mode", "HTML"}}, 200);
  CHECK(sent["ok"] == true);
  CHECK(sent["result"]["message_id"].is_number_integer());
  CHECK(PostJson(client, "/bot123:ABC/sendMessage", {{"chat_id", "555000142"}, {"text", "hi"}}, 200)["ok"] == true);
  CHECK(telegram.server.DeliveredCount() == 2);

  CHECK(PostJson(client, "/bot123:ABC/sendMessage", {{"chat_id", 1}, {"text", ""}}, 400)["ok"] == false);
  CHECK(PostJson(client, "/bot123:ABC/sendMessage", {{"chat_id", 1}, {"text", "x"}, {"parse_mode", "rst"}}, 400)["ok"] == false);
  CHECK(GetJson(client, "/bot123:ABC/getMe", 404)["ok"] == false);
}

TEST_CASE("push answers 404 UNREGISTERED for dead tokens", "[unit][fake][http]") {
  Running push(FakeRole::kPush);
  httplib::Client client(push.server.BaseUrl());
  Configure(client);

  const auto dead = PostJson(client, "/v1/send", {{"token", "dead-0123"}, {"title", "t"}, {"body", "b"}, {"data", {{"k", "v"}}}}, 404);
  CHECK(dead["error"]["status"] == "UNREGISTERED");
  const auto sent = PostJson(client, "/v1/send", {{"token", "fcm-0123"}, {"title", "t"}, {"body", "b"}, {"data", {{"k", "v"}}}}, 200);
  CHECK(sent["name"].get<std::string>().starts_with("projects/fake/messages/"));
  CHECK(PostJson(client, "/v1/send", {{"token", "fcm-1"}, {"data", {{"k", 1}}}}, 400)["error"].is_string());
  CHECK(push.server.DeliveredCount() == 1);
}

TEST_CASE("sms and push given a bearer token answer 401 without it", "[unit][fake][http]") {
  auto options = Options();
  options.bearer_token = "s3cret-token";
  Running sms(FakeRole::kSms, options);
  Running push(FakeRole::kPush, options);
  httplib::Client sms_client(sms.server.BaseUrl());
  httplib::Client push_client(push.server.BaseUrl());
  Configure(sms_client);
  Configure(push_client);
  const Json message{{"to", "+79161234567"}, {"body", "hi"}, {"idempotency_key", "n-1:sms"}};
  const Json notification{{"token", "fcm-0123"}, {"title", "t"}, {"body", "b"}};

  // No header, a wrong token, the token without the scheme: 401 in each provider's shape.
  CHECK(PostJson(sms_client, "/v1/messages", message, 401)["error"] == "missing Authorization: Bearer <token>");
  CHECK(PostJson(push_client, "/v1/send", notification, 401)["error"]["status"] == "UNAUTHENTICATED");
  for (const char* header : {"Bearer wrong", "s3cret-token", "Bearer s3cret-token-and-more"}) {
    INFO(header);
    const httplib::Headers headers{{"Authorization", header}};
    auto r = sms_client.Post("/v1/messages", headers, message.dump(), "application/json");
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->get_header_value("WWW-Authenticate") == "Bearer");
    r = push_client.Post("/v1/send", headers, notification.dump(), "application/json");
    REQUIRE(r);
    CHECK(r->status == 401);
  }
  CHECK(sms.server.DeliveredCount() == 0);
  CHECK(push.server.DeliveredCount() == 0);

  // The right token is served.
  const httplib::Headers good{{"Authorization", "Bearer s3cret-token"}};
  auto r = sms_client.Post("/v1/messages", good, message.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  r = push_client.Post("/v1/send", good, notification.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(sms.server.DeliveredCount() == 1);
  CHECK(push.server.DeliveredCount() == 1);

  // The control API needs no token, and the refused requests are logged with their status.
  const auto log = GetJson(sms_client, "/_fake/requests?path=/v1/messages", 200)["requests"];
  REQUIRE(log.size() == 5);
  CHECK(log[0]["status"] == 401);
  CHECK(log[4]["status"] == 200);
}

TEST_CASE("the providers' bearer tokens can come from the environment", "[unit][fake][http]") {
  // `herald dev fakes` has no flag for them; the dev stack sets these variables.
  REQUIRE(::setenv(herald::dev::kFakeSmsTokenEnv, "from-env", 1) == 0);
  Running sms(FakeRole::kSms);
  Running auth(FakeRole::kAuth);  // not a provider: no token required
  REQUIRE(::unsetenv(herald::dev::kFakeSmsTokenEnv) == 0);
  Running push(FakeRole::kPush);  // variable unset: no token required
  httplib::Client sms_client(sms.server.BaseUrl());
  httplib::Client auth_client(auth.server.BaseUrl());
  httplib::Client push_client(push.server.BaseUrl());
  Configure(sms_client);
  Configure(auth_client);
  Configure(push_client);
  const Json message{{"to", "+79161234567"}, {"body", "hi"}};
  PostJson(sms_client, "/v1/messages", message, 401);
  auto r = sms_client.Post("/v1/messages", {{"Authorization", "Bearer from-env"}}, message.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  GetJson(auth_client, "/api/v1/users/u-1", 200);
  PostJson(push_client, "/v1/send", {{"token", "fcm-1"}}, 200);
}

// --- control API --------------------------------------------------------------------------

TEST_CASE("request log records data requests, not control requests", "[unit][fake][http]") {
  Running sms(FakeRole::kSms);
  httplib::Client client(sms.server.BaseUrl());
  Configure(client);

  CHECK(GetJson(client, "/_fake/health", 200)["role"] == "sms");
  const std::string body = R"({"to":"+79161234567","body":"hello","idempotency_key":"k"})";
  REQUIRE(client.Post("/v1/messages", body, "application/json"));
  CHECK(GetJson(client, "/api/v1/nothing?x=1&y=2", 404)["error"].is_string());

  const auto log = GetJson(client, "/_fake/requests", 200)["requests"];
  REQUIRE(log.size() == 2);
  CHECK(log[0]["method"] == "POST");
  CHECK(log[0]["path"] == "/v1/messages");
  CHECK(log[0]["body"] == body);
  CHECK(log[0]["status"] == 200);
  CHECK(HasShape(log[0]["at"].get<std::string>(), "####-##-##T##:##:##.###Z"));
  CHECK(log[1]["method"] == "GET");
  CHECK(log[1]["path"] == "/api/v1/nothing?x=1&y=2");
  CHECK(log[1]["status"] == 404);
  CHECK(log[0]["at"] <= log[1]["at"]);

  const auto filtered = GetJson(client, "/_fake/requests?path=/v1/", 200)["requests"];
  REQUIRE(filtered.size() == 1);
  CHECK(filtered[0]["path"] == "/v1/messages");

  const auto cleared = client.Delete("/_fake/requests");
  REQUIRE(cleared);
  CHECK(cleared->status == 200);
  CHECK(GetJson(client, "/_fake/requests", 200)["requests"].empty());
  CHECK(GetJson(client, "/nowhere", 404)["error"].is_string());
}

TEST_CASE("request log is bounded", "[unit][fake][http]") {
  auto options = Options();
  options.request_log_limit = 3;
  Running auth(FakeRole::kAuth, options);
  httplib::Client client(auth.server.BaseUrl());
  Configure(client);
  for (int i = 1; i <= 5; ++i) GetJson(client, "/api/v1/users/u-" + std::to_string(i), 200);
  const auto log = GetJson(client, "/_fake/requests", 200);
  REQUIRE(log["requests"].size() == 3);
  CHECK(log["requests"][0]["path"] == "/api/v1/users/u-3");
  CHECK(log["dropped"] == 2);
}

TEST_CASE("status faults, prefixes and error rates", "[unit][fake][http]") {
  Running auth(FakeRole::kAuth);
  httplib::Client client(auth.server.BaseUrl());
  Configure(client);

  PutFault(client, {{"path", "/api/v1"}, {"error", 503}});
  PutFault(client, {{"path", "/api/v1/users/u-1"}, {"error", "500"}, {"error_rate", 1.0}});
  CHECK(GetJson(client, "/api/v1/users/u-1", 500)["error"].is_string());
  CHECK(GetJson(client, "/api/v1/users/u-2", 503)["error"].is_string());
  CHECK(GetJson(client, "/_fake/faults", 200)["faults"].size() == 2);
  const auto log = GetJson(client, "/_fake/requests", 200)["requests"];
  REQUIRE(log.size() == 2);
  CHECK(log[0]["status"] == 500);
  CHECK(log[1]["status"] == 503);

  PutFault(client, {{"path", "/api/v1"}, {"error", 500}, {"error_rate", 0.0}});
  CHECK(GetJson(client, "/api/v1/users/u-2", 200)["user_id"] == "u-2");

  PutFault(client, {{"path", "/api/v1"}, {"error", 500}, {"error_rate", 0.5}});
  int failures = 0;
  for (int i = 0; i < 60; ++i) {
    const auto result = client.Get("/api/v1/users/u-3");
    REQUIRE(result);
    failures += result->status == 500;
  }
  CHECK(failures > 10);
  CHECK(failures < 50);

  const auto cleared = client.Delete("/_fake/faults");
  REQUIRE(cleared);
  CHECK(BodyOf(cleared)["faults"].empty());
  CHECK(GetJson(client, "/api/v1/users/u-1", 200)["user_id"] == "u-1");

  for (const auto& bad : {Json{{"path", "/x"}, {"error", "teapot"}}, Json{{"path", "/x"}, {"error", 200}},
                          Json{{"path", "x"}, {"error", 500}}, Json{{"path", "/x"}, {"eror", 500}},
                          Json{{"path", "/x"}, {"error", 500}, {"error_rate", 2}}, Json{{"path", "/x"}}}) {
    INFO(bad.dump());
    const auto result = client.Put("/_fake/faults", bad.dump(), "application/json");
    REQUIRE(result);
    CHECK(result->status == 400);
    CHECK(BodyOf(result)["error"].is_string());
  }
  const auto invalid = client.Put("/_fake/faults", "{", "application/json");
  REQUIRE(invalid);
  CHECK(invalid->status == 400);
}

TEST_CASE("429 faults carry Retry-After", "[unit][fake][http]") {
  SECTION("generic upstream") {
    Running auth(FakeRole::kAuth);
    httplib::Client client(auth.server.BaseUrl());
    Configure(client);
    PutFault(client, {{"path", "/api/v1/users"}, {"error", 429}, {"retry_after_s", 2}});
    const auto result = client.Get("/api/v1/users/u-1");
    REQUIRE(result);
    CHECK(result->status == 429);
    CHECK(result->get_header_value("Retry-After") == "2");
  }
  SECTION("telegram also puts it in parameters") {
    Running telegram(FakeRole::kTelegram);
    httplib::Client client(telegram.server.BaseUrl());
    Configure(client);
    PutFault(client, {{"path", "/bot"}, {"error", 429}, {"retry_after_s", 3}});
    const auto result = client.Post("/bottoken/sendMessage", R"({"chat_id":1,"text":"x"})", "application/json");
    REQUIRE(result);
    CHECK(result->status == 429);
    CHECK(result->get_header_value("Retry-After") == "3");
    const auto body = BodyOf(result);
    CHECK(body["ok"] == false);
    CHECK(body["parameters"]["retry_after"] == 3);
    CHECK(telegram.server.DeliveredCount() == 0);
  }
  SECTION("push, default retry") {
    Running push(FakeRole::kPush);
    httplib::Client client(push.server.BaseUrl());
    Configure(client);
    PutFault(client, {{"path", "/v1/send"}, {"error", 429}});
    const auto result = client.Post("/v1/send", R"({"token":"fcm-1"})", "application/json");
    REQUIRE(result);
    CHECK(result->status == 429);
    CHECK(result->get_header_value("Retry-After") == "1");
    CHECK(BodyOf(result)["error"]["status"] == "QUOTA_EXCEEDED");
  }
}

TEST_CASE("latency faults delay the answer", "[unit][fake][http]") {
  Running movies(FakeRole::kMovies);
  httplib::Client client(movies.server.BaseUrl());
  Configure(client);
  PutFault(client, {{"path", "/api/v1/movies/"}, {"latency_ms", 300}});
  const auto start = SteadyClock::now();
  CHECK(GetJson(client, "/api/v1/movies/movie-1", 200)["movie_id"] == "movie-1");
  CHECK(SecondsSince(start) >= 0.3);
}

TEST_CASE("hang, reset and malformed faults", "[unit][fake][http]") {
  Running auth(FakeRole::kAuth);
  httplib::Client control(auth.server.BaseUrl());
  Configure(control);

  SECTION("hang: the client read timeout fires") {
    PutFault(control, {{"path", "/api/v1/users/u-1"}, {"error", "hang"}});
    httplib::Client client(auth.server.BaseUrl());
    Configure(client, 1);
    const auto start = SteadyClock::now();
    const auto result = client.Get("/api/v1/users/u-1");
    CHECK_FALSE(result);
    CHECK(result.error() == httplib::Error::Read);
    CHECK(SecondsSince(start) >= 0.9);
    CHECK(SecondsSince(start) < 10);
    const auto log = GetJson(control, "/_fake/requests", 200)["requests"];
    REQUIRE(log.size() == 1);
    CHECK(log[0]["status"] == 0);
    // Other paths are still served.
    CHECK(GetJson(control, "/api/v1/users/u-2", 200)["user_id"] == "u-2");
  }
  SECTION("reset: the connection drops without a response") {
    PutFault(control, {{"path", "/api/v1/users/u-1"}, {"error", "reset"}});
    httplib::Client client(auth.server.BaseUrl());
    Configure(client, 5);
    const auto start = SteadyClock::now();
    const auto result = client.Get("/api/v1/users/u-1");
    CHECK_FALSE(result);
    CHECK(result.error() != httplib::Error::Success);
    CHECK(SecondsSince(start) < 4);
    // The same client reconnects for the next request.
    CHECK(GetJson(client, "/api/v1/users/u-2", 200)["user_id"] == "u-2");
  }
  SECTION("malformed: 200 with a body that is not JSON") {
    PutFault(control, {{"path", "/api/v1/users"}, {"error", "malformed"}});
    const auto result = control.Get("/api/v1/users/u-1");
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK_FALSE(result->body.empty());
    CHECK_FALSE(Json::accept(result->body));
    const auto batch = control.Post("/api/v1/users:batchGet", R"({"ids":["u-1"]})", "application/json");
    REQUIRE(batch);
    CHECK(batch->status == 200);
    CHECK_FALSE(Json::accept(batch->body));
  }
}

TEST_CASE("Stop returns promptly while a request hangs", "[unit][fake][http]") {
  FakeServer auth(FakeRole::kAuth, Options());
  auth.Start();
  httplib::Client control(auth.BaseUrl());
  Configure(control);
  PutFault(control, {{"path", "/api/v1/users/u-1"}, {"error", "hang"}});

  bool hung_got_response = true;
  std::thread hung([&] {
    httplib::Client client(auth.BaseUrl());
    Configure(client, 30);
    hung_got_response = static_cast<bool>(client.Get("/api/v1/users/u-1"));
  });
  AwaitLogged(control, "/api/v1/users/u-1");
  // A hung request holds only its own worker.
  CHECK(GetJson(control, "/api/v1/users/u-2", 200)["user_id"] == "u-2");

  const auto start = SteadyClock::now();
  auth.Stop();
  CHECK(SecondsSince(start) < 1.5);
  hung.join();
  CHECK_FALSE(hung_got_response);
  auth.Stop();  // idempotent
  CHECK_FALSE(control.Get("/_fake/health"));
}

TEST_CASE("a hung request frees its worker once the client gives up", "[unit][fake][http]") {
  auto options = Options();
  options.threads = 1;  // one worker: the next request needs the hung one's thread
  Running auth(FakeRole::kAuth, options);
  httplib::Client control(auth.server.BaseUrl());
  Configure(control);
  control.set_keep_alive(false);  // an idle keep-alive connection would hold the worker too
  PutFault(control, {{"path", "/api/v1/users/u-1"}, {"error", "hang"}});

  httplib::Client client(auth.server.BaseUrl());
  Configure(client, 1);
  const auto start = SteadyClock::now();
  CHECK_FALSE(client.Get("/api/v1/users/u-1"));
  client.stop();  // closes the socket, as any client does after a timeout
  CHECK(GetJson(control, "/api/v1/users/u-2", 200)["user_id"] == "u-2");
  CHECK(SecondsSince(start) < 5);
}

TEST_CASE("keep-alive POSTs from a client without TCP_NODELAY are not delayed", "[unit][fake][http]") {
  Running sms(FakeRole::kSms);
  httplib::Client client(sms.server.BaseUrl());
  Configure(client);
  client.set_tcp_nodelay(false);
  // Without quick ACKs each of these waits ~40 ms (client Nagle x server delayed ACK).
  const auto start = SteadyClock::now();
  for (int i = 0; i < 30; ++i) {
    const auto result = client.Post("/v1/messages", R"({"to":"+79161234567","body":"x"})", "application/json");
    REQUIRE(result);
    CHECK(result->status == 200);
  }
  CHECK(SecondsSince(start) < 0.6);
}

TEST_CASE("server lifecycle", "[unit][fake][http]") {
  Running first(FakeRole::kPush);
  CHECK(first.server.Port() > 0);
  CHECK(first.server.BaseUrl() == "http://127.0.0.1:" + std::to_string(first.server.Port()));
  CHECK(first.server.Role() == FakeRole::kPush);
  CHECK_THROWS_AS(first.server.Start(), std::logic_error);

  auto options = Options();
  options.port = first.server.Port();
  FakeServer second(FakeRole::kPush, options);
  CHECK_THROWS_AS(second.Start(), std::runtime_error);
  second.Stop();

  // Keep-alive: many requests over one client, more than httplib's default of 5 per connection.
  httplib::Client client(first.server.BaseUrl());
  Configure(client);
  for (int i = 0; i < 20; ++i) CHECK(GetJson(client, "/_fake/health", 200)["status"] == "ok");

  FakeServer never_started(FakeRole::kSms, Options());
  never_started.Stop();
}
