#pragma once
// Reading retained records without a consumer group: the newest records of a topic, or one
// record by partition and offset. For tools that look at a topic (the admin API's dead-letter
// browser and re-drive) and must not join or disturb any group.
//
// Thread safety: one reader per thread.

#include <chrono>
#include <functional>
#include <map>
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

  /// Records of `topic` whose timestamp is in [from_ms, to_ms), streamed to `sink` partition
  /// by partition, each in offset order. Where each partition starts and ends is asked of the
  /// broker's time index (offsetsForTimes); a broker that cannot answer (the embedded mock
  /// cluster always says -1) is detected by checking the partition's last record, and the
  /// partition is scanned from its first retained record instead. Every record is checked
  /// against the range either way. Reads what the partitions held when the scan started.
  struct ScanOptions {
    std::vector<std::int32_t> partitions;  // empty = all
    std::int64_t from_ms = 0;
    std::int64_t to_ms = 0;
    bool force_scan = false;               // skip the time index
    std::chrono::milliseconds timeout{10'000};  // per broker request, and per stalled fetch
  };
  struct ScanPlan {
    std::int32_t partition = 0;
    std::int64_t start = 0;  // first offset read
    std::int64_t end = 0;    // first offset not read
    bool time_index = false; // start/end came from the broker's time index
  };
  struct ScanResult {
    std::vector<ScanPlan> plan;
    std::int64_t read = 0;     // records read
    std::int64_t in_range = 0; // of those, in the time range (handed to the sink)
  };
  /// `progress(read, to_read)` is called at most once a second. Throws TransientError on a
  /// broker error and ConfigError for a partition the topic does not have.
  ScanResult Scan(const std::string& topic, const ScanOptions& options,
                  const std::function<void(StoredRecord&&)>& sink,
                  const std::function<void(std::int64_t read, std::int64_t to_read)>& progress = {});

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::kafka
