#include <algorithm>
#include <array>
#include <map>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "herald/common/errors.hpp"
#include "herald/stats/stats.hpp"

namespace herald::stats {
namespace {

// Rows per multi-row statement: large enough that a poll batch costs a handful of round trips,
// small enough that one statement's text stays in the hundreds of kilobytes.
constexpr std::size_t kChunk = 1000;
constexpr std::size_t kReasonChars = 200;

// The histogram's bucket bounds are part of the stored data (delivery_latency.bucket): changing
// them makes existing rows mean something else. Exact 1 ms buckets up to 20 ms, then each bucket
// 10 % wider than the last, up to a final open bucket from about a day on.
constexpr std::int64_t kLatencyTopMs = 86'400'000;

constexpr std::int64_t NextLow(std::int64_t low) {
  return std::max(low + 1, low + low / 10);
}

constexpr int CountBuckets() {
  int n = 1;
  for (std::int64_t low = 0; low < kLatencyTopMs; low = NextLow(low)) ++n;
  return n;
}

constexpr int kBuckets = CountBuckets();
static_assert(kBuckets <= 200, "delivery_latency histograms stay small");

constexpr std::array<std::int64_t, kBuckets> kLows = [] {
  std::array<std::int64_t, kBuckets> lows{};
  for (int b = 1; b < kBuckets; ++b) lows[b] = NextLow(lows[b - 1]);
  return lows;
}();

constexpr std::int64_t kMinuteMs = 60'000;

std::int64_t Ms(TimePoint tp) {
  return tp.time_since_epoch().count();
}

std::string Timestamp(std::int64_t ms) {
  return FormatRfc3339(TimePoint(std::chrono::milliseconds(ms)));
}

std::int64_t FloorMinute(std::int64_t ms) {
  auto r = ms % kMinuteMs;
  return ms - (r < 0 ? r + kMinuteMs : r);
}

// The first kReasonChars characters (not bytes: a cut never splits a UTF-8 sequence).
std::string CutReason(const std::string& reason) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < reason.size(); ++i) {
    if ((static_cast<unsigned char>(reason[i]) & 0xC0) != 0x80 && chars++ == kReasonChars) {
      return reason.substr(0, i);
    }
  }
  return reason;
}

// A text[] literal for a bound parameter; libpqxx 6.4 cannot bind arrays itself.
std::string ArrayLiteral(const std::vector<const std::string*>& items) {
  std::string out = "{";
  for (const auto* item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : *item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// Builds the VALUES list of a multi-row statement; every text goes through the server's
// escaping for this connection.
class Values {
 public:
  explicit Values(pqxx::transaction_base& tx) : tx_(tx) {}

  void Row() {
    if (!sql_.empty()) sql_ += ",\n";
    sql_ += '(';
    first_ = true;
  }
  void End() { sql_ += ')'; }
  Values& Text(const std::string& v) {
    Sep();
    sql_ += '\'';
    sql_ += tx_.esc(v);
    sql_ += '\'';
    return *this;
  }
  // '' is stored as NULL, as the ledger always has.
  Values& TextOrNull(const std::string& v) {
    if (v.empty()) {
      Sep();
      sql_ += "NULL";
      return *this;
    }
    return Text(v);
  }
  Values& Int(std::int64_t v) {
    Sep();
    sql_ += std::to_string(v);
    return *this;
  }
  Values& Time(std::int64_t ms) { return Text(Timestamp(ms)); }
  Values& TimeOrNull(const std::optional<std::int64_t>& ms) {
    if (!ms) {
      Sep();
      sql_ += "NULL";
      return *this;
    }
    return Time(*ms);
  }
  bool Empty() const { return sql_.empty(); }
  std::string Take() { return std::exchange(sql_, {}); }

 private:
  void Sep() {
    if (!first_) sql_ += ", ";
    first_ = false;
  }
  pqxx::transaction_base& tx_;
  std::string sql_;
  bool first_ = true;
};

using Key = std::pair<std::string, std::string>;  // (notification_id, channel)

// A ledger row as the batch sees it: loaded (and locked) from the table, or created by the batch.
struct Row {
  std::string event_id, event_type, campaign_id, user_id, priority, status, reason, provider,
      provider_message_id;
  int rank = 0;
  int attempt = 0;
  std::int64_t event_created_ms = 0, first_seen_ms = 0, updated_ms = 0;
  std::optional<std::int64_t> sent_ms;
  bool present = false;  // exists, in the table or created earlier in this batch
  bool stored = false;   // existed in the table when the batch began
  bool dirty = false;
};

constexpr const char* kLockRows = R"sql(
SELECT notification_id, channel, event_id, event_type, COALESCE(campaign_id, ''), user_id, priority,
  status, status_rank, COALESCE(reason, ''), COALESCE(provider, ''),
  COALESCE(provider_message_id, ''), attempt,
  (extract(epoch FROM event_created_at) * 1000)::bigint,
  (extract(epoch FROM first_seen_at) * 1000)::bigint,
  (extract(epoch FROM updated_at) * 1000)::bigint,
  (extract(epoch FROM sent_at) * 1000)::bigint
FROM deliveries WHERE notification_id = ANY($1::text[])
ORDER BY notification_id COLLATE "C", channel COLLATE "C"
FOR UPDATE
)sql";

// The rows were computed from the locked current versions, so the update takes them as they
// are; the WHERE only guards against a writer the lock could not see (see WriteRows).
constexpr const char* kUpsertRowsHead = R"sql(
INSERT INTO deliveries AS d (notification_id, channel, event_id, event_type, campaign_id, user_id,
  priority, status, status_rank, reason, provider, provider_message_id, attempt,
  event_created_at, first_seen_at, updated_at, sent_at)
VALUES
)sql";
constexpr const char* kUpsertRowsTail = R"sql(
ON CONFLICT (notification_id, channel) DO UPDATE SET
  status = EXCLUDED.status, status_rank = EXCLUDED.status_rank, reason = EXCLUDED.reason,
  provider = COALESCE(EXCLUDED.provider, d.provider),
  provider_message_id = COALESCE(EXCLUDED.provider_message_id, d.provider_message_id),
  attempt = GREATEST(d.attempt, EXCLUDED.attempt), updated_at = EXCLUDED.updated_at,
  sent_at = COALESCE(d.sent_at, EXCLUDED.sent_at)
