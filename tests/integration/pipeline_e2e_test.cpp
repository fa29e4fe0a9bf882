// The whole pipeline on the embedded stack: real PostgreSQL, Redis, SMTP sink (aiosmtpd),
// the embedded broker over TCP, the fake auth API, and every stage as its own process.

#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <functional>
#include <set>

#include <pqxx/pqxx>

#include "herald/dev/fake_servers.hpp"
#include "herald/dev/mail.hpp"
#include "herald/dev/stack.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/stage/stage.hpp"
#include "support/stack.hpp"

using herald::test::ReadTopic;
using herald::test::Run;
using herald::test::TempDir;
using herald::test::WaitUntil;
using namespace std::chrono_literals;

namespace {

herald::test::TestStack& S() {
  static herald::test::TestStack s;
  return s;
}

std::string Email(int user) { return herald::test::EmailOf(user); }
std::map<std::string, int> MailCounts() { return S().MailCounts(); }
int MailsTo(int user) { return S().MailsTo(Email(user)); }

std::string Kcat(const std::string& topic, const std::string& lines, int partition = -1) {
  herald::test::TempDir tmp;
  std::string file = tmp.Path() + "/in";
  std::ofstream(file) << lines;
  std::string out;
  std::string p = partition >= 0 ? " -p " + std::to_string(partition) : "";
  int rc = Run("kcat -b " + S().Env("HERALD_BROKERS") + " -t " + topic + p + " -P -l " + file + " 2>&1", &out);
  REQUIRE(rc == 0);
  return out;
}

std::string SeedEvent(int user) {
  return R"({"event_type": "user.registered", "created_dt": "2026-11-21T10:00:00Z", "schedule": null, "start_dt": null, "priority": 0, "payload": {"user": ["u-)" +
         std::to_string(user) + R"("], "content": []}})";
}

std::string LedgerStatus(int user) {
  pqxx::connection conn(S().Env("HERALD_PG_URL"));
  pqxx::work tx(conn);
  auto r = tx.exec_params("SELECT status FROM deliveries WHERE user_id = $1", "u-" + std::to_string(user));
  return r.empty() ? "" : r[0][0].as<std::string>();
}

}  // namespace

TEST_CASE("a seed-format event produced with kcat yields exactly one email with the user's name", "[e2e]") {
  const int user = 101;
  Kcat("events.auth.v1", SeedEvent(user) + "\n");
  REQUIRE(WaitUntil([&] { return MailsTo(user) >= 1; }, 60s));
  REQUIRE(WaitUntil([&] { return LedgerStatus(user) == "sent"; }, 30s));
  CHECK(MailsTo(user) == 1);

  auto expected = herald::dev::SyntheticUser(42, user);
  std::string first_name = expected["first_name"];
  for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) {
    if (m.rcpt != Email(user)) continue;
    CHECK(m.subject.find(first_name) != std::string::npos);
    CHECK(m.text.find(first_name) != std::string::npos);
    CHECK(m.to.find(Email(user)) != std::string::npos);
    if (expected["locale"] == "ru") CHECK(m.subject.find("Добро пожаловать") != std::string::npos);
    else CHECK(m.subject.find("Welcome") != std::string::npos);
  }
}

