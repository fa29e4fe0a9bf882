// Campaigns end to end on the embedded stack, driven only through the admin API: a
// 50,000-recipient campaign that starts by itself and whose statistics equal what the
// providers received; pause at about half and resume (every recipient exactly once); cancel
// mid-way (nothing more is sent, the remainder counted as cancelled); one-click unsubscribe
// from a received email's header, honoured by the next campaign.
//
// The test cases share one stack and run in file order; each clears the SMTP sink and the
// fake providers' logs first. Low-priority notifications respect each user's quiet hours, so
// every campaign ends by moving the stages' clock a day on, which releases what was parked.

#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <pqxx/pqxx>

#include "herald/campaign/state.hpp"
#include "herald/dev/mail.hpp"
#include "herald/http/client.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/redis/client.hpp"
#include "support/stack.hpp"

using herald::test::SyntheticUser;
using herald::test::TestStack;
using herald::test::WaitUntil;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr int kUsers = 50'000;

// The SMTP rate and a small fan-out lag limit keep a campaign in flight for some seconds, so a
// pause or cancel lands while both the fan-out and the sending are under way.
TestStack& S() {
  static TestStack stack(kUsers, {{"HERALD_SMTP_RATE", "1500"},
                                  {"HERALD_PROVIDER_RATE", "5000"},
                                  {"HERALD_PROVIDER_BURST", "500"},
                                  {"HERALD_FANOUT_MAX_LAG", "1500"},
                                  {"HERALD_SCHEDULER_INTERVAL", "200ms"}});
  return stack;
}

void ClearCaptures() {
  for (const auto& e : std::filesystem::directory_iterator(S().Env("HERALD_SMTP_DIR"))) {
    if (e.path().extension() == ".eml") std::filesystem::remove(e.path());
  }
  herald::http::Client c;
  for (const char* role : {"HERALD_PUSH_URL", "HERALD_TELEGRAM_URL", "HERALD_SMS_URL"}) {
    REQUIRE(c.Request("DELETE", S().Env(role) + "/_fake/requests", "").status == 200);
  }
}

json Api(const std::string& method, const std::string& path, const json& body = nullptr, long expect = 200) {
  auto r = S().Admin(method, path, body);
  INFO(method << " " << path << " -> " << r.status << " " << r.raw);
  REQUIRE(r.status == expect);
  return r.body;
}

json Stats(const std::string& id) { return Api("GET", "/v1/campaigns/" + id + "/stats"); }

long long N(const json& by_status, const char* status) { return by_status.value(status, 0LL); }

std::string Launch(json campaign) {
  auto created = Api("POST", "/v1/campaigns", campaign, 201);
  std::string id = created["id"];
  Api("POST", "/v1/campaigns/" + id + "/launch", json::object());
  return id;
}

std::int64_t Held(const std::string& id) {
  herald::redis::Client redis(S().Env("HERALD_REDIS_URL"));
  return herald::campaign::HeldCount(redis, id);
}

// Every run's fan-out has stopped (complete, or parked by a pause).
bool FanoutStopped(const std::string& id) {
  auto conn = herald::pg::Connect(S().Env("HERALD_PG_URL"));
  pqxx::work tx(*conn);
  auto r = tx.exec_params1("SELECT count(*), count(*) FILTER (WHERE fanout_complete OR fanout_paused) FROM campaign_runs WHERE campaign_id = $1", id);
  return r[0].as<long>() > 0 && r[0].as<long>() == r[1].as<long>();
}

// Nothing of the campaign is moving: its fan-out stopped, every fanned-out request reached
// the ledger, and every notification still "accepted" is one that delivery holds (paused).
// What is left pending then waits in a timezone bucket (scheduled).
bool Settled(const std::string& id, json* stats_out = nullptr) {
  auto s = Stats(id);
  if (stats_out) *stats_out = s;
  const auto& p = s["progress"];
  const auto& by = s["by_status"];
  long long rows = 0;
  for (const auto& [status, n] : by.items()) {
    if (status != "fallback") rows += n.get<long long>();
  }
  return FanoutStopped(id) && rows == p["fanned_out"].get<long long>() && N(by, "retried") == 0 &&
         N(by, "accepted") == Held(id);
}

