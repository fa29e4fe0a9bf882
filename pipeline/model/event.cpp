#include "herald/model/event.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/untrusted_json.hpp"

namespace herald::model {
namespace {

std::string IdToString(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : std::to_string(v.get<std::uint64_t>());
}

std::optional<TimePoint> OptionalTime(const nlohmann::json& doc, const char* field) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return std::nullopt;
  auto tp = ParseRfc3339(it->get_ref<const std::string&>());
  if (!tp) throw InvalidInput(std::string(field) + " is not an RFC 3339 date-time", std::string("/") + field);
  return tp;
}

std::optional<std::string> OptionalString(const nlohmann::json& doc, const char* field) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

std::string_view PriorityName(Priority p) {
  switch (p) {
    case Priority::kHigh: return "high";
    case Priority::kNormal: return "normal";
    case Priority::kLow: return "low";
  }
  return "normal";
}

std::optional<Priority> ParsePriority(const nlohmann::json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "high") return Priority::kHigh;
    if (s == "normal") return Priority::kNormal;
    if (s == "low") return Priority::kLow;
  } else if (v.is_number_integer()) {
    auto n = v.get<std::int64_t>();
    if (n >= 0 && n <= 2) return static_cast<Priority>(n);
  }
  return std::nullopt;
}

Event ParseEvent(std::string_view bytes, const schema::Registry& registry,
                 const std::optional<Origin>& origin) {
  // The NUL walk is ParseEventDocument's (CheckUntrusted), done once.
  return ParseEventDocument(ParseUntrusted(bytes, kMaxJsonDepth, /*reject_nul=*/false), registry, origin);
}

Event ParseEventDocument(const nlohmann::json& doc, const schema::Registry& registry,
                 const std::optional<Origin>& origin) {
  if (!doc.is_object()) throw InvalidInput("an event must be a JSON object", "");
  CheckUntrusted(doc);  // before the schema validator recurses into it
  auto errors = registry.Validate(doc);
  if (!errors.empty()) {
    const auto& first = errors.front();
    std::string where = first.field.empty() ? "the event" : first.field;
    throw InvalidInput(where + ": " + first.message, first.field);
  }
  Event e;
  e.event_type = doc["event_type"].get<std::string>();
  const auto* type = registry.Find(e.event_type);  // Validate() guarantees it exists
  if (auto it = doc.find("event_id"); it != doc.end()) {
    e.event_id = it->get<std::string>();
  } else if (origin) {
    e.event_id = DeriveEventId(origin->topic, origin->partition, origin->offset);
    e.event_id_derived = true;
  } else {
    e.event_id = RandomUuid();
    e.event_id_derived = true;
  }
  e.source = doc.value("source", type->source);
  auto created = ParseRfc3339(doc["created_dt"].get_ref<const std::string&>());
  if (!created) throw InvalidInput("created_dt is not an RFC 3339 date-time", "/created_dt");
  e.created = *created;
  if (auto it = doc.find("priority"); it != doc.end()) {
    e.priority = *ParsePriority(*it);  // the schema admits only valid values
  } else {
    e.priority = *ParsePriority(type->default_priority);
  }
  e.start = OptionalTime(doc, "start_dt");
  e.expires = OptionalTime(doc, "expires_dt");
  e.schedule = OptionalString(doc, "schedule");
  e.timezone = OptionalString(doc, "timezone");
  e.campaign_id = OptionalString(doc, "campaign_id");
  if (auto it = doc.find("channels"); it != doc.end() && !it->is_null()) {
    e.channels = it->get<std::vector<std::string>>();
  }
  if (auto it = doc.find("deliver_window"); it != doc.end() && !it->is_null()) {
    e.deliver_window = Window{(*it)["from"].get<std::string>(), (*it)["to"].get<std::string>()};
  }
  const auto& payload = doc["payload"];
  if (auto it = payload.find("user"); it != payload.end()) {
    for (const auto& u : *it) e.users.push_back(IdToString(u));
  }
  if (auto it = payload.find("segment"); it != payload.end()) e.segment = *it;
  if (auto it = payload.find("followers_of"); it != payload.end()) {
    e.followers_of = it->get<std::string>();
  }
  if (auto it = payload.find("content"); it != payload.end()) {
    for (const auto& c : *it) e.content.push_back(IdToString(c));
  }
  if (auto it = payload.find("data"); it != payload.end()) e.data = *it;
  return e;
}

nlohmann::json ToJson(const Event& e) {
  nlohmann::json j = {
      {"event_id", e.event_id},
      {"event_type", e.event_type},
      {"source", e.source},
      {"created_dt", FormatRfc3339(e.created)},
      {"priority", PriorityName(e.priority)},
  };
  if (e.start) j["start_dt"] = FormatRfc3339(*e.start);
  if (e.expires) j["expires_dt"] = FormatRfc3339(*e.expires);
  if (e.schedule) j["schedule"] = *e.schedule;
  if (e.timezone) j["timezone"] = *e.timezone;
  if (e.campaign_id) j["campaign_id"] = *e.campaign_id;
  if (!e.channels.empty()) j["channels"] = e.channels;
  if (e.deliver_window) {
    j["deliver_window"] = {{"from", e.deliver_window->from}, {"to", e.deliver_window->to}};
  }
  nlohmann::json payload = nlohmann::json::object();
  if (!e.users.empty()) payload["user"] = e.users;
  if (!e.segment.is_null()) payload["segment"] = e.segment;
  if (e.followers_of) payload["followers_of"] = *e.followers_of;
  if (!e.content.empty()) payload["content"] = e.content;
  payload["data"] = e.data;
  j["payload"] = payload;
  return j;
}

}  // namespace herald::model