TEST_CASE("malformed events go to the dead-letter topic and the rest flow on", "[e2e]") {
  std::vector<std::string> bad = {
      "this is not json {marker-1}",
      R"({"event_type": "user.registered", "payload": {"user": ["u-299"]}, "note": "marker-2"})",
      R"({"event_type": "user.teleported", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-299"], "data": {"m": "marker-3"}}})",
      R"({"event_type": "user.registered", "created_dt": "2026-11-21T10:00:00Z", "priority": 9, "payload": {"user": ["u-299"], "data": {"m": "marker-4"}}})",
      R"({"event_type": "user.registered", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-299"], "data": {"m": "marker-5"})",
  };
  std::string lines;
  for (int i = 0; i < 5; ++i) lines += bad[i] + "\n" + SeedEvent(201 + i) + "\n";
  // One partition, so the bad records sit between the good ones in the log.
  Kcat("events.auth.v1", lines, 0);

  for (int u = 201; u <= 205; ++u) REQUIRE(WaitUntil([&] { return MailsTo(u) >= 1; }, 60s));
  std::vector<nlohmann::json> ours;
  REQUIRE(WaitUntil(
      [&] {
        ours.clear();
        for (const auto& r : ReadTopic(S().Env("HERALD_BROKERS"), "notify.dlq.v1", 1000, 3s)) {
          auto j = nlohmann::json::parse(r.value);
          if (j.value("original", "").find("marker-") != std::string::npos) ours.push_back(j);
        }
        return ours.size() >= 5;
      },
      60s));
  CHECK(ours.size() == 5);
  std::set<std::string> classes;
  for (const auto& j : ours) {
    CHECK(j["origin"]["topic"] == "events.auth.v1");
    CHECK(j["origin"]["partition"] == 0);
    CHECK(j["origin"]["offset"].get<long>() >= 0);
    CHECK_FALSE(j["reason"].get<std::string>().empty());
    CHECK(j["stage"] == "plan");
    classes.insert(j["error_class"].get<std::string>());
  }
  CHECK(classes == std::set<std::string>{"invalid_json", "schema", "unknown_type"});
  for (int u = 201; u <= 205; ++u) CHECK(MailsTo(u) == 1);
  CHECK(MailsTo(299) == 0);
}

TEST_CASE("the bad-input corpus is refused with its error over HTTP and dead-lettered with it from Kafka", "[e2e][corpus]") {
  auto cases = herald::test::LoadBadInputs();
  REQUIRE(cases.size() >= 15);
  // Over HTTP: each body gets a 400 whose JSON names the problem.
  std::string url = S().Env("HERALD_INGEST_URL") + "/v1/events";
  herald::http::Client client({1s, 10s, "t", S().Env("HERALD_INGEST_TOKEN")});
  for (const auto& c : cases) {
    INFO(c.name);
    auto res = client.Post(url, c.body);
    CHECK(res.status == 400);
    auto body = nlohmann::json::parse(res.body, nullptr, false);
    REQUIRE(body.is_object());
    INFO(res.body.substr(0, 300));
    CHECK(body["error"].get<std::string>().find(c.error) != std::string::npos);
    if (!c.field.empty()) CHECK(body["field"] == c.field);
  }
  // From Kafka: on one partition, each bad record between two good ones. Every bad one is
  // dead-lettered with its reason; every good one is delivered exactly once.
  herald::kafka::Producer::Options po;
  po.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer producer(po);
  std::map<std::int64_t, const herald::test::BadInput*> by_offset;
  int user = 311;
  producer.ProduceSync({"events.auth.v1", "u-" + std::to_string(user), SeedEvent(user), {}, 0}, 10s);
  for (const auto& c : cases) {
    auto report = producer.ProduceSync({"events.auth.v1", "corpus", c.body, {}, 0}, 10s);
    REQUIRE(report.ok);
    by_offset[report.offset] = &c;
    ++user;
    producer.ProduceSync({"events.auth.v1", "u-" + std::to_string(user), SeedEvent(user), {}, 0}, 10s);
  }
  std::map<std::int64_t, nlohmann::json> dead;
  REQUIRE(WaitUntil(
      [&] {
        for (const auto& r : ReadTopic(S().Env("HERALD_BROKERS"), "notify.dlq.v1", 100000, 3s)) {
          auto j = nlohmann::json::parse(r.value);
          if (j["origin"]["topic"] == "events.auth.v1" && j["origin"]["partition"] == 0 &&
              by_offset.count(j["origin"]["offset"].get<std::int64_t>())) {
            dead[j["origin"]["offset"].get<std::int64_t>()] = j;
          }
        }
        return dead.size() == by_offset.size();
      },
      90s));
  for (const auto& [offset, c] : by_offset) {
    INFO(c->name);
    const auto& j = dead[offset];
    CHECK(j["stage"] == "plan");
    CHECK(j["reason"].get<std::string>().find(c->error) != std::string::npos);
    // The record's exact bytes: a string, or a byte array when it is not UTF-8.
    if (j.contains("original_bytes")) {
      CHECK(j["original_bytes"].get<std::vector<std::uint8_t>>() == std::vector<std::uint8_t>(c->body.begin(), c->body.end()));
    } else {
      CHECK(j["original"] == c->body);
    }
  }
  for (int u = 311; u <= user; ++u) REQUIRE(WaitUntil([&] { return MailsTo(u) == 1; }, 60s));
}

