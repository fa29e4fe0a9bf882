#include "scheduler/schedules.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/schedule/cron.hpp"
#include "herald/topics/catalog.hpp"

namespace herald::consumers::scheduler {
namespace {

using Json = nlohmann::json;

const date::time_zone* Zone(const std::string& name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    throw InvalidInput("unknown time zone '" + name + "' (an IANA name such as Europe/Moscow)", "/timezone");
  }
}

std::chrono::sys_seconds Secs(TimePoint t) { return std::chrono::time_point_cast<std::chrono::seconds>(t); }
TimePoint Ms(std::chrono::sys_seconds t) { return std::chrono::time_point_cast<std::chrono::milliseconds>(t); }

std::string Text(TimePoint t) { return FormatRfc3339(t); }

}  // namespace

std::vector<std::string> EnsureBuiltinSchedules(pqxx::connection& conn, const schema::Registry& registry) {
  std::vector<std::string> added;
  pqxx::work tx(conn);
  for (const auto* type : registry.Types()) {
    auto it = type->meta.find("schedule");
    if (it == type->meta.end() || !it->is_string()) continue;
    Json event = {{"event_type", type->name},
                  {"source", type->source},
                  {"priority", type->default_priority},
                  {"payload", {{"segment", Json::object()}}}};
    auto r = tx.exec_params(
        "INSERT INTO schedules (id, cron, timezone, event) VALUES ($1, $2, 'UTC', $3::jsonb) ON CONFLICT (id) DO NOTHING",
        "builtin:" + type->name, it->get<std::string>(), event.dump());
    if (r.affected_rows() > 0) added.push_back("builtin:" + type->name);
  }
  tx.commit();
  return added;
}

void CheckSchedule(const std::string& cron, const std::string& timezone) {
  Zone(timezone);
  schedule::Cron::Parse(cron);
}

void RegisterSchedule(pqxx::connection& conn, const model::Event& event, TimePoint now) {
  std::string tz = event.timezone.value_or("UTC");
  auto cron = schedule::Cron::Parse(*event.schedule);
  auto next = cron.Next(Secs(now), Zone(tz));
  Json stored = model::ToJson(event);
  stored.erase("schedule");
  stored.erase("event_id");
  pqxx::work tx(conn);
  tx.exec_params(
      "INSERT INTO schedules (id, cron, timezone, event, next_due) VALUES ($1, $2, $3, $4::jsonb, $5::timestamptz) "
      "ON CONFLICT (id) DO NOTHING",
      "event:" + event.event_id, *event.schedule, tz, stored.dump(),
      next ? std::optional<std::string>(Text(Ms(*next))) : std::nullopt);
  tx.commit();
}

std::size_t FireDue(pqxx::connection& conn, TimePoint now, std::size_t limit,
                    const std::function<void(const std::vector<Fired>&)>& publish) {
  pqxx::work tx(conn);
  // Schedules without a next occurrence yet (the built-ins on a fresh database) start from now.
  auto fresh = tx.exec("SELECT id, cron, timezone FROM schedules WHERE enabled AND next_due IS NULL AND last_fired IS NULL "
                       "FOR UPDATE SKIP LOCKED");
  for (const auto& row : fresh) {
    try {
      auto cron = schedule::Cron::Parse(row[1].as<std::string>());
      auto next = cron.Next(Secs(now), Zone(row[2].as<std::string>()));
      if (next) tx.exec_params("UPDATE schedules SET next_due = $2::timestamptz, updated_at = now() WHERE id = $1",
                               row[0].as<std::string>(), Text(Ms(*next)));
    } catch (const InvalidInput& e) {
      Logger("scheduler")->error("schedule {} is invalid and is disabled: {}", row[0].as<std::string>(), e.what());
      tx.exec_params("UPDATE schedules SET enabled = false, updated_at = now() WHERE id = $1", row[0].as<std::string>());
    }
  }
  auto due = tx.exec_params(
      "SELECT id, cron, timezone, event::text, (extract(epoch FROM next_due) * 1000)::bigint FROM schedules "
      "WHERE enabled AND next_due <= $1::timestamptz ORDER BY next_due LIMIT $2 FOR UPDATE SKIP LOCKED",
      Text(now), static_cast<long>(limit));
  std::vector<Fired> fired;
  std::vector<std::pair<std::string, std::optional<TimePoint>>> advance;
  const auto& catalog = topics::Catalog();
  for (const auto& row : due) {
    auto id = row[0].as<std::string>();
    try {
      auto cron = schedule::Cron::Parse(row[1].as<std::string>());
      const auto* tz = Zone(row[2].as<std::string>());
      // The latest occurrence not after now: a long outage fires once, not once per miss.
      auto occurrence = std::chrono::sys_seconds(std::chrono::seconds(row[4].as<std::int64_t>() / 1000));
      while (true) {
        auto n = cron.Next(occurrence, tz);
        if (!n || *n > Secs(now)) break;
        occurrence = *n;
      }
      Json event = Json::parse(row[3].as<std::string>());
      event["event_id"] = DeterministicId({"schedule", id, Text(Ms(occurrence))});
      event["created_dt"] = Text(Ms(occurrence));
      std::string source = event.value("source", "");
      fired.push_back({id, Ms(occurrence), catalog.Events(source), event["event_id"].get<std::string>(), event.dump()});
      auto next = cron.Next(Secs(now), tz);
      advance.emplace_back(id, next ? std::optional<TimePoint>(Ms(*next)) : std::nullopt);
    } catch (const std::exception& e) {
      Logger("scheduler")->error("schedule {} cannot fire and is disabled: {}", id, e.what());
      tx.exec_params("UPDATE schedules SET enabled = false, updated_at = now() WHERE id = $1", id);
    }
  }
  if (!fired.empty()) publish(fired);  // throws: the transaction rolls back, rows stay due
  for (std::size_t i = 0; i < fired.size(); ++i) {
    tx.exec_params(
        "UPDATE schedules SET last_fired = $2::timestamptz, next_due = $3::timestamptz, fired_count = fired_count + 1, "
        "updated_at = now() WHERE id = $1",
        fired[i].schedule_id, Text(fired[i].occurrence),
        advance[i].second ? std::optional<std::string>(Text(*advance[i].second)) : std::nullopt);
  }
  tx.commit();
  return fired.size();
}

}  // namespace herald::consumers::scheduler
