#pragma once
// Consumer-group lag: how many records of a topic a group has not committed yet
// (high watermark minus committed offset, summed over partitions). Used to pace large
// fan-outs by downstream progress, and exported as a metric.
//
// A group that has never committed on a partition counts from the partition's low
// watermark (everything retained is lag). Thread safety: one monitor per thread.

#include <memory>
#include <string>
#include <vector>

#include "herald/kafka/types.hpp"

namespace herald::kafka {

class LagMonitor {
 public:
  LagMonitor(const std::string& brokers, const Settings& settings, std::string group);
  ~LagMonitor();

  struct PartitionLag {
    std::int32_t partition = 0;
    std::int64_t committed = -1;  // -1: the group never committed here
    std::int64_t high = 0;
    std::int64_t lag = 0;
  };
  /// Per-partition lag of the group on `topic`. Throws TransientError when the broker
  /// cannot answer.
  std::vector<PartitionLag> Partitions(const std::string& topic);
  /// Total lag on `topic`; `committed_any` tells whether the group ever committed there.
  std::int64_t Lag(const std::string& topic, bool* committed_any = nullptr);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::kafka
