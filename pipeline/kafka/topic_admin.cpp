#include "herald/kafka/topic_admin.hpp"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/topics/catalog.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {
namespace {

using detail::AdminOptionsHandle;
using detail::ConfigResourceHandle;
using detail::EventHandle;
using detail::MetadataHandle;
using detail::NewTopicHandle;

// librdkafka's mock cluster names itself "mockCluster<hex>".
constexpr std::string_view kMockClusterPrefix = "mockCluster";

constexpr const char* kUnset = "(unset)";

std::string Join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::map<std::string, std::string> ManagedConfigs(const DesiredTopic& d) {
  return {{kRetentionMs, std::to_string(d.retention_ms)},
          {kCleanupPolicy, d.cleanup_policy},
          {kMinInsyncReplicas, std::to_string(d.min_insync_replicas)}};
}

std::string Describe(const DesiredTopic& d) {
  std::string out =
      "partitions " + std::to_string(d.partitions) + ", replication " + std::to_string(d.replication);
  for (const auto& [k, v] : ManagedConfigs(d)) out += ", " + k + "=" + v;
  return out;
}

std::string DescribeDifference(const std::string& topic, const Difference& d) {
  return topic + ": " + d.field + " " + d.actual + " on the cluster, " + d.declared + " declared" +
         (d.note.empty() ? "" : " (" + d.note + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Declarations

std::vector<DesiredTopic> DesiredTopics(const topics::TopicCatalog& catalog, int min_insync_replicas) {
  std::vector<DesiredTopic> out;
  for (const auto& t : catalog.All()) {
    DesiredTopic d;
    d.name = t.name;
    d.partitions = t.partitions;
    d.replication = t.replication;
    d.min_insync_replicas = min_insync_replicas;
    d.retention_ms = t.retention_ms;
    d.cleanup_policy = t.cleanup;
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<DesiredTopic> DeclaredTopics() {
  return DesiredTopics(topics::Catalog(), topics::Catalog().MinInsyncReplicas());
}

// ---------------------------------------------------------------------------------------
// The plan (pure)

const ObservedTopic* ClusterState::Find(const std::string& name) const {
  for (const auto& t : topics) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const char* ActionName(TopicAction action) {
  switch (action) {
    case TopicAction::kOk:
      return "ok";
    case TopicAction::kCreate:
      return "create";
    case TopicAction::kDiffers:
      return "differs";
    case TopicAction::kUndeclared:
      return "undeclared";
  }
  return "?";
}

bool Plan::ChangesPending() const {
  return std::any_of(topics.begin(), topics.end(), [](const TopicPlan& t) {
    return t.action == TopicAction::kCreate || t.action == TopicAction::kDiffers;
  });
}

int Plan::ExitCode() const {
  if (!errors.empty()) return 1;
  return ChangesPending() ? 2 : 0;
}

std::size_t Plan::Count(TopicAction action) const {
  return static_cast<std::size_t>(
      std::count_if(topics.begin(), topics.end(), [&](const TopicPlan& t) { return t.action == action; }));
}

Plan ComputePlan(const std::vector<DesiredTopic>& desired, const ClusterState& observed) {
  Plan plan;
  plan.brokers = observed.brokers;
  plan.configs_compared = observed.configs_compared;
  plan.notes = observed.notes;
  plan.errors = observed.errors;

  std::set<std::string> declared;
  int capped = 0;
  bool min_isr_capped = false;
  for (const auto& want : desired) {
    declared.insert(want.name);
    TopicPlan tp;
    tp.name = want.name;
    tp.desired = want;
    // A replication factor above the broker count cannot be created at all; a development
    // cluster of one broker still gets every topic, with the factor it can hold.
    if (observed.brokers > 0 && want.replication > observed.brokers) {
      tp.desired.replication = observed.brokers;
      tp.warnings.push_back("replication capped at " + std::to_string(observed.brokers) + " (declared " +
                            std::to_string(want.replication) + "): the cluster has only " +
                            std::to_string(observed.brokers) + " broker(s)");
      ++capped;
    }
    // min.insync.replicas above the replication would reject every acks=all write.
    if (tp.desired.min_insync_replicas > tp.desired.replication) {
      tp.desired.min_insync_replicas = tp.desired.replication;
      min_isr_capped = true;
      tp.warnings.push_back("min.insync.replicas capped at " + std::to_string(tp.desired.replication) +
                            " (declared " + std::to_string(want.min_insync_replicas) +
                            ") to match the replication");
    }

    const ObservedTopic* have = observed.Find(want.name);
    if (!have) {
      tp.action = TopicAction::kCreate;
      plan.topics.push_back(std::move(tp));
      continue;
    }
    if (have->partitions < tp.desired.partitions) {
      tp.differences.push_back(
          {"partitions", std::to_string(have->partitions), std::to_string(tp.desired.partitions), false,
           "adding partitions changes which partition each key maps to and breaks per-key "
           "ordering; add them by hand (kafka-topics --alter --partitions " +
               std::to_string(tp.desired.partitions) + ") once its consumers are drained"});
    } else if (have->partitions > tp.desired.partitions) {
      tp.differences.push_back(
          {"partitions", std::to_string(have->partitions), std::to_string(tp.desired.partitions), false,
           "partitions are never reduced (Kafka cannot remove them); declare " +
               std::to_string(have->partitions) + " in topics/topics.json or recreate the topic"});
    }
    if (have->replication != tp.desired.replication) {
      tp.differences.push_back({"replication", std::to_string(have->replication),
                                std::to_string(tp.desired.replication), false,
                                "changing the replication factor needs a partition reassignment "
                                "(kafka-reassign-partitions)"});
    }
    if (have->configs) {
      for (const auto& [name, value] : ManagedConfigs(tp.desired)) {
        auto it = have->configs->find(name);
        std::string actual = it == have->configs->end() ? kUnset : it->second;
        if (actual != value) tp.differences.push_back({name, actual, value, true, ""});
      }
    }
    tp.action = tp.differences.empty() ? TopicAction::kOk : TopicAction::kDiffers;
    plan.topics.push_back(std::move(tp));
  }

  std::vector<TopicPlan> undeclared;
  for (const auto& have : observed.topics) {
    if (declared.count(have.name)) continue;
    TopicPlan tp;
    tp.name = have.name;
    tp.action = TopicAction::kUndeclared;
    undeclared.push_back(std::move(tp));
  }
  std::sort(undeclared.begin(), undeclared.end(),
            [](const TopicPlan& a, const TopicPlan& b) { return a.name < b.name; });
  for (auto& tp : undeclared) plan.topics.push_back(std::move(tp));

  if (capped > 0) {
    std::string b = std::to_string(observed.brokers);
    plan.notes.push_back("the cluster has " + b + " broker(s): replication capped at " + b +
                         (min_isr_capped ? " (min.insync.replicas at most " + b + ")" : std::string()) +
                         " for " + std::to_string(capped) + " topic(s) that declare more");
  }
  return plan;
}

std::map<std::string, std::string> AlterConfigsFor(const TopicPlan& topic, const ObservedTopic& observed) {
  std::map<std::string, std::string> configs;
  for (const auto& d : topic.differences) {
    if (d.applicable) configs[d.field] = d.declared;
  }
  if (configs.empty()) return configs;
  for (const auto& [k, v] : observed.overrides) configs.emplace(k, v);  // keeps the corrected values
  return configs;
}

// Per-topic capping warnings would repeat for every topic of a small cluster: the text plan
// has them in one note, the JSON plan per topic.
std::string FormatPlan(const Plan& plan) {
  std::ostringstream out;
  for (const auto& t : plan.topics) {
    char action[16];
    std::snprintf(action, sizeof action, "%-10s", ActionName(t.action));
    out << action << " " << t.name;
    switch (t.action) {
      case TopicAction::kCreate:
        out << ": " << Describe(t.desired) << "\n";
        break;
      case TopicAction::kUndeclared:
        out << " (left alone)\n";
        break;
      case TopicAction::kOk:
        out << "\n";
        break;
      case TopicAction::kDiffers:
        out << "\n";
        for (const auto& d : t.differences) {
          out << "             " << d.field << ": " << d.actual << " on the cluster, " << d.declared
              << " declared" << (d.applicable ? " (apply alters it)" : " (not applied: " + d.note + ")")
              << "\n";
        }
        break;
    }
  }
  if (!plan.notes.empty() || !plan.errors.empty()) out << "\n";
  for (const auto& n : plan.notes) out << "note: " << n << "\n";
  for (const auto& e : plan.errors) out << "error: " << e << "\n";
  out << "\nPlan: " << plan.Count(TopicAction::kCreate) << " to create, " << plan.Count(TopicAction::kDiffers)
      << " differ, " << plan.Count(TopicAction::kOk) << " ok, " << plan.Count(TopicAction::kUndeclared)
      << " undeclared (left alone)" << (plan.configs_compared ? "" : "; configs not compared") << ".\n";
  return out.str();
}

nlohmann::json PlanToJson(const Plan& plan) {
  nlohmann::json topics = nlohmann::json::array();
  for (const auto& t : plan.topics) {
    nlohmann::json j = {{"name", t.name}, {"action", ActionName(t.action)}};
    if (t.action != TopicAction::kUndeclared) {
      j["declared"] = {{"partitions", t.desired.partitions},
                       {"replication", t.desired.replication},
                       {"configs", ManagedConfigs(t.desired)}};
    }
    if (t.action == TopicAction::kDiffers) {
      j["differences"] = nlohmann::json::array();
      for (const auto& d : t.differences) {
        j["differences"].push_back({{"field", d.field},
                                    {"actual", d.actual},
                                    {"declared", d.declared},
                                    {"applied_by_apply", d.applicable},
                                    {"note", d.note}});
      }
    }
    if (!t.warnings.empty()) j["warnings"] = t.warnings;
    topics.push_back(std::move(j));
  }
  return {{"brokers", plan.brokers},
          {"configs_compared", plan.configs_compared},
          {"changes_pending", plan.ChangesPending()},
          {"exit_code", plan.ExitCode()},
          {"summary",
           {{"create", plan.Count(TopicAction::kCreate)},
            {"differs", plan.Count(TopicAction::kDiffers)},
            {"ok", plan.Count(TopicAction::kOk)},
            {"undeclared", plan.Count(TopicAction::kUndeclared)}}},
          {"topics", topics},
          {"notes", plan.notes},
          {"errors", plan.errors}};
}

std::string FormatApplyReport(const ApplyReport& report) {
  std::ostringstream out;
  for (const auto& d : report.done) out << d << "\n";
  for (const auto& w : report.warnings) out << "warning: " << w << "\n";
  for (const auto& s : report.skipped) out << "not applied: " << s << "\n";
  for (const auto& n : report.notes) out << "note: " << n << "\n";
  for (const auto& f : report.failed) out << "failed: " << f << "\n";
  if (report.done.empty() && report.skipped.empty() && report.failed.empty()) {
    out << (report.notes.empty() ? "nothing to do: every declared topic matches the cluster\n"
                                 : "nothing to do as far as the cluster could tell (see the notes)\n");
  }
  out << "Apply: " << report.created << " created, " << report.altered << " altered, "
      << report.skipped.size() << " left to an operator, " << report.failed.size() << " failed.\n";
  return out.str();
}

// ---------------------------------------------------------------------------------------
// The cluster

struct TopicAdmin::Impl {
  Options options;
  detail::KafkaHandle rk;
  bool mock = false;
  // Broker to send admin requests to, -1 for librdkafka's choice (the controller).
  std::int32_t admin_broker = -1;

  bool Unsupported(rd_kafka_resp_err_t err) const {
    return err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE || err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION;
  }

  std::string UnsupportedWhy(const std::string& call, const std::string& detail) const {
    return call + " is not supported by this broker (" +
           (mock ? std::string("the embedded mock cluster implements no admin APIs")
                 : "librdkafka: " + detail) +
           ")";
  }

  AdminOptionsHandle AdminOptions(rd_kafka_admin_op_t op) const {
    AdminOptionsHandle o{rd_kafka_AdminOptions_new(rk.get(), op)};
    char err[512];
    int ms = static_cast<int>(options.timeout.count());
    if (rd_kafka_AdminOptions_set_request_timeout(o.get(), ms, err, sizeof err)) throw ConfigError(err);
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
        rd_kafka_AdminOptions_set_operation_timeout(o.get(), ms, err, sizeof err)) {
      throw ConfigError(err);
    }
    if (admin_broker >= 0 && rd_kafka_AdminOptions_set_broker(o.get(), admin_broker, err, sizeof err)) {
      throw ConfigError(err);
    }
    return o;
  }

  struct Answer {
    detail::QueueHandle queue;
    EventHandle event;  // the result; null when none arrived in time
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    std::string detail;
  };

  // Issues an admin call with `issue(queue, options)` and waits for its result event.
  template <typename Issue>
  Answer Call(const char* call, rd_kafka_admin_op_t op, rd_kafka_event_type_t type, Issue issue) const {
    static auto log = Logger("topics");
    Answer a;
    a.queue.reset(rd_kafka_queue_new(rk.get()));
    auto opts = AdminOptions(op);
    issue(a.queue.get(), opts.get());
    // librdkafka answers every admin call by its request timeout; the margin only guards
    // against a lost event.
    auto deadline = std::chrono::steady_clock::now() + options.timeout + std::chrono::seconds(5);
    while (!a.event && std::chrono::steady_clock::now() < deadline) {
      EventHandle ev{rd_kafka_queue_poll(a.queue.get(), 200)};
      if (ev && rd_kafka_event_type(ev.get()) == type) a.event = std::move(ev);
    }
    if (!a.event) {
      a.err = RD_KAFKA_RESP_ERR__TIMED_OUT;
      a.detail = "no answer within " + std::to_string(options.timeout.count()) + " ms";
    } else if ((a.err = rd_kafka_event_error(a.event.get()))) {
      a.detail = rd_kafka_event_error_string(a.event.get());
    }
    if (a.err) log->debug("{}: {} ({})", call, a.detail, rd_kafka_err2name(a.err));
    return a;
  }

  // Why a whole admin call failed, for an operator.
  std::string Failure(const std::string& call, const Answer& a) const {
    return Unsupported(a.err) ? UnsupportedWhy(call, a.detail) : call + " failed: " + a.detail;
  }
};

TopicAdmin::TopicAdmin(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  // A producer handle that never produces. No topic handles and metadata for all topics
  // only: a metadata request naming a topic may create it on brokers (and on the mock
  // cluster) that auto-create topics.
  auto conf = detail::BuildConf({{"bootstrap.servers", options.brokers},
                                 {"client.id", "herald-topics"},
                                 {"allow.auto.create.topics", "false"}},
                                options.settings);
  impl_->rk = detail::CreateHandle(RD_KAFKA_PRODUCER, std::move(conf));
}

TopicAdmin::~TopicAdmin() = default;

ClusterState TopicAdmin::Observe(const std::vector<DesiredTopic>& declared) {
  static auto log = Logger("topics");
  rd_kafka_t* rk = impl_->rk.get();
  int ms = static_cast<int>(impl_->options.timeout.count());
  ClusterState state;

  const rd_kafka_metadata_t* raw = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &raw, ms);
  MetadataHandle md{raw};
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || !md) {
    throw TransientError("cannot read the cluster's metadata from " + impl_->options.brokers + ": " +
                         rd_kafka_err2str(err) +
                         " (is the broker reachable? set --brokers or HERALD_BROKERS)");
  }
  state.brokers = md->broker_cnt;
  std::set<std::int32_t> broker_ids;
  for (int i = 0; i < md->broker_cnt; ++i) broker_ids.insert(md->brokers[i].id);
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    std::string name = t.topic;
    if (name.rfind("__", 0) == 0) continue;  // Kafka's own (__consumer_offsets, ...)
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) continue;
    if (t.err) {
      state.notes.push_back("metadata of " + name + ": " + rd_kafka_err2str(t.err));
    }
    ObservedTopic o;
    o.name = name;
    o.partitions = t.partition_cnt;
    for (int p = 0; p < t.partition_cnt; ++p) {
      if (t.partitions[p].id == 0) o.replication = t.partitions[p].replica_cnt;
    }
    state.topics.push_back(std::move(o));
  }

  if (char* id = rd_kafka_clusterid(rk, ms)) {
    state.cluster_id = id;
    rd_kafka_mem_free(rk, id);
  }
  impl_->mock = state.cluster_id.rfind(kMockClusterPrefix, 0) == 0;
  // librdkafka sends admin requests to the controller and waits for it to be known. The
  // mock cluster (2.0.x) reports controller 0, which is none of its brokers (ids from 1),
  // so every admin call would only time out; ask a broker that exists instead, which
  // answers at once (a real cluster with an unknown controller answers NOT_CONTROLLER).
  std::int32_t controller = rd_kafka_controllerid(rk, ms);
  if (!broker_ids.empty() && !broker_ids.count(controller)) {
    impl_->admin_broker = *broker_ids.begin();
    log->debug("controller {} is not a known broker; admin requests go to broker {}", controller,
               impl_->admin_broker);
  }

  std::vector<ConfigResourceHandle> resources;
  for (const auto& d : declared) {
    if (state.Find(d.name)) {
      resources.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, d.name.c_str()));
    }
  }
  if (resources.empty()) {
    state.configs_compared = true;  // nothing to compare
    return state;
  }
  std::vector<rd_kafka_ConfigResource_t*> raw_resources;
  for (auto& r : resources) raw_resources.push_back(r.get());
  auto answer =
      impl_->Call("DescribeConfigs", RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT,
                  [&](rd_kafka_queue_t* q, rd_kafka_AdminOptions_t* o) {
                    rd_kafka_DescribeConfigs(rk, raw_resources.data(), raw_resources.size(), o, q);
                  });
  if (answer.err) {
    (impl_->Unsupported(answer.err) ? state.notes : state.errors)
        .push_back(impl_->Failure("DescribeConfigs", answer) + "; configs not compared");
    return state;
  }
  state.configs_compared = true;
  size_t n = 0;
  const rd_kafka_ConfigResource_t** results = rd_kafka_DescribeConfigs_result_resources(
      rd_kafka_event_DescribeConfigs_result(answer.event.get()), &n);
  for (size_t i = 0; i < n; ++i) {
    std::string name = rd_kafka_ConfigResource_name(results[i]);
    if (auto rerr = rd_kafka_ConfigResource_error(results[i])) {
      const char* why = rd_kafka_ConfigResource_error_string(results[i]);
      state.errors.push_back("DescribeConfigs " + name + ": " + (why ? why : rd_kafka_err2str(rerr)));
      continue;
    }
    auto it = std::find_if(state.topics.begin(), state.topics.end(),
                           [&](const ObservedTopic& t) { return t.name == name; });
    if (it == state.topics.end()) continue;
    std::map<std::string, std::string> configs;
    size_t cnt = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(results[i], &cnt);
    for (size_t e = 0; e < cnt; ++e) {
      const char* key = rd_kafka_ConfigEntry_name(entries[e]);
      const char* value = rd_kafka_ConfigEntry_value(entries[e]);
      if (value) configs[key] = value;
      if (rd_kafka_ConfigEntry_source(entries[e]) == RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG) {
        if (value && !rd_kafka_ConfigEntry_is_sensitive(entries[e])) {
          it->overrides[key] = value;
        } else {
          it->has_hidden_override = true;
        }
      }
    }
    it->configs = std::move(configs);
  }
  return state;
}

