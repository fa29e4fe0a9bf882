// Delivery on the embedded stack: emails checked by an independent MIME parser (Python's
// email package), and a 10,000-notification run across four channels with the delivery
// consumers killed by SIGKILL mid-run, checked message by message in the SMTP sink and the
// fake providers' request logs.

#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <pqxx/pqxx>

#include "deliver/claims.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/unsubscribe.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/dev/mail.hpp"
#include "herald/kafka/lag.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/redis/client.hpp"
#include "herald/topics/catalog.hpp"
#include "support/stack.hpp"

using herald::test::EmailOf;
using herald::test::Run;
using herald::test::TestStack;
using herald::test::WaitUntil;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Rates high enough that the 10,000-notification run is bounded by the pipeline, not by the
// provider rate limits (which have tests of their own).
TestStack& S() {
  static TestStack stack(1'000'000, {{"HERALD_SMTP_RATE", "5000"}, {"HERALD_PROVIDER_RATE", "5000"},
                                     {"HERALD_PROVIDER_BURST", "500"}});
  return stack;
}

json Event(const std::string& type, json payload) {
  return {{"event_type", type}, {"created_dt", "2026-11-21T10:00:00Z"}, {"payload", std::move(payload)}};
}

// Parses a captured message with Python's standard email package, independently of
// Herald's own MIME code, and returns what a mail client would see.
json ParseWithPython(const std::string& eml_file) {
  herald::test::TempDir tmp;
  std::string script = tmp.Path() + "/parse.py";
  std::ofstream(script) << R"PY(
import email, json, sys
from email import policy
with open(sys.argv[1], 'rb') as f:
    msg = email.message_from_binary_file(f, policy=policy.default)
out = {"headers": {k: str(v) for k, v in msg.items()},
       "raw_headers": [k for k in msg.keys()],
       "content_type": msg.get_content_type(),
       "defects": [str(d) for d in msg.defects],
       "parts": []}
for part in msg.iter_parts():
    out["parts"].append({"type": part.get_content_type(), "charset": part.get_content_charset(),
                         "cte": part.get("Content-Transfer-Encoding"), "body": part.get_content(),
                         "defects": [str(d) for d in part.defects]})
print(json.dumps(out))
)PY";
  std::string out;
  REQUIRE(Run("/usr/bin/python3 " + script + " " + eml_file, &out) == 0);
  return json::parse(out);
}

const herald::dev::CapturedMail* MailTo(const std::vector<herald::dev::CapturedMail>& mails, const std::string& rcpt) {
  for (const auto& m : mails) {
    if (m.rcpt == rcpt) return &m;
  }
  return nullptr;
}

// The first user at or after `from` with this locale whose first channel is email.
int FirstEmailUser(int from, const std::string& locale) {
  for (int i = from;; ++i) {
    auto u = herald::test::SyntheticUser(i);
    if (u["locale"] == locale && u["channels"][0] == "email") return i;
  }
}

}  // namespace

