// Redis-backed pieces against a real redis-server: the enrichment cache's shared level,
// fan-out checkpoints and delivery claims.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "deliver/claims.hpp"
#include "herald/cache/two_level.hpp"
#include "herald/common/errors.hpp"
#include "herald/config/config.hpp"
#include "herald/dev/stack.hpp"
#include "herald/redis/rate_limiter.hpp"
#include "herald/timing/buckets.hpp"
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

// A throwaway redis-server that requires authentication: requirepass for the default user
// and two Redis 6 ACL users, one with a password that must be percent-encoded in a URL.
constexpr const char* kDefaultPassword = "def-pw";
constexpr const char* kOddPassword = "p@ss:w/rd%";  // carol's, raw
constexpr const char* kOddPasswordEncoded = "p%40ss%3Aw%2Frd%25";

struct AclRedisServer {
  int port = herald::dev::FreePort();
  herald::test::TempDir dir;
  AclRedisServer() {
    std::string cmd = "redis-server --port " + std::to_string(port) + " --bind 127.0.0.1 --save '' --appendonly no" +
                      " --daemonize yes --dir " + dir.Path() + " --pidfile " + dir.Path() + "/redis.pid" +
                      " --requirepass " + kDefaultPassword + " --user alice on '>s3cret' '~*' '&*' '+@all'" +
                      " --user carol on '>" + kOddPassword + "' '~*' '&*' '+@all' >/dev/null";
    REQUIRE(herald::test::Run(cmd) == 0);
    REQUIRE(herald::test::WaitUntil([&] { return herald::test::Run(Cli() + " ping 2>/dev/null | grep -q PONG") == 0; }, 10s));
  }
  ~AclRedisServer() {
    herald::test::Run(Cli() + " shutdown nosave >/dev/null 2>&1 || kill $(cat " + dir.Path() + "/redis.pid) 2>/dev/null");
  }
  std::string Cli() const {
    return "redis-cli -p " + std::to_string(port) + " --user default --pass " + kDefaultPassword + " --no-auth-warning";
  }
  std::string Url(const std::string& userinfo) const {
    return "redis://" + userinfo + "@127.0.0.1:" + std::to_string(port) + "/0";
  }
};

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