TEST_CASE("the ingest API authenticates, validates and acknowledges", "[e2e][ingest]") {
  std::string url = S().Env("HERALD_INGEST_URL") + "/v1/events";
  herald::http::Client anon;
  herald::http::Client wrong({1s, 10s, "t", "not-the-token"});
  herald::http::Client client({1s, 10s, "t", S().Env("HERALD_INGEST_TOKEN")});
  std::string good = R"({"event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-401"]}})";

  auto r = anon.Post(url, good);
  CHECK(r.status == 401);
  CHECK(nlohmann::json::parse(r.body)["error"] == "missing or invalid bearer token");
  CHECK(wrong.Post(url, good).status == 401);

  r = client.Post(url, R"({"event_type":"user.registered","created_dt":"21/11/2026","payload":{"user":["u-402"]}})");
  REQUIRE(r.status == 400);
  CHECK(nlohmann::json::parse(r.body)["field"] == "/created_dt");
  r = client.Post(url, "{not json");
  CHECK(r.status == 400);
  CHECK(nlohmann::json::parse(r.body)["error"].get<std::string>().find("not valid JSON") != std::string::npos);
  r = client.Post(url, std::string(2 << 20, ' '));
  CHECK(r.status == 413);
  CHECK(nlohmann::json::parse(r.body).contains("error"));
  r = client.Post(url, R"([)" + good + R"(, {"event_type":"user.registered","payload":{"user":["u-403"]}}])");
  REQUIRE(r.status == 400);
  CHECK(nlohmann::json::parse(r.body)["field"] == "/events/1");

  r = client.Post(url, good);
  REQUIRE(r.status == 202);
  auto id = nlohmann::json::parse(r.body)["event_id"].get<std::string>();
  CHECK(id.size() == 36);
  r = client.Post(url, R"({"event_id":"my-id-1","event_type":"user.registered","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-404"]}})");
  REQUIRE(r.status == 202);
  CHECK(nlohmann::json::parse(r.body)["event_id"] == "my-id-1");
  r = client.Post(url, "[" + good + "," + good + "]");
  REQUIRE(r.status == 202);
  CHECK(nlohmann::json::parse(r.body)["event_ids"].size() == 2);

  REQUIRE(WaitUntil([&] { return MailsTo(404) == 1; }, 60s));
  REQUIRE(WaitUntil([&] { return MailsTo(401) == 3; }, 60s));  // one single and two batched events
  CHECK(MailsTo(402) == 0);
  CHECK(MailsTo(403) == 0);
}

TEST_CASE("killing the deliver stage mid-run loses nothing", "[e2e][crash]") {
  const int first = 1001, count = 300;
  herald::test::TempDir tmp;
  std::string file = tmp.Path() + "/events.jsonl";
  {
    std::ofstream out(file);
    for (int u = first; u < first + count; ++u) out << SeedEvent(u) << "\n";
  }
  std::string out;
  REQUIRE(Run("HERALD_BROKERS=" + S().Env("HERALD_BROKERS") + " " HERALD_BINARY " publish --file " + file, &out) == 0);
  auto ours = [&] {
    int distinct = 0, total = 0;
    for (const auto& [rcpt, n] : MailCounts()) {
      if (rcpt.rfind("u-1", 0) != 0 || rcpt.size() != std::string("u-1001@example.test").size()) continue;
      ++distinct;
      total += n;
    }
    return std::make_pair(distinct, total);
  };
  REQUIRE(WaitUntil([&] { return ours().first >= 20; }, 60s));
  S().Dev().Kill("deliver-email", SIGKILL);
  auto at_kill = ours().first;
  INFO("delivered before the kill: " << at_kill);
  CHECK(at_kill < count);  // the kill really happened mid-run
  S().Dev().Start("deliver-email");
  // An email in flight at the kill (one per SMTP connection at most) has an unknown outcome:
  // the next owner does not send it again but dead-letters it as send_outcome_unknown.
  auto unknown = [&] {
    std::set<std::string> users;
    for (const auto& r : herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), "notify.dlq.v1", 30s)) {
      auto d = nlohmann::json::parse(r.value);
      if (d.value("error_class", "") != "send_outcome_unknown") continue;
      auto original = nlohmann::json::parse(d.value("original", ""), nullptr, false);
      if (original.is_object() && original.contains("request")) users.insert(original["request"].value("user_id", ""));
    }
    return users;
  };
  std::set<std::string> unknown_users;
  REQUIRE(WaitUntil(
      [&] {
        unknown_users = unknown();
        int settled = 0;
        auto mails = MailCounts();
        for (int u = first; u < first + count; ++u) {
          const auto id = "u-" + std::to_string(u);
          settled += mails.count(id + "@example.test") || unknown_users.count(id) ? 1 : 0;
        }
        return settled == count;
      },
      120s, 200ms));
  auto [distinct, total] = ours();
  INFO("emails: " << distinct << ", outcome unknown: " << unknown_users.size());
  CHECK(distinct + static_cast<int>(unknown_users.size()) >= count);
  CHECK(unknown_users.size() <= 4);  // HERALD_SMTP_CONNECTIONS: one email in flight on each
  // Nothing is sent twice: what was in flight is dead-lettered, not repeated.
  CHECK(total == distinct);
}

