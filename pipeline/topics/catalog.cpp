#include "herald/topics/catalog.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"

namespace herald::topics {

TopicCatalog::TopicCatalog(const nlohmann::json& doc) {
  static const std::set<std::string> kFamilies = {"events", "requests", "deliver",
                                                  "retry",  "status",   "dlq"};
  if (!doc.contains("topics") || !doc["topics"].is_array()) {
    throw ConfigError("topics.json: expected a \"topics\" array");
  }
  try {
    min_insync_replicas_ = doc.value(nlohmann::json::json_pointer("/defaults/min_insync_replicas"), 1);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("topics.json: defaults.min_insync_replicas: ") + e.what());
  }
  if (min_insync_replicas_ < 1) throw ConfigError("topics.json: defaults.min_insync_replicas must be >= 1");
  std::set<std::string> seen;
  for (const auto& t : doc["topics"]) {
    TopicSpec s;
    try {
      s.name = t.at("name").get<std::string>();
      s.family = t.at("family").get<std::string>();
      s.source = t.value("source", "");
      s.channel = t.value("channel", "");
      s.priority = t.value("priority", "");
      s.tier = t.value("tier", "");
      s.delay = std::chrono::seconds(t.value("delay_s", 0));
      s.partitions = t.at("partitions").get<int>();
      s.replication = t.at("replication").get<int>();
      s.retention_ms = t.at("retention_ms").get<std::int64_t>();
      s.cleanup = t.at("cleanup").get<std::string>();
      s.key = t.at("key").get<std::string>();
      s.purpose = t.value("purpose", "");
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError("topics.json: entry " + t.dump() + ": " + e.what());
    }
    if (!kFamilies.count(s.family)) {
      throw ConfigError("topics.json: " + s.name + ": unknown family '" + s.family + "'");
    }
    if (s.partitions < 1 || s.replication < 1) {
      throw ConfigError("topics.json: " + s.name + ": partitions and replication must be >= 1");
    }
    if (s.cleanup != "delete" && s.cleanup != "compact") {
      throw ConfigError("topics.json: " + s.name + ": cleanup must be delete or compact");
    }
    if (!seen.insert(s.name).second) {
      throw ConfigError("topics.json: " + s.name + " is declared twice");
    }
    topics_.push_back(std::move(s));
  }
}

const TopicSpec* TopicCatalog::Find(std::string_view name) const {
  for (const auto& t : topics_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const TopicSpec& TopicCatalog::One(std::string_view family, std::string_view a,
                                   std::string_view b) const {
  for (const auto& t : topics_) {
    if (t.family != family) continue;
    if (family == "events" && t.source != a) continue;
    if (family == "requests" && t.priority != a) continue;
    if (family == "deliver" && (t.channel != a || t.priority != b)) continue;
    return t;
  }
  std::string what(family);
  if (!a.empty()) what += " " + std::string(a);
  if (!b.empty()) what += " " + std::string(b);
  throw ConfigError("topics.json declares no topic for " + what);
}

const std::string& TopicCatalog::Events(std::string_view source) const {
  return One("events", source).name;
}
const std::string& TopicCatalog::Requests() const { return One("requests").name; }
const std::string& TopicCatalog::Requests(std::string_view priority) const {
  if (priority == "high") {
    for (const auto& t : topics_) {
      if (t.family == "requests" && t.priority == "high") return t.name;
    }
  }
  return Requests();
}
const std::string& TopicCatalog::Deliver(std::string_view channel,
                                         std::string_view priority) const {
  return One("deliver", channel, priority).name;
}
const std::string& TopicCatalog::Status() const { return One("status").name; }
const std::string& TopicCatalog::Dlq() const { return One("dlq").name; }

std::map<std::string, std::vector<std::string>> TopicCatalog::ConsumerGroups() const {
  std::map<std::string, std::vector<std::string>> groups;
  for (const auto& t : topics_) {
    if (t.family == "events") groups["herald-plan"].push_back(t.name);
    if (t.family == "requests") groups["herald-enrich"].push_back(t.name);
    if (t.family == "deliver") groups["herald-deliver-" + t.channel].push_back(t.name);
    if (t.family == "retry") groups["herald-retry"].push_back(t.name);
    if (t.family == "status") groups["herald-ledger"].push_back(t.name);
  }
  return groups;
}

std::vector<const TopicSpec*> TopicCatalog::Family(std::string_view family) const {
  std::vector<const TopicSpec*> out;
  for (const auto& t : topics_) {
    if (t.family == family) out.push_back(&t);
  }
  return out;
}

const TopicCatalog& Catalog() {
  static const TopicCatalog catalog = [] {
    for (const auto& f : embedded::Topics()) {
      if (f.path == "topics.json") return TopicCatalog(nlohmann::json::parse(f.content));
    }
    throw ConfigError("topics.json is not compiled in");
  }();
  return catalog;
}

}  // namespace herald::topics