// Mails per envelope recipient, and per address what the push/telegram fakes answered 200.
struct Received {
  std::map<std::string, int> email, push, telegram;
  long long push_failed = 0, telegram_failed = 0;
};

Received Captured() {
  Received r;
  r.email = S().MailCounts();
  for (const auto& req : S().FakeRequests("push", "/v1/send")) {
    auto body = json::parse(req["body"].get<std::string>());
    if (req["status"] == 200) ++r.push[body["token"].get<std::string>()];
    else ++r.push_failed;
  }
  for (const auto& req : S().FakeRequests("telegram", "/bot")) {
    auto body = json::parse(req["body"].get<std::string>());
    if (req["status"] == 200) ++r.telegram[body["chat_id"].dump()];
    else ++r.telegram_failed;
  }
  return r;
}

long long Total(const std::map<std::string, int>& m) {
  long long n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

int MaxPerAddress(const std::map<std::string, int>& m) {
  int most = 0;
  for (const auto& [k, v] : m) most = std::max(most, v);
  return most;
}

// Moves the clock a day on so everything parked by quiet hours is due, and waits until the
// campaign has nothing pending.
json FinishParked(const std::string& id, std::chrono::seconds timeout) {
  S().AdvanceClock(25h);
  json s;
  bool done = WaitUntil(
      [&] {
        s = Stats(id);
        return s["progress"]["pending"] == 0;
      },
      timeout, 200ms);
  INFO(s.dump());
  REQUIRE(done);
  return s;
}

// The premium segment: its size, and its members an email campaign reaches (an address and
// marketing opt-in), by address.
struct Segment {
  int size = 0;
  std::set<std::string> reachable;
};

Segment Premium() {
  Segment seg;
  for (int i = 1; i <= kUsers; ++i) {
    auto u = SyntheticUser(i);
    bool premium = false;
    for (const auto& t : u["tags"]) premium = premium || t == "premium";
    if (!premium) continue;
    ++seg.size;
    if (u.value("marketing_opt_in", false) && u["email"].is_string()) seg.reachable.insert(u["email"].get<std::string>());
  }
  return seg;
}

// Launches an email campaign to the premium segment and returns once half of the `expected`
// emails were sent.
std::string LaunchToPremiumUntilHalfSent(const std::string& name, const std::string& movie, long long expected) {
  auto id = Launch({{"name", name},
                    {"event_type", "promo.new_releases"},
                    {"segment", {{"tags", {"premium"}}}},
                    {"channels", {"email"}},
                    {"content", {movie}},
                    {"deliver_window", {{"from", "00:00"}, {"to", "00:00"}}}});
  REQUIRE(WaitUntil([&] { return Stats(id)["progress"]["sent"].get<long long>() >= expected / 2; }, 300s, 20ms));
  return id;
}

}  // namespace