ApplyReport TopicAdmin::Apply(const Plan& plan, const ClusterState& observed) {
  rd_kafka_t* rk = impl_->rk.get();
  ApplyReport report;
  report.notes = plan.notes;
  report.failed = plan.errors;

  // Creates.
  std::vector<const TopicPlan*> creates;
  for (const auto& t : plan.topics) {
    if (t.action == TopicAction::kCreate) creates.push_back(&t);
  }
  std::vector<NewTopicHandle> new_topics;  // own what `raw` points to until the call is answered
  std::vector<rd_kafka_NewTopic_t*> raw;
  std::vector<std::string> names;
  {
    char err[512];
    for (const auto* t : creates) {
      NewTopicHandle nt{rd_kafka_NewTopic_new(t->name.c_str(), t->desired.partitions, t->desired.replication,
                                              err, sizeof err)};
      if (!nt) {
        report.failed.push_back("create " + t->name + ": " + err);
        continue;
      }
      bool configured = true;
      for (const auto& [k, v] : ManagedConfigs(t->desired)) {
        if (rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str())) {
          report.failed.push_back("create " + t->name + ": cannot set " + k + "=" + v);
          configured = false;
        }
      }
      if (!configured) continue;
      raw.push_back(nt.get());
      names.push_back(t->name);
      new_topics.push_back(std::move(nt));
    }
  }
  if (!raw.empty()) {
    auto answer =
        impl_->Call("CreateTopics", RD_KAFKA_ADMIN_OP_CREATETOPICS, RD_KAFKA_EVENT_CREATETOPICS_RESULT,
                    [&](rd_kafka_queue_t* q, rd_kafka_AdminOptions_t* o) {
                      rd_kafka_CreateTopics(rk, raw.data(), raw.size(), o, q);
                    });
    if (answer.err) {
      report.failed.push_back(impl_->Failure("CreateTopics", answer) + "; not created: " + Join(names));
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(answer.event.get()), &n);
      for (size_t i = 0; i < n; ++i) {
        std::string name = rd_kafka_topic_result_name(results[i]);
        auto terr = rd_kafka_topic_result_error(results[i]);
        const char* why = rd_kafka_topic_result_error_string(results[i]);
        auto it =
            std::find_if(creates.begin(), creates.end(), [&](const TopicPlan* t) { return t->name == name; });
        if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
          report.warnings.push_back(name +
                                    " already exists (created meanwhile); run plan again to compare it");
        } else if (terr) {
          report.failed.push_back("create " + name + ": " + (why ? why : rd_kafka_err2str(terr)));
        } else {
          ++report.created;
          report.done.push_back("created " + name +
                                (it != creates.end() ? ": " + Describe((*it)->desired) : ""));
        }
      }
    }
  }

  // Config changes. AlterConfigs replaces a topic's whole dynamic config, so the request
  // carries every override the topic already has, with the managed ones corrected.
  std::vector<ConfigResourceHandle> resources;
  std::vector<std::string> changes;  // per resource, for the report
  for (const auto& t : plan.topics) {
    if (t.action != TopicAction::kDiffers) continue;
    std::vector<const Difference*> fix;
    for (const auto& d : t.differences) {
      if (d.applicable) {
        fix.push_back(&d);
      } else {
        report.skipped.push_back(DescribeDifference(t.name, d));
      }
    }
    if (fix.empty()) continue;
    const ObservedTopic* have = observed.Find(t.name);
    if (!have) continue;
    if (have->has_hidden_override) {
      report.failed.push_back(
          "cannot alter " + t.name +
          ": it has a config override the broker does not reveal, which AlterConfigs would "
          "drop; set the values by hand");
      continue;
    }
    ConfigResourceHandle r{rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t.name.c_str())};
    for (const auto& [k, v] : AlterConfigsFor(t, *have)) {
      rd_kafka_ConfigResource_set_config(r.get(), k.c_str(), v.c_str());
    }
    std::vector<std::string> what;
    for (const auto* d : fix) what.push_back(d->field + " " + d->actual + " -> " + d->declared);
    resources.push_back(std::move(r));
    changes.push_back(t.name + ": " + Join(what));
  }
  if (!resources.empty()) {
    std::vector<rd_kafka_ConfigResource_t*> raw_resources;
    for (auto& r : resources) raw_resources.push_back(r.get());
    auto answer =
        impl_->Call("AlterConfigs", RD_KAFKA_ADMIN_OP_ALTERCONFIGS, RD_KAFKA_EVENT_ALTERCONFIGS_RESULT,
                    [&](rd_kafka_queue_t* q, rd_kafka_AdminOptions_t* o) {
                      rd_kafka_AlterConfigs(rk, raw_resources.data(), raw_resources.size(), o, q);
                    });
    if (answer.err) {
      report.failed.push_back(impl_->Failure("AlterConfigs", answer) +
                              "; not altered: " + Join(changes, "; "));
    } else {
      size_t n = 0;
      const rd_kafka_ConfigResource_t** results =
          rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(answer.event.get()), &n);
      for (size_t i = 0; i < n; ++i) {
        std::string name = rd_kafka_ConfigResource_name(results[i]);
        auto change = std::find_if(changes.begin(), changes.end(),
                                   [&](const std::string& c) { return c.rfind(name + ": ", 0) == 0; });
        std::string what = change != changes.end() ? *change : name;
        if (auto rerr = rd_kafka_ConfigResource_error(results[i])) {
          const char* why = rd_kafka_ConfigResource_error_string(results[i]);
          report.failed.push_back("alter " + what + ": " + (why ? why : rd_kafka_err2str(rerr)));
        } else {
          ++report.altered;
          report.done.push_back("altered " + what);
        }
      }
    }
  }
  return report;
}

}  // namespace herald::kafka
