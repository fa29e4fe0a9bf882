// Fan-out and enrichment on the embedded stack, against the fake auth/ugc/movies APIs:
// every built-in event type's variables, faulty and failing upstreams, and the retry tiers.

#include <catch2/catch.hpp>

#include <signal.h>

#include <iostream>
#include <map>
#include <set>

#include "herald/common/time.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "support/stack.hpp"

using herald::test::EmailOf;
using herald::test::FindUser;
using herald::test::ReadTopicsUntil;
using herald::test::TestStack;
using herald::test::WaitUntil;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Small batches, so the fault tests below make enough upstream calls for a 30 % error rate
// to be certain to hit.
TestStack& S() {
  static TestStack stack(1'000'000, {{"HERALD_BATCH_SIZE", "5"}});
  return stack;
}

constexpr std::uint64_t kSeed = 42;

json Event(const std::string& type, json payload) {
  return {{"event_type", type}, {"created_dt", "2026-11-21T10:00:00Z"}, {"payload", std::move(payload)}};
}

std::vector<std::string> DeliverTopics() {
  std::vector<std::string> out;
  for (const auto* t : herald::topics::Catalog().Family("deliver")) out.push_back(t->name);
  return out;
}

// Deliveries (parsed) and statuses of the given events, once `deliveries` + `statuses` are in.
struct Seen {
  std::vector<json> deliveries;
  std::vector<json> statuses;
};

Seen Collect(const std::set<std::string>& event_ids, std::size_t deliveries, std::size_t suppressed) {
  Seen seen;
  auto topics = DeliverTopics();
  topics.push_back("notify.status.v1");
  ReadTopicsUntil(
      S().Env("HERALD_BROKERS"), topics,
      [&](const std::vector<herald::test::ReadRecord>& recs) {
        seen = {};
        for (const auto& r : recs) {
          auto j = json::parse(r.value);
          if (r.topic == "notify.status.v1") {
            if (event_ids.count(j["event_id"]) && j["status"] == "suppressed") seen.statuses.push_back(j);
          } else if (event_ids.count(j["request"]["event_id"])) {
            seen.deliveries.push_back(j);
          }
        }
        return seen.deliveries.size() >= deliveries && seen.statuses.size() >= suppressed;
      },
      60s);
  return seen;
}

std::string Title(const json& movie, const std::string& locale) {
  return locale == "ru" ? movie["title_ru"].get<std::string>() : movie["title"].get<std::string>();
}

}  // namespace

