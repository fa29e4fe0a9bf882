#pragma once
// RAII idempotent producer over librdkafka.
//
// Thread safety: Produce() may be called from any thread. Delivery callbacks run on the
// producer's own poll thread; they must be short and thread-safe.
// Lifecycle: the constructor connects lazily; the destructor flushes (bounded by
// Options::flush_timeout) and destroys the handle. Call Flush() explicitly on a clean stop.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <condition_variable>

#include "herald/kafka/types.hpp"

namespace herald::kafka {

/// Non-empty once a Kafka client in this process hit a fatal error (for example a fenced
/// idempotent producer). Nothing recovers from it but a restart: stages fail /healthz and exit.
std::string FatalError();

class Producer {
 public:
  struct Options {
    std::string brokers;
    Settings settings;  // raw librdkafka options, override the defaults below
    std::string client_id = "herald";
    std::size_t max_queued_messages = 100'000;  // queue.buffering.max.messages (back-pressure bound)
    std::chrono::milliseconds linger{5};
    std::chrono::milliseconds delivery_timeout{60'000};  // message.timeout.ms
    std::chrono::milliseconds enqueue_timeout{30'000};   // how long Produce() waits on a full queue
    std::chrono::milliseconds flush_timeout{10'000};
  };
  using DeliveryCallback = std::function<void(const DeliveryReport&)>;

  explicit Producer(const Options& options);
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  /// Enqueues a record. While librdkafka's bounded queue is full, waits for deliveries to
  /// drain it (back-pressure); throws TransientError after enqueue_timeout, InvalidInput for
  /// an unknown topic or an oversized record. `on_delivery` is called exactly once.
  void Produce(const OutRecord& record, DeliveryCallback on_delivery);

  /// Produces and waits for the broker's acknowledgement; throws TransientError on failure.
  DeliveryReport ProduceSync(const OutRecord& record, std::chrono::milliseconds timeout);
  /// Produces every record and waits until the broker acknowledged all of them; throws
  /// TransientError naming how many failed (and the first reason) or that time ran out.
  void ProduceAll(const std::vector<OutRecord>& records, std::chrono::milliseconds timeout);

  /// Waits until every queued record is delivered or failed. Returns false on timeout.
  bool Flush(std::chrono::milliseconds timeout);

  /// Records enqueued but not yet reported.
  std::size_t InFlight() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Tracks the delivery of a group of records, so a consumer can store offsets only after
/// everything it produced for a batch is acknowledged. Thread-safe.
class AckGroup {
 public:
  /// Returns a callback to pass to Producer::Produce for one record of this group.
  Producer::DeliveryCallback Track();
  /// Waits for every tracked record. Returns the failures (empty = all acknowledged).
  /// Throws TransientError if they are not all reported within `timeout`.
  std::vector<DeliveryReport> Wait(std::chrono::milliseconds timeout);
  std::size_t Pending() const;

 private:
  // Shared with the callbacks, so a late delivery report after a timed-out Wait() is safe.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t pending = 0;
    std::vector<DeliveryReport> failures;
    DeliveryReport last;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();

  friend class Producer;
};

}  // namespace herald::kafka
