// The delivery ledger and its statistics in a real PostgreSQL: idempotence, ordering, campaign
// progress, the per-minute timeline, failure reasons, and a randomized run after which every
// aggregate must equal what a scan of the ledger says. The test cases share one database and
// run in file order; each writes its own notification ids and campaigns, and the whole-table
// checks hold whatever the others wrote, since everything goes through ApplyStatuses.

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <future>
#include <map>
#include <random>
#include <set>

#include "herald/common/errors.hpp"
#include "herald/dev/stack.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/stats/stats.hpp"
#include "support/stack.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;
using herald::TimePoint;
using herald::model::Status;
using herald::model::StatusRecord;
namespace stats = herald::stats;

namespace {

// PostgreSQL (with the rest of the dev services, no stages), migrated and with the defaults
// loaded.
herald::test::ServicesStack& Db() {
  static herald::test::ServicesStack services;
  return services;
}

std::unique_ptr<pqxx::connection> Connect() {
  return herald::pg::Connect(Db().pg_url);
}

TimePoint At(const char* rfc3339) {
  auto tp = herald::ParseRfc3339(rfc3339);
  REQUIRE(tp);
  return *tp;
}

StatusRecord S(const std::string& nid, const std::string& channel, Status status, int attempt, TimePoint at,
               std::optional<std::string> campaign = std::nullopt) {
  StatusRecord s;
  s.notification_id = nid;
  s.event_id = "ev-" + nid;
  s.event_type = "promo.new_releases";
  s.campaign_id = std::move(campaign);
  s.user_id = "u-" + nid;
  s.channel = channel;
  s.priority = herald::model::Priority::kLow;
  s.status = status;
  s.attempt = attempt;
  s.at = at;
  s.created = at;
  return s;
}

StatusRecord Sent(StatusRecord s, const std::string& provider, std::chrono::milliseconds latency) {
  s.status = Status::kSent;
  s.provider = provider;
  s.provider_message_id = "pm-" + s.notification_id + "-" + std::to_string(s.attempt);
  s.at = s.created + latency;
  return s;
}

StatusRecord Failed(StatusRecord s, const std::string& reason, const std::string& provider = "smtp") {
  s.status = Status::kFailed;
  s.reason = reason;
  s.provider = provider;
  return s;
}

stats::ApplyResult Apply(pqxx::connection& conn, const std::vector<StatusRecord>& batch) {
  pqxx::work tx(conn);
  auto r = stats::ApplyStatuses(tx, batch);
  tx.commit();
  return r;
}

// status -> n of a campaign's (or, with "", the non-campaign) delivery_counts, zero rows left out.
std::map<std::string, long> Counts(pqxx::connection& conn, const std::string& campaign) {
  pqxx::work tx(conn);
  std::map<std::string, long> out;
  for (const auto& r : tx.exec_params("SELECT status, sum(n) FROM delivery_counts WHERE campaign_id = $1 "
                                      "GROUP BY status HAVING sum(n) <> 0",
                                      campaign)) {
    out[r[0].as<std::string>()] = r[1].as<long>();
  }
  return out;
}

long Scalar(pqxx::connection& conn, const std::string& sql) {
  pqxx::work tx(conn);
  return tx.exec1(sql)[0].as<long>();
}

void CreateCampaign(pqxx::connection& conn, const std::string& id, const std::string& state = "running") {
  pqxx::work tx(conn);
  tx.exec_params(
      "INSERT INTO campaigns (id, name, event_type, state) VALUES ($1, $1, 'promo.new_releases', $2)", id,
      state);
  tx.commit();
}

void AddRun(pqxx::connection& conn, const std::string& campaign, int run, long fanned_out, bool complete) {
  pqxx::work tx(conn);
  tx.exec_params(
      "INSERT INTO campaign_runs (campaign_id, run, event_id, event, started_at, fanned_out, fanout_complete)"
      " VALUES ($1, $2, $3, '{}', now(), $4, $5)",
      campaign, run, "campaign." + campaign + "." + std::to_string(run), fanned_out, complete);
  tx.commit();
}

nlohmann::json Query(pqxx::connection& conn, const std::function<nlohmann::json(pqxx::work&)>& f) {
  pqxx::work tx(conn);
  return f(tx);
}

// The aggregates must equal what a scan of the ledger says, for every key in the database.
void CheckAggregatesMatchLedger(pqxx::connection& conn) {
  pqxx::work tx(conn);
  auto mismatched_counts = tx.exec(R"sql(
    SELECT coalesce(g.campaign_id, c.campaign_id), coalesce(g.channel, c.channel),
           coalesce(g.provider, c.provider), coalesce(g.status, c.status), g.n, c.n
    FROM (SELECT coalesce(campaign_id, '') AS campaign_id, channel, coalesce(provider, '') AS provider,
                 status, count(*) AS n
          FROM deliveries GROUP BY 1, 2, 3, 4) g
    FULL JOIN (SELECT * FROM delivery_counts WHERE n <> 0) c
      USING (campaign_id, channel, provider, status)
    WHERE g.n IS DISTINCT FROM c.n)sql");
  for (const auto& r : mismatched_counts) {
    FAIL_CHECK("delivery_counts " << r[0].c_str() << "/" << r[1].c_str() << "/" << r[2].c_str() << "/"
                                  << r[3].c_str() << ": ledger " << r[4].c_str() << ", counts "
                                  << r[5].c_str());
  }
  CHECK(mismatched_counts.empty());
  CHECK(tx.exec1("SELECT count(*) FROM delivery_counts WHERE n < 0")[0].as<long>() == 0);

  auto mismatched_failures = tx.exec(R"sql(
    SELECT g.n, f.n, coalesce(g.reason, f.reason)
    FROM (SELECT coalesce(campaign_id, '') AS campaign_id, channel, left(coalesce(reason, ''), 200) AS reason,
                 count(*) AS n
          FROM deliveries WHERE status = 'failed' GROUP BY 1, 2, 3) g
    FULL JOIN (SELECT * FROM delivery_failures WHERE n <> 0) f USING (campaign_id, channel, reason)
    WHERE g.n IS DISTINCT FROM f.n)sql");
  for (const auto& r : mismatched_failures) {
    FAIL_CHECK("delivery_failures '" << r[2].c_str() << "': ledger " << r[0].c_str() << ", failures "
                                     << r[1].c_str());
  }

  // The histogram, bucket by bucket, against the sent rows' latencies.
  std::map<std::tuple<std::string, std::string, std::string, int>, long> expected, actual;
  long sent = 0;
  for (const auto& r : tx.exec("SELECT coalesce(campaign_id, ''), channel, priority,"
                               " (extract(epoch FROM sent_at - event_created_at) * 1000)::bigint"
                               " FROM deliveries WHERE status = 'sent'")) {
    expected[{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
              stats::LatencyBucket(r[3].as<std::int64_t>())}] += 1;
    ++sent;
  }
  long histogram_total = 0;
  for (const auto& r :
       tx.exec("SELECT campaign_id, channel, priority, bucket, n FROM delivery_latency WHERE n <> 0")) {
    actual[{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<int>()}] =
        r[4].as<long>();
    histogram_total += r[4].as<long>();
  }
  CHECK(histogram_total == sent);
  CHECK(actual == expected);

  // The query functions agree with the scan too.
  auto overall = stats::OverallStats(tx);
  for (const auto& r : tx.exec("SELECT status, count(*) FROM deliveries GROUP BY status")) {
    INFO("status " << r[0].c_str());
    CHECK(overall["by_status"].value(r[0].as<std::string>(), 0L) == r[1].as<long>());
  }
  CHECK(overall["latency_ms"]["count"].get<long>() == sent);
  auto channels = stats::ChannelStats(tx);
  std::map<std::tuple<std::string, std::string, std::string>, long> from_stats, from_scan;
  for (const auto& c : channels["channels"]) {
    for (const auto& [status, n] : c["by_status"].items()) {
      from_stats[{c["channel"].get<std::string>(), c["provider"].get<std::string>(), status}] = n.get<long>();
    }
  }
  for (const auto& r :
       tx.exec("SELECT channel, coalesce(provider, ''), status, count(*) FROM deliveries GROUP BY 1, 2, 3")) {
    from_scan[{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>()}] = r[3].as<long>();
  }
  CHECK(from_stats == from_scan);
}

}  // namespace

