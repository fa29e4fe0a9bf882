// Redis-backed pieces against a real redis-server: the enrichment cache's shared level,
// fan-out checkpoints and delivery claims.

#include <catch2/catch.hpp>

#include <thread>

#include "deliver/claims.hpp"
#include "herald/cache/two_level.hpp"
#include "herald/common/errors.hpp"
#include "herald/dev/stack.hpp"
#include "herald/redis/rate_limiter.hpp"
#include "plan/plan.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

// A throwaway redis-server on a free port.
struct RedisServer {
  int port = herald::dev::FreePort();
  herald::test::TempDir dir;
  RedisServer() {
    std::string cmd = "redis-server --port " + std::to_string(port) + " --bind 127.0.0.1 --save '' --appendonly no" +
                      " --daemonize yes --dir " + dir.Path() + " --pidfile " + dir.Path() + "/redis.pid >/dev/null";
    REQUIRE(herald::test::Run(cmd) == 0);
    REQUIRE(herald::test::WaitUntil([&] { return herald::test::Run("redis-cli -p " + std::to_string(port) + " ping >/dev/null 2>&1") == 0; }, 10s));
  }
  ~RedisServer() { herald::test::Run("redis-cli -p " + std::to_string(port) + " shutdown nosave >/dev/null 2>&1"); }
  std::string Url() const { return "redis://127.0.0.1:" + std::to_string(port) + "/0"; }
};

RedisServer& Server() {
  static RedisServer server;
  return server;
}

}  // namespace

TEST_CASE("the shared cache level serves another replica and expires", "[redis][cache]") {
  herald::redis::Client a(Server().Url()), b(Server().Url());
  herald::metrics::Registry m1, m2;
  herald::cache::TwoLevelCache first({"user", 100, 60s, 1s}, &a, m1);
  herald::cache::TwoLevelCache second({"user", 100, 60s, 1s}, &b, m2);
  first.PutMany({{"u-1", {{"first_name", "Ann"}}}, {"u-2", {{"first_name", "Bob"}}}});
  auto got = second.GetMany({"u-1", "u-2", "u-3"});  // the other replica: Redis hits
  CHECK(got.size() == 2);
  CHECK(got["u-1"]["first_name"] == "Ann");
  CHECK(m2.Render().find("result=\"redis_hit\"} 2") != std::string::npos);
  CHECK(m2.Render().find("result=\"miss\"} 1") != std::string::npos);
  // TTL: gone from Redis after a second.
  REQUIRE(herald::test::WaitUntil([&] { return a.Command({"EXISTS", "herald:cache:user:u-1"}).integer == 0; }, 5s, 100ms));
  herald::metrics::Registry m3;
  herald::cache::TwoLevelCache third({"user", 100, 60s, 1s}, &b, m3);
  CHECK(third.GetMany({"u-1"}).empty());
}

TEST_CASE("a cache whose Redis is gone degrades to misses", "[redis][cache]") {
  herald::redis::Client dead("redis://127.0.0.1:1/0", 200ms);
  herald::metrics::Registry m;
  herald::cache::TwoLevelCache c({"movie", 100, 60s, 60s}, &dead, m);
  CHECK(c.GetMany({"m-1"}).empty());
  c.PutMany({{"m-1", 1}});              // not an error
  CHECK(c.GetMany({"m-1"}).size() == 1);  // served by the in-process level
  CHECK(m.Render().find("herald_cache_redis_errors_total{cache=\"movie\"}") != std::string::npos);
}

TEST_CASE("fan-out checkpoints round-trip and expire eventually", "[redis][plan]") {
  herald::redis::Client r(Server().Url());
  herald::consumers::plan::Checkpoints cps(r);
  CHECK_FALSE(cps.Load("ev-1").has_value());
  cps.Save("ev-1", {"segment", "idx-5001", 5000});
  auto s = cps.Load("ev-1");
  REQUIRE(s);
  CHECK(s->phase == "segment");
  CHECK(s->cursor == "idx-5001");
  CHECK(s->emitted == 5000);
  auto ttl = r.Command({"TTL", "herald:fanout:ev-1"}).integer;
  CHECK(ttl > 13 * 24 * 3600);
}