TEST_CASE("a 50,000-recipient campaign starts by itself at start_at, finishes, and its statistics equal what the providers received") {
  ClearCaptures();
  auto start_at = S().Now() + 2min;
  auto id = Launch({{"name", "New releases, all viewers"},
                    {"event_type", "promo.new_releases"},
                    {"segment", json::object()},
                    {"content", {"movie-1", "movie-2", "movie-3"}},
                    {"deliver_window", {{"from", "00:00"}, {"to", "00:00"}}},
                    {"start_at", herald::FormatRfc3339(start_at)}});
  auto c = Api("GET", "/v1/campaigns/" + id);
  CHECK(c["state"] == "scheduled");
  CHECK(c["next_run_at"] == herald::FormatRfc3339(start_at));
  // Nothing starts before start_at, however many scheduler passes go by.
  double passes = S().Metric("scheduler", "herald_scheduler_passes_total");
  REQUIRE(WaitUntil([&] { return S().Metric("scheduler", "herald_scheduler_passes_total") >= passes + 3; }, 30s, 50ms));
  CHECK(Api("GET", "/v1/campaigns/" + id)["runs"] == 0);

  S().SetClock(start_at + 1s);
  REQUIRE(WaitUntil([&] { return Api("GET", "/v1/campaigns/" + id)["state"] == "running"; }, 30s, 100ms));
  json s;
  bool settled = WaitUntil([&] { return Settled(id, &s) && s["progress"]["fanout_complete"] == true; }, 600s, 500ms);
  INFO(s.dump());
  REQUIRE(settled);
  CHECK(s["progress"]["fanned_out"] == kUsers);
  s = FinishParked(id, 300s);
  REQUIRE(WaitUntil([&] { return Api("GET", "/v1/campaigns/" + id)["state"] == "completed"; }, 30s, 100ms));

  const auto& p = s["progress"];
  CHECK(p["planned"] == kUsers);
  CHECK(p["sent"].get<long long>() + p["failed"].get<long long>() + p["suppressed"].get<long long>() +
            p["expired"].get<long long>() ==
        kUsers);
  CHECK(p["cancelled"] == 0);
  CHECK(p["sent"].get<long long>() > kUsers / 4);  // most viewers opted in to marketing mail

  auto got = Captured();
  const auto& ch = s["by_channel"];
  CHECK(Total(got.email) == N(ch.value("email", json::object()), "sent"));
  CHECK(Total(got.push) == N(ch.value("push", json::object()), "sent"));
  CHECK(Total(got.telegram) == N(ch.value("telegram", json::object()), "sent"));
  // Refusals (dead push tokens, blocked bots) are the rows that fell back or failed.
  CHECK(got.push_failed == N(ch.value("push", json::object()), "fallback") + N(ch.value("push", json::object()), "failed"));
  CHECK(got.telegram_failed ==
        N(ch.value("telegram", json::object()), "fallback") + N(ch.value("telegram", json::object()), "failed"));
  CHECK(Total(got.email) + Total(got.push) + Total(got.telegram) == p["sent"].get<long long>());
  CHECK(MaxPerAddress(got.email) == 1);
  CHECK(MaxPerAddress(got.push) == 1);
  CHECK(MaxPerAddress(got.telegram) == 1);
  CHECK(s["latency_ms"]["count"] == p["sent"]);

  // A campaign reads each recipient once: enrich keeps them in its own memory only, so the
  // shared Redis cache does not fill with 50,000 users for HERALD_CACHE_TTL.
  herald::redis::Client redis(S().Env("HERALD_REDIS_URL"));
  auto cached_users = [&] {
    std::size_t n = 0;
    std::string cursor = "0";
    do {
      auto r = redis.Command({"SCAN", cursor, "MATCH", "herald:cache:user:*", "COUNT", "1000"});
      REQUIRE(r.elements.size() == 2);
      cursor = r.elements[0].str;
      n += r.elements[1].elements.size();
    } while (cursor != "0");
    return n;
  };
  CHECK(cached_users() == 0);  // (the first test case on this stack: nothing else enriched before)
  // A transactional notification's user is shared with the other enrich replicas. Enrich is
  // restarted first, so the user is not still in its own cache from the campaign.
  S().Dev().Kill("enrich", SIGTERM);
  REQUIRE(WaitUntil([] { return !S().Dev().IsRunning("enrich"); }, 30s, 50ms));
  S().Dev().Start("enrich");
  json liked = {{"event_type", "comment.liked"},
                {"created_dt", herald::FormatRfc3339(S().Now())},
                {"priority", "high"},
                {"payload", {{"user", {"u-7"}}, {"data", {{"liked_by", "Ann"}}}}}};
  auto liked_ids = S().Publish({liked});
  CHECK(WaitUntil([&] { return redis.Command({"EXISTS", "herald:cache:user:u-7"}).integer == 1; }, 60s, 100ms));
  CHECK(cached_users() == 1);
  // Its message is delivered before the next test case clears the captures and counts mails.
  REQUIRE(WaitUntil(
      [&] {
        auto conn = herald::pg::Connect(S().Env("HERALD_PG_URL"));
        pqxx::work tx(*conn);
        return tx.exec_params1("SELECT count(*) FROM deliveries WHERE event_id = $1 AND status IN ('sent', 'suppressed')",
                               liked_ids.at(0))[0]
                   .as<long>() > 0;
      },
      60s, 100ms));

  WARN("50,000 campaign: sent " << p["sent"] << " (email " << Total(got.email) << ", push " << Total(got.push)
                                << ", telegram " << Total(got.telegram) << "), suppressed " << p["suppressed"]
                                << ", failed " << p["failed"] << "; latency " << s["latency_ms"].dump());
}