TEST_CASE("latency buckets cover a day in at most 200 buckets of at most 10 %", "[ledger][unit]") {
  const int n = stats::LatencyBucketCount();
  CHECK(n <= 200);
  CHECK(stats::LatencyBucketLow(0) == 0);
  CHECK(stats::LatencyBucketLow(n - 1) >= 86'400'000);
  CHECK(stats::LatencyBucketLow(n - 2) < 86'400'000);
  for (int b = 0; b + 1 < n; ++b) {
    auto low = stats::LatencyBucketLow(b), next = stats::LatencyBucketLow(b + 1);
    INFO("bucket " << b << " [" << low << ", " << next << ")");
    REQUIRE(next > low);
    CHECK(stats::LatencyBucket(low) == b);
    CHECK(stats::LatencyBucket(next - 1) == b);
    if (low >= 20) CHECK(static_cast<double>(next - low) <= 0.1 * static_cast<double>(low) + 1);
  }
  CHECK(stats::LatencyBucket(-5) == 0);
  CHECK(stats::LatencyBucket(7) == 7);
  CHECK(stats::LatencyBucket(365LL * 86'400'000) == n - 1);
  CHECK_THROWS_AS(stats::LatencyBucketLow(n), std::out_of_range);
}

TEST_CASE("a replayed status is stored and counted once", "[ledger]") {
  auto conn = Connect();
  const std::string c = "replay";
  CreateCampaign(*conn, c);
  auto accepted = S("replay-1", "email", Status::kAccepted, 0, At("2031-02-01T10:00:00Z"), c);
  auto sent = Sent(accepted, "smtp", 1500ms);

  auto first = Apply(*conn, {accepted, sent});
  CHECK(first.moved == 2);
  CHECK(first.ignored == 0);
  // The same two again, once within a batch and once in another batch.
  auto again = Apply(*conn, {sent, accepted, sent});
  CHECK(again.moved == 0);
  CHECK(again.ignored == 3);
  auto within = Apply(*conn, {S("replay-2", "email", Status::kAccepted, 0, At("2031-02-01T10:00:05Z"), c),
                              S("replay-2", "email", Status::kAccepted, 0, At("2031-02-01T10:00:05Z"), c)});
  CHECK(within.moved == 1);
  CHECK(within.ignored == 1);

  CHECK(Counts(*conn, c) == std::map<std::string, long>{{"sent", 1}, {"accepted", 1}});
  CHECK(Scalar(*conn, "SELECT count(*) FROM delivery_events WHERE notification_id = 'replay-1'") == 2);
  CHECK(Scalar(*conn,
               "SELECT sum(n) FROM delivery_timeline WHERE campaign_id = 'replay' AND status = 'sent'") == 1);
  CHECK(Scalar(*conn, "SELECT sum(n) FROM delivery_latency WHERE campaign_id = 'replay'") == 1);
  auto s = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, c); });
  CHECK(s["latency_ms"]["count"] == 1);
  double p50 = s["latency_ms"]["p50"].get<double>();
  CHECK(p50 >= 1500 * 0.9);
  CHECK(p50 <= 1500 * 1.1);
  CHECK(s["latency_ms"]["max"].get<long>() >= 1500);
}

