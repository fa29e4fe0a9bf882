#pragma once
// Consumer-group lag: how many records of a topic a group has not committed yet
// (high watermark minus committed offset, summed over partitions). Used to pace large
// fan-outs by downstream progress, and exported as a metric.
//
// A group that has never committed on a partition counts from the partition's low
// watermark (everything retained is lag). Thread safety: one monitor per thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "herald/kafka/types.hpp"
#include "herald/metrics/registry.hpp"

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

/// Measures the lag of every given group (group -> topics) from its committed offsets on a
/// background thread, every `interval`, into herald_consumer_lag{group,topic,partition} —
/// the series each consumer also reports from librdkafka's statistics while it runs. This
/// one keeps counting while a stage is stopped or crash-looping, which is when lag matters
/// most. A group that cannot be measured keeps its last values and is logged once per outage.
class GroupLagExporter {
 public:
  GroupLagExporter(std::string brokers, Settings settings, std::map<std::string, std::vector<std::string>> groups,
                   std::chrono::milliseconds interval, metrics::Registry& registry);
  ~GroupLagExporter();
  GroupLagExporter(const GroupLagExporter&) = delete;
  GroupLagExporter& operator=(const GroupLagExporter&) = delete;

  /// One measurement of every group, on the calling thread (the background thread's pass).
  void MeasureOnce();

 private:
  bool Stopping();

  std::string brokers_;
  Settings settings_;
  std::map<std::string, std::vector<std::string>> groups_;
  std::chrono::milliseconds interval_;
  metrics::Registry& registry_;
  std::map<std::string, std::unique_ptr<LagMonitor>> monitors_;
  std::map<std::string, bool> failing_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: started after everything it uses
};

}  // namespace herald::kafka
