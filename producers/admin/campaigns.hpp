#pragma once
// Campaigns: validation, storage (PostgreSQL, migration 0004), the state machine and the
// launch of runs. Used by the admin API and by the scheduler, which launches due runs,
// completes ended campaigns and resumes paused fan-outs.
//
// States and transitions (anything else is a Conflict naming the current state):
//   launch  draft → running (a run starts now), or → scheduled (start_at in the future, or a cron)
//   pause   running | scheduled → paused (remembers which)
//   resume  paused → the state it was paused from
//   cancel  draft | scheduled | running | paused → cancelled
//   (scheduler) scheduled → running when a run starts; running | scheduled | paused →
//   completed at end_at, or when a one-off campaign has nothing pending.
// Edits are allowed in draft, scheduled and paused; deletes in draft, completed and cancelled.
//
// A run publishes one event to events.admin.v1 (event_id "campaign.<id>.<run>", the segment
// as payload.segment or payload.user, expires_dt = end_at) and records it in campaign_runs in
// the transaction that advances the campaign, committed after the broker acknowledged it.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "herald/common/errors.hpp"
#include "herald/common/time.hpp"
#include "herald/schema/registry.hpp"

namespace herald::redis {
class Client;
}

namespace herald::campaigns {

/// A request that breaks field rules: every problem, each with its JSON pointer.
class FieldErrors : public InvalidInput {
 public:
  explicit FieldErrors(nlohmann::json errors)
      : InvalidInput(errors.at(0).at("error").get<std::string>(), errors.at(0).at("field").get<std::string>()),
        errors_(std::move(errors)) {}
  const nlohmann::json& Errors() const { return errors_; }

 private:
  nlohmann::json errors_;  // [{"field", "error"}]
};

/// The request conflicts with the resource's current state (HTTP 409).
class Conflict : public Error {
 public:
  Conflict(std::string message, std::string state) : Error(std::move(message)), state_(std::move(state)) {}
  const std::string& State() const { return state_; }

 private:
  std::string state_;
};

/// No such resource (HTTP 404).
class NotFound : public Error {
 public:
  using Error::Error;
};

struct Campaign {
  std::string id;
  std::string name;
  std::string event_type;
  nlohmann::json segment = nlohmann::json::object();
  std::vector<std::string> channels;
  std::string priority;                    // empty: the type's default
  nlohmann::json deliver_window;           // null or {from, to}
  std::vector<std::string> content;
  nlohmann::json data = nlohmann::json::object();
  std::optional<TimePoint> start_at;
  std::optional<TimePoint> end_at;
  std::optional<std::string> cron;
  std::string timezone = "UTC";
  std::string state = "draft";
  std::string paused_from;
  std::optional<TimePoint> next_run_at;
  int runs = 0;
  int version = 1;
  std::string created_by;
  std::string created_at;
  std::string updated_at;
};

nlohmann::json ToJson(const Campaign& c);

/// Characters (UTF-8 code points) in `s`, for length limits stated in characters.
std::size_t CodePoints(const std::string& s);

/// Validates a create/update body (unknown fields, types, the event type, segment, channels,
/// window, cron, zone, dates, and the event a run would publish against the type's schema).
/// Throws FieldErrors listing every problem. `version` (update only) goes to *version.
Campaign FromInput(const nlohmann::json& body, const schema::Registry& registry, bool update,
                   std::optional<int>* version = nullptr);

/// The event run `run` publishes.
nlohmann::json RunEvent(const Campaign& c, int run, TimePoint now);

/// Blocks until the broker acknowledged the record; throws TransientError otherwise.
using Publish = std::function<void(const std::string& topic, const std::string& key, const std::string& value)>;

class Store {
 public:
  Store(pqxx::connection& conn, const schema::Registry& registry) : conn_(conn), registry_(registry) {}

  Campaign Create(Campaign c, const std::string& author);
  std::optional<Campaign> Get(const std::string& id);
  /// Newest first; `state` empty = any.
  std::pair<std::vector<Campaign>, long long> List(const std::string& state, int limit, int offset);
  Campaign Update(const std::string& id, const Campaign& input, std::optional<int> version, TimePoint now);
  void Delete(const std::string& id);

  /// launch | pause | resume | cancel, with the Redis mirror kept in step. Throws NotFound,
  /// Conflict, TransientError (broker, Redis or PostgreSQL unavailable: nothing changed).
  Campaign Act(const std::string& id, const std::string& action, TimePoint now, redis::Client& redis,
               const Publish& publish);

  /// Scheduler: launches runs that are due, completes campaigns past end_at and one-off
  /// campaigns with nothing pending, and re-publishes fan-outs stopped by a pause once their
  /// campaign runs again. Returns the number of actions taken.
  int Tick(TimePoint now, redis::Client& redis, const Publish& publish);

 private:
  pqxx::connection& conn_;
  const schema::Registry& registry_;
};

}  // namespace herald::campaigns
