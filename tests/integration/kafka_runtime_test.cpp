// The Kafka runtime against the embedded broker (librdkafka's mock cluster over TCP):
// idempotent producer with delivery reports and headers, the at-least-once consumer loop,
// pause/resume, and interoperability with kcat through the stable bootstrap port.

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "herald/common/errors.hpp"
#include "herald/kafka/consumer.hpp"
#include "herald/dev/stack.hpp"
#include "herald/kafka/embedded_broker.hpp"
#include "herald/kafka/lag.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/metrics/registry.hpp"
#include "herald/stage/stage.hpp"
#include "support/support.hpp"

using namespace herald::kafka;
using herald::test::ReadTopic;
using herald::test::WaitUntil;
using namespace std::chrono_literals;

namespace {

EmbeddedBroker& Broker() {
  static EmbeddedBroker broker({"127.0.0.1", 0, 1, 0});
  return broker;
}

Producer::Options ProducerOpts() {
  Producer::Options o;
  o.brokers = Broker().Bootstrap();
  o.settings = {{"log_level", "4"}};
  return o;
}

ConsumerLoop::Options ConsumerOpts(const std::string& group, const std::string& topic) {
  ConsumerLoop::Options o;
  o.brokers = Broker().Bootstrap();
  o.group_id = group;
  o.topics = {topic};
  o.batch_size = 50;
  o.poll_timeout = 50ms;
  o.ack_timeout = 10s;
  o.max_backoff = 200ms;
  return o;
}

void ProduceN(const std::string& topic, int n, const std::string& prefix = "m") {
  Producer p(ProducerOpts());
  AckGroup acks;
  for (int i = 0; i < n; ++i) p.Produce({topic, "k" + std::to_string(i % 7), prefix + std::to_string(i), {}}, acks.Track());
  REQUIRE(acks.Wait(20s).empty());
}

// Runs a consumer loop on a thread until `done` says so, then stops it.
void RunLoop(ConsumerLoop& loop, const ConsumerLoop::BatchHandler& handler, const std::function<bool()>& done) {
  std::thread t([&] { loop.Run(handler); });
  bool finished = WaitUntil(done, 45s);
  loop.Stop();
  t.join();
  REQUIRE(finished);
}

}  // namespace

TEST_CASE("the producer reports each delivery with partition and offset", "[kafka]") {
  Broker().CreateTopic("t.reports", 3, 1);
  Producer p(ProducerOpts());
  std::mutex mu;
  std::vector<DeliveryReport> reports;
  AckGroup acks;
  for (int i = 0; i < 30; ++i) {
    auto track = acks.Track();
    p.Produce({"t.reports", "key-" + std::to_string(i), "v" + std::to_string(i), {{"h1", "x"}}},
              [&, track](const DeliveryReport& r) {
                {
                  std::lock_guard lock(mu);
                  reports.push_back(r);
                }
                track(r);
              });
  }
  CHECK(acks.Wait(10s).empty());
  REQUIRE(reports.size() == 30);
  std::set<std::pair<int, long>> positions;
  for (const auto& r : reports) {
    CHECK(r.ok);
    CHECK(r.topic == "t.reports");
    CHECK(r.offset >= 0);
    positions.insert({r.partition, r.offset});
  }
  CHECK(positions.size() == 30);  // every record has its own place in the log
  CHECK(p.InFlight() == 0);
  auto sync = p.ProduceSync({"t.reports", "k", "sync", {}}, 5s);
  CHECK(sync.ok);
}

TEST_CASE("headers and keys survive the round trip", "[kafka]") {
  Broker().CreateTopic("t.headers", 1, 1);
  Producer p(ProducerOpts());
  p.ProduceSync({"t.headers", "user-1", "{\"a\":1}", {{"herald-event-id", "e-1"}, {"trace", "abc"}}}, 5s);
  auto records = ReadTopic(Broker().Bootstrap(), "t.headers", 1, 10s);
  REQUIRE(records.size() == 1);
  CHECK(records[0].key == "user-1");
  CHECK(records[0].value == "{\"a\":1}");
  REQUIRE(records[0].headers.size() == 2);
  CHECK(records[0].headers[0].key == "herald-event-id");
  CHECK(records[0].headers[0].value == "e-1");
}