TEST_CASE("documents put as local only stay in the process, the rest are shared", "[redis][cache]") {
  herald::redis::Client a(Server().Url()), b(Server().Url());
  herald::metrics::Registry m1, m2;
  herald::cache::TwoLevelCache first({"user", 100, 60s, 60s}, &a, m1);
  herald::cache::TwoLevelCache second({"user", 100, 60s, 60s}, &b, m2);
  std::set<std::string> local{"u-bulk-1", "u-bulk-2"};
  first.PutMany({{"u-bulk-1", 1}, {"u-bulk-2", 2}, {"u-shared", 3}}, &local);
  CHECK(first.GetMany({"u-bulk-1", "u-bulk-2", "u-shared"}).size() == 3);  // all in its LRU
  CHECK(a.Command({"EXISTS", "herald:cache:user:u-bulk-1", "herald:cache:user:u-bulk-2"}).integer == 0);
  auto got = second.GetMany({"u-bulk-1", "u-bulk-2", "u-shared"});
  CHECK(got.size() == 1);
  CHECK(got.count("u-shared") == 1);
  first.PutMany({{"u-bulk-3", 4}}, &local);  // not listed: shared
  CHECK(second.GetMany({"u-bulk-3"}).size() == 1);
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

TEST_CASE("claims taken, marked and released in batches follow the same rules", "[redis][claims]") {
  using herald::consumers::deliver::ClaimState;
  using herald::consumers::deliver::Claims;
  herald::redis::Client r1(Server().Url()), r2(Server().Url());
  Claims one(r1, "one", 5s, std::chrono::hours(1));
  Claims two(r2, "two", 5s, std::chrono::hours(1));
  std::vector<Claims::Id> ids;
  for (int i = 0; i < 300; ++i) ids.push_back({"m-" + std::to_string(i), "push"});
  // Someone else holds m-1; m-2 was sent; m-3 was rejected; m-4 is this owner's already.
  REQUIRE(two.Claim("m-1", "push") == ClaimState::kClaimed);
  REQUIRE(two.Claim("m-2", "push") == ClaimState::kClaimed);
  two.MarkDone("m-2", "push", "sent");
  REQUIRE(two.Claim("m-3", "push") == ClaimState::kClaimed);
  two.MarkDone("m-3", "push", "rejected");
  REQUIRE(one.Claim("m-4", "push") == ClaimState::kClaimed);

  auto got = one.ClaimMany(ids);
  REQUIRE(got.size() == ids.size());
  CHECK(got[0].state == ClaimState::kClaimed);
  CHECK(got[1].state == ClaimState::kHeldByOther);
  CHECK(got[2].state == ClaimState::kDone);
  CHECK(got[2].outcome == "sent");
  CHECK(got[3].state == ClaimState::kDone);
  CHECK(got[3].outcome == "rejected");
  CHECK(got[4].state == ClaimState::kClaimed);
  std::size_t claimed = 0;
  for (const auto& g : got) claimed += g.state == ClaimState::kClaimed;
  CHECK(claimed == 297);
  // The batch is exclusive: the other owner gets none of them but its own m-1.
  auto theirs = two.ClaimMany(ids);
  for (std::size_t i = 0; i < theirs.size(); ++i) CHECK((theirs[i].state == ClaimState::kClaimed) == (i == 1));

  // Marked in a batch: done for everyone, with each outcome.
  one.MarkDoneMany({ids[0], ids[5]}, {"sent", "rejected"});
  std::string outcome;
  CHECK(two.Claim("m-0", "push", &outcome) == ClaimState::kDone);
  CHECK(outcome == "sent");
  CHECK(two.Claim("m-5", "push", &outcome) == ClaimState::kDone);
  CHECK(outcome == "rejected");
  // Released in a batch: only this owner's claims are freed.
  one.ReleaseMany({ids[6], ids[7], ids[1]});
  CHECK(two.Claim("m-6", "push") == ClaimState::kClaimed);
  CHECK(two.Claim("m-7", "push") == ClaimState::kClaimed);
  CHECK(one.Claim("m-1", "push") == ClaimState::kHeldByOther);  // still the other owner's
  CHECK(one.Claim("m-8", "push") == ClaimState::kClaimed);      // still this owner's
}

TEST_CASE("claims are renewed only while their owner holds them, and a retried claim starts its lease again",
          "[redis][claims]") {
  using herald::consumers::deliver::ClaimState;
  using herald::consumers::deliver::Claims;
  herald::redis::Client r1(Server().Url()), r2(Server().Url()), admin(Server().Url());
  Claims one(r1, "one", 60s, std::chrono::hours(1));
  Claims two(r2, "two", 60s, std::chrono::hours(1));
  auto pttl = [&](const std::string& id) { return admin.Command({"PTTL", Claims::Key(id, "email")}).integer; };
  auto age = [&](const std::string& id) {  // as if most of the lease had passed
    REQUIRE(admin.Command({"PEXPIRE", Claims::Key(id, "email"), "1500"}).integer == 1);
  };
  std::vector<Claims::Id> ids{{"r-held", "email"}, {"r-taken", "email"}, {"r-done", "email"}, {"r-free", "email"}};
  for (const auto& [id, channel] : ids) REQUIRE(one.Claim(id, channel) == ClaimState::kClaimed);
  age("r-held");
  // r-taken: its lease ran out and the other owner took it; r-done: another owner finished it;
  // r-free: it expired and nobody has it.
  admin.Command({"DEL", Claims::Key("r-taken", "email")});
  REQUIRE(two.Claim("r-taken", "email") == ClaimState::kClaimed);
  admin.Command({"SET", Claims::Key("r-done", "email"), "done:sent"});
  admin.Command({"DEL", Claims::Key("r-free", "email")});

  auto held = one.RenewMany(ids);
  REQUIRE(held.size() == 4);
  CHECK(held[0]);
  CHECK_FALSE(held[1]);
  CHECK_FALSE(held[2]);
  CHECK_FALSE(held[3]);
  CHECK(pttl("r-held") > 50'000);  // the full lease again
  // Nothing that was not this owner's was touched: r-taken stays the other owner's, r-done
  // done, r-free free.
  CHECK(admin.Command({"GET", Claims::Key("r-taken", "email")}).str == "pending:two");
  CHECK(admin.Command({"GET", Claims::Key("r-done", "email")}).str == "done:sent");
  CHECK(admin.Command({"EXISTS", Claims::Key("r-free", "email")}).integer == 0);
  CHECK(one.Claim("r-taken", "email") == ClaimState::kHeldByOther);

  // Claimed again by its owner (a retried batch): the claim's lease starts again, one by one
  // and in a batch.
  age("r-held");
  CHECK(one.Claim("r-held", "email") == ClaimState::kClaimed);
  CHECK(pttl("r-held") > 50'000);
  age("r-held");
  auto again = one.ClaimMany({{"r-held", "email"}});
  CHECK(again.at(0).state == ClaimState::kClaimed);
  CHECK(pttl("r-held") > 50'000);
  CHECK(one.RenewMany({}).empty());
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

// ---- Timezone buckets: parking and crash-safe release (herald/timing/buckets.hpp) ----

namespace {

using herald::timing::Parked;

constexpr std::int64_t kT0 = 1'800'000'000 - 1'800'000'000 % 60;  // a minute boundary

std::chrono::sys_seconds At(std::int64_t s) {
  return std::chrono::sys_seconds{std::chrono::seconds{s}};
}

Parked Item(const std::string& id, const std::string& tz, std::int64_t due) {
  return {id, tz, At(due), "{\"notification_id\":\"" + id + "\"}", "user-" + id, "deliver.email.normal"};
}

// Every key under `prefix:` (SCAN, not KEYS, like an operator would on a live server).
std::vector<std::string> KeysUnder(herald::redis::Client& r, const std::string& prefix,
                                   const std::string& more = "") {
  std::vector<std::string> out;
  std::string cursor = "0";
  do {
    auto reply = r.Command({"SCAN", cursor, "MATCH", prefix + ":" + more + "*", "COUNT", "1000"});
    REQUIRE(reply.elements.size() == 2);
    cursor = reply.elements[0].str;
    for (const auto& k : reply.elements[1].elements) out.push_back(k.str);
  } while (cursor != "0");
  return out;
}

// Counts produce() calls per notification id; thread-safe.
struct Deliveries {
  std::mutex mu;
  std::map<std::string, int> per_id;
  std::size_t calls = 0;
  void Add(const std::vector<Parked>& chunk) {
    std::lock_guard lock(mu);
    ++calls;
    for (const auto& p : chunk) ++per_id[p.notification_id];
  }
  std::size_t Total() {
    std::lock_guard lock(mu);
    std::size_t n = 0;
    for (const auto& [id, c] : per_id) n += static_cast<std::size_t>(c);
    return n;
  }
};

}  // namespace

TEST_CASE("a parked notification is stored once, under documented keys, and round-trips",
          "[redis][buckets]") {
  using herald::timing::Buckets;
  herald::redis::Client r(Server().Url());
  const std::string prefix = "tzb-once";
  Buckets buckets(r, {.prefix = prefix, .shards = 4});
  std::string payload("{\"a\":\"x:y\"}\0\x01binary", 18);
  Parked p{"n-1", "America/Argentina/Buenos_Aires", At(kT0 + 1), payload, "user:1", "deliver.email.normal"};
  buckets.Park({p});
  buckets.Park({p});
  buckets.Park({p, p});

  // Due rounded up to the minute; the zone name is used as is.
  CHECK(Buckets::DueMinute(At(kT0)) == At(kT0));
  CHECK(Buckets::DueMinute(At(kT0 + 1)) == At(kT0 + 60));
  auto shard = std::to_string(Buckets::ShardOf("n-1", 4));
  auto member = std::to_string(kT0 + 60) + ":America/Argentina/Buenos_Aires:" + shard;
  CHECK(buckets.BucketKey(p) == prefix + ":b:" + member);
  CHECK(r.Command({"HLEN", prefix + ":b:" + member}).integer == 1);
  CHECK(r.Command({"ZCARD", prefix + ":due"}).integer == 1);
  CHECK(r.Command({"ZSCORE", prefix + ":due", member}).str == std::to_string(kT0 + 60));
  CHECK(KeysUnder(r, prefix).size() == 2);

  // Invalid items are refused before anything of the batch is written.
  Parked other = Item("n-2", "UTC", kT0);
  Parked bad = Item("n-3", "Mars/Olympus Mons", kT0);
  CHECK_THROWS_AS(buckets.Park({other, bad}), herald::InvalidInput);
  bad.tz = "";
  CHECK_THROWS_AS(buckets.Park({other, bad}), herald::InvalidInput);
  bad = Item("", "UTC", kT0);
  CHECK_THROWS_AS(buckets.Park({other, bad}), herald::InvalidInput);
  CHECK(r.Command({"ZCARD", prefix + ":due"}).integer == 1);
  CHECK_THROWS_AS(Buckets(r, {.prefix = prefix, .shards = 0}), herald::ConfigError);

  // Released with its topic, key, payload, zone and (rounded) due.
  herald::timing::Releaser releaser(r, {.owner = "once", .prefix = prefix});
  std::vector<Parked> got;
  CHECK(releaser.ReleaseDue(At(kT0 + 59), [&](const std::vector<Parked>& c) {
    got.insert(got.end(), c.begin(), c.end());
  }) == 0);
  CHECK(releaser.ReleaseDue(At(kT0 + 60), [&](const std::vector<Parked>& c) {
    got.insert(got.end(), c.begin(), c.end());
  }) == 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].notification_id == "n-1");
  CHECK(got[0].tz == "America/Argentina/Buenos_Aires");
  CHECK(got[0].due == At(kT0 + 60));
  CHECK(got[0].payload == payload);
  CHECK(got[0].key == "user:1");
  CHECK(got[0].topic == "deliver.email.normal");
  CHECK(KeysUnder(r, prefix).empty());
}

TEST_CASE("a big (minute, zone) is sharded into bounded keys", "[redis][buckets]") {
  herald::redis::Client r(Server().Url());
  const std::string prefix = "tzb-shards";
  herald::timing::Buckets buckets(r, {.prefix = prefix, .shards = 16});
  std::vector<Parked> items;
  for (int i = 0; i < 20'000; ++i) items.push_back(Item("n-" + std::to_string(i), "Europe/Berlin", kT0 + 30));
  buckets.Park(items);

  auto keys = KeysUnder(r, prefix, "b:");
  CHECK(keys.size() == 16);
  long long total = 0;
  for (const auto& k : keys) {
    CHECK(k.rfind(prefix + ":b:" + std::to_string(kT0 + 60) + ":Europe/Berlin:", 0) == 0);
    auto n = r.Command({"HLEN", k}).integer;
    CHECK(n <= 2 * 20'000 / 16);
    total += n;
  }
  CHECK(total == 20'000);
  CHECK(r.Command({"ZCARD", prefix + ":due"}).integer == 16);
  auto backlog = buckets.Backlog(At(kT0), At(kT0 + 3600), 1000);
  using Counts = std::map<std::int64_t, std::int64_t>;
  CHECK(backlog == Counts{{kT0 + 60, 20'000}});
}

TEST_CASE("a release takes only due buckets and leaves no keys behind", "[redis][buckets]") {
  herald::redis::Client r(Server().Url());
  const std::string prefix = "tzb-due";
  herald::timing::Buckets buckets(r, {.prefix = prefix});
  std::vector<Parked> items;
  for (int i = 0; i < 300; ++i)
    items.push_back(Item("now-" + std::to_string(i), i % 2 ? "Asia/Kolkata" : "UTC", kT0));
  for (int i = 0; i < 200; ++i)
    items.push_back(Item("later-" + std::to_string(i), "America/New_York", kT0 + 3600));
  buckets.Park(items);

  herald::timing::Releaser releaser(r, {.owner = "due", .chunk = 50, .prefix = prefix});
  Deliveries d;
  auto produce = [&](const std::vector<Parked>& c) {
    CHECK(c.size() <= 50);
    d.Add(c);
  };
  CHECK(releaser.ReleaseDue(At(kT0 - 1), produce) == 0);
  CHECK(releaser.ReleaseDue(At(kT0), produce) == 300);
  CHECK(d.per_id.size() == 300);
  for (const auto& [id, n] : d.per_id) CHECK(id.rfind("now-", 0) == 0);
  using Counts = std::map<std::int64_t, std::int64_t>;
  CHECK(releaser.Backlog(At(kT0), At(kT0 + 7200), 1000) == Counts{{kT0 + 3600, 200}});
  CHECK(releaser.ReleaseDue(At(kT0 + 3599), produce) == 0);
  CHECK(releaser.ReleaseDue(At(kT0 + 3600), produce) == 200);
  CHECK(d.Total() == 500);
  CHECK(d.per_id.size() == 500);
  CHECK(KeysUnder(r, prefix).empty());
}

TEST_CASE("two releasers deliver 50,000 parked notifications exactly once, with parks racing them",
          "[redis][buckets]") {
  herald::redis::Client r(Server().Url());
  const std::string prefix = "tzb-race";
  herald::timing::Buckets buckets(r, {.prefix = prefix});
  const std::vector<std::string> zones{"UTC", "Europe/Berlin", "Asia/Kathmandu",
                                       "America/Argentina/Buenos_Aires"};
  // Half in one (minute, zone) (16 shards of ~1,560: many chunks each), half spread over
  // 50 minutes x 4 zones (up to 3,200 small buckets).
  std::vector<Parked> items;
  for (int i = 0; i < 50'000; ++i) {
    auto id = "n-" + std::to_string(i);
    int j = i / 2;
    items.push_back(i % 2 ? Item(id, "Europe/Moscow", kT0)
                          : Item(id, zones[j % 4], kT0 + 60 * ((j / 4) % 50)));
  }
  auto t0 = std::chrono::steady_clock::now();
  buckets.Park(items);
  auto park_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(buckets.Backlog(At(kT0), At(kT0 + 3600), 100'000).size() == 50);

  const auto now = At(kT0 + 3600);
  Deliveries d;
  std::atomic<bool> parking_done{false};
  std::atomic<std::size_t> released{0};
  std::map<std::string, std::size_t> by_owner;  // each thread writes its own entry
  by_owner["one"] = by_owner["two"] = 0;
  auto run = [&](const std::string& owner) {
    herald::redis::Client own(Server().Url());
    herald::timing::Releaser releaser(
        own, {.owner = owner, .chunk = 100, .max_buckets_per_pass = 50, .prefix = prefix});
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      bool was_done = parking_done.load();
      auto n = releaser.ReleaseDue(now, [&](const std::vector<Parked>& c) { d.Add(c); });
      released += n;
      by_owner.at(owner) += n;
      if (n == 0) {
        if (was_done && own.Command({"ZCARD", prefix + ":due"}).integer == 0) return;
        std::this_thread::sleep_for(1ms);  // the other releaser holds what is left
      }
    }
  };
  // A third thread parks 5,000 more into the due buckets while they are being released.
  auto park_late = [&] {
    herald::redis::Client own(Server().Url());
    herald::timing::Buckets late(own, {.prefix = prefix});
    for (int batch = 0; batch < 50; ++batch) {
      std::vector<Parked> more;
      for (int i = 0; i < 100; ++i) {
        int k = batch * 100 + i;
        more.push_back(
            Item("late-" + std::to_string(k), k % 2 ? "Europe/Moscow" : zones[k % 4], kT0 + 60 * (k % 50)));
      }
      late.Park(more);
    }
    parking_done = true;
  };
  t0 = std::chrono::steady_clock::now();
  std::thread a(run, "one"), b(run, "two"), c(park_late);
  a.join();
  b.join();
  c.join();
  auto release_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();

  CHECK(released.load() == 55'000);
  CHECK(by_owner["one"] > 0);  // both did real work, competing for the same buckets
  CHECK(by_owner["two"] > 0);
  CHECK(d.per_id.size() == 55'000);
  std::size_t twice = 0;
  for (const auto& [id, n] : d.per_id) twice += n != 1;
  CHECK(twice == 0);
  CHECK(KeysUnder(r, prefix).empty());
  std::printf(
      "[tzb figures] park 50,000: %lld ms; release 55,000 (2 releasers, 5,000 parked meanwhile): %lld ms, "
      "%zu produce calls, %zu/%zu per releaser\n",
      static_cast<long long>(park_ms), static_cast<long long>(release_ms), d.calls, by_owner["one"],
      by_owner["two"]);
}

TEST_CASE(
    "a crashed release is taken over only after its lease expires, redelivering at most the crashed chunk",
    "[redis][buckets]") {
  herald::redis::Client r1(Server().Url()), r2(Server().Url());
  const std::string prefix = "tzb-crash";
  herald::timing::Buckets buckets(r1, {.prefix = prefix, .shards = 1});
  std::vector<Parked> items;
  for (int i = 0; i < 1000; ++i) items.push_back(Item("n-" + std::to_string(i), "Australia/Adelaide", kT0));
  buckets.Park(items);
  const auto bucket = prefix + ":b:" + std::to_string(kT0) + ":Australia/Adelaide:0";

  herald::timing::Releaser crashing(r1,
                                    {.owner = "crashing", .lease = 300ms, .chunk = 100, .prefix = prefix});
  std::vector<std::string> first_chunk, crashed_chunk;
  int calls = 0;
  auto crash_at = std::chrono::steady_clock::now();
  auto crash = [&](const std::vector<Parked>& c) {
    auto& into = ++calls == 1 ? first_chunk : crashed_chunk;
    for (const auto& p : c) into.push_back(p.notification_id);
    if (calls == 2) {
      crash_at = std::chrono::steady_clock::now();
      throw herald::TransientError("broker gone");  // sent, never acknowledged
    }
  };
  CHECK_THROWS_WITH(crashing.ReleaseDue(At(kT0), crash), "broker gone");
  REQUIRE(calls == 2);
  CHECK(r2.Command({"HLEN", bucket}).integer == 1000 - static_cast<long long>(first_chunk.size()));

  herald::timing::Releaser taker(r2, {.owner = "taker", .lease = 300ms, .chunk = 100, .prefix = prefix});
  std::map<std::string, int> second;
  auto produce = [&](const std::vector<Parked>& c) {
    for (const auto& p : c) ++second[p.notification_id];
  };
  CHECK(taker.ReleaseDue(At(kT0), produce) == 0);  // still leased by the crashed owner
  std::size_t taken = 0;
  auto taken_at = crash_at;  // when the attempt that succeeded started
  REQUIRE(herald::test::WaitUntil(
      [&] {
        taken_at = std::chrono::steady_clock::now();
        return (taken += taker.ReleaseDue(At(kT0), produce)) > 0;
      },
      5s, 20ms));
  CHECK(taken_at - crash_at >= 250ms);  // the lease is 300 ms, renewed just before the crash
  CHECK(taken == 1000 - first_chunk.size());

  // Everything delivered; only the crashed chunk twice; the acknowledged chunk once.
  std::map<std::string, int> total = second;
  for (const auto& id : first_chunk) ++total[id];
  for (const auto& id : crashed_chunk) ++total[id];
  CHECK(total.size() == 1000);
  std::set<std::string> twice;
  for (const auto& [id, n] : total) {
    CHECK(n <= 2);
    if (n == 2) twice.insert(id);
  }
  CHECK(twice == std::set<std::string>(crashed_chunk.begin(), crashed_chunk.end()));
  CHECK(twice.size() <= 100);
  for (const auto& id : first_chunk) CHECK(second.count(id) == 0);
  CHECK(KeysUnder(r1, prefix).empty());
}

TEST_CASE("a releaser that lost its lease stops working on the bucket", "[redis][buckets]") {
  herald::redis::Client r(Server().Url()), thief(Server().Url());
  const std::string prefix = "tzb-lost";
  herald::timing::Buckets buckets(r, {.prefix = prefix, .shards = 1});
  std::vector<Parked> items;
  for (int i = 0; i < 500; ++i) items.push_back(Item("n-" + std::to_string(i), "UTC", kT0));
  buckets.Park(items);
  const auto member = std::to_string(kT0) + ":UTC:0";

  herald::timing::Releaser releaser(r, {.owner = "slow", .chunk = 100, .prefix = prefix});
  int calls = 0;
  auto n = releaser.ReleaseDue(At(kT0), [&](const std::vector<Parked>&) {
    if (++calls == 1) thief.Command({"SET", prefix + ":lease:" + member, "thief", "PX", "30000"});
  });
  CHECK(calls == 1);
  CHECK(n == 100);
  CHECK(r.Command({"HLEN", prefix + ":b:" + member}).integer == 400);
  CHECK(r.Command({"GET", prefix + ":lease:" + member}).str == "thief");
  CHECK(r.Command({"ZCARD", prefix + ":due"}).integer == 1);

  thief.Command({"DEL", prefix + ":lease:" + member});
  CHECK(releaser.ReleaseDue(At(kT0), [](const std::vector<Parked>&) {}) == 400);
  CHECK(KeysUnder(r, prefix).empty());
}

TEST_CASE("a notification parked into a bucket while it is released is not lost", "[redis][buckets]") {
  herald::redis::Client r(Server().Url()), other(Server().Url());
  const std::string prefix = "tzb-late";
  herald::timing::Buckets buckets(r, {.prefix = prefix, .shards = 1});
  herald::timing::Buckets late(other, {.prefix = prefix, .shards = 1});
  std::vector<Parked> items;
  for (int i = 0; i < 50; ++i) items.push_back(Item("n-" + std::to_string(i), "Asia/Tokyo", kT0));
  buckets.Park(items);

  // The bucket fits one scan: its only chunk is produced after the scan finished, so the
  // late notification arrives just before the releaser would remove the emptied bucket.
  herald::timing::Releaser releaser(r, {.owner = "late", .chunk = 100, .prefix = prefix});
  Deliveries d;
  auto n = releaser.ReleaseDue(At(kT0 + 60), [&](const std::vector<Parked>& c) {
    if (d.calls == 0) late.Park({Item("late-1", "Asia/Tokyo", kT0)});
    d.Add(c);
  });
  CHECK(n == 51);
  CHECK(d.calls == 2);
  CHECK(d.per_id.count("late-1") == 1);
  CHECK(KeysUnder(r, prefix).empty());

  // Parked after the bucket was removed: a new bucket with its index entry, released next pass.
  late.Park({Item("late-2", "Asia/Tokyo", kT0)});
  CHECK(r.Command({"ZCARD", prefix + ":due"}).integer == 1);
  CHECK(releaser.ReleaseDue(At(kT0 + 60), [&](const std::vector<Parked>& c) { d.Add(c); }) == 1);
  CHECK(d.per_id.count("late-2") == 1);
  CHECK(KeysUnder(r, prefix).empty());
}

TEST_CASE("the backlog counts parked notifications per due minute", "[redis][buckets]") {
  herald::redis::Client r(Server().Url());
  const std::string prefix = "tzb-backlog";
  herald::timing::Buckets buckets(r, {.prefix = prefix, .shards = 4});
  std::vector<Parked> items;
  for (int i = 0; i < 10; ++i) items.push_back(Item("a-" + std::to_string(i), "UTC", kT0));
  for (int i = 0; i < 5; ++i) items.push_back(Item("b-" + std::to_string(i), "Europe/Berlin", kT0 - 30));
  for (int i = 0; i < 7; ++i) items.push_back(Item("c-" + std::to_string(i), "Europe/Berlin", kT0 + 60));
  items.push_back(Item("d-0", "UTC", kT0 + 61));  // rounds up to kT0 + 120
  for (int i = 0; i < 3; ++i) items.push_back(Item("e-" + std::to_string(i), "Asia/Kolkata", kT0 + 600));
  items.push_back(Item("f-0", "UTC", kT0 + 7200));
  buckets.Park(items);

  using Counts = std::map<std::int64_t, std::int64_t>;
  CHECK(buckets.Backlog(At(kT0), At(kT0 + 600), 1000) ==
        Counts{{kT0, 15}, {kT0 + 60, 7}, {kT0 + 120, 1}, {kT0 + 600, 3}});
  CHECK(buckets.Backlog(At(kT0 + 60), At(kT0 + 120), 1000) == Counts{{kT0 + 60, 7}, {kT0 + 120, 1}});
  CHECK(buckets.Backlog(At(kT0 + 1), At(kT0), 1000).empty());
  // Bounded: only the earliest bucket is read.
  auto one = buckets.Backlog(At(kT0), At(kT0 + 7200), 1);
  REQUIRE(one.size() == 1);
  CHECK(one.begin()->first == kT0);
  CHECK(one.begin()->second <= 15);

  herald::timing::Releaser releaser(r, {.owner = "backlog", .prefix = prefix});
  CHECK(releaser.ReleaseDue(At(kT0 + 60), [](const std::vector<Parked>&) {}) == 22);
  CHECK(releaser.Backlog(At(0), At(kT0 + 86400), 1000) ==
        Counts{{kT0 + 120, 1}, {kT0 + 600, 3}, {kT0 + 7200, 1}});
}

TEST_CASE("a Redis client authenticates as an ACL user, with a percent-encoded password", "[redis][auth]") {
  AclRedisServer server;
  auto whoami = [](herald::redis::Client& c) { return c.Command({"ACL", "WHOAMI"}).str; };

  herald::redis::Client alice(server.Url("alice:s3cret"));  // AUTH alice s3cret
  CHECK(whoami(alice) == "alice");
  CHECK(alice.Command({"SET", "k", "v"}).str == "OK");
  herald::redis::Client by_password(server.Url(std::string(":") + kDefaultPassword));  // AUTH def-pw
  CHECK(whoami(by_password) == "default");
  herald::redis::Client carol(server.Url(std::string("carol:") + kOddPasswordEncoded));
  CHECK(whoami(carol) == "carol");
  CHECK(carol.Command({"GET", "k"}).str == "v");

  // A wrong password: a ConfigError on the first command that names the user and the
  // settings to check, never the password; retrying would not help.
  herald::redis::Client wrong(server.Url("alice:not-the-password"));
  try {
    wrong.Command({"PING"});
    FAIL("AUTH with a wrong password succeeded");
  } catch (const herald::ConfigError& e) {
    std::string message = e.what();
    INFO(message);
    CHECK(message.find("WRONGPASS") != std::string::npos);
    CHECK(message.find("alice") != std::string::npos);
    CHECK(message.find("HERALD_REDIS_URL") != std::string::npos);
    CHECK(message.find("not-the-password") == std::string::npos);
  }
  // Decoding is exact: "p%2540ss" is the password "p%40ss", which is not carol's.
  herald::redis::Client unencoded(server.Url("carol:p%2540ss"));
  CHECK_THROWS_AS(unencoded.Command({"PING"}), herald::ConfigError);
  // No credentials at all: the server's NOAUTH error comes back as the reply.
  herald::redis::Client anonymous("redis://127.0.0.1:" + std::to_string(server.port) + "/0");
  auto r = anonymous.Command({"GET", "k"});
  CHECK(r.type == herald::redis::Reply::Type::kError);
  CHECK(r.str.find("NOAUTH") != std::string::npos);
}

TEST_CASE("HERALD_REDIS_PASSWORD reaches every client through the configured URL", "[redis][auth][config]") {
  AclRedisServer server;
  // The ConfigMap's URL names the user (with a stale password), the Secret holds the password.
  auto config = herald::config::FromEnvironment(
      {{"HERALD_REDIS_URL", server.Url("carol:stale")}, {"HERALD_REDIS_PASSWORD", kOddPassword}});
  herald::redis::Client carol(config.redis_url);
  CHECK(carol.Command({"ACL", "WHOAMI"}).str == "carol");
  // Without a user in the URL it is the default user's password.
  auto plain = herald::config::FromEnvironment(
      {{"HERALD_REDIS_URL", "redis://127.0.0.1:" + std::to_string(server.port) + "/0"}, {"HERALD_REDIS_PASSWORD", kDefaultPassword}});
  herald::redis::Client by_password(plain.redis_url);
  CHECK(by_password.Command({"ACL", "WHOAMI"}).str == "default");
}