TEST_CASE("emails parsed by an independent MIME parser have correct headers, encodings and both parts",
          "[e2e][deliver][email]") {
  // A Russian-speaking user whose first channel for comment.liked is email, and any user for
  // a password reset sent by email.
  int liked = FirstEmailUser(5000, "ru");
  int reset = FirstEmailUser(5100, "en");
  const std::string excerpt = "<b>Great</b> & \"bold\"";
  S().Publish({Event("comment.liked", {{"user", {"u-" + std::to_string(liked)}},
                                       {"data", {{"liked_by", "Анна"}, {"comment_excerpt", excerpt}}}}),
               Event("user.password_reset", {{"user", {"u-" + std::to_string(reset)}},
                                             {"data", {{"reset_url", "https://cinema.example/reset/abc"}}}})});
  REQUIRE(WaitUntil([&] { return S().MailsTo(EmailOf(liked)) == 1 && S().MailsTo(EmailOf(reset)) == 1; }, 60s));
  auto mails = herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"));

  // One pass, no SECTIONs: Catch runs a test case again from the top for each section, which
  // would publish the events a second time while the first pass's mails are counted.
  {
    INFO("a marketing-free social email in Russian");
    const auto* m = MailTo(mails, EmailOf(liked));
    REQUIRE(m);
    auto p = ParseWithPython(m->file);
    INFO(p.dump(2));
    CHECK(p["defects"].empty());
    const auto& h = p["headers"];
    CHECK(h["Subject"] == "Ваш комментарий понравился пользователю Анна");
    CHECK(h["From"] == "Herald Cinema <noreply@cinema.example>");
    CHECK(h["To"].get<std::string>() == herald::test::SyntheticUser(liked)["first_name"].get<std::string>() + " <" + EmailOf(liked) + ">");
    CHECK(h["MIME-Version"] == "1.0");
    CHECK(h.contains("Date"));
    auto mid = h["Message-ID"].get<std::string>();
    CHECK(mid.front() == '<');
    CHECK(mid.find("@herald>") != std::string::npos);
    // RFC 8058 one-click unsubscribe, with a token signed for this user and category.
    REQUIRE(h.contains("List-Unsubscribe"));
    CHECK(h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click");
    auto lu = h["List-Unsubscribe"].get<std::string>();
    REQUIRE(lu.size() > 2);
    CHECK(lu.front() == '<');
    CHECK(lu.back() == '>');
    auto token = lu.substr(lu.find("token=") + 6);
    token.pop_back();
    auto claim = herald::VerifyUnsubscribeToken("herald-dev-unsubscribe-secret", token, std::chrono::system_clock::now());
    REQUIRE(claim);
    CHECK(claim->user_id == "u-" + std::to_string(liked));
    CHECK(claim->category == "social");
    // multipart/alternative with a text and an HTML part, both UTF-8.
    CHECK(p["content_type"] == "multipart/alternative");
    REQUIRE(p["parts"].size() == 2);
    CHECK(p["parts"][0]["type"] == "text/plain");
    CHECK(p["parts"][1]["type"] == "text/html");
    for (const auto& part : p["parts"]) {
      CHECK(part["charset"] == "utf-8");
      CHECK(part["defects"].empty());
    }
    // The text part is the variable as is; the HTML part escapes it.
    auto text = p["parts"][0]["body"].get<std::string>();
    auto html = p["parts"][1]["body"].get<std::string>();
    CHECK(text.find("«" + excerpt + "»") != std::string::npos);
    CHECK(text.find("Анна") != std::string::npos);
    CHECK(html.find("&lt;b&gt;Great&lt;/b&gt; &amp; &quot;bold&quot;") != std::string::npos);
    CHECK(html.find("<b>Great</b>") == std::string::npos);
    CHECK(html.find("<b>Анна</b>") != std::string::npos);
  }

  {
    INFO("a password reset is transactional: no unsubscribe headers");
    const auto* m = MailTo(mails, EmailOf(reset));
    REQUIRE(m);
    auto p = ParseWithPython(m->file);
    INFO(p.dump(2));
    CHECK(p["defects"].empty());
    CHECK_FALSE(p["headers"].contains("List-Unsubscribe"));
    CHECK_FALSE(p["headers"].contains("List-Unsubscribe-Post"));
    REQUIRE(p["parts"].size() == 2);
    CHECK(p["parts"][0]["body"].get<std::string>().find("https://cinema.example/reset/abc") != std::string::npos);
  }
}

TEST_CASE("SIGKILL of the delivery consumers during a 10,000-notification run: each delivered once",
          "[e2e][deliver][crash]") {
  const int kUsers = 10'000;
  // Users whose first channel works, so every notification ends on exactly one channel and
  // the expected set is known up front.
  std::vector<int> users;
  std::map<std::string, std::string> channel_of;  // user id -> channel
  for (int i = 20'000; static_cast<int>(users.size()) < kUsers; ++i) {
    auto u = herald::test::SyntheticUser(i);
    if (!herald::test::FirstChannelWorks(u)) continue;
    auto c = u["channels"][0].get<std::string>();
    users.push_back(i);
    channel_of["u-" + std::to_string(i)] = c;
  }
  std::vector<json> events;
  for (std::size_t start = 0; start < users.size(); start += 500) {
    json ids = json::array();
    for (std::size_t k = start; k < std::min(users.size(), start + 500); ++k) ids.push_back("u-" + std::to_string(users[k]));
    // High priority and an all-day window: sent at once whatever the users' local time and
    // quiet hours (timing has tests of its own).
    auto e = Event("episode.released", {{"user", ids}, {"content", {"ep-5"}}});
    e["priority"] = "high";
    e["deliver_window"] = {{"from", "00:00"}, {"to", "00:00"}};  // from == to: the whole day
    events.push_back(e);
  }
  auto event_ids = S().Publish(events);
  REQUIRE(event_ids.size() == events.size());

  // Expected notification ids, and how to recognise each in a provider's log.
  std::set<std::string> expected;
  std::map<std::string, std::string> by_chat;  // telegram chat id -> notification id
  for (std::size_t e = 0; e < events.size(); ++e) {
    for (const auto& uid : events[e]["payload"]["user"]) {
      auto user = uid.get<std::string>();
      auto id = herald::NotificationId(event_ids[e], user, channel_of[user]);
      expected.insert(id);
      if (channel_of[user] == "telegram") {
        by_chat[std::to_string(herald::test::SyntheticUser(std::stoi(user.substr(2)))["telegram_chat_id"].get<std::int64_t>())] = id;
      }
    }
  }
  REQUIRE(expected.size() == static_cast<std::size_t>(kUsers));

  // Every successful send the providers saw, per notification id.
  auto received = [&] {
    std::map<std::string, int> got;
    for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) {
      if (m.message_id.size() > 9) ++got[m.message_id.substr(1, m.message_id.find('@') - 1)];
    }
    for (const auto& r : S().FakeRequests("push", "/v1/send")) {
      if (r["status"] != 200) continue;
      ++got[json::parse(r["body"].get<std::string>())["data"]["notification_id"].get<std::string>()];
    }
    for (const auto& r : S().FakeRequests("telegram", "/bot")) {
      if (r["status"] != 200) continue;
      auto chat = json::parse(r["body"].get<std::string>())["chat_id"];
      auto it = by_chat.find(chat.is_string() ? chat.get<std::string>() : chat.dump());
      ++got[it == by_chat.end() ? "unknown-chat-" + chat.dump() : it->second];
    }
    for (const auto& r : S().FakeRequests("sms", "/v1/messages")) {
      if (r["status"] != 200) continue;
      ++got[json::parse(r["body"].get<std::string>())["idempotency_key"].get<std::string>()];
    }
    return got;
  };
  auto delivered = [&] {
    std::size_t n = 0;
    for (const auto& [id, count] : received()) n += expected.count(id);
    return n;
  };

  // Kill each delivery consumer while it is busy, twice for email, and restart it.
  std::map<std::string, int> kills;
  auto kill = [&](const std::string& stage) {
    S().Dev().Kill(stage, SIGKILL);
    ++kills[stage];
    S().Dev().Start(stage);
  };
  REQUIRE(WaitUntil([&] { return delivered() >= 2000; }, 180s, 200ms));
  kill("deliver-email");
  kill("deliver-push");
  REQUIRE(WaitUntil([&] { return delivered() >= 5000; }, 180s, 200ms));
  auto at_second = delivered();
  kill("deliver-telegram");
  kill("deliver-email");
  kill("deliver-sms");
  INFO("delivered at the second round of kills: " << at_second);
  CHECK(at_second < static_cast<std::size_t>(kUsers));  // the kills really were mid-run
  // A send in flight when its stage died has an unknown outcome: the next owner does not
  // send it again but dead-letters it (send_outcome_unknown). Every notification ends
  // delivered or there.
  auto unknown = [&] {
    std::set<std::string> ids;
    for (const auto& r : herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), herald::topics::Catalog().Dlq(), 30s)) {
      auto d = json::parse(r.value);
      if (d.value("error_class", "") != "send_outcome_unknown") continue;
      auto original = json::parse(d.value("original", ""), nullptr, false);
      if (original.is_object()) ids.insert(original.value("notification_id", ""));
    }
    return ids;
  };
  std::set<std::string> unknown_ids;
  REQUIRE(WaitUntil(
      [&] {
        auto got = received();
        unknown_ids = unknown();
        std::size_t settled = 0;
        for (const auto& id : expected) settled += got.count(id) || unknown_ids.count(id) ? 1 : 0;
        return settled == expected.size();
      },
      300s, 1s));

  auto got = received();
  // A send of these events on any other channel (a fallback that should not have happened).
  std::size_t unexpected = 0;
  for (std::size_t e = 0; e < events.size(); ++e) {
    for (const auto& uid : events[e]["payload"]["user"]) {
      for (const char* c : {"email", "sms", "telegram", "push"}) {
        auto user = uid.get<std::string>();
        if (c != channel_of[user]) unexpected += got.count(herald::NotificationId(event_ids[e], user, c));
      }
    }
  }
  // Per channel duplicates, for the report.
  std::map<std::string, int> per_channel;
  for (std::size_t e = 0; e < events.size(); ++e) {
    for (const auto& uid : events[e]["payload"]["user"]) {
      auto user = uid.get<std::string>();
      auto it = got.find(herald::NotificationId(event_ids[e], user, channel_of[user]));
      if (it != got.end() && it->second > 1) per_channel[channel_of[user]] += it->second - 1;
    }
  }
  std::string report;
  for (const auto& [c, n] : per_channel) report += c + "=" + std::to_string(n) + " ";
  INFO("repeated sends by channel: " << (report.empty() ? "none" : report));
  CHECK(unexpected == 0);
  // Nothing is sent twice, whatever was in flight when a stage died: SMS carries the
  // notification id as the provider's idempotency key, and on the other channels the send
  // journal tells the next owner not to send again what the provider may have delivered.
  for (const char* c : {"email", "sms", "telegram", "push"}) {
    INFO(c);
    CHECK(per_channel[c] == 0);
  }
  WARN("10,000 notifications, kills: email " << kills["deliver-email"] << ", push " << kills["deliver-push"]
       << ", telegram " << kills["deliver-telegram"] << ", sms " << kills["deliver-sms"]
       << "; repeated sends: " << (report.empty() ? "none" : report) << "; in flight at a kill, not sent again: "
       << unknown_ids.size());

  // The ledger agrees: one row per notification, sent or failed with the unknown outcome.
  REQUIRE(WaitUntil(
      [&] {
        pqxx::connection conn(S().Env("HERALD_PG_URL"));
        pqxx::work tx(conn);
        std::string list;
        for (const auto& id : event_ids) list += (list.empty() ? "" : ",") + tx.quote(id);
        auto n = tx.exec1("SELECT count(*) FROM deliveries WHERE (status = 'sent' OR (status = 'failed' AND reason LIKE "
                          "'outcome unknown%')) AND event_id IN (" + list + ")")[0].as<long>();
        return n == kUsers;
      },
      120s, 500ms));
}