TEST_CASE("a record for a partition that does not exist is refused, not lost silently", "[kafka]") {
  Producer p(ProducerOpts());
  p.ProduceSync({"t.reports", "k", "warm-up", {}}, 5s);  // metadata is known from here on
  AckGroup acks;
  CHECK_THROWS_AS(p.Produce({"t.reports", "k", "v", {}, 99}, acks.Track()), herald::InvalidInput);
}

TEST_CASE("the consumer loop processes every record and commits after the acks", "[kafka][consumer]") {
  Broker().CreateTopic("t.in1", 4, 1);
  Broker().CreateTopic("t.out1", 4, 1);
  ProduceN("t.in1", 200);
  Producer out(ProducerOpts());
  std::atomic<int> seen{0};
  {
    ConsumerLoop loop(ConsumerOpts("g-commit", "t.in1"), out);
    RunLoop(
        loop,
        [&](std::span<const Message> batch, BatchContext& ctx) {
          for (const auto& m : batch) {
            ctx.Produce({"t.out1", std::string(*m.Key()), "copy:" + std::string(m.Value()), {}});
            ++seen;
          }
        },
        [&] { return seen.load() >= 200; });
  }
  CHECK(seen.load() == 200);
  auto copies = ReadTopic(Broker().Bootstrap(), "t.out1", 200, 10s);
  CHECK(copies.size() == 200);

  // A new member of the same group starts after the committed offsets: nothing is redone.
  ProduceN("t.in1", 10, "late");
  std::vector<std::string> second;
  std::mutex mu;
  {
    ConsumerLoop loop(ConsumerOpts("g-commit", "t.in1"), out);
    RunLoop(
        loop,
        [&](std::span<const Message> batch, BatchContext&) {
          std::lock_guard lock(mu);
          for (const auto& m : batch) second.emplace_back(m.Value());
        },
        [&] {
          std::lock_guard lock(mu);
          return second.size() >= 10;
        });
  }
  REQUIRE(second.size() == 10);
  for (const auto& v : second) CHECK(v.rfind("late", 0) == 0);
}

TEST_CASE("a failing batch is rewound and processed again: nothing is skipped", "[kafka][consumer]") {
  Broker().CreateTopic("t.retry", 1, 1);
  ProduceN("t.retry", 20);
  Producer out(ProducerOpts());
  std::map<std::string, int> attempts;
  std::mutex mu;
  int failures_left = 2;
  ConsumerLoop loop(ConsumerOpts("g-retry", "t.retry"), out);
  RunLoop(
      loop,
      [&](std::span<const Message> batch, BatchContext&) {
        std::lock_guard lock(mu);
        for (const auto& m : batch) ++attempts[std::string(m.Value())];
        if (failures_left > 0) {
          --failures_left;
          throw herald::TransientError("dependency down");
        }
      },
      [&] {
        std::lock_guard lock(mu);
        return failures_left == 0 && attempts.size() == 20 && attempts["m0"] >= 3;
      });
  std::lock_guard lock(mu);
  CHECK(attempts.size() == 20);
  CHECK(attempts["m0"] == 3);  // failed twice, then succeeded
}

