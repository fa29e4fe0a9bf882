#pragma once
// The domain event envelope (architecture section 4), parsed and normalised.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/common/time.hpp"
#include "herald/schema/registry.hpp"

namespace herald::model {

enum class Priority { kHigh = 0, kNormal = 1, kLow = 2 };
std::string_view PriorityName(Priority p);
/// "high" | "normal" | "low" | 0..2; nullopt otherwise.
std::optional<Priority> ParsePriority(const nlohmann::json& value);

struct Window {
  std::string from;  // "HH:MM" local time
  std::string to;
};

struct Event {
  std::string event_id;
  bool event_id_derived = false;  // the producer sent none; derived from where it was read
  std::string event_type;
  std::string source;
  TimePoint created;
  Priority priority = Priority::kNormal;
  std::optional<TimePoint> start;
  std::optional<TimePoint> expires;
  std::optional<std::string> schedule;
  std::optional<std::string> timezone;
  std::optional<std::string> campaign_id;
  std::vector<std::string> channels;   // restricts the type's channels (a campaign's choice)
  std::optional<Window> deliver_window;
  std::vector<std::string> users;      // explicit recipients (numbers normalised to strings)
  nlohmann::json segment;              // null when absent
  std::optional<std::string> followers_of;
  std::vector<std::string> content;
  nlohmann::json data = nlohmann::json::object();
};

/// Where an event was read from; used to derive an event_id when the producer gave none.
struct Origin {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

/// Parses and validates raw bytes. Throws InvalidInput with the offending field (a JSON
/// pointer) for invalid JSON, a schema violation or an unknown event type.
Event ParseEvent(std::string_view bytes, const schema::Registry& registry,
                 const std::optional<Origin>& origin);

/// Same for an already-parsed document.
Event ParseEventDocument(const nlohmann::json& doc, const schema::Registry& registry,
                 const std::optional<Origin>& origin);

/// The event as canonical JSON (event_id filled in, priority as a name).
nlohmann::json ToJson(const Event& e);

}  // namespace herald::model