namespace {

// Every record of `topic` that carries `notification_id` in its herald-notification-id header.
std::vector<herald::test::ReadRecord> RecordsOf(const std::string& topic, const std::string& notification_id) {
  std::vector<herald::test::ReadRecord> out;
  for (auto& r : herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), topic, 30s)) {
    for (const auto& h : r.headers) {
      if (h.key == "herald-notification-id" && h.value == notification_id) out.push_back(r);
    }
  }
  return out;
}

// Produces a record again, to the partition it was read from (a redelivery).
void ProduceAgain(const herald::test::ReadRecord& r) {
  herald::kafka::Producer::Options po;
  po.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer producer(po);
  producer.ProduceSync({r.topic, r.key, r.value, r.headers, r.partition}, 10s);
}

// Waits until the group has committed everything on `topic`.
bool Drained(const std::string& group, const std::string& topic) {
  herald::kafka::LagMonitor lag(S().Env("HERALD_BROKERS"), {}, group);
  return WaitUntil([&] { return lag.Lag(topic) == 0; }, 60s, 100ms);
}

// Requests a fake provider answered with 2xx (or with any status) whose body matches.
int Sends(const std::string& role, const std::string& path, const std::function<bool(const json&)>& match,
          bool successful_only = true) {
  int n = 0;
  for (const auto& r : S().FakeRequests(role, path)) {
    if ((!successful_only || r["status"].get<int>() / 100 == 2) && match(json::parse(r["body"].get<std::string>()))) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("copies of one delivery record in the same batch are sent once", "[e2e][deliver][idempotency]") {
  // Copies happen when an upstream batch is produced again after its acknowledgement was
  // lost. While the stage is busy, the consumer fetches ahead, so the record and its copies
  // come in one batch, where the claim taken for the first copy is already this owner's.
  auto push_user = [](int from) {
    return herald::test::FindUser(from, [](const json& u) { return u["channels"][0] == "push" && herald::test::FirstChannelWorks(u); });
  };
  int busy_user = push_user(31'000);
  int user = push_user(busy_user + 1);
  auto liked = [](int u) {
    auto e = Event("comment.liked", {{"user", {"u-" + std::to_string(u)}}, {"data", {{"liked_by", "Ann"}}}});
    e["priority"] = "high";
    return e;
  };
  // The provider answers after 3 s (below the client's 5 s timeout): the stage is busy
  // sending the first notification while the record and its copies arrive.
  S().SetFault("push", {{"path", "/v1/send"}, {"latency_ms", 3000}});
  auto busy_ids = S().Publish({liked(busy_user)});
  const auto busy_nid = herald::NotificationId(busy_ids.at(0), "u-" + std::to_string(busy_user), "push");
  auto is_busy = [&](const json& body) { return body["data"].value("notification_id", "") == busy_nid; };
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", is_busy, /*successful_only=*/false) == 1; }, 60s, 50ms));
  auto ids = S().Publish({liked(user)});
  const auto nid = herald::NotificationId(ids.at(0), "u-" + std::to_string(user), "push");
  const auto& topic = herald::topics::Catalog().Deliver("push", "high");
  std::vector<herald::test::ReadRecord> records;
  REQUIRE(WaitUntil([&] { return !(records = RecordsOf(topic, nid)).empty(); }, 60s, 50ms));
  ProduceAgain(records.front());
  ProduceAgain(records.front());
  // Still sending the first one: the three records are fetched before the next batch.
  CHECK(Sends("push", "/v1/send", is_busy) == 0);
  auto to_nid = [&](const json& body) { return body["data"].value("notification_id", "") == nid; };
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to_nid, /*successful_only=*/false) >= 1; }, 60s, 100ms));
  S().ClearFaults("push");
  REQUIRE(Drained("herald-deliver-push", topic));
  CHECK(RecordsOf(topic, nid).size() == 3);
  CHECK(Sends("push", "/v1/send", is_busy) == 1);
  CHECK(Sends("push", "/v1/send", to_nid, /*successful_only=*/false) == 1);
}

