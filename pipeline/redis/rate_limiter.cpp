#include "herald/redis/rate_limiter.hpp"

#include "herald/common/errors.hpp"

namespace herald::redis {
namespace {

// KEYS[1] bucket; ARGV: rate, burst, want. Fields: tokens, ts (ms), factor, blocked (ms).
constexpr const char* kAcquire = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'factor', 'blocked')
local tokens = tonumber(f[1]) or burst
local ts = tonumber(f[2]) or now
local factor = tonumber(f[3]) or 1
local blocked = tonumber(f[4]) or 0
if now < blocked then
  return {0, blocked - now, tostring(factor)}
end
local r = rate * factor
tokens = math.min(burst, tokens + (now - ts) * r / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now, 'factor', tostring(factor))
redis.call('PEXPIRE', KEYS[1], 3600000)
local wait = 0
if granted < want then wait = math.ceil((1 - (tokens - math.floor(tokens))) * 1000 / r) end
return {granted, wait, tostring(factor)}
)lua";

// KEYS[1]; ARGV: min_factor, retry_after_ms.
constexpr const char* kThrottle = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local factor = tonumber(redis.call('HGET', KEYS[1], 'factor')) or 1
factor = math.max(tonumber(ARGV[1]), factor / 2)
local blocked = math.max(tonumber(redis.call('HGET', KEYS[1], 'blocked')) or 0, now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'blocked', blocked, 'tokens', 0, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
return tostring(factor)
)lua";

// KEYS[1]; ARGV: step.
constexpr const char* kRecover = R"lua(
local factor = tonumber(redis.call('HGET', KEYS[1], 'factor')) or 1
if factor < 1 then
  redis.call('HSET', KEYS[1], 'factor', tostring(math.min(1, factor + tonumber(ARGV[1]))))
end
return 1
)lua";

void Check(const Reply& r, const char* what) {
  if (r.type == Reply::Type::kError) throw TransientError(std::string("rate limiter ") + what + ": " + r.str);
}

}  // namespace

RateLimiter::RateLimiter(Client& redis, Options options)
    : redis_(redis), options_(std::move(options)), key_("herald:rate:" + options_.name) {
  if (options_.rate_per_s <= 0 || options_.burst < 1) throw ConfigError("rate limiter " + options_.name + ": rate and burst must be positive");
}

RateLimiter::Grant RateLimiter::Acquire(std::int64_t want) {
  auto r = redis_.Command({"EVAL", kAcquire, "1", key_, std::to_string(options_.rate_per_s), std::to_string(options_.burst),
                           std::to_string(want)});
  Check(r, "acquire");
  Grant g;
  if (r.type != Reply::Type::kArray || r.elements.size() != 3) throw TransientError("rate limiter: unexpected reply");
  g.granted = r.elements[0].integer;
  g.wait = std::chrono::milliseconds(r.elements[1].integer);
  g.factor = std::stod(r.elements[2].str);
  return g;
}

void RateLimiter::Throttled(std::optional<std::chrono::seconds> retry_after) {
  auto ms = retry_after ? std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after).count() : 1000;
  Check(redis_.Command({"EVAL", kThrottle, "1", key_, std::to_string(options_.min_factor), std::to_string(ms)}), "throttle");
}

void RateLimiter::Succeeded() {
  Check(redis_.Command({"EVAL", kRecover, "1", key_, std::to_string(options_.recover_step)}), "recover");
}

}  // namespace herald::redis
