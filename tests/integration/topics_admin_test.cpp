// `herald topics plan` and `herald topics apply` (the real binary) against librdkafka's mock
// cluster: a bare cluster that lacks most declared topics and has some with the wrong
// partition count, and the embedded broker as the development stack runs it (every declared
// topic pre-created).
//
// The mock cluster (librdkafka 2.0.2) implements none of the admin APIs (CreateTopics,
// DescribeConfigs, AlterConfigs): the commands must say so, compare what metadata tells,
// and leave the cluster as it was.

#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <set>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>

#include "herald/kafka/embedded_broker.hpp"
#include "herald/topics/catalog.hpp"
#include "support/support.hpp"

using herald::test::Run;

namespace {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
struct MockClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* c) const noexcept { rd_kafka_mock_cluster_destroy(c); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const noexcept { rd_kafka_metadata_destroy(md); }
};

std::unique_ptr<rd_kafka_t, KafkaDeleter> NewProducer(const std::string& brokers) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (!brokers.empty()) rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  REQUIRE(rk);
  return std::unique_ptr<rd_kafka_t, KafkaDeleter>(rk);
}

// A mock cluster with no topics but the ones a test creates (EmbeddedBroker pre-creates
// every declared topic, so it cannot show a missing one).
class BareCluster {
 public:
  explicit BareCluster(int brokers) : host_(NewProducer("")) {
    cluster_.reset(rd_kafka_mock_cluster_new(host_.get(), brokers));
    REQUIRE(cluster_);
  }
  std::string Bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_.get()); }
  void CreateTopic(const std::string& name, int partitions, int replication) {
    REQUIRE(rd_kafka_mock_topic_create(cluster_.get(), name.c_str(), partitions, replication) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  std::unique_ptr<rd_kafka_t, KafkaDeleter> host_;
  // Declared after host_, destroyed before it: the cluster runs on the host handle.
  std::unique_ptr<rd_kafka_mock_cluster_t, MockClusterDeleter> cluster_;
};

// Every topic on the cluster with its partition count, read from metadata for all topics
// (a request that names no topic cannot auto-create one).
std::map<std::string, int> TopicsOn(const std::string& brokers) {
  auto rk = NewProducer(brokers);
  const rd_kafka_metadata_t* raw = nullptr;
  REQUIRE(rd_kafka_metadata(rk.get(), 1, nullptr, &raw, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter> md(raw);
  std::map<std::string, int> out;
  for (int i = 0; i < md->topic_cnt; ++i) out[md->topics[i].topic] = md->topics[i].partition_cnt;
  return out;
}

struct Result {
  int rc = -1;
  std::string out;  // stdout only; librdkafka's and spdlog's lines go to stderr
};

Result Herald(const std::string& brokers, const std::string& args) {
  Result r;
  r.rc = Run(std::string(HERALD_BINARY) + " --brokers " + brokers + " " + args, &r.out);
  return r;
}

bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

const char* kDescribeUnsupported =
    "note: DescribeConfigs is not supported by this broker "
    "(the embedded mock cluster implements no admin APIs); configs not compared";

}  // namespace

TEST_CASE("plan and apply on a cluster missing topics, with wrong partition counts and an undeclared topic",
          "[topics][admin][kafka]") {
  BareCluster cluster(1);
  cluster.CreateTopic("events.auth.v1", 3, 1);     // declared 6: fewer
  cluster.CreateTopic("notify.dlq.v1", 5, 1);      // declared 3: more
  cluster.CreateTopic("notify.status.v1", 12, 1);  // as declared (replication capped at 1 broker)
  cluster.CreateTopic("scratch.undeclared", 2, 1);
  const auto before = TopicsOn(cluster.Bootstrap());
  REQUIRE(before.size() == 4);
  const auto& declared = herald::topics::Catalog().All();
  const std::set<std::string> present = {"events.auth.v1", "notify.dlq.v1", "notify.status.v1"};
  const std::size_t missing = declared.size() - present.size();

  auto plan = Herald(cluster.Bootstrap(), "topics plan");
  INFO(plan.out);
  CHECK(plan.rc == 2);
  for (const auto& t : declared) {
    if (present.count(t.name)) continue;
    // Missing: created with the declared partitions, replication capped at the one broker.
    CHECK(Has(plan.out, "create     " + t.name + ": partitions " + std::to_string(t.partitions) +
                            ", replication 1, cleanup.policy=" + t.cleanup +
                            ", min.insync.replicas=1, retention.ms=" + std::to_string(t.retention_ms) +
                            "\n"));
  }
  CHECK(Has(plan.out, "differs    events.auth.v1\n             partitions: 3 on the cluster, 6 declared"));
  CHECK(Has(plan.out, "differs    notify.dlq.v1\n             partitions: 5 on the cluster, 3 declared"));
  CHECK(Has(plan.out, "partitions are never reduced"));
  CHECK(Has(plan.out, "changes which partition each key maps to"));
  CHECK(Has(plan.out, "ok         notify.status.v1\n"));
  CHECK(Has(plan.out, "undeclared scratch.undeclared (left alone)\n"));
  CHECK(
      Has(plan.out,
          "note: the cluster has 1 broker(s): replication capped at 1 (min.insync.replicas at most 1) for " +
              std::to_string(declared.size()) + " topic(s) that declare more\n"));
  CHECK(Has(plan.out, kDescribeUnsupported));
  CHECK(Has(plan.out, "Plan: " + std::to_string(missing) +
                          " to create, 2 differ, 1 ok, 1 undeclared (left alone); configs not compared.\n"));
  // Planning changed nothing: no topic auto-created by a metadata request.
  CHECK(TopicsOn(cluster.Bootstrap()) == before);

  auto json_plan = Herald(cluster.Bootstrap(), "topics plan --json");
  CHECK(json_plan.rc == 2);
  auto j = nlohmann::json::parse(json_plan.out);
  CHECK(j["brokers"] == 1);
  CHECK(j["configs_compared"] == false);
  CHECK(j["changes_pending"] == true);
  CHECK(j["summary"]["create"] == missing);
  CHECK(j["summary"]["differs"] == 2);
  CHECK(j["summary"]["ok"] == 1);
  CHECK(j["summary"]["undeclared"] == 1);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& t : j["topics"]) by_name[t["name"].get<std::string>()] = t;
  CHECK(by_name["events.auth.v1"]["differences"][0]["field"] == "partitions");
  CHECK(by_name["events.auth.v1"]["differences"][0]["actual"] == "3");
  CHECK(by_name["events.auth.v1"]["differences"][0]["declared"] == "6");
  CHECK(by_name["events.auth.v1"]["differences"][0]["applied_by_apply"] == false);
  CHECK(by_name["notify.requests.v1"]["action"] == "create");
  CHECK(by_name["notify.requests.v1"]["declared"]["replication"] == 1);
  CHECK(by_name["scratch.undeclared"]["action"] == "undeclared");

  // The mock has no CreateTopics: apply says so, names what it could not create, leaves the
  // partition counts to an operator and fails.
  auto apply = Herald(cluster.Bootstrap(), "topics apply");
  INFO(apply.out);
  CHECK(apply.rc == 1);
  CHECK(Has(
      apply.out,
      "failed: CreateTopics is not supported by this broker (the embedded mock cluster implements no admin "
      "APIs); not created: events.ugc.v1, "));
  CHECK(Has(apply.out,
            "not applied: events.auth.v1: partitions 3 on the cluster, 6 declared (adding partitions"));
  CHECK(Has(apply.out,
            "not applied: notify.dlq.v1: partitions 5 on the cluster, 3 declared (partitions are never"));
  CHECK(Has(apply.out, kDescribeUnsupported));
  CHECK(Has(apply.out, "Apply: 0 created, 0 altered, 2 left to an operator, 1 failed.\n"));
  // Nothing deleted, nothing repartitioned, nothing created behind its back.
  CHECK(TopicsOn(cluster.Bootstrap()) == before);

  // Once the missing topics exist as declared (here created through the mock's own API,
  // as CreateTopics is unavailable), the plan shows them ok; only the partition counts,
  // which apply never changes, are left.
  for (const auto& t : declared) {
    if (!present.count(t.name)) cluster.CreateTopic(t.name, t.partitions, 1);
  }
  auto again = Herald(cluster.Bootstrap(), "topics plan");
  INFO(again.out);
  CHECK(again.rc == 2);
  CHECK(Has(again.out, "Plan: 0 to create, 2 differ, " + std::to_string(missing + 1) +
                           " ok, 1 undeclared (left alone); configs not compared.\n"));
  CHECK(Has(again.out, "ok         notify.requests.v1\n"));
}

TEST_CASE("the embedded broker of the dev stack holds every declared topic", "[topics][admin][kafka]") {
  herald::kafka::EmbeddedBroker broker({"127.0.0.1", 0, 1, 0});
  broker.CreateTopic("scratch.dev", 2, 1);
  const auto before = TopicsOn(broker.Bootstrap());
  const auto n = herald::topics::Catalog().All().size();

  auto plan = Herald(broker.Bootstrap(), "topics plan");
  INFO(plan.out);
  CHECK(plan.rc == 0);
  CHECK(Has(plan.out, "ok         notify.requests.v1\n"));
  CHECK(Has(plan.out, "undeclared scratch.dev (left alone)\n"));
  CHECK(Has(plan.out, kDescribeUnsupported));
  CHECK(
      Has(plan.out,
          "note: the cluster has 1 broker(s): replication capped at 1 (min.insync.replicas at most 1) for " +
              std::to_string(n) + " topic(s) that declare more\n"));
  CHECK(Has(plan.out, "Plan: 0 to create, 0 differ, " + std::to_string(n) +
                          " ok, 1 undeclared (left alone); configs not compared.\n"));

  auto apply = Herald(broker.Bootstrap(), "topics apply");
  INFO(apply.out);
  CHECK(apply.rc == 0);
  CHECK(Has(apply.out, "nothing to do"));
  CHECK(Has(apply.out, kDescribeUnsupported));
  CHECK(Has(apply.out, "Apply: 0 created, 0 altered, 0 left to an operator, 0 failed.\n"));
  CHECK(TopicsOn(broker.Bootstrap()) == before);
}

TEST_CASE("replication is read from metadata on a three-broker cluster", "[topics][admin][kafka]") {
  // min_partitions raises the 3- and 6-partition topics to 8.
  herald::kafka::EmbeddedBroker broker({"127.0.0.1", 0, 3, 8});
  auto plan = Herald(broker.Bootstrap(), "topics plan");
  INFO(plan.out);
  CHECK(plan.rc == 2);
  CHECK(Has(plan.out, "differs    events.auth.v1\n             partitions: 8 on the cluster, 6 declared"));
  CHECK(Has(plan.out, "differs    notify.dlq.v1\n             partitions: 8 on the cluster, 3 declared"));
  CHECK(Has(plan.out, "ok         notify.requests.v1\n"));
  CHECK_FALSE(Has(plan.out, "replication capped"));
  CHECK_FALSE(Has(plan.out, "replication: "));
}

TEST_CASE("an unreachable cluster is an error, not a plan", "[topics][admin][kafka]") {
  auto plan = Herald("127.0.0.1:1", "topics plan 2>/dev/null");
  CHECK(plan.rc == 1);
  CHECK(plan.out.empty());
}

TEST_CASE("a configuration error in topics plan exits 1, never the 2 of changes pending", "[topics][admin]") {
  std::string out;
  int rc = Run("HERALD_NOT_A_SETTING=1 " + std::string(HERALD_BINARY) + " --brokers 127.0.0.1:1 topics plan 2>&1", &out);
  CHECK(rc == 1);
  CHECK(Has(out, "unknown environment variable HERALD_NOT_A_SETTING"));
}
