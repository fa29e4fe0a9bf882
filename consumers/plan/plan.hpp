#pragma once
// Plan stage logic: validate domain events and fan them out to one request per recipient.

#include <functional>
#include <string>
#include <vector>

#include "herald/model/records.hpp"

namespace herald::consumers::plan {

/// The request for one recipient of an event (pure; deterministic ids).
model::NotificationRequest MakeRequest(const model::Event& event, const std::string& user_id);

/// Resolves recipients page by page and calls `emit` for each user id. Explicit users come
/// first, then segment members (auth listing), then followers (ugc listing). Duplicate user
/// ids within the explicit list are emitted once.
class RecipientResolver {
 public:
  RecipientResolver(std::string auth_url, std::string ugc_url);
  void Resolve(const model::Event& event, const std::function<void(const std::string&)>& emit);

 private:
  std::string auth_url_;
  std::string ugc_url_;
};

}  // namespace herald::consumers::plan