TEST_CASE("pause at about half stops fan-out and sending; resume continues: every recipient exactly once") {
  ClearCaptures();
  auto premium = Premium();
  int segment = premium.size;
  long long expected = static_cast<long long>(premium.reachable.size());
  auto id = LaunchToPremiumUntilHalfSent("Premium picks", "movie-7", expected);
  Api("POST", "/v1/campaigns/" + id + "/pause", json::object());

  json s;
  REQUIRE(WaitUntil([&] { return Settled(id, &s); }, 120s, 200ms));
  INFO(s.dump());
  auto paused_sent = s["progress"]["sent"].get<long long>();
  CHECK(paused_sent < expected);
  CHECK(s["progress"]["fanned_out"].get<long long>() < segment);  // the fan-out stopped too
  CHECK(Held(id) > 0);
  CHECK(static_cast<long long>(S().MailFiles()) == paused_sent);
  // While paused nothing moves, over several scheduler passes.
  double passes = S().Metric("scheduler", "herald_scheduler_passes_total");
  REQUIRE(WaitUntil([&] { return S().Metric("scheduler", "herald_scheduler_passes_total") >= passes + 5; }, 30s, 50ms));
  CHECK(static_cast<long long>(S().MailFiles()) == paused_sent);
  CHECK(Stats(id)["progress"]["sent"] == paused_sent);

  Api("POST", "/v1/campaigns/" + id + "/resume", json::object());
  REQUIRE(WaitUntil([&] { return Settled(id, &s) && s["progress"]["fanout_complete"] == true; }, 300s, 200ms));
  CHECK(Held(id) == 0);
  s = FinishParked(id, 120s);
  const auto& p = s["progress"];
  CHECK(p["planned"] == segment);
  CHECK(p["sent"].get<long long>() + p["suppressed"].get<long long>() + p["failed"].get<long long>() == segment);
  auto mails = S().MailCounts();
  CHECK(Total(mails) == p["sent"].get<long long>());
  CHECK(MaxPerAddress(mails) == 1);
  // Each premium user with an email address who opted in to marketing got exactly one.
  for (const auto& address : premium.reachable) {
    INFO(address);
    CHECK(mails[address] == 1);
  }
  CHECK(mails.size() == premium.reachable.size());
  CHECK(p["sent"] == expected);
  WARN("pause/resume: " << segment << " recipients (" << expected << " reachable), paused after " << paused_sent << " sent, then " << p["sent"]);
}

