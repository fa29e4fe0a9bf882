#include <algorithm>
#include <cmath>
#include <map>

#include "herald/stats/stats.hpp"

namespace herald::stats {
namespace {

using nlohmann::json;

constexpr const char* kFinalStatuses[] = {"sent", "failed", "suppressed", "expired", "cancelled"};

using Histogram = std::map<int, std::int64_t>;  // bucket -> n

double Round1(double v) {
  return std::round(v * 10) / 10;
}

// The q-quantile, assuming the latencies of a bucket spread evenly across it.
double Quantile(const Histogram& h, std::int64_t count, double q) {
  const double target = q * static_cast<double>(count);
  const int last = LatencyBucketCount() - 1;
  std::int64_t seen = 0;
  for (const auto& [bucket, n] : h) {
    if (static_cast<double>(seen + n) >= target) {
      auto low = static_cast<double>(LatencyBucketLow(bucket));
      auto high = bucket < last ? static_cast<double>(LatencyBucketLow(bucket + 1)) : low;
      return Round1(low + (high - low) * (target - static_cast<double>(seen)) / static_cast<double>(n));
    }
    seen += n;
  }
  return static_cast<double>(LatencyBucketLow(h.rbegin()->first));
}

json LatencyJson(const Histogram& h) {
  std::int64_t count = 0;
  for (const auto& [bucket, n] : h) count += n;
  json out = {{"count", count}, {"p50", nullptr}, {"p90", nullptr}, {"p99", nullptr}, {"max", nullptr}};
  if (count <= 0) return out;
  out["p50"] = Quantile(h, count, 0.50);
  out["p90"] = Quantile(h, count, 0.90);
  out["p99"] = Quantile(h, count, 0.99);
  int top = h.rbegin()->first;
  out["max"] = LatencyBucketLow(top < LatencyBucketCount() - 1 ? top + 1 : top);
  return out;
}

// Reads (bucket, n) rows, ignoring buckets this build does not know and empty ones.
void AddBucket(Histogram& h, const pqxx::row& r, int bucket_col, int n_col) {
  int bucket = r[bucket_col].as<int>();
  auto n = r[n_col].as<std::int64_t>();
  if (bucket < 0 || bucket >= LatencyBucketCount() || n <= 0) return;
  h[bucket] += n;
}

struct Count {
  std::string channel, provider, status;
  std::int64_t n;
};

std::vector<Count> ReadCounts(const pqxx::result& rows) {
  std::vector<Count> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    auto n = r[3].as<std::int64_t>();
    if (n != 0) out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), n});
  }
  return out;
}

void Add(json& obj, const std::string& key, std::int64_t n) {
  if (!obj.is_object()) obj = json::object();
  obj[key] = obj.value(key, std::int64_t{0}) + n;
}

// by_status, by_channel and by_provider of a set of counts.
json Breakdown(const std::vector<Count>& counts) {
  json out = {{"by_status", json::object()}, {"by_channel", json::object()}, {"by_provider", json::object()}};
  for (const auto& c : counts) {
    Add(out["by_status"], c.status, c.n);
    Add(out["by_channel"][c.channel], c.status, c.n);
    if (!c.provider.empty()) Add(out["by_provider"][c.provider], c.status, c.n);
  }
  return out;
}

}  // namespace

nlohmann::json OverallStats(pqxx::transaction_base& tx) {
  auto out = Breakdown(ReadCounts(
      tx.exec("SELECT channel, provider, status, sum(n)::bigint FROM delivery_counts GROUP BY 1, 2, 3")));
  Histogram h;
  for (const auto& r : tx.exec("SELECT bucket, sum(n)::bigint FROM delivery_latency GROUP BY bucket")) {
    AddBucket(h, r, 0, 1);
  }
  out["latency_ms"] = LatencyJson(h);
  return out;
}

