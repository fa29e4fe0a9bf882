#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {
namespace {

// One row per (notification_id, channel); a status only replaces a lower-ranked one (or the
// same status at a later attempt), so replays and out-of-order records never move a row back.
constexpr const char* kUpsertDelivery = R"sql(
INSERT INTO deliveries AS d (notification_id, channel, event_id, event_type, campaign_id, user_id,
  priority, status, status_rank, reason, provider, provider_message_id, attempt,
  event_created_at, first_seen_at, updated_at, sent_at)
VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7, $8, $9, NULLIF($10, ''), NULLIF($11, ''),
  NULLIF($12, ''), $13, $14::timestamptz, $15::timestamptz, $15::timestamptz,
  CASE WHEN $8 = 'sent' THEN $15::timestamptz END)
ON CONFLICT (notification_id, channel) DO UPDATE SET
  status = EXCLUDED.status, status_rank = EXCLUDED.status_rank, reason = EXCLUDED.reason,
  provider = COALESCE(EXCLUDED.provider, d.provider),
  provider_message_id = COALESCE(EXCLUDED.provider_message_id, d.provider_message_id),
  attempt = GREATEST(d.attempt, EXCLUDED.attempt), updated_at = EXCLUDED.updated_at,
  sent_at = COALESCE(d.sent_at, EXCLUDED.sent_at)
WHERE d.status_rank < EXCLUDED.status_rank
   OR (d.status_rank = EXCLUDED.status_rank AND d.attempt < EXCLUDED.attempt)
)sql";

constexpr const char* kInsertEvent = R"sql(
INSERT INTO delivery_events (notification_id, channel, status, attempt, reason, provider, at)
VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7::timestamptz)
ON CONFLICT DO NOTHING
)sql";

}  // namespace

int RunLedger(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  stage::Stage st(config, {"ledger", {catalog.Status()}});
  std::unique_ptr<pqxx::connection> conn;
  auto connect = [&] {
    conn = pg::Connect(config.pg_url);
    conn->prepare("upsert_delivery", kUpsertDelivery);
    conn->prepare("insert_event", kInsertEvent);
  };
  connect();
  auto& rows = st.Metrics().GetCounter("herald_ledger_statuses_total", "Statuses written to the ledger");
  auto log = Logger("ledger");

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    std::vector<model::StatusRecord> statuses;
    for (const auto& m : batch) {
      try {
        statuses.push_back(model::StatusFromJson(nlohmann::json::parse(m.Value())));
      } catch (const nlohmann::json::exception& e) {
        st.DeadLetter(ctx, m, "invalid_json", e.what());
      } catch (const InvalidInput& e) {
        st.DeadLetter(ctx, m, "schema", e.what());
      }
    }
    if (statuses.empty()) return;
    try {
      if (!conn || !conn->is_open()) connect();
      pqxx::work tx(*conn);
      for (const auto& s : statuses) {
        std::string at = FormatRfc3339(s.at);
        tx.exec_prepared("upsert_delivery", s.notification_id, s.channel, s.event_id, s.event_type,
                         s.campaign_id.value_or(""), s.user_id, std::string(model::PriorityName(s.priority)),
                         std::string(model::StatusName(s.status)), model::StatusRank(s.status), s.reason,
                         s.provider, s.provider_message_id, s.attempt, FormatRfc3339(s.created), at);
        tx.exec_prepared("insert_event", s.notification_id, s.channel,
                         std::string(model::StatusName(s.status)), s.attempt, s.reason, s.provider, at);
      }
      tx.commit();
      rows.Inc(statuses.size());
    } catch (const pqxx::broken_connection& e) {
      conn.reset();
      throw TransientError(std::string("PostgreSQL connection lost: ") + e.what());
    } catch (const pqxx::sql_error& e) {
      // A failed statement is a database-side problem (e.g. migrations not applied); retry
      // the batch after a backoff rather than lose it.
      throw TransientError(std::string("ledger write failed: ") + e.what());
    }
  });
}

}  // namespace herald::consumers