TEST_CASE("SIGTERM drains a stage, which leaves within 10 seconds", "[e2e][lifecycle]") {
  auto t0 = std::chrono::steady_clock::now();
  S().Dev().Kill("plan", SIGTERM);
  REQUIRE(WaitUntil([&] { return !S().Dev().IsRunning("plan"); }, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  std::ifstream log(S().Dev().LogFile("plan"));
  std::string text((std::istreambuf_iterator<char>(log)), {});
  CHECK(text.find("stopped cleanly") != std::string::npos);
  S().Dev().Start("plan");
  Kcat("events.auth.v1", SeedEvent(501) + "\n");
  CHECK(WaitUntil([&] { return MailsTo(501) == 1; }, 60s));
}

TEST_CASE("every stage serves metrics, liveness and readiness", "[e2e][ops]") {
  for (const char* stage : {"ingest", "plan", "enrich", "deliver-email", "deliver-sms", "deliver-telegram",
                            "deliver-push", "ledger", "retry"}) {
    INFO(stage);
    herald::http::Client c;
    std::string base = "http://127.0.0.1:" + std::to_string(S().Dev().Port(stage));
    CHECK(c.Get(base + "/healthz").status == 200);
    REQUIRE(WaitUntil([&] { return c.Get(base + "/readyz").status == 200; }, 30s));
    auto metrics = c.Get(base + "/metrics");
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("herald_records_produced_total") != std::string::npos);
    CHECK(c.Get(base + "/nope").status == 404);
  }
  herald::http::Client c;
  auto plan = c.Get("http://127.0.0.1:" + std::to_string(S().Dev().Port("plan")) + "/metrics").body;
  CHECK(plan.find("herald_records_consumed_total{stage=\"plan\"}") != std::string::npos);
  CHECK(plan.find("herald_batch_processing_seconds_bucket{stage=\"plan\",le=\"0.001\"}") != std::string::npos);
}

TEST_CASE("herald dev up --detach and dev down leave no process behind", "[e2e][dev]") {
  herald::test::TempDir dir;
  std::string out;
  int rc = Run(std::string(HERALD_BINARY) + " dev up --detach --broker-port 0 --state-dir " + dir.Path() + " 2>&1", &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("Herald development stack is up") != std::string::npos);
  std::ifstream env(dir.Path() + "/dev.env");
  std::string env_text((std::istreambuf_iterator<char>(env)), {});
  for (const char* k : {"HERALD_BROKERS", "HERALD_INGEST_URL", "HERALD_INGEST_TOKEN", "HERALD_ADMIN_URL", "HERALD_ADMIN_TOKEN", "HERALD_UNSUBSCRIBE_URL", "HERALD_PG_URL",
                        "HERALD_REDIS_URL", "HERALD_SMTP_DIR", "HERALD_AUTH_URL", "HERALD_UGC_URL", "HERALD_MOVIES_URL",
                        "HERALD_SMS_URL", "HERALD_TELEGRAM_URL", "HERALD_PUSH_URL"}) {
    CHECK(env_text.find(std::string("export ") + k + "=") != std::string::npos);
  }
  std::vector<pid_t> pids;
  for (const auto& e : std::filesystem::directory_iterator(dir.Path() + "/pids")) {
    std::ifstream p(e.path());
    pid_t pid = 0;
    p >> pid;
    pids.push_back(pid);
  }
  CHECK(pids.size() == 16);  // broker, postgres, redis, smtp, fakes and eleven stages and APIs
  REQUIRE(Run(std::string(HERALD_BINARY) + " dev down --state-dir " + dir.Path() + " 2>&1", &out) == 0);
  for (pid_t pid : pids) {
    INFO(pid);
    CHECK(WaitUntil([&] { return ::kill(pid, 0) != 0; }, 5s));
  }
}

TEST_CASE("herald topics list and herald migrate work against the stack", "[e2e][cli]") {
  std::string out;
  REQUIRE(Run(std::string(HERALD_BINARY) + " topics list", &out) == 0);
  for (const char* t : {"events.auth.v1", "notify.requests.v1", "notify.deliver.push.low", "notify.retry.1h",
                        "notify.status.v1", "notify.dlq.v1"}) {
    CHECK(out.find(t) != std::string::npos);
  }
  out.clear();
  REQUIRE(Run(std::string(HERALD_BINARY) + " --pg-url '" + S().Env("HERALD_PG_URL") + "' migrate", &out) == 0);
  CHECK(out == "database is up to date\n");
  pqxx::connection conn(S().Env("HERALD_PG_URL"));
  pqxx::work tx(conn);
  CHECK(tx.exec("SELECT count(*) FROM schema_migrations")[0][0].as<int>() >= 1);
  out.clear();
  CHECK(Run(std::string(HERALD_BINARY) + " --pg-url postgresql://nobody@127.0.0.1:1/x migrate 2>&1", &out) == 1);
  CHECK(out.find("cannot connect to PostgreSQL") != std::string::npos);
  out.clear();
  CHECK(Run("HERALD_BROKER=typo " HERALD_BINARY " topics list 2>&1", &out) == 2);
  CHECK(out.find("HERALD_BROKER") != std::string::npos);
}

TEST_CASE("an event that is not even UTF-8 is dead-lettered byte for byte and the partition flows on", "[e2e][dlq]") {
  herald::config::Config config;
  config.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer p(herald::stage::ProducerOptions(config, "test"));
  std::string bad("\xff\xfe{\"event_type\": \"user.registered\" \xc3(", 37);
  p.ProduceSync({"events.auth.v1", "k-bad", bad, {}, 1}, 10s);
  p.ProduceSync({"events.auth.v1", "u-601", SeedEvent(601), {}, 1}, 10s);
  REQUIRE(WaitUntil([&] { return MailsTo(601) == 1; }, 60s));
  bool found = false;
  for (const auto& r : ReadTopic(S().Env("HERALD_BROKERS"), "notify.dlq.v1", 1000, 3s)) {
    auto j = nlohmann::json::parse(r.value);
    if (!j.contains("original_bytes")) continue;
    auto bytes = j["original_bytes"].get<std::vector<std::uint8_t>>();
    if (std::string(bytes.begin(), bytes.end()) != bad) continue;
    found = true;
    CHECK(j["error_class"] == "invalid_json");
    CHECK(j["key"] == "k-bad");
  }
  CHECK(found);
}

namespace {

using herald::test::FindUser;

std::vector<std::string> LedgerHistory(const std::string& user, const std::string& channel) {
  pqxx::connection conn(S().Env("HERALD_PG_URL"));
  pqxx::work tx(conn);
  std::vector<std::string> out;
  for (const auto& row : tx.exec_params("SELECT e.status FROM delivery_events e JOIN deliveries d USING (notification_id, channel) "
                                        "WHERE d.user_id = $1 AND e.channel = $2 ORDER BY e.at, e.status",
                                        user, channel)) {
    out.push_back(row[0].as<std::string>());
  }
  return out;
}

nlohmann::json ProviderLog(const std::string& env, const std::string& path) {
  herald::http::Client c;
  return nlohmann::json::parse(c.Get(S().Env(env) + "/_fake/requests?path=" + herald::http::UrlEncode(path)).body)["requests"];
}

}  // namespace

TEST_CASE("sms, telegram and push deliver rendered messages to their providers", "[e2e][channels]") {
  auto first = [](const char* c) { return [c](const nlohmann::json& u) { return u["channels"][0] == c; }; };
  int push_user = FindUser(7000, [&](const nlohmann::json& u) {
    return first("push")(u) && u["push_tokens"][0].get<std::string>().rfind("dead-", 0) != 0;
  });
  int tg_user = FindUser(7100, [&](const nlohmann::json& u) {
    return first("telegram")(u) && u["telegram_chat_id"].get<long>() % 100 != 13;
  });
  int sms_user = FindUser(7200, first("sms"));
  std::string events =
      R"({"event_type":"comment.liked","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-)" + std::to_string(push_user) +
      R"(","u-)" + std::to_string(tg_user) + R"("],"data":{"liked_by":"Marta K."}}})" + "\n" +
      R"({"event_type":"user.password_reset","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-)" + std::to_string(sms_user) +
      R"("],"data":{"reset_url":"https://cinema.example/r/xyz"}}})" + "\n";
  Kcat("events.auth.v1", events);
  auto sent = [](int user, const char* channel) {
    auto h = LedgerHistory("u-" + std::to_string(user), channel);
    return std::find(h.begin(), h.end(), "sent") != h.end();
  };
  REQUIRE(WaitUntil([&] { return sent(push_user, "push") && sent(tg_user, "telegram") && sent(sms_user, "sms"); }, 60s, 100ms));

  auto push = herald::dev::SyntheticUser(42, static_cast<std::uint64_t>(push_user));
  bool push_seen = false;
  for (const auto& r : ProviderLog("HERALD_PUSH_URL", "/v1/send")) {
    auto body = nlohmann::json::parse(r["body"].get<std::string>());
    if (body["token"] != push["push_tokens"][0]) continue;
    push_seen = true;
    CHECK(body["title"].get<std::string>().find("Marta K.") != std::string::npos);
    CHECK_FALSE(body["body"].get<std::string>().empty());
  }
  CHECK(push_seen);
  auto tg = herald::dev::SyntheticUser(42, static_cast<std::uint64_t>(tg_user));
  bool tg_seen = false;
  for (const auto& r : ProviderLog("HERALD_TELEGRAM_URL", "/bot")) {
    auto body = nlohmann::json::parse(r["body"].get<std::string>());
    if (body["chat_id"] != tg["telegram_chat_id"]) continue;
    tg_seen = true;
    CHECK(body["text"].get<std::string>().find("Marta K.") != std::string::npos);
  }
  CHECK(tg_seen);
  auto sms = herald::dev::SyntheticUser(42, static_cast<std::uint64_t>(sms_user));
  bool sms_seen = false;
  for (const auto& r : ProviderLog("HERALD_SMS_URL", "/v1/messages")) {
    auto body = nlohmann::json::parse(r["body"].get<std::string>());
    if (body["to"] != sms["phone"]) continue;
    sms_seen = true;
    CHECK(body["body"].get<std::string>().find("https://cinema.example/r/xyz") != std::string::npos);
    CHECK(body["idempotency_key"].get<std::string>().size() == 36);
  }
  CHECK(sms_seen);
}