TEST_CASE("cancel mid-way: nothing more is sent and the remainder is counted as cancelled") {
  ClearCaptures();
  auto premium = Premium();
  int segment = premium.size;
  long long expected = static_cast<long long>(premium.reachable.size());
  auto id = LaunchToPremiumUntilHalfSent("Premium picks, take two", "movie-8", expected);
  auto c = Api("POST", "/v1/campaigns/" + id + "/cancel", json::object());
  CHECK(c["state"] == "cancelled");
  auto at_cancel = static_cast<long long>(S().MailFiles());
  json s;
  REQUIRE(WaitUntil([&] { return Settled(id, &s) && s["progress"]["fanout_complete"] == true; }, 120s, 200ms));
  // Parked notifications come due a day later: released, they are recorded as cancelled.
  S().AdvanceClock(25h);
  REQUIRE(WaitUntil(
      [&] {
        s = Stats(id);
        return N(s["by_status"], "scheduled") == 0 && N(s["by_status"], "accepted") == 0;
      },
      120s, 200ms));
  INFO(s.dump());
  const auto& p = s["progress"];
  auto sent = p["sent"].get<long long>();
  auto mails = static_cast<long long>(S().MailFiles());
  CHECK(mails == sent);
  // Only what was already handed to the SMTP server when the cancel landed (one chunk).
  CHECK(mails - at_cancel <= 16);
  CHECK(sent < expected);
  CHECK(p["pending"] == 0);
  CHECK(p["cancelled"].get<long long>() > 0);
  CHECK(p["cancelled"].get<long long>() ==
        p["planned"].get<long long>() - sent - p["failed"].get<long long>() - p["suppressed"].get<long long>() -
            p["expired"].get<long long>());
  CHECK(N(s["by_status"], "cancelled") > 0);
  CHECK(Api("GET", "/v1/campaigns/" + id)["state"] == "cancelled");
  WARN("cancel: " << segment << " recipients, " << at_cancel << " sent at cancel, " << sent << " in the end, "
                  << p["cancelled"] << " cancelled, planned " << p["planned"]);
}

