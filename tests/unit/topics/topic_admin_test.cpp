// The topics plan as a pure function of (declared topics, observed cluster).

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "herald/kafka/topic_admin.hpp"
#include "herald/topics/catalog.hpp"

using herald::kafka::ClusterState;
using herald::kafka::ComputePlan;
using herald::kafka::DesiredTopic;
using herald::kafka::ObservedTopic;
using herald::kafka::Plan;
using herald::kafka::TopicAction;
using herald::kafka::TopicPlan;

namespace {

DesiredTopic Want(const std::string& name, int partitions, int replication = 3) {
  DesiredTopic d;
  d.name = name;
  d.partitions = partitions;
  d.replication = replication;
  d.min_insync_replicas = 2;
  d.retention_ms = 86'400'000;
  d.cleanup_policy = "delete";
  return d;
}

std::map<std::string, std::string> ConfigsOf(const DesiredTopic& d) {
  return {{"retention.ms", std::to_string(d.retention_ms)},
          {"cleanup.policy", d.cleanup_policy},
          {"min.insync.replicas", std::to_string(d.min_insync_replicas)},
          {"segment.bytes", "1073741824"}};  // unmanaged: never compared
}

// The topic exactly as declared, with its configs described.
ObservedTopic Have(const DesiredTopic& d) {
  ObservedTopic o;
  o.name = d.name;
  o.partitions = d.partitions;
  o.replication = d.replication;
  o.configs = ConfigsOf(d);
  return o;
}

ClusterState Cluster(int brokers, std::vector<ObservedTopic> topics, bool configs = true) {
  ClusterState s;
  s.brokers = brokers;
  s.topics = std::move(topics);
  s.configs_compared = configs;
  return s;
}

const TopicPlan& Find(const Plan& plan, const std::string& name) {
  for (const auto& t : plan.topics) {
    if (t.name == name) return t;
  }
  FAIL("no plan for " << name);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("a cluster that matches every declaration needs nothing", "[topics][admin]") {
  auto a = Want("a", 6), b = Want("b", 12);
  auto plan = ComputePlan({a, b}, Cluster(3, {Have(a), Have(b)}));
  CHECK_FALSE(plan.ChangesPending());
  CHECK(plan.ExitCode() == 0);
  CHECK(plan.Count(TopicAction::kOk) == 2);
  CHECK(Find(plan, "a").differences.empty());
  CHECK(herald::kafka::FormatPlan(plan).find("Plan: 0 to create, 0 differ, 2 ok, 0 undeclared") !=
        std::string::npos);
}

TEST_CASE("a missing topic is created with its declared partitions, replication and configs",
          "[topics][admin]") {
  auto a = Want("a", 6), b = Want("b", 12);
  auto plan = ComputePlan({a, b}, Cluster(3, {Have(a)}));
  const auto& t = Find(plan, "b");
  CHECK(t.action == TopicAction::kCreate);
  CHECK(t.desired.partitions == 12);
  CHECK(t.desired.replication == 3);
  CHECK(t.desired.min_insync_replicas == 2);
  CHECK(t.warnings.empty());
  CHECK(plan.ChangesPending());
  CHECK(plan.ExitCode() == 2);
  auto text = herald::kafka::FormatPlan(plan);
  CHECK(text.find("create     b: partitions 12, replication 3, cleanup.policy=delete, min.insync.replicas=2, "
                  "retention.ms=86400000") != std::string::npos);
}

TEST_CASE("fewer partitions than declared differ and are not applied", "[topics][admin]") {
  auto a = Want("a", 6);
  auto have = Have(a);
  have.partitions = 3;
  auto plan = ComputePlan({a}, Cluster(3, {have}));
  const auto& t = Find(plan, "a");
  REQUIRE(t.action == TopicAction::kDiffers);
  REQUIRE(t.differences.size() == 1);
  CHECK(t.differences[0].field == "partitions");
  CHECK(t.differences[0].actual == "3");
  CHECK(t.differences[0].declared == "6");
  CHECK_FALSE(t.differences[0].applicable);
  CHECK(t.differences[0].note.find("changes which partition each key maps to") != std::string::npos);
  CHECK(plan.ExitCode() == 2);
  CHECK(herald::kafka::FormatPlan(plan).find(
            "partitions: 3 on the cluster, 6 declared (not applied: adding partitions") != std::string::npos);
}

TEST_CASE("more partitions than declared differ: partitions are never reduced", "[topics][admin]") {
  auto a = Want("a", 6);
  auto have = Have(a);
  have.partitions = 8;
  auto plan = ComputePlan({a}, Cluster(3, {have}));
  const auto& t = Find(plan, "a");
  REQUIRE(t.action == TopicAction::kDiffers);
  REQUIRE(t.differences.size() == 1);
  CHECK(t.differences[0].actual == "8");
  CHECK(t.differences[0].declared == "6");
  CHECK_FALSE(t.differences[0].applicable);
  CHECK(t.differences[0].note.find("never reduced") != std::string::npos);
}

TEST_CASE("config differences are listed and applicable; unmanaged configs are ignored", "[topics][admin]") {
  auto a = Want("a", 6);
  auto have = Have(a);
  (*have.configs)["retention.ms"] = "604800000";
  have.configs->erase("min.insync.replicas");
  (*have.configs)["segment.bytes"] = "1";
  auto plan = ComputePlan({a}, Cluster(3, {have}));
  const auto& t = Find(plan, "a");
  REQUIRE(t.action == TopicAction::kDiffers);
  REQUIRE(t.differences.size() == 2);
  std::map<std::string, herald::kafka::Difference> by_field;
  for (const auto& d : t.differences) by_field[d.field] = d;
  CHECK(by_field["retention.ms"].actual == "604800000");
  CHECK(by_field["retention.ms"].declared == "86400000");
  CHECK(by_field["retention.ms"].applicable);
  CHECK(by_field["min.insync.replicas"].actual == "(unset)");
  CHECK(by_field["min.insync.replicas"].declared == "2");
  CHECK(by_field.count("segment.bytes") == 0);
}

TEST_CASE("AlterConfigs keeps the topic's other overrides and sends only what differs", "[topics][admin]") {
  auto a = Want("a", 6);
  auto have = Have(a);
  (*have.configs)["retention.ms"] = "604800000";
  have.overrides = {{"retention.ms", "604800000"}, {"segment.bytes", "1048576"}};
  auto plan = ComputePlan({a}, Cluster(3, {have}));
  auto configs = herald::kafka::AlterConfigsFor(Find(plan, "a"), have);
  // segment.bytes is an override apply must not drop; cleanup.policy and min.insync.replicas
  // match (from broker defaults) and stay unset on the topic.
  CHECK(configs ==
        std::map<std::string, std::string>{{"retention.ms", "86400000"}, {"segment.bytes", "1048576"}});

  auto in_sync = Have(a);
  in_sync.overrides = {{"segment.bytes", "1048576"}};
  auto ok = ComputePlan({a}, Cluster(3, {in_sync}));
  CHECK(herald::kafka::AlterConfigsFor(Find(ok, "a"), in_sync).empty());
}

TEST_CASE("configs are not compared when the cluster could not describe them", "[topics][admin]") {
  auto a = Want("a", 6);
  auto have = Have(a);
  have.configs.reset();
  auto observed = Cluster(3, {have}, false);
  observed.notes.push_back("DescribeConfigs is not supported by this broker");
  auto plan = ComputePlan({a}, observed);
  CHECK(Find(plan, "a").action == TopicAction::kOk);
  CHECK(plan.ExitCode() == 0);
  CHECK_FALSE(plan.configs_compared);
  auto text = herald::kafka::FormatPlan(plan);
  CHECK(text.find("note: DescribeConfigs is not supported by this broker") != std::string::npos);
  CHECK(text.find("configs not compared") != std::string::npos);
}

TEST_CASE("an undeclared topic is listed and left alone", "[topics][admin]") {
  auto a = Want("a", 6);
  ObservedTopic extra;
  extra.name = "scratch";
  extra.partitions = 2;
  extra.replication = 1;
  auto plan = ComputePlan({a}, Cluster(3, {extra, Have(a)}));
  REQUIRE(plan.topics.size() == 2);
  CHECK(plan.topics[0].name == "a");  // declared first, undeclared after
  CHECK(plan.topics[1].name == "scratch");
  CHECK(plan.topics[1].action == TopicAction::kUndeclared);
  CHECK_FALSE(plan.ChangesPending());  // undeclared topics are not changes
  CHECK(plan.ExitCode() == 0);
  CHECK(herald::kafka::FormatPlan(plan).find("undeclared scratch (left alone)") != std::string::npos);
}

TEST_CASE("replication is capped at the broker count, min.insync.replicas with it", "[topics][admin]") {
  auto a = Want("a", 6, 3), b = Want("b", 3, 3);
  SECTION("a missing topic is created with the capped factor and a warning") {
    auto plan = ComputePlan({a, b}, Cluster(1, {}));
    const auto& t = Find(plan, "b");
    CHECK(t.action == TopicAction::kCreate);
    CHECK(t.desired.replication == 1);
    CHECK(t.desired.min_insync_replicas == 1);
    REQUIRE(t.warnings.size() == 2);
    CHECK(t.warnings[0] == "replication capped at 1 (declared 3): the cluster has only 1 broker(s)");
    CHECK(plan.notes.back() ==
          "the cluster has 1 broker(s): replication capped at 1 (min.insync.replicas at most 1) "
          "for 2 topic(s) that declare more");
  }
  SECTION("an existing topic at the capped factor is ok") {
    auto have = Have(a);
    have.replication = 1;
    (*have.configs)["min.insync.replicas"] = "1";
    auto plan = ComputePlan({a}, Cluster(1, {have}));
    CHECK(Find(plan, "a").action == TopicAction::kOk);
    CHECK(plan.ExitCode() == 0);
  }
  SECTION("a replication factor below what the cluster could hold differs and is not applied") {
    auto have = Have(a);
    have.replication = 2;
    auto plan = ComputePlan({a}, Cluster(3, {have}));
    const auto& t = Find(plan, "a");
    REQUIRE(t.action == TopicAction::kDiffers);
    REQUIRE(t.differences.size() == 1);
    CHECK(t.differences[0].field == "replication");
    CHECK(t.differences[0].actual == "2");
    CHECK(t.differences[0].declared == "3");
    CHECK_FALSE(t.differences[0].applicable);
  }
}

TEST_CASE("observation errors make the plan fail", "[topics][admin]") {
  auto a = Want("a", 6);
  auto observed = Cluster(3, {Have(a)});
  observed.errors.push_back("DescribeConfigs failed: authorization");
  auto plan = ComputePlan({a}, observed);
  CHECK(plan.ExitCode() == 1);
}

TEST_CASE("the JSON plan carries actions, both numbers and the summary", "[topics][admin]") {
  auto a = Want("a", 6), b = Want("b", 12);
  auto have = Have(a);
  have.partitions = 3;
  ObservedTopic extra;
  extra.name = "scratch";
  auto j = herald::kafka::PlanToJson(ComputePlan({a, b}, Cluster(3, {have, extra})));
  CHECK(j["changes_pending"] == true);
  CHECK(j["exit_code"] == 2);
  CHECK(j["summary"]["create"] == 1);
  CHECK(j["summary"]["differs"] == 1);
  CHECK(j["summary"]["undeclared"] == 1);
  REQUIRE(j["topics"].size() == 3);
  CHECK(j["topics"][0]["action"] == "differs");
  CHECK(j["topics"][0]["differences"][0]["actual"] == "3");
  CHECK(j["topics"][0]["differences"][0]["declared"] == "6");
  CHECK(j["topics"][1]["action"] == "create");
  CHECK(j["topics"][1]["declared"]["partitions"] == 12);
  CHECK(j["topics"][1]["declared"]["configs"]["min.insync.replicas"] == "2");
  CHECK(j["topics"][2]["action"] == "undeclared");
}

TEST_CASE("the declared topics carry topics.json's defaults", "[topics][admin]") {
  auto desired = herald::kafka::DeclaredTopics();
  REQUIRE(desired.size() == herald::topics::Catalog().All().size());
  for (const auto& d : desired) {
    const auto* spec = herald::topics::Catalog().Find(d.name);
    REQUIRE(spec);
    CHECK(d.partitions == spec->partitions);
    CHECK(d.replication == spec->replication);
    CHECK(d.retention_ms == spec->retention_ms);
    CHECK(d.cleanup_policy == spec->cleanup);
    CHECK(d.min_insync_replicas == 2);  // topics.json: defaults.min_insync_replicas
  }
}

TEST_CASE("the apply report says what happened", "[topics][admin]") {
  herald::kafka::ApplyReport empty;
  CHECK(empty.ExitCode() == 0);
  CHECK(herald::kafka::FormatApplyReport(empty).find("nothing to do") != std::string::npos);
  herald::kafka::ApplyReport failed;
  failed.failed.push_back("CreateTopics is not supported by this broker");
  CHECK(failed.ExitCode() == 1);
  CHECK(herald::kafka::FormatApplyReport(failed).find("failed: CreateTopics is not supported") !=
        std::string::npos);
}
