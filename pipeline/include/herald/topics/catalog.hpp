#pragma once
// Herald's Kafka topics, read from topics/topics.json (compiled in). The only place topic
// names come from: stages ask the catalog by role, never spell a name.

#include <chrono>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace herald::topics {

struct TopicSpec {
  std::string name;
  std::string family;     // events | requests | deliver | retry | status | dlq
  std::string source;     // events: auth | ugc | content | admin
  std::string channel;    // deliver: email | sms | telegram | push
  std::string priority;   // deliver: high | normal | low
  std::string tier;       // retry: 30s | 5m | 1h
  std::chrono::seconds delay{0};  // retry: how long records wait
  int partitions = 1;
  int replication = 1;
  std::int64_t retention_ms = 0;
  std::string cleanup;    // delete | compact
  std::string key;        // what the record key is
  std::string purpose;
};

class TopicCatalog {
 public:
  /// Parses a topics.json document; throws ConfigError naming the bad entry.
  explicit TopicCatalog(const nlohmann::json& doc);

  const std::vector<TopicSpec>& All() const { return topics_; }
  /// defaults.min_insync_replicas (1 when absent).
  int MinInsyncReplicas() const { return min_insync_replicas_; }
  const TopicSpec* Find(std::string_view name) const;

  /// Role lookups; each throws ConfigError if topics.json does not declare the topic.
  const std::string& Events(std::string_view source) const;
  /// The requests topic (normal and low priority).
  const std::string& Requests() const;
  /// Where plan writes a request of this priority: the high-priority requests topic for
  /// "high" when topics.json declares one, else Requests().
  const std::string& Requests(std::string_view priority) const;
  const std::string& Deliver(std::string_view channel, std::string_view priority) const;
  const std::string& Status() const;
  const std::string& Dlq() const;
  std::vector<const TopicSpec*> Family(std::string_view family) const;
  /// Herald's consumer groups under their default names, with the topics each consumes:
  /// herald-plan (events), herald-enrich (requests), herald-deliver-<channel>, herald-retry,
  /// herald-ledger (status).
  std::map<std::string, std::vector<std::string>> ConsumerGroups() const;

 private:
  const TopicSpec& One(std::string_view family, std::string_view a = {},
                       std::string_view b = {}) const;
  std::vector<TopicSpec> topics_;
  int min_insync_replicas_ = 1;
};

/// The compiled-in catalog (topics/topics.json).
const TopicCatalog& Catalog();

}  // namespace herald::topics