TEST_CASE("every built-in event type is planned and enriched with upstream data", "[e2e][enrich]") {
  // Users whose first channel works at the fake providers (no blocked bot, no dead push
  // token), so no delivery falls back to a second channel and every count below is exact.
  auto first_channel_in = [](std::vector<std::string> allowed) {
    return [allowed](const json& u) {
      auto c = u["channels"][0].get<std::string>();
      if (c == "push" && u["push_tokens"][0].get<std::string>().rfind("dead-", 0) == 0) return false;
      if (c == "telegram" && u["telegram_chat_id"].get<long>() % 100 == 13) return false;
      return std::find(allowed.begin(), allowed.end(), c) != allowed.end();
    };
  };
  int welcome = FindUser(3000, [](const json&) { return true; });
  int reset = FindUser(3100, first_channel_in({"email", "sms"}));
  int liked = FindUser(3200, first_channel_in({"push", "telegram", "email"}));
  int bookmarks = FindUser(3300, [&](const json& u) {
    return first_channel_in({"email", "push"})(u) &&
           !herald::dev::SyntheticBookmarks(kSeed, std::stoull(u["user_id"].get<std::string>().substr(2))).empty();
  });
  int opted_in = FindUser(3400, [&](const json& u) { return u["marketing_opt_in"] == true && first_channel_in({"email", "telegram", "push"})(u); });
  int opted_out = FindUser(3500, [](const json& u) { return u["marketing_opt_in"] == false; });
  auto from = herald::ParseRfc3339("2026-10-01T00:00:00Z")->time_since_epoch().count();
  auto to = herald::ParseRfc3339("2026-11-01T00:00:00Z")->time_since_epoch().count();
  int stats = FindUser(3600, [&](const json& u) {
    return !herald::dev::SyntheticWatchHistory(kSeed, std::stoull(u["user_id"].get<std::string>().substr(2)), from, to).empty();
  });
  auto uid = [](int i) { return "u-" + std::to_string(i); };

  std::vector<json> events = {
      Event("user.registered", {{"user", {uid(welcome)}}}),
      Event("user.password_reset", {{"user", {uid(reset)}}, {"data", {{"reset_url", "https://cinema.example/reset/abc"}}}}),
      Event("comment.liked", {{"user", {uid(liked)}}, {"data", {{"liked_by", "Ann"}, {"comment_excerpt", "Great!"}}}}),
      Event("episode.released", {{"followers_of", "series-big-3"}, {"content", {"ep-5"}}}),
      Event("bookmark.reminder", {{"user", {uid(bookmarks)}}}),
      Event("promo.new_releases", {{"user", {uid(opted_in), uid(opted_out)}}, {"content", {"movie-1", "movie-2"}}}),
      Event("stats.monthly", {{"user", {uid(stats)}}, {"data", {{"month", "2026-10"}}}}),
  };
  auto ids = S().Publish(events);
  REQUIRE(ids.size() == events.size());
  std::map<std::string, std::string> type_of;
  for (std::size_t i = 0; i < ids.size(); ++i) type_of[ids[i]] = events[i]["event_type"];

  // 1 + 1 + 1 + 3 followers + 1 + 1 opted-in + 1 = 9 deliveries; 1 suppressed (opted out).
  auto seen = Collect({ids.begin(), ids.end()}, 9, 1);
  REQUIRE(seen.deliveries.size() == 9);
  REQUIRE(seen.statuses.size() == 1);
  CHECK(seen.statuses[0]["user_id"] == uid(opted_out));
  CHECK(seen.statuses[0]["reason"].get<std::string>().find("marketing") != std::string::npos);

  std::map<std::string, std::vector<json>> by_type;
  for (const auto& d : seen.deliveries) by_type[type_of[d["request"]["event_id"]]].push_back(d);
  for (const auto& [type, list] : by_type) {
    for (const auto& d : list) {
      INFO(type << " " << d.dump());
      auto user = herald::dev::SyntheticUser(kSeed, std::stoull(d["request"]["user_id"].get<std::string>().substr(2)));
      CHECK(d["vars"]["first_name"] == user["first_name"]);
      CHECK(d["locale"] == user["locale"]);
      CHECK(d["timezone"] == user["timezone"]);
      CHECK(d["notification_id"].get<std::string>().size() == 36);
    }
  }
  CHECK(by_type["user.registered"].at(0)["channel"] == "email");
  CHECK(by_type["user.password_reset"].at(0)["vars"]["reset_url"] == "https://cinema.example/reset/abc");
  auto liked_user = herald::dev::SyntheticUser(kSeed, static_cast<std::uint64_t>(liked));
  CHECK(by_type["comment.liked"].at(0)["channel"] == liked_user["channels"][0]);
  CHECK(by_type["comment.liked"].at(0)["vars"]["liked_by"] == "Ann");

  auto episode = herald::dev::SyntheticMovie(kSeed, "ep-5");
  REQUIRE(by_type["episode.released"].size() == 3);
  std::set<std::string> followers;
  for (const auto& d : by_type["episode.released"]) {
    followers.insert(d["request"]["user_id"]);
    CHECK(d["vars"]["series_title"] == Title(episode, d["locale"]));
    CHECK(d["vars"]["season"] == episode["season"]);
    CHECK(d["vars"]["episode"] == episode["episode"]);
    CHECK(d["vars"]["url"] == episode["url"]);
  }
  CHECK(followers == std::set<std::string>{"u-1", "u-2", "u-3"});

  const auto& bm = by_type["bookmark.reminder"].at(0);
  std::vector<std::string> expected_titles;
  for (const auto& item : herald::dev::SyntheticBookmarks(kSeed, static_cast<std::uint64_t>(bookmarks))) {
    expected_titles.push_back(Title(herald::dev::SyntheticMovie(kSeed, item["movie_id"].get<std::string>()), bm["locale"]));
  }
  std::vector<std::string> titles;
  for (const auto& b : bm["vars"]["bookmarks"]) titles.push_back(b["title"]);
  CHECK(titles == expected_titles);
  CHECK(bm["vars"]["bookmark_count"] == expected_titles.size());

  const auto& promo = by_type["promo.new_releases"].at(0);
  CHECK(promo["request"]["user_id"] == uid(opted_in));
  CHECK(promo["vars"]["release_count"] == 2);
  CHECK(promo["vars"]["releases"][0]["title"] == Title(herald::dev::SyntheticMovie(kSeed, "movie-1"), promo["locale"]));

  // stats.monthly: the month's watch history, aggregated exactly as the fake served it.
  const auto& st = by_type["stats.monthly"].at(0);
  auto history = herald::dev::SyntheticWatchHistory(kSeed, static_cast<std::uint64_t>(stats), from, to);
  long seconds = 0;
  std::map<std::string, long> genre_seconds;
  std::set<std::string> watched;
  for (const auto& item : history) {
    seconds += item["seconds"].get<long>();
    watched.insert(item["movie_id"]);
    auto movie = herald::dev::SyntheticMovie(kSeed, item["movie_id"].get<std::string>());
    for (const auto& g : movie["genres"]) {
      genre_seconds[g.get<std::string>()] += item["seconds"].get<long>();
    }
  }
  REQUIRE_FALSE(history.empty());
  CHECK(st["vars"]["month"] == "2026-10");
  CHECK(st["vars"]["minutes_watched"] == seconds / 60);
  CHECK(st["vars"]["titles_watched"] == watched.size());
  auto top = std::max_element(genre_seconds.begin(), genre_seconds.end(),
                              [](const auto& a, const auto& b) { return a.second < b.second; });
  CHECK(st["vars"]["top_genres"][0]["minutes"] == top->second / 60);

  // The email deliveries render with the default templates and reach the SMTP sink.
  for (int u : {welcome, stats}) CHECK(WaitUntil([&] { return S().MailsTo(EmailOf(u)) == 1; }, 60s));
}