TEST_CASE("a delivery claim is exclusive, survives as done, and a crashed claim expires", "[redis][claims]") {
  using herald::consumers::deliver::ClaimState;
  using herald::consumers::deliver::Claims;
  herald::redis::Client r1(Server().Url()), r2(Server().Url());
  Claims one(r1, "one", 1s, std::chrono::hours(1));
  Claims two(r2, "two", 1s, std::chrono::hours(1));
  CHECK(one.Claim("n-1", "email") == ClaimState::kClaimed);
  CHECK(one.Claim("n-1", "email") == ClaimState::kClaimed);  // idempotent for its owner
  CHECK(two.Claim("n-1", "email") == ClaimState::kHeldByOther);
  one.MarkDone("n-1", "email", "sent");
  std::string outcome;
  CHECK(two.Claim("n-1", "email", &outcome) == ClaimState::kDone);
  CHECK(outcome == "sent");

  // A released claim can be taken by another sender at once.
  CHECK(one.Claim("n-2", "email") == ClaimState::kClaimed);
  two.Release("n-2", "email");  // not the owner: no effect
  CHECK(two.Claim("n-2", "email") == ClaimState::kHeldByOther);
  one.Release("n-2", "email");
  CHECK(two.Claim("n-2", "email") == ClaimState::kClaimed);

  // A sender that crashed mid-send leaves a pending claim that expires with its lease.
  CHECK(one.Claim("n-3", "sms") == ClaimState::kClaimed);
  REQUIRE(herald::test::WaitUntil([&] { return two.Claim("n-3", "sms") == ClaimState::kClaimed; }, 5s, 50ms));
}

TEST_CASE("a Redis client reconnects after the server restarts its connections", "[redis]") {
  herald::redis::Client c(Server().Url());
  CHECK(c.Command({"SET", "k", "v"}).str == "OK");
  herald::redis::Client admin(Server().Url());
  admin.Command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  CHECK(c.Command({"GET", "k"}).str == "v");  // reconnected transparently
  CHECK_THROWS_AS(herald::redis::ParseUrl("http://x"), herald::ConfigError);
  auto a = herald::redis::ParseUrl("redis://:s3cret@10.0.0.5:6380/3");
  CHECK(a.host == "10.0.0.5");
  CHECK(a.port == 6380);
  CHECK(a.db == 3);
  CHECK(a.password == "s3cret");
}

TEST_CASE("the provider rate limit is one bucket for all replicas and adapts to 429", "[redis][ratelimit]") {
  herald::redis::Client a(Server().Url()), b(Server().Url());
  herald::redis::RateLimiter one(a, {"sms-test", 100, 10, 0.05, 0.1});
  herald::redis::RateLimiter two(b, {"sms-test", 100, 10, 0.05, 0.1});
  // The burst is shared: two replicas together get 10 tokens at once, not 20.
  auto g1 = one.Acquire(8);
  auto g2 = two.Acquire(8);
  CHECK(g1.granted == 8);
  CHECK(g2.granted <= 3);
  CHECK(g2.wait.count() > 0);
  CHECK(g2.wait <= std::chrono::milliseconds(10));  // 100/s: the next token is ≤ 10 ms away
  // Over ~300 ms the pair gets about 100/s * 0.3 s more tokens, not more.
  std::int64_t got = 0;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 300ms) {
    got += one.Acquire(5).granted + two.Acquire(5).granted;
    std::this_thread::sleep_for(5ms);
  }
  CHECK(got <= 10 + 100 * 0.4);
  CHECK(got >= 10);

  // A 429 with Retry-After blocks everyone and halves the rate; successes bring it back.
  two.Throttled(std::chrono::seconds(1));
  auto blocked = one.Acquire(1);
  CHECK(blocked.granted == 0);
  CHECK(blocked.wait > 800ms);
  CHECK(blocked.factor == Approx(0.5));
  REQUIRE(herald::test::WaitUntil([&] { return one.Acquire(1).granted == 1; }, 3s, 50ms));
  for (int i = 0; i < 5; ++i) one.Succeeded();
  CHECK(one.Acquire(1).factor == Approx(1.0));
}
