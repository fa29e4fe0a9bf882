// Timing on the embedded stack with the stages' clock in a file (HERALD_CLOCK=file:...), so
// the test moves time instead of sleeping: local-time windows per time zone across a DST
// change, quiet hours versus a critical type, scheduler replicas with one killed while it
// releases, and cron schedules fired once per occurrence by two replicas and once after an
// outage.

#include <catch2/catch.hpp>

#include <signal.h>

#include <fstream>
#include <map>
#include <set>

#include <pqxx/pqxx>

#include "herald/common/time.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/dev/mail.hpp"
#include "support/stack.hpp"

using herald::ParseRfc3339;
using herald::test::EmailOf;
using herald::test::FindUser;
using herald::test::FirstChannelWorks;
using herald::test::Run;
using herald::test::TestStack;
using herald::test::WaitUntil;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

TestStack& S() {
  static TestStack stack(1'000'000, {{"HERALD_SCHEDULER_LEASE", "2s"}, {"HERALD_SCHEDULER_INTERVAL", "200ms"}});
  return stack;
}

herald::TimePoint At(const char* rfc3339) { return *ParseRfc3339(rfc3339); }

struct LedgerRow {
  std::string status;
  std::string reason;
};

// The ledger rows of one event, by user.
std::map<std::string, LedgerRow> Ledger(const std::string& event_id) {
  pqxx::connection conn(S().Env("HERALD_PG_URL"));
  pqxx::work tx(conn);
  std::map<std::string, LedgerRow> out;
  for (const auto& r : tx.exec_params("SELECT user_id, status, coalesce(reason, '') FROM deliveries WHERE event_id = $1", event_id)) {
    out[r[0].as<std::string>()] = {r[1].as<std::string>(), r[2].as<std::string>()};
  }
  return out;
}

std::string Status(const std::string& event_id, const std::string& user) {
  auto rows = Ledger(event_id);
  auto it = rows.find(user);
  return it == rows.end() ? "" : it->second.status;
}

json Event(const std::string& type, const std::string& created, json payload) {
  return {{"event_type", type}, {"created_dt", created}, {"payload", std::move(payload)}};
}

// A second scheduler replica next to the stack's own, with the same settings.
struct ExtraScheduler {
  herald::test::TempDir dir;
  int pid = -1;
  void Start() {
    std::string env;
    for (const auto& [k, v] : S().Dev().Env()) env += k + "='" + v + "' ";
    env += "HERALD_CLOCK='file:" + S().ClockFile() + "' HERALD_BUILTIN_SCHEDULES=off HERALD_SCHEDULER_LEASE=2s "
           "HERALD_SCHEDULER_INTERVAL=200ms HERALD_HTTP_HOST=127.0.0.1 HERALD_HTTP_PORT=" +
           std::to_string(herald::dev::FreePort()) + " ";
    std::string out;
    REQUIRE(Run("env " + env + HERALD_BINARY " scheduler > " + dir.Path() + "/scheduler.log 2>&1 & echo $!", &out) == 0);
    pid = std::stoi(out);
  }
  void Kill(int sig) {
    if (pid > 0) ::kill(pid, sig);
    if (sig == SIGKILL || sig == SIGTERM) pid = -1;
  }
  ~ExtraScheduler() { Kill(SIGKILL); }
};

}  // namespace

