#pragma once
// Records that flow between stages: requests (after fan-out), deliveries (after enrichment),
// status changes and dead letters. All are JSON on the wire; parsing a record that does not
// match throws InvalidInput.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/model/event.hpp"

namespace herald::model {

/// notify.requests.v1: one per (event, recipient), keyed by user_id.
struct NotificationRequest {
  std::string request_id;  // RequestId(event_id, user_id)
  std::string event_id;
  std::string event_type;
  std::string source;
  std::optional<std::string> campaign_id;
  std::string user_id;
  Priority priority = Priority::kNormal;
  TimePoint created;
  std::optional<TimePoint> not_before;
  std::optional<TimePoint> expires_at;
  std::optional<Window> deliver_window;
  std::vector<std::string> content;
  nlohmann::json data = nlohmann::json::object();
  /// Channels this notification may use (a campaign's choice); empty = the type's channels.
  std::vector<std::string> channels;
  int attempt = 0;
};

/// notify.deliver.<channel>.<priority>: enriched and ready to render, keyed by user_id.
struct Delivery {
  NotificationRequest request;
  std::string notification_id;  // NotificationId(event_id, user_id, channel)
  std::string channel;
  std::string address;          // email, phone, chat id or push token
  std::string locale;           // ru | en
  std::string timezone;
  std::vector<std::string> fallback;  // remaining channels, in the user's preference order
  nlohmann::json contacts = nlohmann::json::object();  // channel -> address, for the fallback
  nlohmann::json vars = nlohmann::json::object();  // template variables
  std::optional<Window> quiet_hours;  // the user's, in local time of `timezone`
  int attempt = 0;
};

/// notify.status.v1: every state change, keyed by notification_id.
enum class Status { kAccepted, kScheduled, kRetried, kFallback, kSent, kFailed, kSuppressed, kExpired, kCancelled };
std::string_view StatusName(Status s);
std::optional<Status> ParseStatus(std::string_view s);
/// Terminal statuses never move back to non-terminal ones in the ledger.
bool IsTerminal(Status s);
/// Ordering rank used by the ledger so out-of-order statuses do not move a row backwards.
int StatusRank(Status s);

struct StatusRecord {
  std::string notification_id;
  std::string event_id;
  std::string event_type;
  std::optional<std::string> campaign_id;
  std::string user_id;
  std::string channel;
  Priority priority = Priority::kNormal;
  Status status = Status::kAccepted;
  std::string reason;
  std::string provider;
  std::string provider_message_id;
  int attempt = 0;
  TimePoint at;
  TimePoint created;  // the event's created_dt, for end-to-end latency
};

/// notify.dlq.v1: poison or exhausted records with the reason and where they came from.
struct DeadLetter {
  std::string stage;
  std::string error_class;  // invalid_json | schema | unknown_type | exhausted | ...
  std::string reason;
  Origin origin;
  std::optional<std::string> key;
  std::string original;     // the original bytes
  TimePoint at;
};

nlohmann::json ToJson(const NotificationRequest& r);
nlohmann::json ToJson(const Delivery& d);
nlohmann::json ToJson(const StatusRecord& s);
nlohmann::json ToJson(const DeadLetter& d);

NotificationRequest RequestFromJson(const nlohmann::json& j);
Delivery DeliveryFromJson(const nlohmann::json& j);
StatusRecord StatusFromJson(const nlohmann::json& j);
DeadLetter DeadLetterFromJson(const nlohmann::json& j);

/// Serialises a record for the wire. Text from outside (error messages quoting bad input,
/// upstream data) may hold invalid UTF-8; it is replaced rather than failing the record.
std::string Dump(const nlohmann::json& j);

/// Builds the status record for a delivery.
StatusRecord MakeStatus(const Delivery& d, Status status, std::string reason = {});

}  // namespace herald::model