TEST_CASE("a batch that outlasts the claim lease keeps its claims; a claim it lost is not sent by it",
          "[e2e][deliver][idempotency]") {
  // The stack's claim lease is 2 s. The provider answers each request after 1 s, and a batch
  // of 64 push notifications goes out in chunks of 16 (HERALD_HTTP_CONCURRENCY): about 4 s,
  // twice the lease. Meanwhile the test acts as other replicas:
  // - whenever a claim the stage took is free again, one takes it and marks it done, as a
  //   replica that sent it would. The stage renews its claims as it works through the batch,
  //   so that never happens;
  // - one takes over the claim of the batch's last notification while the first chunk is out
  //   (as if the stage had stalled past its lease). The stage must not send that one while
  //   the other holds it, and sends it once the other lets it go.
  auto push_user = [](int from) {
    return herald::test::FindUser(from, [](const json& u) { return u["channels"][0] == "push" && herald::test::FirstChannelWorks(u); });
  };
  auto liked = [](int u) {
    auto e = Event("comment.liked", {{"user", {"u-" + std::to_string(u)}}, {"data", {{"liked_by", "Ann"}}}});
    e["priority"] = "high";
    return e;
  };
  const auto& topic = herald::topics::Catalog().Deliver("push", "high");
  auto to = [](const std::string& nid) {
    return [nid](const json& body) { return body["data"].value("notification_id", "") == nid; };
  };
  // A delivery record to copy, made and delivered first.
  int model_user = push_user(35'000);
  auto model_ids = S().Publish({liked(model_user)});
  const auto model_nid = herald::NotificationId(model_ids.at(0), "u-" + std::to_string(model_user), "push");
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to(model_nid)) == 1; }, 60s, 50ms));
  auto records = RecordsOf(topic, model_nid);
  REQUIRE(records.size() == 1);
  // 64 notifications made from it, on its partition, in this order.
  std::vector<std::string> nids;
  std::vector<herald::kafka::OutRecord> out;
  for (int k = 0; k < 64; ++k) {
    const auto& r = records.front();
    nids.push_back(herald::NotificationId(model_ids.at(0), "lease-" + std::to_string(k), "push"));
    auto value = json::parse(r.value);
    value["notification_id"] = nids.back();
    auto headers = r.headers;
    for (auto& h : headers) {
      if (h.key == "herald-notification-id") h.value = nids.back();
    }
    out.push_back({r.topic, r.key, value.dump(), headers, r.partition});
  }
  const auto last_key = herald::consumers::deliver::Claims::Key(nids.back(), "push");
  herald::kafka::Producer::Options po;
  po.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer producer(po);
  herald::redis::Client redis(S().Env("HERALD_REDIS_URL"));

  // The stage is busy with a 4 s send while the 64 records arrive, so they make one batch.
  int busy_user = push_user(model_user + 1);
  S().SetFault("push", {{"path", "/v1/send"}, {"latency_ms", 4000}});
  auto busy_ids = S().Publish({liked(busy_user)});
  const auto busy_nid = herald::NotificationId(busy_ids.at(0), "u-" + std::to_string(busy_user), "push");
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to(busy_nid), /*successful_only=*/false) == 1; }, 60s, 20ms));
  S().SetFault("push", {{"path", "/v1/send"}, {"latency_ms", 1000}});
  producer.ProduceAll(out, 10s);
  REQUIRE(Sends("push", "/v1/send", to(busy_nid)) == 0);  // still sending the busy one

  const std::string series = R"({channel="push",provider="push"})";
  const double renewals_before = S().Metric("deliver-push", "herald_claim_renewals_total" + series);
  const double lost_before = S().Metric("deliver-push", "herald_claims_lost_total" + series);
  // The replica that takes free claims, until stopped.
  std::mutex mu;
  std::set<std::string> taken, seen_pending;
  std::string other_error;
  std::atomic<bool> stop{false};
  std::thread other([&] {
    try {
      herald::redis::Client r(S().Env("HERALD_REDIS_URL"));
      while (!stop.load()) {
        for (std::size_t k = 0; k + 1 < nids.size(); ++k) {  // the last one is taken over below
          const auto key = herald::consumers::deliver::Claims::Key(nids[k], "push");
          auto cur = r.Command({"GET", key});
          std::lock_guard lock(mu);
          if (!cur.IsNil()) {
            if (cur.str.rfind("pending:", 0) == 0) seen_pending.insert(nids[k]);
            continue;
          }
          if (seen_pending.count(nids[k]) &&
              r.Command({"SET", key, "done:sent", "NX", "PX", "600000"}).type == herald::redis::Reply::Type::kStatus) {
            taken.insert(nids[k]);
          }
        }
        std::this_thread::sleep_for(20ms);
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mu);
      other_error = e.what();
    }
  });
  // Stops and joins it however this test case ends (a failed REQUIRE throws).
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{stop, other};
  // The first chunk is out: another replica takes over the last notification's claim, which
  // the stage sends about 3 s from now.
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to(nids.front()), /*successful_only=*/false) == 1; }, 60s, 10ms));
  REQUIRE(redis.Command({"GET", last_key}).str.rfind("pending:", 0) == 0);  // the stage's
  REQUIRE(redis.Command({"SET", last_key, "pending:other-replica", "PX", "600000"}).type == herald::redis::Reply::Type::kStatus);
  bool rest_sent = WaitUntil(
      [&] {
        for (std::size_t k = 0; k + 1 < nids.size(); ++k) {
          if (Sends("push", "/v1/send", to(nids[k])) == 0) {
            std::lock_guard lock(mu);
            if (!taken.count(nids[k])) return false;
          }
        }
        return true;
      },
      90s, 100ms);
  stop = true;
  other.join();
  S().ClearFaults("push");
  REQUIRE(rest_sent);
  CHECK(other_error.empty());
  CHECK(seen_pending.size() == nids.size() - 1);  // the stage claimed every one
  CHECK(taken.empty());                           // and none of them was free before its send
  for (std::size_t k = 0; k + 1 < nids.size(); ++k) CHECK(Sends("push", "/v1/send", to(nids[k])) == 1);
  CHECK(S().Metric("deliver-push", "herald_claim_renewals_total" + series) > renewals_before);
  // The one taken over was not sent by the stage, which noticed it had lost the claim.
  CHECK(Sends("push", "/v1/send", to(nids.back()), /*successful_only=*/false) == 0);
  CHECK(S().Metric("deliver-push", "herald_claims_lost_total" + series) > lost_before);
  // The other replica lets it go: the stage reads it again, claims it and sends it, once.
  redis.Command({"DEL", last_key});
  CHECK(WaitUntil([&] { return Sends("push", "/v1/send", to(nids.back())) == 1; }, 60s, 100ms));
  REQUIRE(Drained("herald-deliver-push", topic));
  CHECK(Sends("push", "/v1/send", to(nids.back()), /*successful_only=*/false) == 1);
}