TEST_CASE("with auth failing 30% of calls and slow, every notification is delivered exactly once", "[e2e][faults]") {
  S().SetFault("auth", {{"path", "/api/v1/users"}, {"latency_ms", 200}, {"error_rate", 0.3}, {"error", 500}});
  std::vector<json> events;
  for (int u = 4001; u <= 4100; ++u) events.push_back(Event("user.registered", {{"user", {"u-" + std::to_string(u)}}}));
  S().Publish(events);
  auto all_once = [] {
    auto counts = S().MailCounts();
    for (int u = 4001; u <= 4100; ++u) {
      auto it = counts.find(EmailOf(u));
      if (it == counts.end() || it->second < 1) return false;
    }
    return true;
  };
  bool delivered = WaitUntil(all_once, 120s, 200ms);
  auto faulted = S().FakeRequests("auth", "/api/v1/users");
  S().ClearFaults("auth");
  REQUIRE(delivered);
  auto counts = S().MailCounts();
  for (int u = 4001; u <= 4100; ++u) CHECK(counts[EmailOf(u)] == 1);
  int errors = 0;
  for (const auto& r : faulted) errors += r["status"] == 500 ? 1 : 0;
  CHECK(errors > 0);  // the fault really hit (≥ 20 calls at 30 %: missing it has p < 0.001)
}

