#include "herald/cache/two_level.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"

namespace herald::cache {

TwoLevelCache::TwoLevelCache(Options options, redis::Client* redis, metrics::Registry& m)
    : options_(std::move(options)),
      redis_(redis),
      lru_hits_(m.GetCounter("herald_cache_lookups_total", "Cache lookups by level answered",
                             {{"cache", options_.name}, {"result", "lru_hit"}})),
      redis_hits_(m.GetCounter("herald_cache_lookups_total", "Cache lookups by level answered",
                               {{"cache", options_.name}, {"result", "redis_hit"}})),
      misses_(m.GetCounter("herald_cache_lookups_total", "Cache lookups by level answered",
                           {{"cache", options_.name}, {"result", "miss"}})),
      redis_errors_(m.GetCounter("herald_cache_redis_errors_total", "Redis failures (treated as misses)",
                                 {{"cache", options_.name}})) {}

void TwoLevelCache::PutLru(const std::string& id, const nlohmann::json& doc) {
  auto now = std::chrono::steady_clock::now();
  auto it = lru_.find(id);
  if (it != lru_.end()) order_.erase(it->second);
  order_.push_front({id, doc, now + options_.lru_ttl});
  lru_[id] = order_.begin();
  while (lru_.size() > options_.lru_capacity) {
    lru_.erase(order_.back().id);
    order_.pop_back();
  }
}

std::map<std::string, nlohmann::json> TwoLevelCache::GetMany(const std::vector<std::string>& ids) {
  std::map<std::string, nlohmann::json> found;
  std::vector<std::string> remote;
  auto now = std::chrono::steady_clock::now();
  for (const auto& id : ids) {
    auto it = lru_.find(id);
    if (it != lru_.end() && it->second->expires > now) {
      order_.splice(order_.begin(), order_, it->second);  // mark recently used
      found[id] = it->second->doc;
      lru_hits_.Inc();
    } else {
      if (it != lru_.end()) {
        order_.erase(it->second);
        lru_.erase(it);
      }
      remote.push_back(id);
    }
  }
  if (remote.empty()) return found;
  if (redis_) {
    std::vector<std::string> cmd = {"MGET"};
    for (const auto& id : remote) cmd.push_back(RedisKey(id));
    try {
      auto reply = redis_->Command(cmd);
      if (reply.type == redis::Reply::Type::kArray) {
        for (std::size_t i = 0; i < remote.size() && i < reply.elements.size(); ++i) {
          if (reply.elements[i].type != redis::Reply::Type::kString) continue;
          auto doc = nlohmann::json::parse(reply.elements[i].str, nullptr, false);
          if (doc.is_discarded()) continue;
          PutLru(remote[i], doc);
          found[remote[i]] = std::move(doc);
          redis_hits_.Inc();
        }
      }
    } catch (const TransientError& e) {
      redis_errors_.Inc();
      Logger("cache")->warn("{} cache: Redis unavailable, asking the upstream: {}", options_.name, e.what());
    }
  }
  misses_.Inc(remote.size() - (found.size() - (ids.size() - remote.size())));
  return found;
}

void TwoLevelCache::PutMany(const std::map<std::string, nlohmann::json>& docs, const std::set<std::string>* local_only) {
  if (docs.empty()) return;
  std::vector<std::vector<std::string>> cmds;
  for (const auto& [id, doc] : docs) {
    PutLru(id, doc);
    if (local_only && local_only->count(id)) continue;
    cmds.push_back({"SET", RedisKey(id), doc.dump(), "EX", std::to_string(options_.redis_ttl.count())});
  }
  if (!redis_ || cmds.empty()) return;
  try {
    redis_->Pipeline(cmds);
  } catch (const TransientError& e) {
    redis_errors_.Inc();
  }
}

}  // namespace herald::cache