TEST_CASE("a send in flight when its stage is killed is not sent again, and is dead-lettered as unknown",
          "[e2e][deliver][idempotency][crash]") {
  // The provider holds the request for 3 s; the stage dies meanwhile; the provider then
  // delivers it. The next owner takes the claim once its lease expires and must not send it
  // again (push has no idempotency key): it cannot know whether the provider delivered it,
  // so it records the notification as failed with that reason and dead-letters it.
  int user = herald::test::FindUser(33'000, [](const json& u) {
    return u["channels"][0] == "push" && herald::test::FirstChannelWorks(u);
  });
  const std::string uid = "u-" + std::to_string(user);
  S().SetFault("push", {{"path", "/v1/send"}, {"latency_ms", 3000}});
  auto e = Event("comment.liked", {{"user", {uid}}, {"data", {{"liked_by", "Ann"}}}});
  e["priority"] = "high";
  auto ids = S().Publish({e});
  const auto nid = herald::NotificationId(ids.at(0), uid, "push");
  auto to_nid = [&](const json& body) { return body["data"].value("notification_id", "") == nid; };
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to_nid, /*successful_only=*/false) == 1; }, 60s, 20ms));
  S().Dev().Kill("deliver-push", SIGKILL);
  REQUIRE(WaitUntil([&] { return Sends("push", "/v1/send", to_nid) == 1; }, 30s, 50ms));  // delivered by the provider
  S().ClearFaults("push");
  S().Dev().Start("deliver-push");
  const auto& topic = herald::topics::Catalog().Deliver("push", "high");
  REQUIRE(Drained("herald-deliver-push", topic));
  CHECK(Sends("push", "/v1/send", to_nid, /*successful_only=*/false) == 1);
  json dead;
  REQUIRE(WaitUntil(
      [&] {
        for (const auto& r : herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), herald::topics::Catalog().Dlq(), 30s)) {
          auto d = json::parse(r.value);
          auto original = json::parse(d.value("original", ""), nullptr, false);
          if (original.is_object() && original.value("notification_id", "") == nid) dead = d;
        }
        return !dead.is_null();
      },
      60s, 200ms));
  CHECK(dead["stage"] == "deliver-push");
  CHECK(dead["error_class"] == "send_outcome_unknown");
  CHECK_FALSE(dead["reason"].get<std::string>().empty());
  std::string status, reason;
  REQUIRE(WaitUntil(
      [&] {
        pqxx::connection conn(S().Env("HERALD_PG_URL"));
        pqxx::work tx(conn);
        auto r = tx.exec_params("SELECT status, coalesce(reason, '') FROM deliveries WHERE notification_id = $1", nid);
        if (r.empty()) return false;
        status = r[0][0].as<std::string>();
        reason = r[0][1].as<std::string>();
        return status == "failed";
      },
      60s, 200ms));
  CHECK(reason.find("outcome unknown") != std::string::npos);
}