TEST_CASE("a batch whose output is not acknowledged is not committed and is processed again", "[kafka][consumer]") {
  Broker().CreateTopic("t.unacked", 1, 1);
  Broker().CreateTopic("t.unacked.out", 1, 1);
  ProduceN("t.unacked", 1);
  Producer::Options po = ProducerOpts();
  po.delivery_timeout = 1000ms;
  Producer out(po);
  // The producer knows the output topic's leader before the broker goes away, so the first
  // attempt's record waits on a known partition and times out after delivery_timeout.
  // (Its 1 s delivery timeout can pass while a loaded machine looks the new topic up: try again.)
  bool warm = false;
  for (int attempt = 0; attempt < 10 && !warm; ++attempt) {
    try {
      out.ProduceSync({"t.unacked.out", "k", "warm-up", {}}, 5s);
      warm = true;
    } catch (const std::exception&) {
    }
  }
  REQUIRE(warm);
  std::atomic<int> calls{0};
  std::atomic<bool> up{false};
  std::atomic<std::int64_t> down_at{0};  // steady clock ticks when the broker went down
  herald::kafka::LagMonitor committed(Broker().Bootstrap(), {}, "g-unacked");
  {
    ConsumerLoop loop(ConsumerOpts("g-unacked", "t.unacked"), out);
    RunLoop(
        loop,
        [&](std::span<const Message> batch, BatchContext& ctx) {
          // First attempt: the broker goes away, so the produced record times out unacknowledged.
          if (++calls == 1) {
            Broker().SetBrokerDown(1);
            down_at = std::chrono::steady_clock::now().time_since_epoch().count();
          }
          for (const auto& m : batch) ctx.Produce({"t.unacked.out", "k", std::string(m.Value()), {}});
        },
        [&] {
          // Once the first attempt's record has been reported failed, the broker comes back;
          // at the latest after 5 s (librdkafka may hold the expired record while every broker
          // is down, and fails it as timed out when its broker is back, before sending).
          const bool overdue =
              down_at.load() != 0 &&
              std::chrono::steady_clock::now().time_since_epoch().count() - down_at.load() >
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(5s).count();
          if (calls.load() == 1 && (out.InFlight() == 0 || overdue) && !up.exchange(true)) Broker().SetBrokerUp(1);
          if (calls.load() < 2 || ReadTopic(Broker().Bootstrap(), "t.unacked.out", 2, 1s).size() < 2) return false;
          // The successful attempt's offset has reached the group coordinator (the commit is
          // asynchronous, and the coordinator connection recovers from the outage on its own).
          try {
            auto parts = committed.Partitions("t.unacked");
            return parts.size() == 1 && parts[0].committed == 1;
          } catch (const herald::TransientError&) {
            return false;
          }
        });
  }
  Broker().SetBrokerUp(1);
  // At least once more: a second attempt can time out too while the producer reconnects.
  CHECK(calls.load() >= 2);
  // The successful second attempt was committed: the group does not see the record again.
  ProduceN("t.unacked", 1, "next");
  std::vector<std::string> seen;
  std::mutex mu;
  ConsumerLoop again(ConsumerOpts("g-unacked", "t.unacked"), out);
  RunLoop(
      again,
      [&](std::span<const Message> batch, BatchContext&) {
        std::lock_guard lock(mu);
        for (const auto& m : batch) seen.emplace_back(m.Value());
      },
      [&] {
        std::lock_guard lock(mu);
        return !seen.empty();
      });
  CHECK(seen == std::vector<std::string>{"next0"});
}

TEST_CASE("paused partitions are not fetched until resumed", "[kafka][consumer]") {
  Broker().CreateTopic("t.pause", 1, 1);
  Producer out(ProducerOpts());
  std::atomic<int> seen{0};
  ConsumerLoop loop(ConsumerOpts("g-pause", "t.pause"), out);
  std::thread t([&] {
    loop.Run([&](std::span<const Message> batch, BatchContext&) { seen += static_cast<int>(batch.size()); });
  });
  struct Joiner {
    ConsumerLoop& loop;
    std::thread& t;
    ~Joiner() {
      loop.Stop();
      if (t.joinable()) t.join();
    }
  } joiner{loop, t};
  REQUIRE(WaitUntil([&] { return loop.Ready() && !loop.Assignment().empty(); }, 20s));
  ProduceN("t.pause", 5, "a");
  REQUIRE(WaitUntil([&] { return seen.load() == 5; }, 20s));
  loop.PauseTopic("t.pause");
  ProduceN("t.pause", 5, "b");
  // While paused the records stay in the log: prove it by reading them with another client,
  // then check the paused loop still has not seen them.
  REQUIRE(ReadTopic(Broker().Bootstrap(), "t.pause", 10, 10s).size() == 10);
  auto paused_seen = seen.load();
  loop.ResumeTopic("t.pause");
  bool resumed = WaitUntil([&] { return seen.load() == 10; }, 20s);
  CHECK(paused_seen == 5);
  CHECK(resumed);
}