TEST_CASE("marketing waits for each recipient's first allowed local minute, across a DST change",
          "[e2e][timing][window]") {
  // 2026-11-01T02:30Z: New York is at 22:30 EDT on Oct 31 and falls back to EST at 06:00Z,
  // so its next 10:00 is 15:00Z, not 14:00Z.
  const char* now = "2026-11-01T02:30:00Z";
  S().SetClock(At(now));
  // Expected delivery instants, worked out by hand (date -u -d 'TZ="Zone" 2026-11-01 10:00').
  std::map<std::string, std::string> due = {
      {"Asia/Kathmandu", "2026-11-01T04:15:00.000Z"},     // +05:45, 08:15 local now
      {"Asia/Kolkata", "2026-11-01T04:30:00.000Z"},       // +05:30, 08:00 local now
      {"Europe/Moscow", "2026-11-01T07:00:00.000Z"},      // +03, 05:30 local now
      {"Europe/Kaliningrad", "2026-11-01T08:00:00.000Z"}, // +02, 04:30 local now
      {"America/New_York", "2026-11-01T15:00:00.000Z"},   // 22:30 EDT now; 10:00 EST
      {"Asia/Vladivostok", ""},                           // 12:30 local: inside the window, now
  };
  std::map<std::string, std::string> user_of;  // zone -> user id
  int from = 40'000;
  for (const auto& [zone, when] : due) {
    int u = FindUser(from, [&, zone = zone](const json& x) {
      return x["timezone"] == zone && x["marketing_opt_in"] == true && FirstChannelWorks(x) &&
             x["channels"][0] != "sms";
    });
    user_of[zone] = "u-" + std::to_string(u);
  }
  json users = json::array();
  for (const auto& [zone, u] : user_of) users.push_back(u);
  auto ids = S().Publish({Event("promo.new_releases", now, {{"user", users}, {"content", {"movie-1"}}})});
  const auto& event_id = ids.at(0);

  // Vladivostok is sent at once; the others are parked with their due instant.
  REQUIRE(WaitUntil(
      [&] {
        auto rows = Ledger(event_id);
        if (rows[user_of["Asia/Vladivostok"]].status != "sent") return false;
        for (const auto& [zone, when] : due) {
          if (!when.empty() && rows[user_of[zone]].status != "scheduled") return false;
        }
        return true;
      },
      60s, 200ms));
  auto rows = Ledger(event_id);
  for (const auto& [zone, when] : due) {
    if (when.empty()) continue;
    INFO(zone << ": " << rows[user_of[zone]].reason);
    CHECK(rows[user_of[zone]].reason.rfind("due " + when, 0) == 0);
  }

  // Time moves to each due instant in turn: that recipient is sent, the later ones still wait.
  std::vector<std::pair<std::string, std::string>> order(due.begin(), due.end());
  std::erase_if(order, [](const auto& p) { return p.second.empty(); });
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  for (std::size_t i = 0; i < order.size(); ++i) {
    S().SetClock(At(order[i].second.c_str()));
    INFO("released at " << order[i].second << ": " << order[i].first);
    REQUIRE(WaitUntil([&] { return Status(event_id, user_of[order[i].first]) == "sent"; }, 30s, 100ms));
    auto now_rows = Ledger(event_id);
    for (std::size_t j = i + 1; j < order.size(); ++j) CHECK(now_rows[user_of[order[j].first]].status == "scheduled");
  }
}

TEST_CASE("Lord Howe: the next 10:00 falls after its 30-minute DST change", "[e2e][timing][window]") {
  // 2026-10-03T12:00Z is 22:30 at +10:30; clocks go to +11 at 02:00 local, so 10:00 on
  // Oct 4 is 23:00Z, not 23:30Z (date -u -d 'TZ="Australia/Lord_Howe" 2026-10-04 10:00').
  const char* now = "2026-10-03T12:00:00Z";
  S().SetClock(At(now));
  int u = FindUser(42'000, [](const json& x) {
    return x["timezone"] == "Australia/Lord_Howe" && x["marketing_opt_in"] == true && FirstChannelWorks(x) &&
           x["channels"][0] != "sms";
  });
  const std::string user = "u-" + std::to_string(u);
  auto ids = S().Publish({Event("promo.new_releases", now, {{"user", {user}}, {"content", {"movie-2"}}})});
  REQUIRE(WaitUntil([&] { return Status(ids.at(0), user) == "scheduled"; }, 60s, 100ms));
  INFO(Ledger(ids[0])[user].reason);
  CHECK(Ledger(ids[0])[user].reason.rfind("due 2026-10-03T23:00:00.000Z", 0) == 0);
  S().SetClock(At("2026-10-03T23:00:00Z"));
  REQUIRE(WaitUntil([&] { return Status(ids[0], user) == "sent"; }, 30s, 100ms));
}