TEST_CASE("a redelivered record whose send was rejected produces its fallback again, and nothing is sent twice",
          "[e2e][deliver][idempotency]") {
  // The fallback is produced with the batch that learnt of the rejection; if that batch's
  // output is lost (the broker did not acknowledge it, the stage died), the record comes
  // back and finds its claim done: it must state the rejection and produce the fallback
  // again, or the notification would end nowhere.
  int user = herald::test::FindUser(32'000, [](const json& u) {
    return u["channels"][0] == "telegram" && u["telegram_chat_id"].get<long>() % 100 == 13;
  });
  const std::string uid = "u-" + std::to_string(user);
  auto e = Event("comment.liked", {{"user", {uid}}, {"data", {{"liked_by", "Ann"}}}});
  e["priority"] = "high";
  auto ids = S().Publish({e});
  const auto tg_nid = herald::NotificationId(ids.at(0), uid, "telegram");
  // The fallback's channel and its outcome, from the ledger.
  std::string next;
  REQUIRE(WaitUntil(
      [&] {
        pqxx::connection conn(S().Env("HERALD_PG_URL"));
        pqxx::work tx(conn);
        auto r = tx.exec_params("SELECT channel FROM deliveries WHERE event_id = $1 AND channel <> 'telegram' AND status = 'sent'",
                                ids.at(0));
        if (r.empty()) return false;
        next = r[0][0].as<std::string>();
        return true;
      },
      60s, 200ms));
  const auto next_nid = herald::NotificationId(ids.at(0), uid, next);
  const auto& tg_topic = herald::topics::Catalog().Deliver("telegram", "high");
  const auto& next_topic = herald::topics::Catalog().Deliver(next, "high");
  REQUIRE(RecordsOf(next_topic, next_nid).size() == 1);
  auto tg_records = RecordsOf(tg_topic, tg_nid);
  REQUIRE(tg_records.size() == 1);

  ProduceAgain(tg_records.front());
  REQUIRE(WaitUntil([&] { return RecordsOf(next_topic, next_nid).size() == 2; }, 60s, 200ms));
  REQUIRE(Drained("herald-deliver-telegram", tg_topic));
  REQUIRE(Drained("herald-deliver-" + next, next_topic));
  const auto chat = herald::test::SyntheticUser(user)["telegram_chat_id"].get<std::int64_t>();
  // One attempt, rejected; the redelivery did not call the provider again.
  CHECK(Sends("telegram", "/bot", [&](const json& b) { return b["chat_id"] == chat; }, /*successful_only=*/false) == 1);
  int next_sends = 0;
  if (next == "email") {
    next_sends = S().MailsTo(EmailOf(user));
  } else if (next == "push") {
    next_sends = Sends("push", "/v1/send", [&](const json& b) { return b["data"].value("notification_id", "") == next_nid; });
  } else {
    next_sends = Sends("sms", "/v1/messages", [&](const json& b) { return b.value("idempotency_key", "") == next_nid; });
  }
  CHECK(next_sends == 1);
}