WHERE d.status_rank < EXCLUDED.status_rank
   OR (d.status_rank = EXCLUDED.status_rank AND d.attempt < EXCLUDED.attempt)
RETURNING (xmax = 0) AS inserted
)sql";

struct Deltas {
  std::map<std::tuple<std::string, std::string, std::string, std::string>, std::int64_t> counts;
  std::map<std::tuple<std::string, std::string, std::string, int>, std::int64_t> latency;
  std::map<std::tuple<std::int64_t, std::string, std::string, std::string>, std::int64_t> timeline;
  std::map<std::tuple<std::string, std::string, std::string>, std::int64_t> failures;
};

void LoadRows(pqxx::work& tx, std::map<Key, Row>& rows) {
  // Keys are locked in one order (bytewise, chunk after chunk) by every ledger transaction, so
  // two of them touching the same rows wait for each other instead of deadlocking.
  std::vector<const std::string*> ids;
  for (const auto& [key, row] : rows) {
    if (ids.empty() || *ids.back() != key.first) ids.push_back(&key.first);
  }
  for (std::size_t i = 0; i < ids.size(); i += kChunk) {
    std::vector<const std::string*> chunk(ids.begin() + static_cast<long>(i),
                                          ids.begin() + static_cast<long>(std::min(ids.size(), i + kChunk)));
    for (const auto& r : tx.exec_params(kLockRows, ArrayLiteral(chunk))) {
      auto it = rows.find({r[0].as<std::string>(), r[1].as<std::string>()});
      if (it == rows.end()) continue;  // the same notification on a channel the batch does not touch
      auto& row = it->second;
      row.event_id = r[2].as<std::string>();
      row.event_type = r[3].as<std::string>();
      row.campaign_id = r[4].as<std::string>();
      row.user_id = r[5].as<std::string>();
      row.priority = r[6].as<std::string>();
      row.status = r[7].as<std::string>();
      row.rank = r[8].as<int>();
      row.reason = r[9].as<std::string>();
      row.provider = r[10].as<std::string>();
      row.provider_message_id = r[11].as<std::string>();
      row.attempt = r[12].as<int>();
      row.event_created_ms = r[13].as<std::int64_t>();
      row.first_seen_ms = r[14].as<std::int64_t>();
      row.updated_ms = r[15].as<std::int64_t>();
      if (!r[16].is_null()) row.sent_ms = r[16].as<std::int64_t>();
      row.present = row.stored = true;
    }
  }
}