TEST_CASE("a user who blocked the bot gets the email instead: failed, fallback, sent", "[e2e][fallback]") {
  int user = FindUser(7300, [](const nlohmann::json& u) {
    bool has_email = false;
    for (const auto& c : u["channels"]) has_email = has_email || c == "email";
    return u["channels"][0] == "telegram" && u["telegram_chat_id"].get<long>() % 100 == 13 && has_email;
  });
  Kcat("events.ugc.v1", R"({"event_type":"comment.liked","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-)" +
                            std::to_string(user) + R"("],"data":{"liked_by":"Ann"}}})" + "\n");
  REQUIRE(WaitUntil([&] { return MailsTo(user) == 1; }, 60s));
  REQUIRE(WaitUntil([&] {
    auto h = LedgerHistory("u-" + std::to_string(user), "email");
    return std::find(h.begin(), h.end(), "sent") != h.end();
  }, 30s, 100ms));
  auto telegram = LedgerHistory("u-" + std::to_string(user), "telegram");
  CHECK(std::find(telegram.begin(), telegram.end(), "failed") != telegram.end());
  CHECK(std::find(telegram.begin(), telegram.end(), "fallback") != telegram.end());
  pqxx::connection conn(S().Env("HERALD_PG_URL"));
  pqxx::work tx(conn);
  auto rows = tx.exec_params("SELECT channel, status, reason FROM deliveries WHERE user_id = $1 ORDER BY channel",
                             "u-" + std::to_string(user));
  REQUIRE(rows.size() == 2);
  CHECK(rows[0][0].as<std::string>() == "email");
  CHECK(rows[0][1].as<std::string>() == "sent");
  CHECK(rows[1][0].as<std::string>() == "telegram");
  CHECK(rows[1][1].as<std::string>() == "fallback");
  CHECK(rows[1][2].as<std::string>().find("blocked") != std::string::npos);
}