TEST_CASE("a template saved to PostgreSQL is validated, then used without a restart; a missing variable fails",
          "[e2e][deliver][templates]") {
  herald::test::TempDir tmp;
  const std::string env = "HERALD_PG_URL=" + S().Env("HERALD_PG_URL") + " ";
  auto save = [&](const json& t, std::string* out) {
    std::string file = tmp.Path() + "/t.json";
    std::ofstream(file) << t.dump();
    return Run(env + HERALD_BINARY " templates save " + file + " 2>&1", out);
  };
  json t = {{"event_type", "comment.liked"}, {"channel", "email"}, {"locale", "en"},
            {"subject", "v2: {{liked_by}} said {{comment_excerpt}} with {{coupon}}"},
            {"text", "Hi {{first_name}}"}, {"html", "<p>Hi {{first_name}}</p>"}};
  std::string out;
  CHECK(save(t, &out) == 2);
  CHECK(out.find("{{coupon}}") != std::string::npos);
  t["subject"] = "v2: {{liked_by}} said {{comment_excerpt}}";
  REQUIRE(save(t, &out) == 0);

  // English users whose first channel is email.
  std::vector<int> users;
  for (int i = 7000; users.size() < 40; ++i) users.push_back(i = FirstEmailUser(i, "en"));
  // The delivery stage reloads templates when they change (checked every 10 s): keep sending
  // until a message shows the new version.
  std::size_t next = 0;
  bool v2 = false;
  while (!v2 && next + 1 < users.size()) {
    int u = users[next++];
    auto e = Event("comment.liked", {{"user", {"u-" + std::to_string(u)}}, {"data", {{"liked_by", "Ann"}, {"comment_excerpt", "Hi"}}}});
    e["priority"] = "high";  // not held by quiet hours
    S().Publish({e});
    REQUIRE(WaitUntil([&] { return S().MailsTo(EmailOf(u)) == 1; }, 60s));
    auto mails = herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"));
    auto subject = MailTo(mails, EmailOf(u))->subject;
    INFO(subject);
    CHECK((subject == "v2: Ann said Hi" || subject == "Ann liked your comment"));
    v2 = subject == "v2: Ann said Hi";
    if (!v2) std::this_thread::sleep_for(1s);  // pacing between probes
  }
  REQUIRE(v2);

  // The new version uses {{comment_excerpt}} outside a section: an event without it cannot
  // be rendered, and the notification fails with the reason instead of sending a blank.
  int u = users[next];
  auto bad = Event("comment.liked", {{"user", {"u-" + std::to_string(u)}}, {"data", {{"liked_by", "Ann"}}}});
  bad["priority"] = "high";
  auto ids = S().Publish({bad});
  std::string reason;
  REQUIRE(WaitUntil(
      [&] {
        pqxx::connection conn(S().Env("HERALD_PG_URL"));
        pqxx::work tx(conn);
        auto r = tx.exec_params("SELECT status, coalesce(reason, '') FROM deliveries WHERE event_id = $1", ids.at(0));
        if (r.empty() || r[0][0].as<std::string>() != "failed") return false;
        reason = r[0][1].as<std::string>();
        return true;
      },
      60s, 200ms));
  CHECK(reason.find("{{comment_excerpt}}") != std::string::npos);
  CHECK(S().MailsTo(EmailOf(u)) == 0);
}