// Moves `row` by `s` if it ranks higher (or equal at a later attempt) and records what the move
// changes in the aggregates. Returns false for a status that moves nothing.
bool Apply(Row& row, const model::StatusRecord& s, Deltas& d, const std::string& channel) {
  const int rank = model::StatusRank(s.status);
  const std::string status(model::StatusName(s.status));
  const std::int64_t at = Ms(s.at);
  std::optional<std::string> old_status, old_provider, old_reason;
  if (!row.present) {
    row.event_id = s.event_id;
    row.event_type = s.event_type;
    row.campaign_id = s.campaign_id.value_or("");
    row.user_id = s.user_id;
    row.priority = std::string(model::PriorityName(s.priority));
    row.event_created_ms = Ms(s.created);
    row.first_seen_ms = at;
    row.attempt = s.attempt;
    row.present = true;
  } else if (rank > row.rank || (rank == row.rank && s.attempt > row.attempt)) {
    old_status = row.status;
    old_provider = row.provider;
    old_reason = row.reason;
    row.attempt = std::max(row.attempt, s.attempt);
  } else {
    return false;
  }
  row.status = status;
  row.rank = rank;
  row.reason = s.reason;
  if (!s.provider.empty()) row.provider = s.provider;
  if (!s.provider_message_id.empty()) row.provider_message_id = s.provider_message_id;
  row.updated_ms = at;
  if (s.status == model::Status::kSent && !row.sent_ms) row.sent_ms = at;
  row.dirty = true;

  const auto& campaign = row.campaign_id;
  if (old_status) d.counts[{campaign, channel, *old_provider, *old_status}] -= 1;
  d.counts[{campaign, channel, row.provider, status}] += 1;
  // The timeline, the histogram and the reasons count rows entering a status; a later attempt
  // within the same status is not a new arrival (and a second "sent" would count a row twice).
  if (old_status != status) {
    d.timeline[{FloorMinute(at), campaign, channel, status}] += 1;
    if (s.status == model::Status::kSent) {
      d.latency[{campaign, channel, row.priority, LatencyBucket(*row.sent_ms - row.event_created_ms)}] += 1;
    }
  }
  // delivery_failures follows the rows that are failed now, so leaving failed (a late "sent",
  // a fallback, a failed retry with another reason) takes the old reason back out.
  if (old_status == "failed") d.failures[{campaign, channel, CutReason(*old_reason)}] -= 1;
  if (s.status == model::Status::kFailed) d.failures[{campaign, channel, CutReason(row.reason)}] += 1;
  return true;
}

void WriteRows(pqxx::work& tx, const std::map<Key, Row>& rows) {
  Values v(tx);
  std::size_t in_chunk = 0, new_in_chunk = 0;
  auto flush = [&] {
    if (v.Empty()) return;
    auto result = tx.exec(kUpsertRowsHead + v.Take() + kUpsertRowsTail);
    std::size_t inserted = 0;
    for (const auto& r : result) inserted += r[0].as<bool>() ? 1 : 0;
    // Only a key absent when the batch locked its rows can be written by someone else
    // meanwhile (FOR UPDATE cannot lock a row that does not exist yet): another ledger consumer
    // during a partition hand-over. The aggregates were computed as if the row were new, so the
    // whole transaction must go; on the retry the row exists and is locked like any other.
    if (result.size() != in_chunk || inserted != new_in_chunk) {
      throw TransientError(
          "deliveries rows were written concurrently by another ledger transaction; the batch "
          "will be retried (expected during a consumer group rebalance)");
    }
    in_chunk = new_in_chunk = 0;
  };
  for (const auto& [key, row] : rows) {
    if (!row.dirty) continue;
    v.Row();
    v.Text(key.first).Text(key.second).Text(row.event_id).Text(row.event_type).TextOrNull(row.campaign_id);
    v.Text(row.user_id).Text(row.priority).Text(row.status).Int(row.rank).TextOrNull(row.reason);
    v.TextOrNull(row.provider).TextOrNull(row.provider_message_id).Int(row.attempt);
    v.Time(row.event_created_ms).Time(row.first_seen_ms).Time(row.updated_ms).TimeOrNull(row.sent_ms);
    v.End();
    ++in_chunk;
    if (!row.stored) ++new_in_chunk;
    if (in_chunk == kChunk) flush();
  }
  flush();
}

void WriteEvents(pqxx::work& tx, const std::vector<model::StatusRecord>& statuses) {
  // History keeps the first record of each (row, status, attempt); the table's key would drop
  // the duplicates anyway, this only keeps them out of the statement.
  std::map<std::tuple<std::string_view, std::string_view, std::string_view, int>, const model::StatusRecord*>
      events;
  for (const auto& s : statuses) {
    events.try_emplace({s.notification_id, s.channel, model::StatusName(s.status), s.attempt}, &s);
  }
  Values v(tx);
  std::size_t n = 0;
  auto flush = [&] {
    if (v.Empty()) return;
    tx.exec(
        "INSERT INTO delivery_events (notification_id, channel, status, attempt, reason, provider, at) "
        "VALUES " +
        v.Take() + " ON CONFLICT DO NOTHING");
  };
  for (const auto& [key, s] : events) {
    v.Row();
    v.Text(s->notification_id)
        .Text(s->channel)
        .Text(std::string(model::StatusName(s->status)))
        .Int(s->attempt);
    v.TextOrNull(s->reason).TextOrNull(s->provider).Time(Ms(s->at));
    v.End();
    if (++n % kChunk == 0) flush();
  }
  flush();
}

