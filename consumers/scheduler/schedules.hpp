#pragma once
// Recurring events in PostgreSQL (table `schedules`, migration 0003).
//
// An event submitted with `schedule` (a 5-field cron, evaluated in the event's `timezone`,
// UTC by default) is registered here instead of being fanned out; the built-in
// stats.monthly and bookmark.reminder schedules ship with the migration. The scheduler fires
// due schedules: it locks up to N due rows (FOR UPDATE SKIP LOCKED, so replicas share the work
// and never take the same row), publishes one event per row with an event_id derived from
// (schedule, occurrence), waits for the broker, then records the occurrence and the next due
// time in the same transaction. After downtime only the latest missed occurrence fires, once.
// If the process dies between publishing and committing, the same occurrence is published
// again with the same event_id, which the rest of the pipeline deduplicates.

#include <functional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "herald/common/time.hpp"
#include "herald/model/event.hpp"
#include "herald/schema/registry.hpp"

namespace herald::consumers::scheduler {

/// Registers `event` (which has a schedule) idempotently on its event_id. Throws InvalidInput
/// for an invalid cron expression or an unknown time zone; pqxx errors when PostgreSQL fails.
void RegisterSchedule(pqxx::connection& conn, const model::Event& event, TimePoint now);

/// Inserts the built-in schedule of every event type whose x-herald has "schedule" (fired in
/// UTC to the whole audience, `segment: {}`), unless present. Returns the ids inserted.
std::vector<std::string> EnsureBuiltinSchedules(pqxx::connection& conn, const schema::Registry& registry);

/// Validates a schedule without storing it (throws InvalidInput).
void CheckSchedule(const std::string& cron, const std::string& timezone);

struct Fired {
  std::string schedule_id;
  TimePoint occurrence;
  std::string topic;  // events.<source>.v1
  std::string key;    // the event_id
  std::string value;  // the event JSON
};

/// Fires up to `limit` due schedules. `publish` must block until the broker acknowledged
/// every record and throw otherwise (then nothing is recorded and the rows stay due).
/// Rows with no next_due yet get one computed from `now`. Returns how many fired.
std::size_t FireDue(pqxx::connection& conn, TimePoint now, std::size_t limit,
                    const std::function<void(const std::vector<Fired>&)>& publish);

}  // namespace herald::consumers::scheduler
