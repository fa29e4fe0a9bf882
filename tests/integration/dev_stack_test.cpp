// The dev stack's fault controls, as the chaos suite uses them: Redis and PostgreSQL
// restarted with SIGTERM come back with their data, and the embedded broker takes its
// brokers down on SIGUSR1 and up again on SIGUSR2 without dying.

#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>

#include <pqxx/pqxx>

#include "herald/common/errors.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/redis/client.hpp"
#include "herald/topics/catalog.hpp"
#include "support/stack.hpp"

using herald::test::WaitUntil;
using namespace std::chrono_literals;

namespace {

herald::test::ServicesStack& Services() {
  static herald::test::ServicesStack services;
  return services;
}

}  // namespace

TEST_CASE("Redis restarted with SIGTERM comes back with its data", "[dev][redis]") {
  herald::redis::Client redis(Services().stack->Env().at("HERALD_REDIS_URL"));
  REQUIRE(redis.Command({"SET", "herald:test:claim", "done:sent", "PX", "600000"}).type ==
          herald::redis::Reply::Type::kStatus);
  REQUIRE(redis.Command({"ZADD", "herald:test:index", "1795322000", "bucket-1"}).integer == 1);
  const auto before = Services().stack->Pid("redis");
  Services().stack->Kill("redis", SIGTERM);
  Services().stack->Start("redis");  // waits for the old process to write its data and exit
  REQUIRE(Services().stack->Pid("redis") != before);  // a new server, not the old one still stopping
  CHECK(redis.Command({"GET", "herald:test:claim"}).str == "done:sent");
  CHECK(redis.Command({"PTTL", "herald:test:claim"}).integer > 0);
  CHECK(redis.Command({"ZCARD", "herald:test:index"}).integer == 1);
}

TEST_CASE("PostgreSQL restarted with SIGTERM while clients are connected comes back with its data",
          "[dev][postgres]") {
  const auto url = Services().pg_url;
  {
    pqxx::connection conn(url);
    pqxx::work tx(conn);
    tx.exec("CREATE TABLE IF NOT EXISTS dev_stack_test (id int PRIMARY KEY)");
    tx.exec("INSERT INTO dev_stack_test VALUES (1) ON CONFLICT DO NOTHING");
    tx.commit();
  }
  // A client that stays connected, as every stage does: PostgreSQL's own SIGTERM (a smart
  // shutdown) would wait for it forever.
  pqxx::connection held(url);
  auto t0 = std::chrono::steady_clock::now();
  const auto before = Services().stack->Pid("postgres");
  Services().stack->Kill("postgres", SIGTERM);
  Services().stack->Start("postgres");
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  REQUIRE(Services().stack->Pid("postgres") != before);
  long rows = -1;
  REQUIRE(WaitUntil(
      [&] {
        try {
          pqxx::connection conn(url);
          pqxx::work tx(conn);
          rows = tx.exec1("SELECT count(*) FROM dev_stack_test")[0].as<long>();
          return true;
        } catch (const std::exception&) {
          return false;  // still starting
        }
      },
      30s, 100ms));
  CHECK(rows == 1);
}

TEST_CASE("the embedded broker's brokers go down on SIGUSR1 and come back on SIGUSR2", "[dev][broker]") {
  herald::kafka::Producer::Options po;
  po.brokers = Services().stack->Env().at("HERALD_BROKERS");
  const herald::kafka::OutRecord record{herald::topics::Catalog().Dlq(), "dev-stack-test", "{}", {}};
  {
    herald::kafka::Producer before(po);
    CHECK(before.ProduceSync(record, 30s).ok);
  }
  Services().stack->Kill("broker", SIGUSR1);
  {
    // While the brokers are down nothing is acknowledged: the record times out.
    auto short_lived = po;
    short_lived.delivery_timeout = 3s;
    herald::kafka::Producer during(short_lived);
    CHECK_THROWS_AS(during.ProduceSync(record, 10s), herald::TransientError);
  }
  CHECK(Services().stack->IsRunning("broker"));
  Services().stack->Kill("broker", SIGUSR2);
  herald::kafka::Producer after(po);
  CHECK(after.ProduceSync(record, 30s).ok);
  CHECK(Services().stack->IsRunning("broker"));
}
