#pragma once
// When an enriched notification may be delivered.
//
//  - expired: now is past the event's expires_dt, or past created_dt + the type's max_age
//    (x-herald "max_age", e.g. "1h" for a password reset): dropped with status `expired`.
//  - start: never before the event's start_dt.
//  - window: inside the event's deliver_window, else the type's default (x-herald
//    "deliver_window"; marketing and digests have one), in the recipient's time zone, and
//    outside the user's quiet hours (normal and low priorities only). Critical types
//    (user.password_reset) ignore both.
//    Local-time rules (DST gaps and repeats, overnight ranges) are timing::FirstAllowed's.
//  - A notification due more than a second from now is parked until its due instant; one
//    whose window would only open after it expires is expired now.

#include <optional>
#include <string>

#include "herald/common/time.hpp"
#include "herald/model/records.hpp"
#include "herald/schema/registry.hpp"

namespace herald::consumers::enrich {

struct TimingDecision {
  enum class Kind { kNow, kPark, kExpire };
  Kind kind = Kind::kNow;
  TimePoint due;       // kPark: when to release it
  std::string reason;  // kPark / kExpire: why, for the status record
};

/// The instant after which the notification is stale: the earlier of expires_dt and
/// created_dt + the type's max_age (nullopt when neither applies).
std::optional<TimePoint> ExpiresAt(const model::NotificationRequest& request, const schema::EventTypeInfo& type);

TimingDecision DecideTiming(const model::Delivery& d, const schema::EventTypeInfo& type, TimePoint now);

}  // namespace herald::consumers::enrich
