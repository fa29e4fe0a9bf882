#pragma once
// A two-level cache of JSON documents by id: an in-process LRU (bounded entries, TTL) in
// front of Redis (shared across replicas, TTL). Lookups are batched: one Redis MGET per
// GetMany, one pipelined SET per PutMany. A Redis failure degrades to a miss (the caller
// asks the upstream), it never fails the lookup.
//
// Not thread-safe: one cache per stage thread (the Redis client is single-threaded).

#include <chrono>
#include <list>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/metrics/registry.hpp"
#include "herald/redis/client.hpp"

namespace herald::cache {

class TwoLevelCache {
 public:
  struct Options {
    std::string name;                              // "user", "movie": key prefix and metric label
    std::size_t lru_capacity = 100'000;
    std::chrono::seconds lru_ttl{60};
    std::chrono::seconds redis_ttl{600};
  };
  /// `redis` may be null (LRU only).
  TwoLevelCache(Options options, redis::Client* redis, metrics::Registry& metrics);

  /// Returns the cached documents for the ids it has; the rest are misses.
  std::map<std::string, nlohmann::json> GetMany(const std::vector<std::string>& ids);
  /// Stores in both levels, except the ids in `local_only` (when given), which stay in this
  /// process's LRU: documents read once and not again soon (a campaign's recipients), which
  /// would only fill the shared level.
  void PutMany(const std::map<std::string, nlohmann::json>& docs, const std::set<std::string>* local_only = nullptr);

  std::size_t LruSize() const { return lru_.size(); }

 private:
  struct Entry {
    std::string id;
    nlohmann::json doc;
    std::chrono::steady_clock::time_point expires;
  };
  void PutLru(const std::string& id, const nlohmann::json& doc);
  std::string RedisKey(const std::string& id) const { return "herald:cache:" + options_.name + ":" + id; }

  Options options_;
  redis::Client* redis_;
  std::list<Entry> order_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> lru_;
  metrics::Counter& lru_hits_;
  metrics::Counter& redis_hits_;
  metrics::Counter& misses_;
  metrics::Counter& redis_errors_;
};

}  // namespace herald::cache
