#pragma once
// Enrichment of notification requests with upstream data, one poll batch at a time.
//
// For a batch it looks up every distinct user once (two-level cache, then auth
// users:batchGet in chunks of ≤500, concurrently), decides each request's channel, fetches
// per-user ugc data where the type needs it (bookmarks, watch history; concurrently), then
// every distinct movie once (cache, then movies:batchGet), and builds the type's template
// variables. Each upstream has a circuit breaker: while it is open, requests that need it
// are parked in the retry tiers instead of calling it.
//
// Not thread-safe: one Enricher per stage thread.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "herald/cache/two_level.hpp"
#include "herald/config/config.hpp"
#include "herald/http/breaker.hpp"
#include "herald/http/multi_client.hpp"
#include "herald/metrics/registry.hpp"
#include "herald/model/records.hpp"
#include "herald/redis/client.hpp"
#include "herald/schema/registry.hpp"

namespace herald::consumers::enrich {

struct EnricherOptions {
  std::string auth_url;
  std::string ugc_url;
  std::string movies_url;
  std::size_t concurrency = 16;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds breaker_open_for{5000};
  std::chrono::seconds cache_ttl{600};
  /// Users kept in the in-process LRU (each a parsed document of about 2.5 KiB).
  std::size_t user_cache_entries = 20'000;
  bool batching = true;  // false: one GET per user and per movie (for comparison)
  bool caching = true;
  /// Per user id, fields that override the user's auth record ("channels", "quiet_hours"
  /// ({"off": true} = none), "locale") and "opted_out" (categories). Called once per batch
  /// with the users found; may throw TransientError. Empty: none.
  std::function<std::map<std::string, nlohmann::json>(const std::set<std::string>&)> preferences;
};

struct Outcome {
  enum class Kind {
    kDeliver,  // `delivery` is ready for notify.deliver.<channel>.<priority>
    kStatus,   // no delivery; `status` (suppressed) says why
    kRetry,    // a transient upstream failure: retry later, consuming an attempt
    kPark,     // an upstream's breaker is open: wait in the retry tier without consuming one
    kInvalid,  // the request can never be enriched (unknown event type)
  };
  Kind kind = Kind::kRetry;
  model::Delivery delivery;
  model::StatusRecord status;
  std::string reason;
};

/// The options of the enrich stage's configuration, with preferences read from PostgreSQL
/// (config.pg_url, one query pair per batch; a lost connection is reopened on the next).
EnricherOptions OptionsFromConfig(const config::Config& config);

class Enricher {
 public:
  Enricher(EnricherOptions options, const schema::Registry& registry, redis::Client* redis,
           metrics::Registry& metrics);
  ~Enricher();

  /// One outcome per request, in order.
  std::vector<Outcome> Process(const std::vector<model::NotificationRequest>& requests);

  http::CircuitBreaker& Breaker(const std::string& upstream);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Pure: the template variables of `request` for `user`, given the movies it refers to
/// (by id) and its ugc data (bookmarks or watch-history items; null when the type needs none).
nlohmann::json BuildVars(const model::NotificationRequest& request, const nlohmann::json& user,
                         const std::map<std::string, nlohmann::json>& movies, const nlohmann::json& ugc);

/// Pure: the movie ids a request needs before its variables can be built.
std::vector<std::string> MovieIdsNeeded(const model::NotificationRequest& request, const nlohmann::json& ugc);

/// Pure: [from, to) of the month a stats.monthly request reports on ("YYYY-MM" from data.month,
/// else the month before created_dt, in UTC).
std::pair<TimePoint, TimePoint> StatsMonth(const model::NotificationRequest& request, std::string* label);

}  // namespace herald::consumers::enrich
