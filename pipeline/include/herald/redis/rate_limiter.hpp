#pragma once
// A token bucket per provider, shared by every replica through Redis (one atomic Lua script
// per call, Redis server time, so replicas' clocks do not matter). It adapts: a 429 halves
// the provider's rate (down to `min_factor`) and blocks everyone until its Retry-After;
// successes bring the rate back up step by step.
//
// Not thread-safe (the Redis client is single-threaded): one limiter per delivery thread.

#include <chrono>
#include <optional>
#include <string>

#include "herald/redis/client.hpp"

namespace herald::redis {

class RateLimiter {
 public:
  struct Options {
    std::string name;         // provider: the bucket key is herald:rate:<name>
    double rate_per_s = 200;  // steady rate at full speed
    double burst = 50;        // bucket size
    double min_factor = 0.05;
    double recover_step = 0.1;  // factor added per successful batch
  };
  RateLimiter(Client& redis, Options options);

  struct Grant {
    std::int64_t granted = 0;
    std::chrono::milliseconds wait{0};  // until more tokens (or the block) are available
    double factor = 1;                  // current share of the full rate
  };
  /// Takes up to `want` tokens. Throws TransientError when Redis fails.
  Grant Acquire(std::int64_t want);
  /// The provider said 429: slow down for everyone, and stop until `retry_after`.
  void Throttled(std::optional<std::chrono::seconds> retry_after);
  /// A batch went through: recover part of the rate.
  void Succeeded();

 private:
  Client& redis_;
  Options options_;
  std::string key_;
};

}  // namespace herald::redis