TEST_CASE("kcat talks to the embedded broker through the stable port", "[kafka][kcat]") {
  Broker().CreateTopic("t.kcat", 2, 1);
  std::string out;
  REQUIRE(herald::test::Run("printf 'hello-from-kcat\\n' | kcat -b " + Broker().Bootstrap() + " -t t.kcat -P 2>&1", &out) == 0);
  auto records = ReadTopic(Broker().Bootstrap(), "t.kcat", 1, 10s);
  REQUIRE(records.size() == 1);
  CHECK(records[0].value == "hello-from-kcat");
  out.clear();
  REQUIRE(herald::test::Run("kcat -b " + Broker().Bootstrap() + " -L -t notify.requests.v1 2>&1", &out) == 0);
  CHECK(out.find("notify.requests.v1") != std::string::npos);
  CHECK(out.find("12 partitions") != std::string::npos);
  // kcat as a balanced consumer group member reads what was produced.
  out.clear();
  REQUIRE(herald::test::Run("timeout 60 kcat -b " + Broker().Bootstrap() +
                                " -G kcat-group -X auto.offset.reset=earliest -c 1 -q -f '%s\\n' t.kcat 2>/dev/null",
                            &out) == 0);
  CHECK(out == "hello-from-kcat\n");
}

TEST_CASE("a deferred record is committed only when done, and a paused partition waits", "[kafka][consumer]") {
  Broker().CreateTopic("t.defer", 2, 1);
  Producer p(ProducerOpts());
  p.ProduceSync({"t.defer", "a", "slow", {}, 0}, 5s);
  for (int i = 0; i < 3; ++i) p.ProduceSync({"t.defer", "b", "fast" + std::to_string(i), {}, 1}, 5s);
  std::mutex mu;
  std::vector<std::string> done;
  std::map<std::string, std::chrono::steady_clock::time_point> first_seen;
  auto start = std::chrono::steady_clock::now();
  ConsumerLoop loop(ConsumerOpts("g-defer", "t.defer"), p);
  RunLoop(
      loop,
      [&](std::span<const Message> batch, BatchContext& ctx) {
        std::lock_guard lock(mu);
        for (const auto& m : batch) {
          if (ctx.IsDeferred(m)) continue;
          std::string v(m.Value());
          first_seen.try_emplace(v, std::chrono::steady_clock::now());
          // "slow" is not ready for 1.5 s after it was first seen: defer it and pause its partition.
          if (v == "slow" && std::chrono::steady_clock::now() - first_seen[v] < 1500ms) {
            ctx.Defer(m);
            ctx.PauseFor(m, 500ms);
            continue;
          }
          done.push_back(v);
        }
      },
      [&] {
        std::lock_guard lock(mu);
        return std::find(done.begin(), done.end(), "slow") != done.end();
      });
  std::lock_guard lock(mu);
  // The other partition was not held up by the deferred record.
  REQUIRE(done.size() == 4);
  CHECK(done.back() == "slow");
  CHECK(std::chrono::steady_clock::now() - start >= 1500ms);
  // Everything is committed now: a new member of the group sees nothing old.
  ProduceN("t.defer", 1, "after");
  std::vector<std::string> again;
  ConsumerLoop next(ConsumerOpts("g-defer", "t.defer"), p);
  RunLoop(
      next,
      [&](std::span<const Message> batch, BatchContext&) {
        for (const auto& m : batch) again.emplace_back(m.Value());
      },
      [&] { return !again.empty(); });
  CHECK(again == std::vector<std::string>{"after0"});
}