nlohmann::json CampaignStats(pqxx::transaction_base& tx, const std::string& campaign_id) {
  auto campaign = tx.exec_params(
      "SELECT c.state, COALESCE(r.fanned_out, 0), COALESCE(r.complete, false)"
      " FROM campaigns c LEFT JOIN LATERAL ("
      "   SELECT sum(fanned_out)::bigint AS fanned_out, bool_and(fanout_complete) AS complete"
      "   FROM campaign_runs WHERE campaign_id = c.id) r ON true"
      " WHERE c.id = $1",
      campaign_id);
  if (campaign.empty()) return nullptr;
  const auto state = campaign[0][0].as<std::string>();
  const auto fanned_out = campaign[0][1].as<std::int64_t>();
  const bool fanout_complete = campaign[0][2].as<bool>();

  auto counts = ReadCounts(tx.exec_params(
      "SELECT channel, provider, status, n FROM delivery_counts WHERE campaign_id = $1", campaign_id));
  auto out = Breakdown(counts);
  Histogram h;
  for (const auto& r : tx.exec_params(
           "SELECT bucket, sum(n)::bigint FROM delivery_latency WHERE campaign_id = $1 GROUP BY bucket",
           campaign_id)) {
    AddBucket(h, r, 0, 1);
  }
  out["latency_ms"] = LatencyJson(h);

  // A recipient whose channel fell back has a `fallback` row and a row on the next channel: it
  // is one recipient, counted by the second row.
  std::int64_t rows = 0;
  for (const auto& c : counts) {
    if (c.status != "fallback") rows += c.n;
  }
  const std::int64_t planned = std::max(fanned_out, rows);
  json progress = {{"planned", planned}, {"fanned_out", fanned_out}, {"fanout_complete", fanout_complete}};
  std::int64_t final_rows = 0;
  for (const char* status : kFinalStatuses) {
    auto n = out["by_status"].value(status, std::int64_t{0});
    progress[status] = n;
    final_rows += n;
  }
  std::int64_t pending = std::max<std::int64_t>(0, planned - final_rows);
  if (state == "cancelled") {
    // Whatever had not finished never will: plan and delivery drop a cancelled campaign's work.
    progress["cancelled"] = progress["cancelled"].get<std::int64_t>() + pending;
    pending = 0;
  }
  progress["pending"] = pending;
  out["progress"] = std::move(progress);
  out["campaign_id"] = campaign_id;
  out["state"] = state;
  return out;
}

nlohmann::json ChannelStats(pqxx::transaction_base& tx) {
  std::map<std::string, Histogram> latency;
  for (const auto& r :
       tx.exec("SELECT channel, bucket, sum(n)::bigint FROM delivery_latency GROUP BY channel, bucket")) {
    AddBucket(latency[r[0].as<std::string>()], r, 1, 2);
  }
  std::map<std::pair<std::string, std::string>, json> entries;
  for (const auto& c : ReadCounts(tx.exec(
           "SELECT channel, provider, status, sum(n)::bigint FROM delivery_counts GROUP BY 1, 2, 3"))) {
    auto& e = entries[{c.channel, c.provider}];
    if (e.is_null()) e = {{"channel", c.channel}, {"provider", c.provider}, {"by_status", json::object()}};
    Add(e["by_status"], c.status, c.n);
  }
  json channels = json::array();
  for (auto& [key, e] : entries) {
    e["latency_ms"] = LatencyJson(latency[key.first]);
    channels.push_back(std::move(e));
  }
  return {{"channels", std::move(channels)}};
}

nlohmann::json Timeline(pqxx::transaction_base& tx, const std::string& campaign_id, TimePoint from,
                        TimePoint to, std::chrono::seconds step) {
  // The table holds minutes: a finer step would only show empty gaps.
  const std::int64_t step_s = std::max<std::int64_t>(1, (step.count() + 59) / 60) * 60;
  std::string sql =
      "SELECT (floor(extract(epoch FROM minute) / $3::bigint) * $3::bigint)::bigint, channel, status,"
      " sum(n)::bigint FROM delivery_timeline"
      " WHERE minute >= $1::timestamptz AND minute < $2::timestamptz";
  if (!campaign_id.empty()) sql += " AND campaign_id = $4";
  sql += " GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, channel COLLATE \"C\", status COLLATE \"C\"";
  auto rows = campaign_id.empty()
                  ? tx.exec_params(sql, FormatRfc3339(from), FormatRfc3339(to), step_s)
                  : tx.exec_params(sql, FormatRfc3339(from), FormatRfc3339(to), step_s, campaign_id);
  json points = json::array();
  for (const auto& r : rows) {
    points.push_back({{"at", FormatRfc3339(TimePoint(std::chrono::seconds(r[0].as<std::int64_t>())))},
                      {"channel", r[1].as<std::string>()},
                      {"status", r[2].as<std::string>()},
                      {"n", r[3].as<std::int64_t>()}});
  }
  return {{"step_s", step_s}, {"points", std::move(points)}};
}

nlohmann::json TopFailures(pqxx::transaction_base& tx, const std::string& campaign_id, int limit) {
  limit = std::clamp(limit, 1, 1000);
  std::string sql = "SELECT channel, reason, sum(n)::bigint AS total FROM delivery_failures";
  if (!campaign_id.empty()) sql += " WHERE campaign_id = $2";
  sql +=
      " GROUP BY channel, reason HAVING sum(n) > 0"
      " ORDER BY total DESC, channel COLLATE \"C\", reason COLLATE \"C\" LIMIT $1";
  auto rows = campaign_id.empty() ? tx.exec_params(sql, limit) : tx.exec_params(sql, limit, campaign_id);
  json reasons = json::array();
  for (const auto& r : rows) {
    reasons.push_back({{"channel", r[0].as<std::string>()},
                       {"reason", r[1].as<std::string>()},
                       {"n", r[2].as<std::int64_t>()}});
  }
  return {{"reasons", std::move(reasons)}};
}

}  // namespace herald::stats