TEST_CASE("out-of-order statuses never move a row back", "[ledger]") {
  auto conn = Connect();
  const std::string c = "order";
  auto base = S("order-1", "sms", Status::kAccepted, 0, At("2031-02-02T10:00:00Z"), c);
  auto sent = Sent(base, "sms-a", 800ms);
  auto scheduled = base;
  scheduled.status = Status::kScheduled;
  scheduled.at = base.at + 100ms;

  // sent arrives first, then what came before it.
  CHECK(Apply(*conn, {sent}).moved == 1);
  auto late = Apply(*conn, {scheduled, base});
  CHECK(late.moved == 0);
  CHECK(late.ignored == 2);
  CHECK(Counts(*conn, c) == std::map<std::string, long>{{"sent", 1}});
  // The history keeps all three.
  CHECK(Scalar(*conn, "SELECT count(*) FROM delivery_events WHERE notification_id = 'order-1'") == 3);

  // A later attempt of sent moves the row (new provider) but keeps the first sent time and is
  // not a second arrival in sent.
  auto resent = Sent(base, "sms-b", 5000ms);
  resent.attempt = 1;
  resent.provider_message_id.clear();
  CHECK(Apply(*conn, {resent}).moved == 1);
  {
    pqxx::work tx(*conn);
    auto r = tx.exec1(
        "SELECT status, attempt, provider, provider_message_id,"
        " (extract(epoch FROM sent_at - event_created_at) * 1000)::bigint"
        " FROM deliveries WHERE notification_id = 'order-1'");
    CHECK(r[0].as<std::string>() == "sent");
    CHECK(r[1].as<int>() == 1);
    CHECK(r[2].as<std::string>() == "sms-b");
    CHECK(r[3].as<std::string>() == "pm-order-1-0");  // kept: the later status had none
    CHECK(r[4].as<long>() == 800);
  }
  {
    pqxx::work tx(*conn);
    auto r = tx.exec("SELECT provider, n FROM delivery_counts WHERE campaign_id = 'order' AND n <> 0");
    REQUIRE(r.size() == 1);
    CHECK(r[0][0].as<std::string>() == "sms-b");
    CHECK(r[0][1].as<long>() == 1);
  }
  CHECK(Scalar(*conn, "SELECT sum(n) FROM delivery_latency WHERE campaign_id = 'order'") == 1);
  CHECK(Scalar(*conn,
               "SELECT sum(n) FROM delivery_timeline WHERE campaign_id = 'order' AND status = 'sent'") == 1);

  // A failure at the same rank and attempt as another terminal status does not replace it.
  auto expired = S("order-2", "sms", Status::kExpired, 0, At("2031-02-02T10:05:00Z"), c);
  CHECK(Apply(*conn, {expired, Failed(expired, "too late")}).ignored == 1);
  CHECK(Counts(*conn, c) == std::map<std::string, long>{{"sent", 1}, {"expired", 1}});
}

