// Operations and analysts, against a running dev stack (embedded broker, PostgreSQL, Redis,
// SMTP sink, fakes and every stage): `herald replay` over a time range (files, filters, a
// sandbox topic, a dry run that must predict exactly what the pipeline sent and send
// nothing), and the consumer lag metric while a stage is stopped and restarted.

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "herald/common/ids.hpp"
#include "herald/common/time.hpp"
#include "herald/dev/mail.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/producer.hpp"
#include "support/stack.hpp"

namespace {

using herald::test::Run;
using herald::test::WaitUntil;
using nlohmann::json;
using namespace std::chrono_literals;

herald::test::TestStack& S() {
  // Statistics and the admin's group lag every half second, so lag moves quickly.
  static herald::test::TestStack s(1'000'000, {{"HERALD_KAFKA_STATISTICS_INTERVAL_MS", "500"},
                                               {"HERALD_LAG_INTERVAL", "500ms"}});
  return s;
}

std::string Env() {
  return "HERALD_BROKERS=" + S().Env("HERALD_BROKERS") + " HERALD_PG_URL='" + S().Env("HERALD_PG_URL") +
         "' HERALD_AUTH_URL=" + S().Env("HERALD_AUTH_URL") + " HERALD_UGC_URL=" + S().Env("HERALD_UGC_URL") +
         " HERALD_MOVIES_URL=" + S().Env("HERALD_MOVIES_URL") + " HERALD_CLOCK=file:" + S().ClockFile() +
         " HERALD_LOG_LEVEL=warn ";
}

std::vector<json> ReadLines(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sum of the series of `name` whose labels contain every `label="value"` given.
double MetricSum(const std::string& stage, const std::string& name, const std::vector<std::string>& labels,
                 bool* present = nullptr) {
  herald::http::Client c;
  auto body = c.Get("http://127.0.0.1:" + std::to_string(S().Dev().Port(stage)) + "/metrics").body;
  std::istringstream in(body);
  std::string line;
  double sum = 0;
  bool any = false;
  while (std::getline(in, line)) {
    if (!line.starts_with(name + "{")) continue;
    auto close = line.find('}');
    bool ok = close != std::string::npos;
    for (const auto& l : labels) ok = ok && line.substr(0, close).find(l) != std::string::npos;
    if (!ok) continue;
    sum += std::stod(line.substr(close + 2));
    any = true;
  }
  if (present) *present = any;
  return sum;
}

// Welcome events for users [first, first + n), produced with record timestamps `ts0` + i s.
std::vector<std::string> ProduceWelcomes(int first, int n, std::int64_t ts0) {
  herald::kafka::Producer::Options po;
  po.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer producer(po);
  std::vector<herald::kafka::OutRecord> records;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    std::string user = "u-" + std::to_string(first + i);
    std::string id = "replay-welcome-" + user;
    json event = {{"event_id", id}, {"event_type", "user.registered"}, {"created_dt", herald::test::TestStack::kStartClock},
                  {"priority", "high"}, {"payload", {{"user", {user}}, {"content", json::array()}}}};
    herald::kafka::OutRecord r{"events.auth.v1", user, event.dump(), {{"x-batch", std::to_string(first)}}};
    r.timestamp_ms = ts0 + i * 1000;
    records.push_back(std::move(r));
    ids.push_back(id);
  }
  producer.ProduceAll(records, 20s);
  return ids;
}

std::int64_t NowMs() { return herald::NowMs().time_since_epoch().count(); }

// Text as rendered, whatever line endings and trailing blanks the mail transport added.
std::string Normal(std::string s) {
  std::string out;
  for (char c : s) {
    if (c != '\r') out += c;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

struct Ranges {
  std::int64_t t0;  // batch B's first timestamp
  std::vector<std::string> a, b, c;
};

// Three batches of ten welcome events, an hour apart in record time (B two hours ago),
// delivered by the running stack before the tests look at them.
const Ranges& Batches() {
  static Ranges r = [] {
    Ranges x;
    x.t0 = NowMs() - 2 * 3600'000;
    x.a = ProduceWelcomes(7001, 10, x.t0 - 3600'000);
    x.b = ProduceWelcomes(7101, 10, x.t0);
    x.c = ProduceWelcomes(7201, 10, x.t0 + 3600'000);
    for (int u : {7001, 7010, 7101, 7110, 7201, 7210}) {
      REQUIRE(WaitUntil([&] { return S().MailsTo(herald::test::EmailOf(u)) == 1; }, 90s));
    }
    REQUIRE(WaitUntil([&] { return S().MailFiles() >= 30; }, 60s));
    return x;
  }();
  return r;
}

std::set<std::string> EventIds(const std::vector<json>& rows) {
  std::set<std::string> ids;
  for (const auto& r : rows) ids.insert(r["value"]["event_id"].get<std::string>());
  return ids;
}

}  // namespace

TEST_CASE("replay writes exactly the records of a time range, filtered, as JSON Lines or CSV", "[replay]") {
  const auto& batches = Batches();
  herald::test::TempDir dir;
  auto from = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0)));
  auto to = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0 + 10'000)));
  std::string out;

  // Batch B exactly: records at t0 .. t0 + 9 s; the range's end is exclusive.
  std::string file = dir.Path() + "/b.jsonl";
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from " + from + " --to " + to + " --out " + file + " 2>&1",
              &out) == 0);
  auto rows = ReadLines(file);
  CHECK(rows.size() == 10);
  CHECK(EventIds(rows) == std::set<std::string>(batches.b.begin(), batches.b.end()));
  for (const auto& r : rows) {
    CHECK(r["topic"] == "events.auth.v1");
    CHECK(r["timestamp_ms"].get<std::int64_t>() >= batches.t0);
    CHECK(r["timestamp_ms"].get<std::int64_t>() < batches.t0 + 10'000);
    CHECK(r["key"] == r["value"]["payload"]["user"][0]);
    CHECK(r["headers"]["x-batch"] == "7101");
    CHECK(herald::ParseRfc3339(r["timestamp"].get<std::string>()).has_value());
  }
  // The embedded broker has no time index: the summary says it scanned.
  CHECK(out.find("10 in the range, 10 matched, 10 rows written") != std::string::npos);
  CHECK(out.find("scanned by timestamp") != std::string::npos);

  // One second less at the end drops the last record; relative times select the same batch.
  auto to_minus = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0 + 9'000)));
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from " + from + " --to " + to_minus + " --out " + file,
              &out) == 0);
  CHECK(ReadLines(file).size() == 9);
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from 150m --to 90m --out " + file, &out) == 0);
  CHECK(EventIds(ReadLines(file)) == std::set<std::string>(batches.b.begin(), batches.b.end()));
  // All three batches (and whatever else the topic holds from the last four hours).
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from 4h --out " + file, &out) == 0);
  auto all = EventIds(ReadLines(file));
  for (const auto* batch : {&batches.a, &batches.b, &batches.c}) {
    for (const auto& id : *batch) CHECK(all.count(id) == 1);
  }

  // Field filters: an event's recipient by user_id, and a dotted path.
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from 4h --where user_id=u-7105 --out " + file, &out) == 0);
  rows = ReadLines(file);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0]["value"]["event_id"] == "replay-welcome-u-7105");
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from 4h --where header.x-batch=7201"
                      " --where event_type=user.registered --out " + file, &out) == 0);
  CHECK(EventIds(ReadLines(file)) == std::set<std::string>(batches.c.begin(), batches.c.end()));

  // One partition: only its records, and together the partitions give the whole batch.
  std::set<std::string> by_partition;
  for (int p = 0; p < 6; ++p) {
    REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from " + from + " --to " + to +
                    " --partition " + std::to_string(p) + " --out " + file, &out) == 0);
    for (const auto& r : ReadLines(file)) {
      CHECK(r["partition"] == p);
      by_partition.insert(r["value"]["event_id"].get<std::string>());
    }
  }
  CHECK(by_partition == std::set<std::string>(batches.b.begin(), batches.b.end()));

  // CSV: a header row, then one row per record with the JSON value quoted.
  std::string csv = dir.Path() + "/b.csv";
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic events.auth.v1 --from " + from + " --to " + to + " --format csv --out " + csv,
              &out) == 0);
  auto text = Slurp(csv);
  CHECK(text.starts_with("topic,partition,offset,timestamp,key,headers,value\r\n"));
  std::size_t lines = 0;
  for (std::size_t pos = 0; (pos = text.find("\r\n", pos)) != std::string::npos; pos += 2) ++lines;
  CHECK(lines == 11);
  CHECK(text.find("\"{\"\"x-batch\"\":\"\"7101\"\"}\"") != std::string::npos);
  CHECK(text.find(",u-7103,") != std::string::npos);
}

