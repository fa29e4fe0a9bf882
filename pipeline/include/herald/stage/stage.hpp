#pragma once
// The common shell of a long-running stage: an idempotent producer, an at-least-once consumer
// loop, the ops HTTP server (/metrics, /healthz, /readyz), per-stage metrics, dead-lettering,
// and graceful shutdown on SIGTERM/SIGINT (finish the batch in hand, commit, leave the group
// within the drain timeout).
//
// Lifecycle: construct, optionally add HTTP routes via Http(), then Run(handler) blocks until
// a signal or RequestStop().

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "herald/config/config.hpp"
#include "herald/http/server.hpp"
#include "herald/kafka/consumer.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/metrics/registry.hpp"
#include "herald/model/records.hpp"
#include "herald/topics/catalog.hpp"

namespace herald::stage {

struct StageSpec {
  std::string name;                 // "plan", "deliver-email", ...
  std::vector<std::string> topics;  // subscribed topics (empty: no consumer, e.g. ingest)
  /// Priority lanes, highest first (delivery stages): see ConsumerLoop::Options::lanes.
  std::vector<kafka::ConsumerLoop::Options::Lane> lanes;
};

class Stage {
 public:
  Stage(const config::Config& config, StageSpec spec);
  ~Stage();

  kafka::Producer& Producer() { return *producer_; }
  kafka::ConsumerLoop& Consumer() { return *consumer_; }
  http::Server& Http() { return http_; }
  metrics::Registry& Metrics() { return metrics::Default(); }
  const config::Config& Config() const { return config_; }
  const std::string& Name() const { return spec_.name; }

  /// Produces a record as part of the batch and counts it.
  void Produce(kafka::BatchContext& ctx, const kafka::OutRecord& record);
  /// Sends a consumed record to notify.dlq.v1 with its origin and the reason.
  void DeadLetter(kafka::BatchContext& ctx, const kafka::Message& m, const std::string& error_class,
                  const std::string& reason);
  /// Sends a consumed record to the next retry tier (notify.retry.30s, 5m, 1h) with its
  /// origin, attempt, reason and due time in headers; the retry stage re-produces it to its
  /// origin when due. After the last tier the record is dead-lettered ("exhausted").
  /// With consume_attempt = false (work parked because an upstream's breaker is open, so it
  /// was never tried) the attempt count is kept and the record waits in its current tier.
  /// Returns false when the record was dead-lettered.
  bool Retry(kafka::BatchContext& ctx, const kafka::Message& m, const std::string& reason,
             bool consume_attempt = true);
  /// The attempt number carried by a record (0 for a first try).
  static int Attempt(const kafka::Message& m);
  /// Produces a status change to notify.status.v1.
  void EmitStatus(kafka::BatchContext& ctx, const model::StatusRecord& status);

  /// Serves HTTP, installs signal handling and runs the consumer loop until stopped.
  /// Returns the process exit code.
  int Run(const kafka::ConsumerLoop::BatchHandler& handler);
  /// For stages without a consumer (ingest): serve HTTP until a signal arrives.
  int ServeUntilSignal();
  /// For stages that poll something other than Kafka (the scheduler): calls `tick` until a
  /// signal or RequestStop(); when it returns false (nothing to do) waits `idle` first.
  /// /healthz fails when a tick has not completed for a minute. `tick` may throw: the error
  /// is logged and the loop backs off.
  int RunLoop(const std::function<bool()>& tick, std::chrono::milliseconds idle);
  void RequestStop() noexcept;

 private:
  void StartSignalWatcher();
  config::Config config_;
  StageSpec spec_;
  metrics::Counter* consumed_ = nullptr;
  metrics::Counter* produced_ = nullptr;
  metrics::Counter* retried_ = nullptr;
  std::vector<const topics::TopicSpec*> retry_tiers_;  // by delay, shortest first
  metrics::Counter* failed_ = nullptr;
  metrics::Counter* dead_letters_ = nullptr;
  metrics::Histogram* batch_seconds_ = nullptr;
  metrics::Histogram* processing_seconds_ = nullptr;
  std::chrono::steady_clock::time_point batch_started_{};
  std::unique_ptr<kafka::Producer> producer_;
  http::Server http_;
  std::atomic<bool> stop_{false};
  std::thread signal_thread_;
  std::unique_ptr<kafka::ConsumerLoop> consumer_;  // declared last: stops first
};

/// Blocks SIGTERM/SIGINT/SIGPIPE in the calling thread (call first thing in main, before any
/// thread starts), so a dedicated thread can sigwait() for them.
void BlockSignals();

/// The librdkafka settings a config implies (raw kafka.* passthrough).
kafka::Producer::Options ProducerOptions(const config::Config& config, const std::string& client_id);

}  // namespace herald::stage
