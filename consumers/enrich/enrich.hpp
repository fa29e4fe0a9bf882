#pragma once
// Enrich stage logic: look recipients up in auth (batched), choose the channel, build the
// template variables and route each notification to its delivery topic.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/model/records.hpp"
#include "herald/schema/registry.hpp"

namespace herald::consumers::enrich {

/// The address a user has on a channel, or nullopt when the user cannot be reached there.
std::optional<std::string> AddressFor(const nlohmann::json& user, const std::string& channel);

struct Decision {
  std::optional<model::Delivery> delivery;  // set when the notification goes out
  model::Status status = model::Status::kAccepted;
  std::string reason;                       // why it is suppressed
  std::string channel;                      // chosen (or, when suppressed, the type's first)
};

/// Pure: decides the channel and prepares the delivery (address, locale, fallback chain) for
/// one request and its user profile; the template variables are added by the Enricher.
/// The channel is the first of the user's preferred channels that the event type allows and
/// the user has an address for; the rest of that order is the fallback chain.
Decision Decide(const model::NotificationRequest& request, const nlohmann::json& user,
                const schema::EventTypeInfo& type);

/// The status of a request that produces no delivery (suppressed before a channel is used).
model::StatusRecord StatusWithoutDelivery(const model::NotificationRequest& req, const std::string& channel,
                                          model::Status status, std::string reason);

}  // namespace herald::consumers::enrich