// Adds deltas to an aggregate table, in key order (the same order in every transaction, so two
// ledger transactions updating the same counters queue rather than deadlock).
template <typename Map, typename RowFn>
void Upsert(pqxx::work& tx, const Map& deltas, const std::string& head, const std::string& conflict,
            RowFn&& row) {
  Values v(tx);
  std::size_t n = 0;
  auto flush = [&] {
    if (v.Empty()) return;
    tx.exec(head + " VALUES " + v.Take() + " ON CONFLICT " + conflict);
  };
  for (const auto& [key, delta] : deltas) {
    if (delta == 0) continue;  // a row that left and re-entered the same counter
    v.Row();
    row(v, key);
    v.Int(delta);
    v.End();
    if (++n % kChunk == 0) flush();
  }
  flush();
}

void WriteAggregates(pqxx::work& tx, const Deltas& d) {
  Upsert(tx, d.counts, "INSERT INTO delivery_counts (campaign_id, channel, provider, status, n)",
         "(campaign_id, channel, provider, status) DO UPDATE SET n = delivery_counts.n + EXCLUDED.n",
         [](Values& v, const auto& k) {
           v.Text(std::get<0>(k)).Text(std::get<1>(k)).Text(std::get<2>(k)).Text(std::get<3>(k));
         });
  Upsert(tx, d.latency, "INSERT INTO delivery_latency (campaign_id, channel, priority, bucket, n)",
         "(campaign_id, channel, priority, bucket) DO UPDATE SET n = delivery_latency.n + EXCLUDED.n",
         [](Values& v, const auto& k) {
           v.Text(std::get<0>(k)).Text(std::get<1>(k)).Text(std::get<2>(k)).Int(std::get<3>(k));
         });
  Upsert(tx, d.timeline, "INSERT INTO delivery_timeline (minute, campaign_id, channel, status, n)",
         "(minute, campaign_id, channel, status) DO UPDATE SET n = delivery_timeline.n + EXCLUDED.n",
         [](Values& v, const auto& k) {
           v.Time(std::get<0>(k)).Text(std::get<1>(k)).Text(std::get<2>(k)).Text(std::get<3>(k));
         });
  Upsert(tx, d.failures, "INSERT INTO delivery_failures (campaign_id, channel, reason, n)",
         "(campaign_id, channel, reason) DO UPDATE SET n = delivery_failures.n + EXCLUDED.n",
         [](Values& v, const auto& k) { v.Text(std::get<0>(k)).Text(std::get<1>(k)).Text(std::get<2>(k)); });
}

}  // namespace

int LatencyBucketCount() {
  return kBuckets;
}

int LatencyBucket(std::int64_t ms) {
  if (ms <= 0) return 0;  // clocks of different hosts can put "sent" a little before "created"
  return static_cast<int>(std::upper_bound(kLows.begin(), kLows.end(), ms) - kLows.begin()) - 1;
}

std::int64_t LatencyBucketLow(int bucket) {
  if (bucket < 0 || bucket >= kBuckets) {
    throw std::out_of_range("latency bucket " + std::to_string(bucket) + " is outside 0.." +
                            std::to_string(kBuckets - 1));
  }
  return kLows[static_cast<std::size_t>(bucket)];
}

ApplyResult ApplyStatuses(pqxx::work& tx, const std::vector<model::StatusRecord>& statuses) {
  ApplyResult result;
  if (statuses.empty()) return result;
  std::map<Key, Row> rows;
  for (const auto& s : statuses) rows.try_emplace({s.notification_id, s.channel});
  LoadRows(tx, rows);

  Deltas deltas;
  for (const auto& s : statuses) {
    auto it = rows.find({s.notification_id, s.channel});
    if (Apply(it->second, s, deltas, it->first.second)) {
      ++result.moved;
    } else {
      ++result.ignored;
    }
  }
  WriteRows(tx, rows);
  WriteEvents(tx, statuses);
  WriteAggregates(tx, deltas);
  return result;
}

}  // namespace herald::stats