TEST_CASE("an SMS provider answering 429 slows everyone down; nothing is lost or sent twice", "[e2e][ratelimit]") {
  std::vector<int> users;
  for (int from = 8000; users.size() < 20;) {
    int u = FindUser(from, [](const nlohmann::json& x) { return x["channels"][0] == "sms"; });
    users.push_back(u);
    from = u + 1;
  }
  herald::http::Client c;
  std::string sms = S().Env("HERALD_SMS_URL");
  REQUIRE(c.Request("PUT", sms + "/_fake/faults",
                    R"({"path": "/v1/messages", "error": 429, "retry_after_s": 2})").status == 200);
  std::string lines;
  for (int u : users) {
    lines += R"({"event_type":"user.password_reset","created_dt":"2026-11-21T10:00:00Z","payload":{"user":["u-)" +
             std::to_string(u) + R"("],"data":{"reset_url":"https://cinema.example/r/)" + std::to_string(u) + R"("}}})" + "\n";
  }
  Kcat("events.auth.v1", lines);
  auto sms_calls = [&] { return ProviderLog("HERALD_SMS_URL", "/v1/messages").size(); };
  REQUIRE(WaitUntil([&] { return sms_calls() > 0; }, 60s, 100ms));
  auto before = sms_calls();
  std::this_thread::sleep_for(4s);  // an observation window while the provider throttles
  auto during = sms_calls() - before;
  INFO("SMS requests in 4 s of 429s: " << during);
  // Blocked for Retry-After (2 s) after every 429, each probe is at most one chunk: far fewer
  // requests than 20 messages retried every second would make.
  CHECK(during <= 48);
  herald::http::Client ops;
  auto metrics = ops.Get("http://127.0.0.1:" + std::to_string(S().Dev().Port("deliver-sms")) + "/metrics").body;
  CHECK(metrics.find("herald_provider_throttled_total{channel=\"sms\",provider=\"sms\"} 0") == std::string::npos);
  REQUIRE(c.Request("DELETE", sms + "/_fake/faults", "").status == 200);

  auto delivered = [&] {
    std::map<std::string, int> ok;
    for (const auto& r : ProviderLog("HERALD_SMS_URL", "/v1/messages")) {
      if (r["status"] != 200) continue;
      ++ok[nlohmann::json::parse(r["body"].get<std::string>())["idempotency_key"].get<std::string>()];
    }
    return ok;
  };
  std::set<std::string> phones;
  for (int u : users) phones.insert(herald::dev::SyntheticUser(42, static_cast<std::uint64_t>(u))["phone"]);
  auto all_sent = [&] {
    std::set<std::string> seen;
    for (const auto& r : ProviderLog("HERALD_SMS_URL", "/v1/messages")) {
      if (r["status"] != 200) continue;
      auto to = nlohmann::json::parse(r["body"].get<std::string>())["to"].get<std::string>();
      if (phones.count(to)) seen.insert(to);
    }
    return seen.size() == phones.size();
  };
  REQUIRE(WaitUntil(all_sent, 90s, 200ms));
  for (const auto& [key, n] : delivered()) {
    INFO(key);
    CHECK(n == 1);  // every notification went through exactly once
  }
}
