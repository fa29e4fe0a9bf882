#include "herald/model/records.hpp"

#include "herald/common/errors.hpp"

namespace herald::model {
namespace {

void PutTime(nlohmann::json& j, const char* key, const std::optional<TimePoint>& tp) {
  if (tp) j[key] = FormatRfc3339(*tp);
}

TimePoint Time(const nlohmann::json& j, const char* key) {
  auto tp = ParseRfc3339(j.at(key).get_ref<const std::string&>());
  if (!tp) throw InvalidInput(std::string(key) + " is not an RFC 3339 date-time", std::string("/") + key);
  return *tp;
}

std::optional<TimePoint> OptTime(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return Time(j, key);
}

std::optional<std::string> OptString(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

Priority PriorityOf(const nlohmann::json& j) {
  auto p = ParsePriority(j.at("priority"));
  if (!p) throw InvalidInput("priority must be high, normal or low", "/priority");
  return *p;
}

// Wraps nlohmann's type/lookup errors into InvalidInput naming the record type.
template <typename F>
auto Guard(const char* what, F&& f) {
  try {
    return f();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(std::string("malformed ") + what + " record: " + e.what());
  }
}

}  // namespace

std::string_view StatusName(Status s) {
  switch (s) {
    case Status::kAccepted: return "accepted";
    case Status::kScheduled: return "scheduled";
    case Status::kRetried: return "retried";
    case Status::kFallback: return "fallback";
    case Status::kSent: return "sent";
    case Status::kFailed: return "failed";
    case Status::kSuppressed: return "suppressed";
    case Status::kExpired: return "expired";
    case Status::kCancelled: return "cancelled";
  }
  return "accepted";
}

std::optional<Status> ParseStatus(std::string_view s) {
  for (auto st : {Status::kAccepted, Status::kScheduled, Status::kRetried, Status::kFallback,
                  Status::kSent, Status::kFailed, Status::kSuppressed, Status::kExpired, Status::kCancelled}) {
    if (StatusName(st) == s) return st;
  }
  return std::nullopt;
}

bool IsTerminal(Status s) { return StatusRank(s) >= 10; }

int StatusRank(Status s) {
  switch (s) {
    case Status::kAccepted: return 1;
    case Status::kScheduled: return 2;
    case Status::kRetried: return 3;
    case Status::kFailed: return 10;
    case Status::kSuppressed: return 10;
    case Status::kExpired: return 10;
    case Status::kCancelled: return 10;  // its campaign was cancelled before it was sent
    case Status::kFallback: return 11;  // failed on this channel, moved to the next one
    case Status::kSent: return 12;
  }
  return 0;
}

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json ToJson(const NotificationRequest& r) {
  nlohmann::json j = {{"request_id", r.request_id},   {"event_id", r.event_id},
                      {"event_type", r.event_type},   {"source", r.source},
                      {"user_id", r.user_id},         {"priority", PriorityName(r.priority)},
                      {"created_dt", FormatRfc3339(r.created)},
                      {"content", r.content},         {"data", r.data},
                      {"attempt", r.attempt}};
  if (r.campaign_id) j["campaign_id"] = *r.campaign_id;
  if (!r.channels.empty()) j["channels"] = r.channels;
  PutTime(j, "not_before", r.not_before);
  PutTime(j, "expires_at", r.expires_at);
  if (r.deliver_window) {
    j["deliver_window"] = {{"from", r.deliver_window->from}, {"to", r.deliver_window->to}};
  }
  return j;
}

NotificationRequest RequestFromJson(const nlohmann::json& j) {
  return Guard("request", [&] {
    NotificationRequest r;
    r.request_id = j.at("request_id").get<std::string>();
    r.event_id = j.at("event_id").get<std::string>();
    r.event_type = j.at("event_type").get<std::string>();
    r.source = j.value("source", "");
    r.campaign_id = OptString(j, "campaign_id");
    r.user_id = j.at("user_id").get<std::string>();
    r.priority = PriorityOf(j);
    r.created = Time(j, "created_dt");
    r.not_before = OptTime(j, "not_before");
    r.expires_at = OptTime(j, "expires_at");
    if (auto it = j.find("deliver_window"); it != j.end() && !it->is_null()) {
      r.deliver_window = Window{it->at("from").get<std::string>(), it->at("to").get<std::string>()};
    }
    r.content = j.value("content", std::vector<std::string>{});
    r.data = j.value("data", nlohmann::json::object());
    r.channels = j.value("channels", std::vector<std::string>{});
    r.attempt = j.value("attempt", 0);
    return r;
  });
}

nlohmann::json ToJson(const Delivery& d) {
  nlohmann::json j = {{"notification_id", d.notification_id},
          {"channel", d.channel},
          {"address", d.address},
          {"locale", d.locale},
          {"timezone", d.timezone},
          {"fallback", d.fallback},
          {"contacts", d.contacts},
          {"vars", d.vars},
          {"attempt", d.attempt},
          {"request", ToJson(d.request)}};
  if (d.quiet_hours) j["quiet_hours"] = {{"from", d.quiet_hours->from}, {"to", d.quiet_hours->to}};
  return j;
}

Delivery DeliveryFromJson(const nlohmann::json& j) {
  return Guard("delivery", [&] {
    Delivery d;
    d.notification_id = j.at("notification_id").get<std::string>();
    d.channel = j.at("channel").get<std::string>();
    d.address = j.at("address").get<std::string>();
    d.locale = j.value("locale", "en");
    d.timezone = j.value("timezone", "UTC");
    d.fallback = j.value("fallback", std::vector<std::string>{});
    d.contacts = j.value("contacts", nlohmann::json::object());
    d.vars = j.value("vars", nlohmann::json::object());
    d.attempt = j.value("attempt", 0);
    if (auto it = j.find("quiet_hours"); it != j.end() && !it->is_null()) {
      d.quiet_hours = Window{it->at("from").get<std::string>(), it->at("to").get<std::string>()};
    }
    d.request = RequestFromJson(j.at("request"));
    return d;
  });
}

nlohmann::json ToJson(const StatusRecord& s) {
  nlohmann::json j = {{"notification_id", s.notification_id},
                      {"event_id", s.event_id},
                      {"event_type", s.event_type},
                      {"user_id", s.user_id},
                      {"channel", s.channel},
                      {"priority", PriorityName(s.priority)},
                      {"status", StatusName(s.status)},
                      {"attempt", s.attempt},
                      {"at", FormatRfc3339(s.at)},
                      {"created_dt", FormatRfc3339(s.created)}};
  if (s.campaign_id) j["campaign_id"] = *s.campaign_id;
  if (!s.reason.empty()) j["reason"] = s.reason;
  if (!s.provider.empty()) j["provider"] = s.provider;
  if (!s.provider_message_id.empty()) j["provider_message_id"] = s.provider_message_id;
  return j;
}

StatusRecord StatusFromJson(const nlohmann::json& j) {
  return Guard("status", [&] {
    StatusRecord s;
    s.notification_id = j.at("notification_id").get<std::string>();
    s.event_id = j.at("event_id").get<std::string>();
    s.event_type = j.at("event_type").get<std::string>();
    s.campaign_id = OptString(j, "campaign_id");
    s.user_id = j.at("user_id").get<std::string>();
    s.channel = j.at("channel").get<std::string>();
    s.priority = PriorityOf(j);
    auto st = ParseStatus(j.at("status").get<std::string>());
    if (!st) throw InvalidInput("unknown status '" + j.at("status").get<std::string>() + "'", "/status");
    s.status = *st;
    s.reason = j.value("reason", "");
    s.provider = j.value("provider", "");
    s.provider_message_id = j.value("provider_message_id", "");
    s.attempt = j.value("attempt", 0);
    s.at = Time(j, "at");
    s.created = Time(j, "created_dt");
    return s;
  });
}

nlohmann::json ToJson(const DeadLetter& d) {
  nlohmann::json j = {{"stage", d.stage},
                      {"error_class", d.error_class},
                      {"reason", d.reason},
                      {"origin",
                       {{"topic", d.origin.topic},
                        {"partition", d.origin.partition},
                        {"offset", d.origin.offset}}},
                      {"at", FormatRfc3339(d.at)}};
  if (d.key) j["key"] = *d.key;
  // Keep the original bytes exactly: as a string when it is valid UTF-8, else as a byte
  // array, so nothing is lost either way. A huge record is cut (and says so) so that its
  // dead letter still fits in a Kafka message.
  constexpr std::size_t kMaxOriginal = 256 * 1024;
  std::string original = d.original.size() > kMaxOriginal ? d.original.substr(0, kMaxOriginal) : d.original;
  if (original.size() < d.original.size()) {
    j["original_truncated"] = true;
    j["original_size"] = d.original.size();
  }
  try {
    nlohmann::json probe = original;
    (void)probe.dump();
    j["original"] = original;
  } catch (const nlohmann::json::type_error&) {
    j["original_bytes"] = std::vector<std::uint8_t>(original.begin(), original.end());
  }
  return j;
}

DeadLetter DeadLetterFromJson(const nlohmann::json& j) {
  return Guard("dead letter", [&] {
    DeadLetter d;
    d.stage = j.at("stage").get<std::string>();
    d.error_class = j.at("error_class").get<std::string>();
    d.reason = j.at("reason").get<std::string>();
    const auto& o = j.at("origin");
    d.origin = {o.at("topic").get<std::string>(), o.at("partition").get<std::int32_t>(),
                o.at("offset").get<std::int64_t>()};
    d.key = OptString(j, "key");
    if (j.contains("original")) {
      d.original = j["original"].get<std::string>();
    } else {
      auto bytes = j.at("original_bytes").get<std::vector<std::uint8_t>>();
      d.original.assign(bytes.begin(), bytes.end());
    }
    d.at = Time(j, "at");
    return d;
  });
}

StatusRecord MakeStatus(const Delivery& d, Status status, std::string reason) {
  StatusRecord s;
  s.notification_id = d.notification_id;
  s.event_id = d.request.event_id;
  s.event_type = d.request.event_type;
  s.campaign_id = d.request.campaign_id;
  s.user_id = d.request.user_id;
  s.channel = d.channel;
  s.priority = d.request.priority;
  s.status = status;
  s.reason = std::move(reason);
  s.attempt = d.attempt;
  s.at = NowMs();
  s.created = d.request.created;
  return s;
}

}  // namespace herald::model
