#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "replay/replay.hpp"

using herald::producers::replay::CsvField;
using herald::producers::replay::Filter;
using herald::producers::replay::Matches;
using herald::producers::replay::ParseFilter;
using herald::producers::replay::ParseWhen;
using herald::producers::replay::RecordJson;
using nlohmann::json;

namespace {

herald::TimePoint At(const char* text) { return *herald::ParseRfc3339(text); }

herald::kafka::StoredRecord Record(const json& value, std::string key = "k-1") {
  herald::kafka::StoredRecord r;
  r.topic = "events.content.v1";
  r.partition = 2;
  r.offset = 41;
  r.timestamp_ms = 1'795'000'000'123;
  r.key = std::move(key);
  r.value = value.dump();
  r.headers = {{"herald-origin-topic", "events.ugc.v1"}};
  return r;
}

}  // namespace

TEST_CASE("replay times: RFC 3339, now, and ages", "[replay]") {
  auto now = At("2026-11-22T12:00:00Z");
  CHECK(ParseWhen("now", now) == now);
  CHECK(ParseWhen("2026-11-21T10:00:00+03:00", now) == At("2026-11-21T07:00:00Z"));
  CHECK(ParseWhen("2h", now) == At("2026-11-22T10:00:00Z"));
  CHECK(ParseWhen("-15m", now) == At("2026-11-22T11:45:00Z"));
  CHECK(ParseWhen("7d", now) == At("2026-11-15T12:00:00Z"));
  CHECK(ParseWhen("90s", now) == At("2026-11-22T11:58:30Z"));
  for (const char* bad : {"", "yesterday", "2h30", "-", "12", "2026-13-01T00:00:00Z", "3 weeks"}) {
    INFO(bad);
    CHECK_THROWS_AS(ParseWhen(bad, now), herald::InvalidInput);
  }
}

TEST_CASE("replay filters: paths, payload and request fallbacks, recipients, key and headers", "[replay]") {
  json event = {{"event_type", "episode.released"},
                {"priority", 1},
                {"payload", {{"user", {"u-1", "u-2"}}, {"followers_of", "series-42"}, {"data", {{"city", "Kazan"}, {"n", 3}}}}}};
  auto r = Record(event);
  auto match = [&](std::vector<std::string> where, const json& value) {
    std::vector<Filter> filters;
    for (const auto& w : where) filters.push_back(ParseFilter(w));
    return Matches(r, value, filters);
  };
  CHECK(match({}, event));
  CHECK(match({"event_type=episode.released"}, event));
  CHECK_FALSE(match({"event_type=episode"}, event));
  CHECK(match({"user_id=u-2"}, event));          // an event's recipient list
  CHECK_FALSE(match({"user_id=u-3"}, event));
  CHECK(match({"followers_of=series-42"}, event));  // found under payload
  CHECK(match({"payload.data.city=Kazan"}, event));
  CHECK(match({"payload.data.n=3", "priority=1"}, event));  // numbers as written
  CHECK_FALSE(match({"payload.data.city=Kazan", "priority=2"}, event));  // every filter must hold
  CHECK(match({"key=k-1"}, event));
  CHECK_FALSE(match({"key=k-2"}, event));
  CHECK(match({"header.Herald-Origin-Topic=events.ugc.v1"}, event));  // header names ignore case
  CHECK_FALSE(match({"header.herald-origin-topic=events.auth.v1"}, event));
  json delivery = {{"notification_id", "n-1"}, {"request", {{"user_id", "u-9"}, {"event_type", "comment.liked"}}}};
  CHECK(match({"user_id=u-9", "event_type=comment.liked"}, delivery));
  CHECK_FALSE(match({"user_id=u-9"}, json::parse("not json", nullptr, false)));  // a value that is not JSON
  CHECK_THROWS_AS(ParseFilter("user_id"), herald::InvalidInput);
  CHECK_THROWS_AS(ParseFilter("=x"), herald::InvalidInput);
  CHECK(ParseFilter("payload.data.q=a=b").value == "a=b");
}

TEST_CASE("replay output: records as JSON Lines and CSV fields", "[replay]") {
  auto r = Record({{"event_id", "e-1"}});
  auto j = RecordJson(r, json::parse(r.value));
  CHECK(j["topic"] == "events.content.v1");
  CHECK(j["partition"] == 2);
  CHECK(j["offset"] == 41);
  CHECK(j["timestamp_ms"] == 1'795'000'000'123);
  CHECK(j["timestamp"] == "2026-11-18T11:06:40.123Z");
  CHECK(j["key"] == "k-1");
  CHECK(j["headers"]["herald-origin-topic"] == "events.ugc.v1");
  CHECK(j["value"]["event_id"] == "e-1");
  r.value = "not json {";
  r.key.reset();
  j = RecordJson(r, json::parse(r.value, nullptr, false));
  CHECK(j["value"] == "not json {");
  CHECK(j["key"].is_null());

  CHECK(CsvField("plain") == "plain");
  CHECK(CsvField("a,b") == "\"a,b\"");
  CHECK(CsvField("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(CsvField("two\nlines") == "\"two\nlines\"");
  CHECK(CsvField("") == "");
}