TEST_CASE("a fallback and the send on the next channel are one planned recipient", "[ledger][campaign]") {
  auto conn = Connect();
  const std::string c = "fallback";
  CreateCampaign(*conn, c);
  auto email = S("fb-email", "email", Status::kAccepted, 0, At("2031-02-03T10:00:00Z"), c);
  auto fallback = Failed(email, "mailbox full");
  fallback.status = Status::kFallback;
  auto sms = S("fb-sms", "sms", Status::kAccepted, 0, At("2031-02-03T10:00:01Z"), c);
  Apply(*conn, {email, fallback});

  auto mid = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, c); });
  CHECK(mid["progress"]["planned"] == 0);  // in flight between channels: no row counts yet
  Apply(*conn, {sms, Sent(sms, "sms-a", 2s)});

  auto s = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, c); });
  INFO(s.dump());
  CHECK(s["progress"]["planned"] == 1);
  CHECK(s["progress"]["sent"] == 1);
  CHECK(s["progress"]["pending"] == 0);
  CHECK(s["progress"]["fanned_out"] == 0);
  CHECK(s["progress"]["fanout_complete"] == false);
  CHECK(s["by_status"] == nlohmann::json{{"fallback", 1}, {"sent", 1}});
  CHECK(s["by_channel"]["email"] == nlohmann::json{{"fallback", 1}});
  CHECK(s["by_channel"]["sms"] == nlohmann::json{{"sent", 1}});
  CHECK(s["by_provider"] == nlohmann::json{{"smtp", {{"fallback", 1}}}, {"sms-a", {{"sent", 1}}}});
}