TEST_CASE("auth down for a while: the breaker opens, nothing spins, nothing is lost", "[e2e][breaker]") {
  auto transitions = [](const char* to) {
    return S().Metric("enrich", std::string("herald_breaker_transitions_total{to=\"") + to + "\",upstream=\"auth\"}");
  };
  double opened_before = transitions("open"), closed_before = transitions("closed");
  S().SetFault("auth", {{"path", "/api/v1/users"}, {"error", 503}});
  std::vector<json> events;
  for (int u = 5001; u <= 5030; ++u) events.push_back(Event("user.registered", {{"user", {"u-" + std::to_string(u)}}}));
  S().Publish(events);
  REQUIRE(WaitUntil([&] { return S().Metric("enrich", "herald_breaker_state{upstream=\"auth\"}") == 1; }, 60s, 100ms));
  CHECK(transitions("open") > opened_before);
  // While it is down the stage probes about once per open period (1 s here), parking the
  // work in the retry tier, instead of hammering auth. Count its calls over 5 s.
  auto calls_before = S().FakeRequests("auth", "/api/v1/users").size();
  std::this_thread::sleep_for(5s);  // an observation window, not a wait for a result
  auto calls_during = S().FakeRequests("auth", "/api/v1/users").size() - calls_before;
  INFO("auth calls during 5 s of outage: " << calls_during);
  CHECK(calls_during <= 20);
  CHECK(S().MailsTo(EmailOf(5001)) == 0);

  S().ClearFaults("auth");
  auto all = [] {
    auto counts = S().MailCounts();
    for (int u = 5001; u <= 5030; ++u) {
      if (counts[EmailOf(u)] < 1) return false;
    }
    return true;
  };
  REQUIRE(WaitUntil(all, 120s, 200ms));
  auto counts = S().MailCounts();
  for (int u = 5001; u <= 5030; ++u) CHECK(counts[EmailOf(u)] == 1);
  CHECK(S().Metric("enrich", "herald_breaker_state{upstream=\"auth\"}") == 0);
  CHECK(transitions("closed") > closed_before);
}

TEST_CASE("the retry stage re-drives records when due without blocking other partitions", "[e2e][retry]") {
  auto request = [](int user) {
    return json{{"request_id", "r-" + std::to_string(user)}, {"event_id", "retry-test-" + std::to_string(user)},
                {"event_type", "user.registered"}, {"source", "auth"}, {"user_id", "u-" + std::to_string(user)},
                {"priority", "high"}, {"created_dt", "2026-11-21T10:00:00Z"}, {"content", json::array()},
                {"data", json::object()}, {"attempt", 0}}
        .dump();
  };
  auto now = herald::NowMs().time_since_epoch().count();
  herald::kafka::Producer p(herald::stage::ProducerOptions(herald::config::Config{.brokers = S().Env("HERALD_BROKERS")}, "test"));
  // Partition 0: due in 6 s. Partition 1: due now.
  p.ProduceSync({"notify.retry.30s", "u-6001", request(6001),
                 {{"herald-origin-topic", "notify.requests.v1"}, {"herald-attempt", "1"},
                  {"herald-retry-not-before", std::to_string(now + 6000)}}, 0}, 10s);
  p.ProduceSync({"notify.retry.30s", "u-6002", request(6002),
                 {{"herald-origin-topic", "notify.requests.v1"}, {"herald-attempt", "1"},
                  {"herald-retry-not-before", std::to_string(now)}}, 1}, 10s);
  REQUIRE(WaitUntil([] { return S().MailsTo(EmailOf(6002)) == 1; }, 30s));
  auto second_done = herald::NowMs().time_since_epoch().count();
  CHECK(second_done < now + 6000);           // not held back by the record that is not due
  CHECK(S().MailsTo(EmailOf(6001)) == 0);    // and that one waited
  REQUIRE(WaitUntil([] { return S().MailsTo(EmailOf(6001)) == 1; }, 30s));
  CHECK(herald::NowMs().time_since_epoch().count() >= now + 6000);
  CHECK(S().Metric("retry", "herald_retry_waits_total") >= 1);
}