namespace {

ConsumerLoop::Options LaneOpts(const std::string& group, const std::string& prefix, std::size_t reserved) {
  ConsumerLoop::Options o = ConsumerOpts(group, "");
  o.topics.clear();
  o.batch_size = 100;
  // The mock broker holds an empty fetch for fetch.wait.max.ms: keep it short so a new
  // record is seen quickly, as a real broker would answer at once.
  o.settings = {{"fetch.wait.max.ms", "10"}};
  o.lanes = {{prefix + ".high", 0}, {prefix + ".normal", reserved}, {prefix + ".low", reserved}};
  return o;
}

// Handles a batch the way the delivery stage does: in order, yielding to higher lanes when
// the context says so (the rest of the batch comes first in the next one).
struct LaneRecorder {
  std::mutex mu;
  std::vector<std::string> order;  // topic suffix of every record handled, in order
  std::set<std::string> seen;      // values handled (a deferred record is handled later)
  std::atomic<int> low_done{0}, high_done{0}, yields{0};
  std::chrono::microseconds low_cost{0};
  std::chrono::microseconds cost{0};  // for every record

  void operator()(std::span<const Message> batch, BatchContext& ctx) {
    bool yielded = false;
    for (const auto& m : batch) {
      if (ctx.IsDeferred(m)) continue;
      if (yielded || ctx.ShouldYield(m)) {
        if (!yielded) ++yields;
        yielded = true;
        ctx.Yield(m);  // kept in memory for the next batch, not fetched again
        continue;
      }
      std::string topic(m.Topic());
      std::string lane = topic.substr(topic.rfind('.') + 1);
      if (lane == "low" && low_cost.count() > 0) std::this_thread::sleep_for(low_cost);  // the cost of a send
      if (cost.count() > 0) std::this_thread::sleep_for(cost);
      std::lock_guard lock(mu);
      if (!seen.insert(std::string(m.Value())).second) continue;
      order.push_back(lane);
      if (lane == "low") ++low_done;
      if (lane == "high") ++high_done;
    }
  }
};

}  // namespace

TEST_CASE("priority lanes: a high record overtakes a large low backlog", "[kafka][consumer][priority]") {
  for (const char* p : {"high", "normal", "low"}) Broker().CreateTopic(std::string("t.lanes1.") + p, 3, 1);
  ProduceN("t.lanes1.low", 3000, "low-");
  Producer p(ProducerOpts());
  ConsumerLoop loop(LaneOpts("g-lanes1", "t.lanes1", 5), p);
  LaneRecorder rec;
  rec.low_cost = 1ms;
  std::thread t([&] { loop.Run(std::ref(rec)); });
  // Once the backlog is flowing (and prefetched), urgent records arrive.
  REQUIRE(WaitUntil([&] { return rec.low_done.load() >= 300; }, 30s));
  AckGroup acks;
  for (int i = 0; i < 20; ++i) p.Produce({"t.lanes1.high", "k" + std::to_string(i), "high-" + std::to_string(i), {}}, acks.Track());
  REQUIRE(acks.Wait(10s).empty());
  int low_at_arrival = rec.low_done.load();
  bool all_high = WaitUntil([&] { return rec.high_done.load() == 20; }, 30s);
  int low_before_last_high = rec.low_done.load();
  bool all_low = WaitUntil([&] { return rec.low_done.load() == 3000; }, 60s);
  loop.Stop();
  t.join();
  REQUIRE(all_high);
  REQUIRE(all_low);
  // Without lanes the 20 would wait behind the ~2,700 prefetched low records. With them,
  // they are served by the next batch, and the batch in hand yields after its share.
  INFO("low records handled while the high ones waited: " << low_before_last_high - low_at_arrival);
  CHECK(low_before_last_high - low_at_arrival <= 150);
  CHECK(rec.yields.load() >= 1);
  std::lock_guard lock(rec.mu);
  CHECK(rec.seen.size() == 3020);  // nothing lost; yielded records were handled later
}

