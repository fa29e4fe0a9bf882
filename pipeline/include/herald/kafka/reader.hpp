#pragma once
// Reading retained records without a consumer group: the newest records of a topic, or one
// record by partition and offset. For tools that look at a topic (the admin API's dead-letter
// browser and re-drive) and must not join or disturb any group.
//
// Thread safety: one reader per thread.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/kafka/types.hpp"

namespace herald::kafka {

struct StoredRecord {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::int64_t timestamp_ms = -1;  // the record's timestamp (create or log-append time)
  std::optional<std::string> key;
  std::string value;
  std::vector<Header> headers;
};

class TopicReader {
 public:
  TopicReader(const std::string& brokers, const Settings& settings);
  ~TopicReader();

  /// The newest records of `topic`: up to `limit` from the end of each partition, then the
  /// `limit` newest of those by timestamp (newest first). Throws TransientError when the
  /// broker does not answer within `timeout`.
  std::vector<StoredRecord> Tail(const std::string& topic, std::size_t limit, std::chrono::milliseconds timeout);

  /// The record at (topic, partition, offset); nullopt when the partition does not exist or
  /// the offset is not retained. Throws TransientError as above.
  std::optional<StoredRecord> At(const std::string& topic, std::int32_t partition, std::int64_t offset,
                                 std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::kafka
