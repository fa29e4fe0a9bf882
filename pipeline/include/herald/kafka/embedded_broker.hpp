#pragma once
// The embedded development broker: librdkafka's mock cluster, reachable over TCP by any
// Kafka client. The mock brokers listen on ephemeral loopback ports; a small TCP relay on a
// stable port forwards bootstrap connections to them, and the metadata the brokers return
// points clients at their own ports from then on.
//
// Known limits (librdkafka 2.0.2 mock): in memory only; no CreateTopics/DescribeGroups admin
// APIs; offsetsForTimes answers -1; each partition keeps only a bounded log.

#include <memory>
#include <string>
#include <vector>

namespace herald::kafka {

class EmbeddedBroker {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;          // stable bootstrap port; 0 = any free port
    int brokers = 1;       // mock brokers in the cluster
    int min_partitions = 0;  // raise every topic to at least this many partitions (0 = as declared)
  };
  explicit EmbeddedBroker(const Options& options);  // starts the cluster and the relay; throws
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  /// "host:port" of the stable bootstrap relay.
  std::string Bootstrap() const;
  /// The mock brokers' own addresses (librdkafka's bootstrap list).
  std::string DirectBootstraps() const;
  /// Creates a topic (idempotent for existing topics).
  void CreateTopic(const std::string& name, int partitions, int replication);
  /// Takes broker `id` (1-based) down or up; clients see disconnects (fault injection).
  void SetBrokerDown(int id);
  void SetBrokerUp(int id);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::kafka
