#pragma once
// Topics as code: compares the topics declared in topics/topics.json with what a cluster
// holds (`herald topics plan`) and creates the missing ones and aligns their configs
// (`herald topics apply`).
//
// The comparison is a pure function (ComputePlan) over two value types: the desired topics
// and an observed ClusterState. TopicAdmin is the only part that talks to Kafka: it reads
// the cluster (metadata for every topic, DescribeConfigs for the declared ones) and executes
// a plan (CreateTopics, AlterConfigs).
//
// What is never done: topics are never deleted (undeclared topics are listed and left
// alone), partition counts are never changed (they cannot be reduced, and increasing them
// changes which partition each key maps to, breaking per-key ordering), replication factors
// are never changed (that needs a partition reassignment). Those differences are reported.
//
// Replication is capped at the cluster's broker count (with a warning), and
// min.insync.replicas at the resulting replication, so a one-broker development cluster
// can hold the declared topics.
//
// Admin APIs a broker lacks (librdkafka's mock cluster, used as Herald's embedded broker,
// implements none of CreateTopics, DescribeConfigs, AlterConfigs) are explained in the
// plan's notes; whatever metadata can tell (missing topics, partitions, replication) is
// still compared.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "herald/kafka/types.hpp"

namespace herald::topics {
class TopicCatalog;
}

namespace herald::kafka {

/// The topic configs Herald manages; every other config is left as the cluster has it.
inline constexpr const char* kRetentionMs = "retention.ms";
inline constexpr const char* kCleanupPolicy = "cleanup.policy";
inline constexpr const char* kMinInsyncReplicas = "min.insync.replicas";

/// One declared topic as the cluster should hold it.
struct DesiredTopic {
  std::string name;
  int partitions = 1;
  int replication = 1;
  int min_insync_replicas = 1;
  std::int64_t retention_ms = 0;
  std::string cleanup_policy = "delete";
};

/// The declared topics of `catalog`, with topics.json's defaults (min_insync_replicas).
std::vector<DesiredTopic> DesiredTopics(const topics::TopicCatalog& catalog, int min_insync_replicas);
/// The declared topics of the compiled-in topics/topics.json. Throws ConfigError.
std::vector<DesiredTopic> DeclaredTopics();

/// One topic as the cluster holds it.
struct ObservedTopic {
  std::string name;
  int partitions = 0;
  int replication = 0;  // replicas of partition 0
  /// Described configs (name → value), nullopt when DescribeConfigs did not answer for it.
  std::optional<std::map<std::string, std::string>> configs;
  /// Configs set on the topic itself (DYNAMIC_TOPIC_CONFIG), which AlterConfigs (a full
  /// replacement, not incremental) must send again to keep.
  std::map<std::string, std::string> overrides;
  /// A dynamic override whose value the broker does not reveal (sensitive): the topic's
  /// configs cannot be replaced without losing it.
  bool has_hidden_override = false;
};

/// What TopicAdmin::Observe saw.
struct ClusterState {
  int brokers = 0;
  std::string cluster_id;
  std::vector<ObservedTopic> topics;  // Kafka-internal topics ("__consumer_offsets") excluded
  bool configs_compared = false;      // DescribeConfigs answered
  std::vector<std::string> notes;     // what could not be observed and why (not errors)
  std::vector<std::string> errors;    // failures: the plan is incomplete

  const ObservedTopic* Find(const std::string& name) const;
};

enum class TopicAction { kOk, kCreate, kDiffers, kUndeclared };

/// "create", "ok", "differs", "undeclared".
const char* ActionName(TopicAction action);

struct Difference {
  std::string field;        // "partitions", "replication" or a config name
  std::string actual;       // as the cluster holds it ("(unset)" when the config is absent)
  std::string declared;     // as the cluster should hold it (after capping)
  bool applicable = false;  // apply fixes it (configs); partitions and replication are reported only
  std::string note;         // why it is not applied, what to do instead
};

struct TopicPlan {
  std::string name;
  TopicAction action = TopicAction::kOk;
  DesiredTopic desired;  // after capping; unset for undeclared topics
  std::vector<Difference> differences;
  std::vector<std::string> warnings;  // e.g. replication capped at the broker count
};

struct Plan {
  int brokers = 0;
  bool configs_compared = false;
  std::vector<TopicPlan> topics;  // declared order, then undeclared by name
  std::vector<std::string> notes;
  std::vector<std::string> errors;

  /// A declared topic is missing or differs from its declaration (including differences
  /// apply leaves to an operator, such as partition counts).
  bool ChangesPending() const;
  /// `herald topics plan` exit code: 1 when observing failed, 2 when changes are pending,
  /// 0 when the cluster matches the declarations.
  int ExitCode() const;
  std::size_t Count(TopicAction action) const;
};

/// The plan that brings `observed` to `desired`. Pure.
Plan ComputePlan(const std::vector<DesiredTopic>& desired, const ClusterState& observed);

/// What AlterConfigs must send for `topic`, which replaces a topic's whole dynamic config
/// (librdkafka 2.0 has no incremental variant): the topic's current overrides, with the
/// plan's applicable differences corrected. Empty when there is nothing to alter. Pure.
std::map<std::string, std::string> AlterConfigsFor(const TopicPlan& topic, const ObservedTopic& observed);

/// Human-readable plan, one block per topic, then notes and a summary line.
std::string FormatPlan(const Plan& plan);
/// Machine-readable plan ({"topics": [{"name", "action", ...}], "summary", ...}).
nlohmann::json PlanToJson(const Plan& plan);

/// What TopicAdmin::Apply did.
struct ApplyReport {
  int created = 0;
  int altered = 0;
  std::vector<std::string> done;      // "created X (...)", "altered X: retention.ms ..."
  std::vector<std::string> warnings;  // e.g. a topic created meanwhile by someone else
  std::vector<std::string> skipped;   // differences apply leaves to an operator
  std::vector<std::string> notes;     // the plan's notes (unsupported admin calls)
  std::vector<std::string> failed;    // calls that failed, with the broker's reason
  /// `herald topics apply` exit code: 1 when any call failed, else 0.
  int ExitCode() const { return failed.empty() ? 0 : 1; }
};

/// Human-readable report of an apply.
std::string FormatApplyReport(const ApplyReport& report);

/// A short-lived admin client. Never creates topics as a side effect of reading
/// (allow.auto.create.topics=false, metadata for all topics only). One per thread.
class TopicAdmin {
 public:
  struct Options {
    std::string brokers;                       // bootstrap.servers
    Settings settings;                         // raw kafka.* settings, win over defaults
    std::chrono::milliseconds timeout{15000};  // per metadata/admin request
  };
  /// Throws ConfigError on a bad setting.
  explicit TopicAdmin(const Options& options);
  ~TopicAdmin();
  TopicAdmin(const TopicAdmin&) = delete;
  TopicAdmin& operator=(const TopicAdmin&) = delete;

  /// Reads every topic's partitions and replication from metadata and the configs of the
  /// `declared` topics that exist. Throws TransientError when the cluster does not answer
  /// metadata; admin-call failures land in ClusterState::notes (unsupported) or ::errors.
  ClusterState Observe(const std::vector<DesiredTopic>& declared);

  /// Creates the plan's missing topics and alters its differing configs. Never deletes,
  /// never changes partition counts or replication. Failures land in the report.
  ApplyReport Apply(const Plan& plan, const ClusterState& observed);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::kafka