TEST_CASE("one-click unsubscribe from a received email's header; the next campaign skips that user") {
  ClearCaptures();
  // Two viewers reachable by email who opted in to marketing.
  auto reachable = [](const json& u) {
    return u.value("marketing_opt_in", false) && u["email"].is_string() && u["channels"][0] == "email";
  };
  int a = herald::test::FindUser(100, reachable);
  int b = herald::test::FindUser(a + 1, reachable);
  std::string ua = "u-" + std::to_string(a), ub = "u-" + std::to_string(b);
  auto campaign = [&](const std::string& name) {
    return json{{"name", name},
                {"event_type", "promo.new_releases"},
                {"segment", {{"users", {ua, ub}}}},
                {"channels", {"email"}},
                {"priority", "high"},
                {"content", {"movie-9"}},
                {"deliver_window", {{"from", "00:00"}, {"to", "00:00"}}}};
  };
  auto first = Launch(campaign("Weekly digest"));
  REQUIRE(WaitUntil([&] { return Stats(first)["progress"]["sent"] == 2; }, 60s, 100ms));

  // The List-Unsubscribe header of the mail user A received.
  std::string email_a = SyntheticUser(a)["email"];
  std::string header;
  for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) {
    if (m.rcpt != email_a) continue;
    auto at = m.raw.find("\nList-Unsubscribe: <");
    REQUIRE(at != std::string::npos);
    header = m.raw.substr(at + 20, m.raw.find('>', at) - at - 20);
    CHECK(m.raw.find("\nList-Unsubscribe-Post: List-Unsubscribe=One-Click") != std::string::npos);
  }
  REQUIRE(header.rfind(S().Env("HERALD_ADMIN_URL") + "/v1/unsubscribe?token=", 0) == 0);

  herald::http::Client client;
  auto page = client.Get(header);
  CHECK(page.status == 200);
  CHECK(page.body.find("<form method=\"post\"") != std::string::npos);
  // A tampered token is refused and records nothing.
  std::string tampered = header;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  CHECK(client.Post(tampered, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded").status == 400);
  CHECK(Api("GET", "/v1/users/" + ua + "/preferences")["opt_outs"].empty());
  // RFC 8058 one-click: a POST of List-Unsubscribe=One-Click to the header's URL.
  auto done = client.Post(header, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded");
  CHECK(done.status == 200);
  CHECK(Api("GET", "/v1/users/" + ua + "/preferences")["opt_outs"] == json::array({"marketing"}));

  // User B asks for the other language through the preferences API.
  std::string other = SyntheticUser(b)["locale"] == "ru" ? "en" : "ru";
  CHECK(Api("PUT", "/v1/users/" + ub + "/preferences", {{"locale", other}})["locale"] == other);

  auto second = Launch(campaign("Weekly digest, next week"));
  json s;
  REQUIRE(WaitUntil(
      [&] {
        s = Stats(second);
        return s["progress"]["pending"] == 0 && s["progress"]["planned"] == 2;
      },
      60s, 100ms));
  INFO(s.dump());
  CHECK(s["progress"]["sent"] == 1);
  CHECK(s["progress"]["suppressed"] == 1);
  CHECK(S().MailsTo(email_a) == 1);                        // only the first campaign's
  CHECK(S().MailsTo(SyntheticUser(b)["email"]) == 2);      // both campaigns'
  // B's first mail is in B's own language, the second in the one B asked for.
  int in_other = 0;
  for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) {
    if (m.rcpt == SyntheticUser(b)["email"]) in_other += m.subject.find(other == "ru" ? "новинки" : "fresh releases") != std::string::npos;
  }
  CHECK(in_other == 1);
  // The ledger says why.
  auto conn = herald::pg::Connect(S().Env("HERALD_PG_URL"));
  pqxx::work tx(*conn);
  auto row = tx.exec_params1("SELECT status, reason FROM deliveries WHERE campaign_id = $1 AND user_id = $2", second, ua);
  CHECK(row[0].as<std::string>() == "suppressed");
  CHECK(row[1].as<std::string>() == "user opted out of marketing");
}

TEST_CASE("a recurring campaign runs once per cron occurrence until end_at, then completes") {
  ClearCaptures();
  int user = herald::test::FindUser(300, [](const json& u) {
    return u.value("marketing_opt_in", false) && u["email"].is_string() && u["channels"][0] == "email";
  });
  std::string email = SyntheticUser(user)["email"];
  auto now = S().Now();
  auto hour = std::chrono::floor<std::chrono::hours>(now);
  auto id = Launch({{"name", "Hourly pick"},
                    {"event_type", "promo.new_releases"},
                    {"segment", {{"users", {"u-" + std::to_string(user)}}}},
                    {"channels", {"email"}},
                    {"priority", "high"},
                    {"content", {"movie-5"}},
                    {"deliver_window", {{"from", "00:00"}, {"to", "00:00"}}},
                    {"cron", "0 * * * *"},
                    {"timezone", "Asia/Kathmandu"},
                    {"end_at", herald::FormatRfc3339(hour + 2h + 30min)}});
  auto c = Api("GET", "/v1/campaigns/" + id);
  CHECK(c["state"] == "scheduled");
  // Kathmandu is UTC+5:45: "0 * * * *" there falls at :15 past each UTC hour.
  auto first = hour + 15min + (now >= hour + 15min ? 1h : 0h);
  CHECK(c["next_run_at"] == herald::FormatRfc3339(first));

  for (int run = 1; herald::TimePoint(first + (run - 1) * 1h) < hour + 2h + 30min; ++run) {
    S().SetClock(first + (run - 1) * 1h + 1s);
    REQUIRE(WaitUntil([&] { return Api("GET", "/v1/campaigns/" + id)["runs"] == run; }, 30s, 100ms));
    REQUIRE(WaitUntil([&] { return S().MailsTo(email) == run; }, 60s, 100ms));
  }
  auto runs = Api("GET", "/v1/campaigns/" + id)["runs"].get<int>();
  CHECK(runs >= 2);
  S().SetClock(hour + 2h + 31min);
  REQUIRE(WaitUntil([&] { return Api("GET", "/v1/campaigns/" + id)["state"] == "completed"; }, 30s, 100ms));
  // Scheduler passes after the end launch nothing more.
  double passes = S().Metric("scheduler", "herald_scheduler_passes_total");
  S().AdvanceClock(3h);
  REQUIRE(WaitUntil([&] { return S().Metric("scheduler", "herald_scheduler_passes_total") >= passes + 3; }, 30s, 50ms));
  CHECK(Api("GET", "/v1/campaigns/" + id)["runs"] == runs);
  CHECK(S().MailsTo(email) == runs);
  auto s = Stats(id);
  CHECK(s["progress"]["planned"] == runs);
  CHECK(s["progress"]["sent"] == runs);
}