TEST_CASE("campaign progress follows its runs' fan-out and a cancellation", "[ledger][campaign]") {
  auto conn = Connect();
  CHECK(Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, "no-such-campaign"); }).is_null());

  const std::string c = "runs";
  CreateCampaign(*conn, c);
  AddRun(*conn, c, 1, 6, true);
  AddRun(*conn, c, 2, 4, false);
  std::vector<StatusRecord> batch;
  auto t = At("2031-02-04T10:00:00Z");
  for (int i = 0; i < 8; ++i) {
    auto a = S("runs-" + std::to_string(i), "email", Status::kAccepted, 0, t, c);
    batch.push_back(a);
    if (i < 3) batch.push_back(Sent(a, "smtp", std::chrono::milliseconds(100 * (i + 1))));
    if (i == 3) batch.push_back(Failed(a, "550 no such user"));
    if (i == 4) {
      a.status = Status::kSuppressed;
      batch.push_back(a);
    }
  }
  Apply(*conn, batch);
  auto s = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, c); });
  INFO(s.dump());
  CHECK(s["progress"] == nlohmann::json{{"planned", 10},
                                        {"fanned_out", 10},
                                        {"fanout_complete", false},
                                        {"sent", 3},
                                        {"failed", 1},
                                        {"suppressed", 1},
                                        {"expired", 0},
                                        {"cancelled", 0},
                                        {"pending", 5}});
  CHECK(s["by_status"] == nlohmann::json{{"accepted", 3}, {"sent", 3}, {"failed", 1}, {"suppressed", 1}});
  CHECK(s["latency_ms"]["count"] == 3);
  CHECK(s["latency_ms"]["p50"].get<double>() >= 180);
  CHECK(s["latency_ms"]["p50"].get<double>() <= 220);
  CHECK(s["latency_ms"]["max"].get<long>() >= 300);
  CHECK(s["latency_ms"]["max"].get<long>() <= 330);

  {
    pqxx::work tx(*conn);
    tx.exec("UPDATE campaign_runs SET fanout_complete = true WHERE campaign_id = 'runs'");
    tx.commit();
  }
  // More rows than the fan-out reported (a run still counting): the rows win.
  std::vector<StatusRecord> more;
  for (int i = 8; i < 12; ++i)
    more.push_back(S("runs-" + std::to_string(i), "email", Status::kAccepted, 0, t, c));
  Apply(*conn, more);
  s = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, c); });
  CHECK(s["progress"]["fanout_complete"] == true);
  CHECK(s["progress"]["planned"] == 12);
  CHECK(s["progress"]["pending"] == 7);

  // A cancelled campaign: whatever had not finished is reported as cancelled.
  const std::string k = "cancelled-campaign";
  CreateCampaign(*conn, k, "cancelled");
  AddRun(*conn, k, 1, 10, true);
  std::vector<StatusRecord> cb;
  for (int i = 0; i < 6; ++i) {
    auto a = S("cancel-" + std::to_string(i), "push", Status::kAccepted, 0, t, k);
    cb.push_back(a);
    if (i < 4) cb.push_back(Sent(a, "fcm", 50ms));
    if (i == 4) {
      a.status = Status::kCancelled;
      cb.push_back(a);
    }
  }
  Apply(*conn, cb);
  s = Query(*conn, [&](auto& tx) { return stats::CampaignStats(tx, k); });
  INFO(s.dump());
  CHECK(s["progress"] == nlohmann::json{{"planned", 10},
                                        {"fanned_out", 10},
                                        {"fanout_complete", true},
                                        {"sent", 4},
                                        {"failed", 0},
                                        {"suppressed", 0},
                                        {"expired", 0},
                                        {"cancelled", 6},
                                        {"pending", 0}});
  CHECK(s["by_status"]["cancelled"] == 1);  // the rows themselves stay as they are
}