TEST_CASE("quiet hours hold a normal notification and let a password reset through", "[e2e][timing][quiet]") {
  // A Moscow user with quiet hours 22:00-08:00 whose first channel is email.
  int u = FindUser(41'000, [](const json& x) {
    return x["timezone"] == "Europe/Moscow" && x["quiet_hours"].is_object() && x["quiet_hours"]["from"] == "22:00" &&
           x["quiet_hours"]["to"] == "08:00" && x["channels"][0] == "email";
  });
  const std::string user = "u-" + std::to_string(u);
  const char* now = "2026-11-21T20:30:00Z";  // 23:30 in Moscow
  S().SetClock(At(now));
  auto ids = S().Publish({Event("comment.liked", now, {{"user", {user}}, {"data", {{"liked_by", "Ann"}}}}),
                          Event("user.password_reset", now, {{"user", {user}}, {"data", {{"reset_url", "https://cinema.example/r/1"}}}})});
  REQUIRE(ids.size() == 2);
  REQUIRE(WaitUntil([&] { return Status(ids[1], user) == "sent" && Status(ids[0], user) == "scheduled"; }, 60s, 100ms));
  CHECK(S().MailsTo(EmailOf(u)) == 1);  // the reset only
  CHECK(Ledger(ids[0])[user].reason.rfind("due 2026-11-22T05:00:00.000Z", 0) == 0);  // 08:00 in Moscow
  S().SetClock(At("2026-11-22T05:00:00Z"));
  REQUIRE(WaitUntil([&] { return Status(ids[0], user) == "sent"; }, 30s, 100ms));
  CHECK(S().MailsTo(EmailOf(u)) == 2);
}

TEST_CASE("two scheduler replicas, one killed as it releases: every parked notification once",
          "[e2e][timing][scheduler]") {
  const char* now = "2026-11-23T09:00:00Z";
  S().SetClock(At(now));
  ExtraScheduler second;
  second.Start();
  // 3,000 welcome emails that must not start before 10:00Z: parked in the buckets of their
  // recipients' zones, all due the same minute.
  const int kUsers = 3000;
  std::vector<json> events;
  for (int start = 50'000; start < 50'000 + kUsers; start += 500) {
    json users = json::array();
    for (int i = start; i < start + 500; ++i) users.push_back("u-" + std::to_string(i));
    auto e = Event("user.registered", now, {{"user", users}});
    e["start_dt"] = "2026-11-23T10:00:00Z";
    events.push_back(e);
  }
  auto ids = S().Publish(events);
  auto count = [&](const char* status) {
    pqxx::connection conn(S().Env("HERALD_PG_URL"));
    pqxx::work tx(conn);
    std::string list;
    for (const auto& id : ids) list += (list.empty() ? "" : ",") + tx.quote(id);
    return tx.exec1("SELECT count(*) FROM deliveries WHERE status = " + tx.quote(std::string(status)) + " AND event_id IN (" + list + ")")[0].as<long>();
  };
  REQUIRE(WaitUntil([&] { return count("scheduled") == kUsers; }, 120s, 200ms));
  auto mails_before = S().MailFiles();

  S().SetClock(At("2026-11-23T10:00:00Z"));
  // Kill the stack's scheduler as soon as releasing has begun, then bring it back.
  REQUIRE(WaitUntil([&] { return count("sent") > 0; }, 60s, 20ms));
  S().Dev().Kill("scheduler", SIGKILL);
  S().Dev().Start("scheduler");
  REQUIRE(WaitUntil([&] { return count("sent") == kUsers; }, 120s, 200ms));

  std::map<std::string, int> per_rcpt;
  for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) {
    auto n = std::stoi(m.rcpt.substr(2, m.rcpt.find('@') - 2));
    if (n >= 50'000 && n < 50'000 + kUsers) ++per_rcpt[m.rcpt];
  }
  std::size_t dupes = 0;
  for (const auto& [rcpt, n] : per_rcpt) dupes += static_cast<std::size_t>(n - 1);
  CHECK(per_rcpt.size() == static_cast<std::size_t>(kUsers));
  CHECK(dupes == 0);
  CHECK(S().MailFiles() - mails_before == static_cast<std::size_t>(kUsers));
  std::string keys;
  REQUIRE(Run("redis-cli -u " + S().Env("HERALD_REDIS_URL") + " --scan --pattern 'herald:tzb:*' | wc -l", &keys) == 0);
  CHECK(std::stoi(keys) == 0);  // every bucket and index entry is gone
}

