#pragma once
// Plain value types shared by the producer and the consumer loop.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace herald::kafka {

/// librdkafka settings passed through verbatim ("bootstrap.servers", "security.protocol", ...).
using Settings = std::map<std::string, std::string>;

struct Header {
  std::string key;
  std::string value;
};

/// A record to produce. `partition` -1 lets the partitioner hash the key.
struct OutRecord {
  std::string topic;
  std::string key;
  std::string value;
  std::vector<Header> headers;
  std::int32_t partition = -1;
  std::int64_t timestamp_ms = 0;  // the record's CreateTime; 0 = now
};

/// The broker's answer for one produced record.
struct DeliveryReport {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  bool ok = false;
  std::string error;  // empty when ok
};

struct TopicPartition {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  auto operator<=>(const TopicPartition&) const = default;
};

}  // namespace herald::kafka