TEST_CASE("replay re-publishes a range to a sandbox topic and refuses live topics without --allow-live", "[replay]") {
  const auto& batches = Batches();
  auto from = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0)));
  auto to = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0 + 10'000)));
  std::string out;
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from " + from + " --to " + to +
                  " --publish sandbox.replay.v1 2>&1", &out) == 0);
  CHECK(out.find("10 published to sandbox.replay.v1") != std::string::npos);
  auto records = herald::test::ReadTopic(S().Env("HERALD_BROKERS"), "sandbox.replay.v1", 10, 20s);
  REQUIRE(records.size() == 10);
  std::set<std::string> ids;
  for (const auto& r : records) {
    ids.insert(json::parse(r.value)["event_id"].get<std::string>());
    bool replayed = false;
    for (const auto& h : r.headers) replayed = replayed || (h.key == "herald-replayed-from" && h.value.starts_with("events.auth.v1/"));
    CHECK(replayed);
  }
  CHECK(ids == std::set<std::string>(batches.b.begin(), batches.b.end()));
  // The sandbox keeps the original timestamps, so it replays by the same range (a live
  // topic gets new ones: the re-publication below does not move into batch B's range).
  std::string file = herald::test::TempDir().Path() + ".jsonl";
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic sandbox.replay.v1 --from " + from + " --to " + to + " --out " + file, &out) == 0);
  CHECK(ReadLines(file).size() == 10);
  std::filesystem::remove(file);

  auto mails = S().MailFiles();
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from " + from + " --to " + to +
                  " --publish events.auth.v1 2>&1", &out) == 2);
  CHECK(out.find("is the topic being replayed") != std::string::npos);
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic sandbox.replay.v1 --from " + from + " --to " + to +
                  " --publish events.auth.v1 2>&1", &out) == 2);
  CHECK(out.find("--allow-live") != std::string::npos);

  // With --allow-live the events go through the pipeline again; deterministic ids mean
  // nobody gets a second email. The ledger records them as duplicates, not new sends.
  auto dupes_before = S().Metric("deliver-email", "herald_duplicates_suppressed_total{channel=\"email\",provider=\"smtp\"}");
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --topic sandbox.replay.v1 --from " + from + " --to " + to +
                  " --publish events.auth.v1 --allow-live 2>&1", &out) == 0);
  REQUIRE(WaitUntil([&] {
    return S().Metric("deliver-email", "herald_duplicates_suppressed_total{channel=\"email\",provider=\"smtp\"}") >= dupes_before + 10;
  }, 60s));
  CHECK(S().MailFiles() == mails);
  for (int u = 7101; u <= 7110; ++u) CHECK(S().MailsTo(herald::test::EmailOf(u)) == 1);

  // Bad arguments name the problem.
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from yesterday 2>&1", &out) == 2);
  CHECK(out.find("'yesterday' is not a time") != std::string::npos);
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from 1h --to 2h 2>&1", &out) == 2);
  CHECK(out.find("is not before --to") != std::string::npos);
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from 1h --partition 99 2>&1", &out) == 2);
  CHECK(out.find("not 99") != std::string::npos);
  REQUIRE(Run(Env() + HERALD_BINARY " replay --topic events.auth.v1 --from 1h --where nonsense 2>&1", &out) == 2);
  CHECK(out.find("field=value") != std::string::npos);
}

