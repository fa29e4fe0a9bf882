#pragma once
// Deterministic identifiers. A notification's id is a hash of (event_id, user_id, channel),
// so a replay or redelivery of the same event produces the same id and collides in the
// idempotency claim and the ledger.

#include <cstdint>
#include <string>
#include <string_view>

namespace herald {

/// SHA-256 of `data` as lowercase hex.
std::string Sha256Hex(std::string_view data);

/// A UUID-formatted (8-4-4-4-12) id derived from the SHA-256 of the given parts joined
/// with a separator that cannot occur in them ('\x1f'). Same parts → same id.
std::string DeterministicId(std::initializer_list<std::string_view> parts);

/// A random version-4 UUID.
std::string RandomUuid();

/// event_id for an event whose producer omitted one: derived from where it was read.
std::string DeriveEventId(std::string_view topic, std::int32_t partition, std::int64_t offset);

/// id of one (event, recipient) request after fan-out.
std::string RequestId(std::string_view event_id, std::string_view user_id);

/// id of one (event, recipient, channel) notification.
std::string NotificationId(std::string_view event_id, std::string_view user_id,
                           std::string_view channel);

}  // namespace herald