TEST_CASE("a high-priority request overtakes a backlog of others in enrich", "[e2e][enrich][priority]") {
  const auto brokers = S().Env("HERALD_BROKERS");
  S().Dev().Kill("enrich", SIGTERM);
  REQUIRE(WaitUntil([] { return !S().Dev().IsRunning("enrich"); }, 30s, 50ms));
  // 2,000 normal-priority requests wait in notify.requests.v1 while enrich is stopped.
  std::vector<json> backlog;
  for (int e = 0; e < 4; ++e) {
    json users = json::array();
    for (int i = 0; i < 500; ++i) users.push_back("u-" + std::to_string(600'000 + e * 500 + i));
    backlog.push_back(Event("comment.liked", {{"user", users}, {"data", {{"liked_by", "Ann"}}}}));
  }
  auto low_ids = S().Publish(backlog);
  const std::set<std::string> lows(low_ids.begin(), low_ids.end());
  auto count_requests = [&](const std::string& topic, const std::set<std::string>& ids) {
    std::size_t n = 0;
    for (const auto& r : herald::test::ReadTopicToEnd(brokers, topic, 30s)) {
      n += ids.count(json::parse(r.value)["event_id"].get<std::string>());
    }
    return n;
  };
  REQUIRE(WaitUntil([&] { return count_requests("notify.requests.v1", lows) == 2000; }, 60s, 250ms));
  // Then a password reset, which plan writes to the high-priority requests topic.
  auto high_ids = S().Publish({Event("user.password_reset",
                                     {{"user", {"u-599999"}}, {"data", {{"reset_url", "https://cinema.example/r/overtake"}}}})});
  const std::set<std::string> high(high_ids.begin(), high_ids.end());
  REQUIRE(WaitUntil([&] { return count_requests("notify.requests.high.v1", high) == 1; }, 60s, 250ms));
  CHECK(count_requests("notify.requests.v1", high) == 0);

  S().Dev().Start("enrich");
  // Enrich states every request once (accepted, scheduled or suppressed); the record
  // timestamps of those statuses give the order in which the requests were handled.
  std::map<std::string, std::int64_t> first_status;  // event_id/user_id -> earliest timestamp
  std::int64_t high_at = -1;
  ReadTopicsUntil(
      brokers, {"notify.status.v1"},
      [&](const std::vector<herald::test::ReadRecord>& recs) {
        first_status.clear();
        high_at = -1;
        for (const auto& r : recs) {
          auto j = json::parse(r.value);
          const auto event_id = j["event_id"].get<std::string>();
          if (high.count(event_id)) {
            if (high_at < 0 || r.timestamp_ms < high_at) high_at = r.timestamp_ms;
          } else if (lows.count(event_id)) {
            auto key = event_id + "/" + j["user_id"].get<std::string>();
            auto [it, inserted] = first_status.emplace(key, r.timestamp_ms);
            if (!inserted) it->second = std::min(it->second, r.timestamp_ms);
          }
        }
        if (high_at < 0) return false;
        // Once 200 of the backlog have been handled after the reset, every status stamped
        // before it has been read too (they were produced earlier): no need to wait for the
        // whole backlog, which takes minutes under the sanitizers.
        std::size_t after = 0;
        for (const auto& [key, at] : first_status) after += at > high_at;
        return first_status.size() == 2000 || after >= 200;
      },
      400s);
  REQUIRE(high_at >= 0);
  std::size_t after = 0;
  for (const auto& [key, at] : first_status) after += at > high_at;
  REQUIRE((first_status.size() == 2000 || after >= 200));
  std::size_t before = 0;
  for (const auto& [key, at] : first_status) before += at < high_at;
  INFO("requests of the backlog handled before the password reset: " << before);
  // Handled in the first batches after the start (batches of 5 here), not behind the 2,000.
  CHECK(before < 200);
}

TEST_CASE("a high-priority request arriving while enrich works through a backlog waits for a short batch only",
          "[e2e][enrich][priority]") {
  // Full-size batches (500) on a stack of its own, and auth answering after 1 s, so each
  // enrich batch takes a second and its size shows in the statuses it emits.
  TestStack stack(10'000);
  const auto brokers = stack.Env("HERALD_BROKERS");
  stack.Dev().Kill("enrich", SIGTERM);
  REQUIRE(WaitUntil([&] { return !stack.Dev().IsRunning("enrich"); }, 30s, 50ms));
  std::vector<json> backlog;
  for (int e = 0; e < 4; ++e) {
    json users = json::array();
    for (int i = 0; i < 500; ++i) users.push_back("u-" + std::to_string(1 + e * 500 + i));
    backlog.push_back(Event("comment.liked", {{"user", users}, {"data", {{"liked_by", "Ann"}}}}));
  }
  auto low_ids = stack.Publish(backlog);
  const std::set<std::string> lows(low_ids.begin(), low_ids.end());
  REQUIRE(WaitUntil(
      [&] {
        std::size_t n = 0;
        for (const auto& r : herald::test::ReadTopicToEnd(brokers, "notify.requests.v1", 30s)) {
          n += lows.count(json::parse(r.value)["event_id"].get<std::string>());
        }
        return n == 2000;
      },
      60s, 250ms));
  stack.SetFault("auth", {{"path", "/api/v1/users:batchGet"}, {"latency_ms", 1000}});
  stack.Dev().Start("enrich");
  // The second batch is under way (the first may be short: the consumer has just started
  // fetching): a password reset arrives now.
  REQUIRE(WaitUntil([&] { return stack.FakeRequests("auth", "/api/v1/users:batchGet").size() >= 2; }, 60s, 10ms));
  auto high_ids = stack.Publish({Event("user.password_reset",
                                       {{"user", {"u-9999"}}, {"data", {{"reset_url", "https://cinema.example/r/mid-batch"}}}})});
  const std::set<std::string> high(high_ids.begin(), high_ids.end());

  std::int64_t arrived = -1, handled = -1;
  std::map<std::string, std::int64_t> low_statuses;  // event_id/user_id of the backlog -> its first status
  ReadTopicsUntil(
      brokers, {"notify.requests.high.v1", "notify.status.v1"},
      [&](const std::vector<herald::test::ReadRecord>& recs) {
        arrived = handled = -1;
        low_statuses.clear();
        for (const auto& r : recs) {
          auto j = json::parse(r.value);
          const auto event_id = j["event_id"].get<std::string>();
          if (r.topic == "notify.requests.high.v1") {
            if (high.count(event_id)) arrived = r.timestamp_ms;
            continue;
          }
          const auto status = j["status"].get<std::string>();
          if (status != "accepted" && status != "scheduled" && status != "suppressed") continue;  // enrich's
          if (high.count(event_id) && (handled < 0 || r.timestamp_ms < handled)) handled = r.timestamp_ms;
          if (lows.count(event_id)) {
            auto [it, inserted] = low_statuses.emplace(event_id + "/" + j["user_id"].get<std::string>(), r.timestamp_ms);
            if (!inserted) it->second = std::min(it->second, r.timestamp_ms);
          }
        }
        return arrived >= 0 && handled >= 0 && low_statuses.size() >= 2000;
      },
      300s);
  stack.ClearFaults("auth");
  REQUIRE(arrived >= 0);
  REQUIRE(handled >= 0);
  std::size_t between = 0;
  for (const auto& [key, at] : low_statuses) between += at >= arrived && at <= handled;
  INFO("backlog requests enriched between the reset's arrival and its own status: " << between);
  std::cout << "mid-batch reset: backlog requests enriched while it waited: " << between << "\n";
  // The batch under way when it arrived, and at most one more begun before enrich fetched it:
  // 128 lower-priority requests each, where a full batch without the cap holds 500.
  CHECK(between <= 300);
  CHECK(stack.Metric("enrich", R"(herald_priority_yields_total{stage="enrich"})") > 0);
}