TEST_CASE("replay --dry-run predicts exactly what the pipeline sent, and sends nothing", "[replay]") {
  const auto& batches = Batches();
  herald::test::TempDir dir;
  auto from = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0)));
  auto to = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0 + 10'000)));
  // What the pipeline really sent to batch B's users.
  std::map<std::string, herald::dev::CapturedMail> sent;
  for (const auto& m : herald::dev::ReadMailDir(S().Env("HERALD_SMTP_DIR"))) sent[m.rcpt] = m;

  auto mails = S().MailFiles();
  auto requests = [] {
    return herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), "notify.requests.v1", 30s).size() +
           herald::test::ReadTopicToEnd(S().Env("HERALD_BROKERS"), "notify.requests.high.v1", 30s).size();
  };
  auto requests_before = requests();
  json fake_before = json::object();
  for (const char* role : {"sms", "telegram", "push"}) {
    fake_before[role] = S().FakeRequests(role, "/").size();
  }

  std::string file = dir.Path() + "/dry.jsonl";
  std::string out;
  REQUIRE(Run(Env() + HERALD_BINARY " replay --dry-run --topic events.auth.v1 --from " + from + " --to " + to + " --out " + file + " 2>&1",
              &out) == 0);
  auto rows = ReadLines(file);
  REQUIRE(rows.size() == 10);
  for (const auto& r : rows) {
    INFO(r.dump());
    REQUIRE(r["outcome"] == "send");
    CHECK(r["channel"] == "email");
    CHECK(r["source"]["topic"] == "events.auth.v1");
    auto user = r["user_id"].get<std::string>();
    CHECK(r["notification_id"] == herald::NotificationId(r["event_id"].get<std::string>(), user, "email"));
    auto it = sent.find(r["address"].get<std::string>());
    REQUIRE(it != sent.end());
    CHECK(it->second.subject == r["subject"].get<std::string>());
    CHECK(Normal(it->second.text) == Normal(r["text"].get<std::string>()));
    CHECK(it->second.message_id.find(r["notification_id"].get<std::string>()) != std::string::npos);
  }

  // Sending nothing: no email, no provider call, no record produced.
  CHECK(S().MailFiles() == mails);
  for (const char* role : {"sms", "telegram", "push"}) CHECK(S().FakeRequests(role, "/").size() == fake_before[role]);
  CHECK(requests() == requests_before);

  // An invalid record in the range is reported, not fatal; the CSV form has its own columns.
  herald::kafka::Producer::Options po;
  po.brokers = S().Env("HERALD_BROKERS");
  herald::kafka::Producer producer(po);
  herald::kafka::OutRecord bad{"events.auth.v1", "u-7101", R"({"event_type": "user.teleported", "payload": {}})", {}};
  bad.timestamp_ms = batches.t0 + 20'000;  // after batch B: the other cases' range stays as it was
  producer.ProduceSync(bad, 10s);
  std::string csv = dir.Path() + "/dry.csv";
  auto to_bad = herald::FormatRfc3339(herald::TimePoint(std::chrono::milliseconds(batches.t0 + 30'000)));
  REQUIRE(Run(Env() + HERALD_BINARY " replay -q --dry-run --format csv --topic events.auth.v1 --from " + from + " --to " + to_bad +
                  " --out " + csv, &out) == 0);
  auto text = Slurp(csv);
  CHECK(text.starts_with("source,event_id,event_type,notification_id,user_id,channel,priority,address,locale,outcome,due,reason,subject,text,html\r\n"));
  INFO(text);
  CHECK(text.find(",user.teleported,,,,,,,invalid,,plan would dead-letter it: ") != std::string::npos);
  std::size_t sends = 0;
  for (std::size_t pos = 0; (pos = text.find(",send,", pos)) != std::string::npos; ++pos) ++sends;
  CHECK(sends == 10);
}

TEST_CASE("consumer lag on /metrics rises while a stage is stopped and falls after it restarts", "[metrics]") {
  Batches();  // the stack has delivered and recorded the three batches
  auto ledger_lag = [](const std::string& stage, bool* present = nullptr) {
    return MetricSum(stage, "herald_consumer_lag", {"group=\"herald-ledger\"", "topic=\"notify.status.v1\""}, present);
  };
  // The ledger reports its own lag from librdkafka's statistics; caught up, it is zero.
  REQUIRE(WaitUntil([&] {
    bool present = false;
    return ledger_lag("ledger", &present) == 0 && present;
  }, 60s));
  REQUIRE(WaitUntil([&] { return ledger_lag("admin") == 0; }, 30s));

  S().Dev().Kill("ledger", SIGTERM);
  REQUIRE(WaitUntil([&] { return !S().Dev().IsRunning("ledger"); }, 30s));
  ProduceWelcomes(7301, 10, NowMs());
  // Each welcome yields at least two statuses (accepted, sent); the admin process measures
  // every group's committed offsets, so it sees the stopped ledger fall behind.
  REQUIRE(WaitUntil([&] { return ledger_lag("admin") >= 20; }, 60s));
  double first = ledger_lag("admin");
  ProduceWelcomes(7401, 10, NowMs());
  REQUIRE(WaitUntil([&] { return ledger_lag("admin") >= first + 20; }, 60s));

  S().Dev().Start("ledger");
  REQUIRE(WaitUntil([&] {
    bool present = false;
    return ledger_lag("ledger", &present) == 0 && present;
  }, 60s));
  REQUIRE(WaitUntil([&] { return ledger_lag("admin") == 0; }, 30s));

  // The other per-stage series: processing time per record, end-to-end latency by priority.
  bool present = false;
  CHECK(MetricSum("enrich", "herald_processing_seconds_count", {"stage=\"enrich\""}, &present) > 0);
  CHECK(present);
  CHECK(MetricSum("deliver-email", "herald_end_to_end_seconds_count", {"priority=\"high\"", "channel=\"email\""}) >= 30);
}