TEST_CASE("priority lanes: lower lanes keep their share under a high backlog", "[kafka][consumer][priority]") {
  for (const char* p : {"high", "normal", "low"}) Broker().CreateTopic(std::string("t.lanes2.") + p, 3, 1);
  ProduceN("t.lanes2.high", 3000, "high-");
  ProduceN("t.lanes2.low", 100, "low-");
  Producer p(ProducerOpts());
  ConsumerLoop loop(LaneOpts("g-lanes2", "t.lanes2", 10), p);
  LaneRecorder rec;
  // Each record costs a little (a send), so the high backlog lasts long enough for the low
  // partitions to be fetched: contention, not fetch timing, decides the order.
  rec.cost = 500us;
  std::thread t([&] { loop.Run(std::ref(rec)); });
  bool done = WaitUntil([&] { return rec.high_done.load() == 3000 && rec.low_done.load() == 100; }, 60s);
  loop.Stop();
  t.join();
  REQUIRE(done);
  std::lock_guard lock(rec.mu);
  // Strict priority would serve every high record first (the last low at 3,099); the
  // reserved share lets about 10 low records into each batch of 100, so all 100 are done
  // while a third of the highs still wait.
  std::size_t last_low = 0;
  for (std::size_t i = 0; i < rec.order.size(); ++i) {
    if (rec.order[i] == "low") last_low = i;
  }
  INFO("position of the last low record: " << last_low << " of " << rec.order.size());
  CHECK(last_low < 2000);
  // ...and high still dominates: at most the reserved share (plus one early batch, before
  // the high partitions were fetched) of the first 1,000 records is low.
  CHECK(std::count(rec.order.begin(), rec.order.begin() + 1000, "high") >= 800);
}

TEST_CASE("lag is what a group has not committed, and a new group lags by everything", "[kafka][lag]") {
  Broker().CreateTopic("t.lag", 2, 1);
  ProduceN("t.lag", 30);
  herald::kafka::LagMonitor monitor(Broker().Bootstrap(), {}, "g-lag");
  bool committed = true;
  CHECK(monitor.Lag("t.lag", &committed) == 30);
  CHECK_FALSE(committed);
  Producer out(ProducerOpts());
  std::atomic<int> seen{0};
  {
    ConsumerLoop loop(ConsumerOpts("g-lag", "t.lag"), out);
    RunLoop(
        loop, [&](std::span<const Message> batch, BatchContext&) { seen += static_cast<int>(batch.size()); },
        [&] { return seen.load() >= 30; });
  }
  CHECK(monitor.Lag("t.lag", &committed) == 0);
  CHECK(committed);
  ProduceN("t.lag", 5);
  CHECK(monitor.Lag("t.lag") == 5);
}

TEST_CASE("the lag exporter measures every group, and stops promptly when the broker is gone", "[kafka][lag]") {
  Broker().CreateTopic("t.lagx", 1, 1);
  ProduceN("t.lagx", 7);
  {
    herald::metrics::Registry registry;
    GroupLagExporter exporter(Broker().Bootstrap(), {}, {{"g-lagx", {"t.lagx"}}}, 100ms, registry);
    const std::string series = R"(herald_consumer_lag{group="g-lagx",partition="0",topic="t.lagx"} 7)";
    CHECK(WaitUntil([&] { return registry.Render().find(series) != std::string::npos; }, 30s, 50ms));
  }
  // Nothing listens on the port: each call waits out its 5 s timeout. Stopping waits for the
  // call in progress only, not for a pass over all ten groups (50 s and more).
  std::map<std::string, std::vector<std::string>> groups;
  for (int g = 0; g < 10; ++g) groups["g-gone-" + std::to_string(g)] = {"t.gone"};
  herald::metrics::Registry registry;
  auto exporter = std::make_unique<GroupLagExporter>("127.0.0.1:" + std::to_string(herald::dev::FreePort()),
                                                     herald::kafka::Settings{}, groups, 1s, registry);
  std::this_thread::sleep_for(200ms);  // its first pass is under way
  const auto t0 = std::chrono::steady_clock::now();
  exporter.reset();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 20s);
}