TEST_CASE("the timeline and the top failures return what was applied", "[ledger][campaign]") {
  auto conn = Connect();
  // Quotes, backslashes and array-literal punctuation in ids and text are data, never SQL.
  const std::string c = "time'line\\\"{,}";
  auto t0 = At("2031-03-01T10:00:00Z");
  auto n = [&](int i) { return "tl-" + std::to_string(i) + (i % 2 ? "\"q,{}\\" : "'"); };
  std::vector<StatusRecord> batch;
  std::string long_reason(150, 'x');
  for (int i = 0; i < 100; ++i) long_reason += "ы";
  const std::string odd_reason = "550 '); DROP TABLE deliveries; -- \\ \"ünïcødé\"";
  for (int i = 0; i < 10; ++i) {
    auto a = S(n(i), i < 7 ? "email" : "sms", Status::kAccepted, 0, t0 + std::chrono::seconds(10 * i), c);
    batch.push_back(a);
    a.at = t0 + std::chrono::minutes(5) + std::chrono::seconds(i);
    if (i < 3)
      batch.push_back(Failed(a, odd_reason));
    else if (i < 5)
      batch.push_back(Failed(a, "timeout"));
    else if (i == 5)
      batch.push_back(Failed(a, long_reason));
    else
      batch.push_back(Sent(a, i < 7 ? "smtp" : "sms-a", std::chrono::minutes(5)));
  }
  // One failure is followed by a late success: it no longer counts as a failure.
  auto late = Sent(S(n(4), "email", Status::kAccepted, 1, t0, c), "smtp", std::chrono::minutes(7));
  batch.push_back(late);
  auto r = Apply(*conn, batch);
  CHECK(r.moved == 21);

  auto tl =
      Query(*conn, [&](auto& tx) { return stats::Timeline(tx, c, t0, t0 + std::chrono::hours(1), 60s); });
  INFO(tl.dump());
  CHECK(tl["step_s"] == 60);
  nlohmann::json expected = nlohmann::json::array({
      {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "email"}, {"status", "accepted"}, {"n", 6}},
      {{"at", "2031-03-01T10:01:00.000Z"}, {"channel", "email"}, {"status", "accepted"}, {"n", 1}},
      {{"at", "2031-03-01T10:01:00.000Z"}, {"channel", "sms"}, {"status", "accepted"}, {"n", 3}},
      {{"at", "2031-03-01T10:05:00.000Z"}, {"channel", "email"}, {"status", "failed"}, {"n", 6}},
      {{"at", "2031-03-01T10:06:00.000Z"}, {"channel", "email"}, {"status", "sent"}, {"n", 1}},
      {{"at", "2031-03-01T10:06:00.000Z"}, {"channel", "sms"}, {"status", "sent"}, {"n", 3}},
      {{"at", "2031-03-01T10:07:00.000Z"}, {"channel", "email"}, {"status", "sent"}, {"n", 1}},
  });
  CHECK(tl["points"] == expected);

  // Wider steps sum the minutes; a sub-minute step is a minute; the window bounds are honoured.
  auto wide =
      Query(*conn, [&](auto& tx) { return stats::Timeline(tx, c, t0, t0 + std::chrono::hours(1), 600s); });
  CHECK(wide["step_s"] == 600);
  CHECK(wide["points"] ==
        nlohmann::json::array({
            {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "email"}, {"status", "accepted"}, {"n", 7}},
            {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "email"}, {"status", "failed"}, {"n", 6}},
            {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "email"}, {"status", "sent"}, {"n", 2}},
            {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "sms"}, {"status", "accepted"}, {"n", 3}},
            {{"at", "2031-03-01T10:00:00.000Z"}, {"channel", "sms"}, {"status", "sent"}, {"n", 3}},
        }));
  auto narrow = Query(*conn, [&](auto& tx) {
    return stats::Timeline(tx, c, t0 + std::chrono::minutes(1), t0 + std::chrono::minutes(6), 1s);
  });
  CHECK(narrow["step_s"] == 60);
  CHECK(narrow["points"] ==
        nlohmann::json(std::vector<nlohmann::json>(expected.begin() + 1, expected.begin() + 4)));
  // No campaign filter: this test owns March 2031, so the window shows the same points.
  auto all =
      Query(*conn, [&](auto& tx) { return stats::Timeline(tx, "", t0, t0 + std::chrono::hours(1), 60s); });
  CHECK(all["points"] == expected);

  auto top = Query(*conn, [&](auto& tx) { return stats::TopFailures(tx, c, 10); });
  INFO(top.dump());
  std::string cut(150, 'x');  // 200 characters, not bytes
  for (int i = 0; i < 50; ++i) cut += "ы";
  CHECK(top["reasons"] == nlohmann::json::array({
                              {{"channel", "email"}, {"reason", odd_reason}, {"n", 3}},
                              {{"channel", "email"}, {"reason", "timeout"}, {"n", 1}},
                              {{"channel", "email"}, {"reason", cut}, {"n", 1}},
                          }));
  CHECK(Query(*conn, [&](auto& tx) { return stats::TopFailures(tx, c, 1); })["reasons"].size() == 1);
  // Across campaigns the same reason from another campaign adds up.
  Apply(*conn, {Failed(S("tl-other", "email", Status::kAccepted, 0, t0, "other-campaign"), odd_reason)});
  auto everywhere = Query(*conn, [&](auto& tx) { return stats::TopFailures(tx, "", 1000); });
  bool found = false;
  for (const auto& reason : everywhere["reasons"]) {
    if (reason["reason"] == odd_reason) {
      CHECK(reason["n"] == 4);
      found = true;
    }
  }
  CHECK(found);
  // The odd ids round-tripped as they were.
  CHECK(Scalar(*conn, "SELECT count(*) FROM deliveries WHERE notification_id = " + conn->quote(n(1))) == 1);
  CHECK(Scalar(*conn, "SELECT count(*) FROM deliveries WHERE campaign_id = " + conn->quote(c)) == 10);
}

TEST_CASE("a row created concurrently by another ledger transaction fails the batch for a retry",
          "[ledger][concurrency]") {
  auto a = Connect();
  auto b = Connect();
  auto watcher = Connect();
  auto accepted = S("race-1", "push", Status::kAccepted, 0, At("2031-04-01T10:00:00Z"), "race");
  auto sent = Sent(accepted, "fcm", 300ms);

  pqxx::work tb(*b);
  stats::ApplyStatuses(tb, {accepted});  // not committed yet: invisible to `a`, so not locked by it
  auto pid_a = a->backendpid();
  auto outcome = std::async(std::launch::async, [&]() -> std::string {
    try {
      pqxx::work ta(*a);
      stats::ApplyStatuses(ta, {sent});
      ta.commit();
      return "committed";
    } catch (const herald::TransientError& e) {
      return std::string("retry: ") + e.what();
    }
  });
  // `a` inserts the same key and must wait for `b`.
  bool waiting = herald::test::WaitUntil(
      [&] {
        return Scalar(*watcher,
                      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = " +
                          std::to_string(pid_a)) == 1;
      },
      10s, 5ms);
  CHECK(waiting);
  tb.commit();
  auto result = outcome.get();
  INFO(result);
  CHECK(result.rfind("retry: ", 0) == 0);

  // The retry finds the row, locks it and counts the move.
  Apply(*a, {sent});
  CHECK(Counts(*a, "race") == std::map<std::string, long>{{"sent", 1}});
  CHECK(Scalar(*a, "SELECT sum(n) FROM delivery_latency WHERE campaign_id = 'race'") == 1);
}

