#include "herald/common/errors.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/stage/stage.hpp"
#include "herald/stats/stats.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {

int RunLedger(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  stage::Stage st(config, {"ledger", {catalog.Status()}});
  // Connecting up front makes a wrong HERALD_PG_URL fail the start rather than every batch.
  std::unique_ptr<pqxx::connection> conn = pg::Connect(config.pg_url);
  auto& applied = st.Metrics().GetCounter("herald_ledger_statuses_applied_total",
                                          "Statuses that moved a ledger row forward (or created one)");
  auto& ignored = st.Metrics().GetCounter(
      "herald_ledger_statuses_ignored_total",
      "Statuses that moved nothing: replays, and statuses ranked below the row's current one");

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    std::vector<model::StatusRecord> statuses;
    statuses.reserve(batch.size());
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
      if (!conn || !conn->is_open()) conn = pg::Connect(config.pg_url);
      // One transaction per poll batch: the rows and the statistics they feed commit together,
      // so a crash or a retry never leaves the counts out of step with the ledger.
      pqxx::work tx(*conn);
      auto result = stats::ApplyStatuses(tx, statuses);
      tx.commit();
      applied.Inc(result.moved);
      ignored.Inc(result.ignored);
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