TEST_CASE("Stage::Retry climbs the tiers with origin and attempt, then dead-letters", "[kafka][retry]") {
  herald::config::Config config;
  config.brokers = Broker().Bootstrap();
  config.retry_delays = {100ms, 200ms, 300ms};
  herald::stage::Stage st(config, {"retry-test", {}});
  Broker().CreateTopic("t.retry-origin", 1, 1);
  Producer p(ProducerOpts());
  p.ProduceSync({"t.retry-origin", "k1", "payload-1", {}}, 5s);
  p.ProduceSync({"t.retry-origin", "k2", "payload-2", {{"herald-attempt", "3"}, {"herald-origin-topic", "notify.requests.v1"}}}, 5s);
  std::atomic<int> handled{0};
  ConsumerLoop loop(ConsumerOpts("g-retry-helper", "t.retry-origin"), p);
  RunLoop(
      loop,
      [&](std::span<const Message> batch, BatchContext& ctx) {
        for (const auto& m : batch) {
          st.Retry(ctx, m, "upstream 503");
          ++handled;
        }
      },
      [&] { return handled.load() >= 2; });
  auto tier = ReadTopic(Broker().Bootstrap(), "notify.retry.30s", 1, 10s);
  REQUIRE(tier.size() == 1);
  CHECK(tier[0].key == "k1");
  CHECK(tier[0].value == "payload-1");
  std::map<std::string, std::string> h;
  for (const auto& x : tier[0].headers) h[x.key] = x.value;
  CHECK(h["herald-origin-topic"] == "t.retry-origin");
  CHECK(h["herald-attempt"] == "1");
  CHECK(h["herald-retry-reason"] == "upstream 503");
  auto due = std::stoll(h["herald-retry-not-before"]);
  auto now = herald::NowMs().time_since_epoch().count();
  CHECK(due > now - 10'000);
  CHECK(due <= now + 100);
  auto dlq = ReadTopic(Broker().Bootstrap(), "notify.dlq.v1", 1, 10s);
  REQUIRE(dlq.size() == 1);
  auto letter = nlohmann::json::parse(dlq[0].value);
  CHECK(letter["error_class"] == "exhausted");
  CHECK(letter["original"] == "payload-2");
  CHECK(letter["reason"].get<std::string>().find("after 3 attempts") != std::string::npos);
}

TEST_CASE("the consumer loop reports its lag per partition from librdkafka's statistics", "[kafka][metrics]") {
  Broker().CreateTopic("t.lagstats", 2, 1);
  ProduceN("t.lagstats", 40);
  auto o = ConsumerOpts("g.lagstats", "t.lagstats");
  o.settings["statistics.interval.ms"] = "100";
  Producer producer(ProducerOpts());
  ConsumerLoop loop(o, producer);
  auto& registry = herald::metrics::Default();
  auto lag = [&](int partition) {
    auto text = registry.Render();
    std::string series = "herald_consumer_lag{group=\"g.lagstats\",partition=\"" + std::to_string(partition) +
                         "\",topic=\"t.lagstats\"} ";
    auto pos = text.find(series);
    return pos == std::string::npos ? -1.0 : std::stod(text.substr(pos + series.size()));
  };
  // Nothing is processed (every batch is deferred) until `accept`: the loop keeps polling,
  // so statistics arrive, and the whole retained partition counts as lag.
  std::atomic<bool> accept{false};
  std::atomic<int> processed{0};
  std::thread t([&] {
    loop.Run([&](std::span<const Message> batch, BatchContext& ctx) {
      for (const auto& m : batch) {
        if (ctx.IsDeferred(m)) continue;
        if (!accept.load()) {
          ctx.Defer(m);
          ctx.PauseFor(m, 20ms);
          continue;
        }
        processed.fetch_add(1);
      }
    });
  });
  bool lagging = WaitUntil([&] { return lag(0) >= 0 && lag(1) >= 0 && lag(0) + lag(1) == 40; }, 20s);
  accept.store(true);
  // Offsets are committed once a second; the lag then falls to zero on both partitions.
  bool caught_up = WaitUntil([&] { return processed.load() == 40 && lag(0) == 0 && lag(1) == 0; }, 20s);
  loop.Stop();
  t.join();
  CHECK(lagging);
  CHECK(caught_up);
}