TEST_CASE("a cron schedule fires once per occurrence with two replicas, and once after an outage",
          "[e2e][timing][cron]") {
  S().SetClock(At("2026-11-24T10:00:05Z"));
  ExtraScheduler second;
  second.Start();
  int u = FindUser(60'000, [](const json&) { return true; });
  // Hourly at :00 in Kathmandu (+05:45), i.e. at :15 UTC.
  auto e = Event("user.registered", "2026-11-24T10:00:05Z", {{"user", {"u-" + std::to_string(u)}}});
  e["priority"] = "high";
  e["schedule"] = "0 * * * *";
  e["timezone"] = "Asia/Kathmandu";
  auto ids = S().Publish({e});
  const std::string id = "event:" + ids.at(0);
  auto row = [&] {
    pqxx::connection conn(S().Env("HERALD_PG_URL"));
    pqxx::work tx(conn);
    auto r = tx.exec_params("SELECT fired_count, coalesce(to_char(last_fired AT TIME ZONE 'UTC', 'HH24:MI'), ''), "
                            "to_char(next_due AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM schedules WHERE id = $1",
                            id);
    if (r.empty()) return std::make_tuple(-1L, std::string(), std::string());
    return std::make_tuple(r[0][0].as<long>(), r[0][1].as<std::string>(), r[0][2].as<std::string>());
  };
  REQUIRE(WaitUntil([&] { return std::get<0>(row()) == 0; }, 60s, 100ms));
  CHECK(std::get<2>(row()) == "2026-11-24 10:15");

  // Three occurrences, each fired once although two replicas compete for it.
  for (const char* t : {"2026-11-24T10:15:00Z", "2026-11-24T11:15:00Z", "2026-11-24T12:15:00Z"}) {
    S().SetClock(At(t));
    long expected = std::get<0>(row()) + 1;
    REQUIRE(WaitUntil([&] { return std::get<0>(row()) == expected; }, 30s, 100ms));
    REQUIRE(WaitUntil([&] { return S().MailsTo(EmailOf(u)) == expected; }, 60s, 100ms));
  }
  // An outage over three more occurrences (13:15, 14:15, 15:15): one firing on recovery.
  S().Dev().Kill("scheduler", SIGKILL);
  second.Kill(SIGKILL);
  S().SetClock(At("2026-11-24T15:20:00Z"));
  S().Dev().Start("scheduler");
  REQUIRE(WaitUntil([&] { return std::get<0>(row()) == 4; }, 30s, 100ms));
  auto [fired, last, next] = row();
  CHECK(last == "15:15");
  CHECK(next == "2026-11-24 16:15");
  REQUIRE(WaitUntil([&] { return S().MailsTo(EmailOf(u)) == 4; }, 60s, 100ms));
  // Later passes up to just before the next occurrence fire nothing more (not the other
  // missed occurrences either).
  S().SetClock(At("2026-11-24T16:14:59Z"));
  double passes = S().Metric("scheduler", "herald_scheduler_passes_total");
  REQUIRE(WaitUntil([&] { return S().Metric("scheduler", "herald_scheduler_passes_total") >= passes + 3; }, 30s, 100ms));
  CHECK(std::get<0>(row()) == 4);
  CHECK(S().MailsTo(EmailOf(u)) == 4);

  // An invalid schedule is refused with the parser's message, in the dead-letter topic.
  auto bad = Event("user.registered", "2026-11-24T10:00:05Z", {{"user", {"u-1"}}});
  bad["schedule"] = "61 * * * *";
  S().Publish({bad});
  auto dlq = herald::test::ReadTopicsUntil(
      S().Env("HERALD_BROKERS"), {"notify.dlq.v1"},
      [](const std::vector<herald::test::ReadRecord>& recs) {
        for (const auto& r : recs) {
          if (r.value.find("minute 61 is out of range") != std::string::npos) return true;
        }
        return false;
      },
      30s);
  bool found = false;
  for (const auto& r : dlq) found = found || r.value.find("minute 61 is out of range 0-59") != std::string::npos;
  CHECK(found);
}