TEST_CASE("after thousands of shuffled and replayed statuses the aggregates equal the ledger",
          "[ledger][property]") {
  auto conn = Connect();
  std::mt19937_64 rng(20260521);
  auto pick = [&](auto n) { return static_cast<decltype(n)>(rng() % static_cast<std::uint64_t>(n)); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  const std::vector<std::string> campaigns = {"prop-a", "prop-b", "prop-c", ""};
  for (const auto& c : campaigns) {
    if (!c.empty()) CreateCampaign(*conn, c);
  }
  const std::vector<std::string> channels = {"email", "sms", "push"};
  const std::map<std::string, std::vector<std::string>> providers = {
      {"email", {"smtp", "ses"}}, {"sms", {"sms-a", "sms-b"}}, {"push", {"fcm", "apns"}}};
  const std::vector<std::string> reasons = {"timeout", "550 mailbox unavailable", "rate limited",
                                            "it's \"bad\"", std::string(250, 'r')};
  const auto base = At("2030-06-01T00:00:00Z");

  std::vector<StatusRecord> statuses;
  constexpr int kNotifications = 1500;
  for (int i = 0; i < kNotifications; ++i) {
    // Some notifications share an id across channels, as a fallback to the same id would.
    std::string nid = "prop-" + std::to_string(i % 5 == 0 ? i - i % 10 : i);
    const auto& channel = channels[pick(channels.size())];
    const auto& campaign = campaigns[pick(campaigns.size())];
    auto a = S(nid, channel, Status::kAccepted, 0, base + std::chrono::seconds(pick(7200)),
               campaign.empty() ? std::nullopt : std::optional(campaign));
    a.priority = static_cast<herald::model::Priority>(pick(3));
    a.created = a.at - std::chrono::milliseconds(pick(2000));
    auto next = [&](StatusRecord s, Status status) {
      s.status = status;
      s.at += std::chrono::milliseconds(1 + pick(600'000));
      return s;
    };
    statuses.push_back(a);
    auto cur = a;
    if (chance(0.3)) statuses.push_back(cur = next(cur, Status::kScheduled));
    for (int attempt = 1; attempt <= 2 && chance(0.3); ++attempt) {
      cur = next(cur, Status::kRetried);
      cur.attempt = attempt;
      cur.reason = reasons[pick(reasons.size())];
      statuses.push_back(cur);
    }
    cur.reason.clear();
    const auto& provider = providers.at(channel)[pick(std::size_t{2})];
    switch (pick(8)) {
      case 0:
      case 1:
      case 2: {
        auto s = next(cur, Status::kSent);
        s.provider = provider;
        s.provider_message_id = "pm-" + std::to_string(i);
        statuses.push_back(s);
        if (chance(0.1)) {  // sent again at a later attempt, through the other provider
          s.attempt += 1;
          s.provider = providers.at(channel)[s.provider == providers.at(channel)[0] ? 1 : 0];
          statuses.push_back(next(s, Status::kSent));
        }
        break;
      }
      case 3:
      case 4: {
        auto s = next(cur, Status::kFailed);
        s.provider = provider;
        s.reason = reasons[pick(reasons.size())];
        statuses.push_back(s);
        if (chance(0.15)) {  // a late success after the failure
          s.reason.clear();
          statuses.push_back(next(s, Status::kSent));
        } else if (chance(0.15)) {  // failed again at a later attempt, for another reason
          s.attempt += 1;
          s.reason = reasons[pick(reasons.size())];
          statuses.push_back(next(s, Status::kFailed));
        }
        break;
      }
      case 5:
        statuses.push_back(next(cur, chance(0.5) ? Status::kSuppressed : Status::kExpired));
        break;
      case 6:
        statuses.push_back(next(cur, chance(0.5) ? Status::kCancelled : Status::kFallback));
        break;
      default:
        break;  // still in flight
    }
  }
  // Replays of a quarter of them, then everything in a random order.
  const std::size_t distinct = statuses.size();
  for (std::size_t i = 0; i < distinct / 4; ++i) statuses.push_back(statuses[pick(distinct)]);
  std::shuffle(statuses.begin(), statuses.end(), rng);
  REQUIRE(statuses.size() > 5000);

  // The rule, applied one status at a time in the same order.
  struct ModelRow {
    int rank = 0, attempt = 0;
    std::string status, provider, campaign, channel;
  };
  std::map<std::pair<std::string, std::string>, ModelRow> model;
  std::map<std::tuple<std::string, std::string, std::string>, long> arrivals;  // campaign, channel, status
  std::size_t moves = 0;
  for (const auto& s : statuses) {
    auto [it, created] = model.try_emplace({s.notification_id, s.channel});
    auto& row = it->second;
    int rank = herald::model::StatusRank(s.status);
    std::string status(herald::model::StatusName(s.status));
    if (!created && !(rank > row.rank || (rank == row.rank && s.attempt > row.attempt))) continue;
    ++moves;
    if (created) {
      row.campaign = s.campaign_id.value_or("");
      row.channel = s.channel;
    }
    if (created || row.status != status) arrivals[{row.campaign, row.channel, status}] += 1;
    row.rank = rank;
    row.attempt = std::max(row.attempt, s.attempt);
    row.status = status;
    if (!s.provider.empty()) row.provider = s.provider;
  }

  std::size_t moved = 0, ignored = 0;
  const std::size_t sizes[] = {1, 7, 50, 300, 1000, 2500};
  for (std::size_t i = 0; i < statuses.size();) {
    std::size_t n = std::min(sizes[pick(std::size(sizes))], statuses.size() - i);
    auto r = Apply(*conn, std::vector<StatusRecord>(statuses.begin() + static_cast<long>(i),
                                                    statuses.begin() + static_cast<long>(i + n)));
    moved += r.moved;
    ignored += r.ignored;
    i += n;
  }
  CHECK(moved == moves);
  CHECK(moved + ignored == statuses.size());

  {
    pqxx::work tx(*conn);
    std::size_t rows = 0, wrong = 0;
    for (const auto& r :
         tx.exec("SELECT notification_id, channel, status, attempt, coalesce(provider, '') FROM deliveries"
                 " WHERE notification_id LIKE 'prop-%'")) {
      ++rows;
      auto it = model.find({r[0].as<std::string>(), r[1].as<std::string>()});
      if (it == model.end() || it->second.status != r[2].as<std::string>() ||
          it->second.attempt != r[3].as<int>() || it->second.provider != r[4].as<std::string>()) {
        if (++wrong <= 5) FAIL_CHECK("row " << r[0].c_str() << "/" << r[1].c_str() << " is " << r[2].c_str());
      }
    }
    CHECK(rows == model.size());
    CHECK(wrong == 0);

    std::map<std::tuple<std::string, std::string, std::string>, long> timeline;
    for (const auto& r : tx.exec(
             "SELECT campaign_id, channel, status, sum(n) FROM delivery_timeline"
             " WHERE minute >= '2030-06-01' AND minute < '2030-06-02' GROUP BY 1, 2, 3 HAVING sum(n) <> 0")) {
      timeline[{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>()}] = r[3].as<long>();
    }
    CHECK(timeline == arrivals);

    std::set<std::tuple<std::string, std::string, std::string, int>> events;
    for (const auto& s : statuses) {
      events.insert(
          {s.notification_id, s.channel, std::string(herald::model::StatusName(s.status)), s.attempt});
    }
    CHECK(tx.exec1("SELECT count(*) FROM delivery_events WHERE notification_id LIKE 'prop-%'")[0]
              .as<std::size_t>() == events.size());

    // Each campaign's stats read from the aggregates match a scan of its rows.
    for (const auto& c : campaigns) {
      if (c.empty()) continue;
      auto s = stats::CampaignStats(tx, c);
      nlohmann::json by_status = nlohmann::json::object();
      long not_fallback = 0;
      for (const auto& r :
           tx.exec_params("SELECT status, count(*) FROM deliveries WHERE campaign_id = $1 GROUP BY 1", c)) {
        by_status[r[0].as<std::string>()] = r[1].as<long>();
        if (r[0].as<std::string>() != "fallback") not_fallback += r[1].as<long>();
      }
      INFO(c);
      CHECK(s["by_status"] == by_status);
      CHECK(s["progress"]["planned"] == not_fallback);
    }
  }
  CheckAggregatesMatchLedger(*conn);
}
