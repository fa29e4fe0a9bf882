#pragma once
// RAII consumer loop with at-least-once semantics.
//
// Each poll returns a batch; the handler processes it and produces its output through the
// BatchContext. Offsets of the batch are stored only after every record the handler produced
// is acknowledged by the broker, and committed asynchronously, on partition revoke and on
// close. If the handler throws, or a produced record fails, the batch's partitions are
// rewound to the batch start and the batch is processed again after a backoff; nothing is
// skipped, so handlers must be idempotent (Herald's deterministic ids make them so).
//
// Thread safety: Run() blocks the calling thread; Stop(), Pause(), Resume() and the
// status accessors may be called from any thread.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string_view>

#include "herald/kafka/producer.hpp"
#include "herald/kafka/types.hpp"

namespace herald::kafka {

/// One consumed record. Owns the underlying librdkafka message; views stay valid as long as
/// the Message lives.
class Message {
 public:
  struct Impl;
  explicit Message(std::unique_ptr<Impl> impl);
  Message(Message&&) noexcept;
  Message& operator=(Message&&) noexcept;
  ~Message();

  std::string_view Topic() const;
  std::int32_t Partition() const;
  std::int64_t Offset() const;
  std::optional<std::string_view> Key() const;
  std::string_view Value() const;
  std::int64_t TimestampMs() const;  // -1 when not available
  std::optional<std::string_view> HeaderValue(std::string_view name) const;
  std::vector<kafka::Header> Headers() const;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Given to a batch handler: everything produced through it is tracked, and the batch's
/// offsets are stored only when all of it is acknowledged.
///
/// Defer(m) ends the batch early for m's partition: m and everything after it on that
/// partition are not committed, and the partition is rewound to m so it is read again
/// (optionally after PauseFor). Handlers skip deferred records with IsDeferred(). This is
/// how a stage makes partial progress on long work (a huge fan-out) or waits for a due time
/// (retry tiers) without sleeping inside the poll loop or blocking other partitions.
class BatchContext {
 public:
  BatchContext(Producer& producer, AckGroup& acks) : producer_(producer), acks_(acks) {}
  void Produce(const OutRecord& record) { producer_.Produce(record, acks_.Track()); }
  std::size_t Produced() const { return acks_.Pending(); }

  void Defer(const Message& m);
  bool IsDeferred(const Message& m) const;
  /// Keeps m's partition paused for `d` (resumed by the loop when due).
  void PauseFor(const Message& m, std::chrono::milliseconds d);

  /// Priority lanes (ConsumerLoop::Options::lanes): true when the handler should stop
  /// before `next` and Defer() it and the rest of its lane, because a higher lane has records
  /// waiting and this batch has already served its guaranteed share of lower-lane records.
  /// Always false without lanes or for a top-lane record. Call once per record, in order.
  bool ShouldYield(const Message& next);
  /// Hands m and the rest of its partition in this batch back without a rewind: the loop
  /// keeps those records in memory and puts them first in their lane of the next batch
  /// (nothing is fetched again). Like Defer, the partition's offset is stored only up to m.
  void Yield(const Message& m);
  const std::map<std::pair<std::string, std::int32_t>, std::int64_t>& Yielded() const { return yielded_; }
  /// Without counting: m is a lower-lane record and a higher lane has records waiting.
  bool HigherWaiting(const Message& m) const;
  /// Caps the lower-lane records a handler takes from this batch. Call once per record, in
  /// order, before working on it: true when m was handed back (Yield) instead, which happens
  /// once the batch has taken max(cap, Guaranteed()) lower-lane records, or Guaranteed() of
  /// them while a higher lane has records waiting; every later lower-lane record is then
  /// handed back too. Always false for a top-lane record or without lanes.
  bool YieldLowerBeyond(const Message& m, std::size_t cap);
  /// Whether YieldLowerBeyond handed anything back in this batch.
  bool LowerYielded() const { return lower_yielding_; }
  /// Lower-lane records a batch serves before it yields (the reserved shares).
  std::size_t Guaranteed() const { return lanes_ ? lanes_->guaranteed : 0; }
  /// The lane of a record (0 = highest), -1 without lanes or for a topic outside them.
  int LaneOf(const Message& m) const;

  struct LaneHooks {
    std::function<int(const Message&)> lane_of;
    std::function<bool(int lane)> waiting_above;  // records waiting in a lane above `lane`
    std::size_t guaranteed = 0;                    // lower-lane records served before yielding
  };
  void SetLaneHooks(const LaneHooks* hooks) { lanes_ = hooks; }

  using PartitionKey = std::pair<std::string, std::int32_t>;
  const std::map<PartitionKey, std::int64_t>& Deferred() const { return deferred_; }
  const std::map<PartitionKey, std::chrono::milliseconds>& Pauses() const { return pauses_; }

 private:
  Producer& producer_;
  AckGroup& acks_;
  std::map<PartitionKey, std::int64_t> deferred_;  // partition -> first offset not done
  std::map<PartitionKey, std::chrono::milliseconds> pauses_;
  std::map<PartitionKey, std::int64_t> yielded_;  // partition -> first offset handed back
  const LaneHooks* lanes_ = nullptr;
  std::size_t lower_served_ = 0;
  std::size_t lower_taken_ = 0;  // by YieldLowerBeyond
  bool lower_yielding_ = false;
};

class ConsumerLoop {
 public:
  struct Options {
    std::string brokers;
    std::string group_id;
    std::vector<std::string> topics;
    Settings settings;  // raw librdkafka options, override the defaults
    std::size_t batch_size = 500;
    std::chrono::milliseconds poll_timeout{100};
    std::chrono::milliseconds ack_timeout{30'000};
    std::chrono::milliseconds max_backoff{5'000};
    std::string group_instance_id;  // static membership when set
    /// Priority lanes, highest first (e.g. notify.deliver.email.high, .normal, .low). Each
    /// lane's partitions are fetched into a queue of their own; a batch takes lane 0's
    /// records first, then lane 1's, ..., except that every lower lane keeps `reserved` slots
    /// of each batch while it has records, so lower priorities are slowed, never starved.
    /// Lane topics are subscribed in addition to `topics`.
    struct Lane {
      std::string topic;
      std::size_t reserved = 0;
    };
    std::vector<Lane> lanes;
  };
  using BatchHandler = std::function<void(std::span<const Message> batch, BatchContext& ctx)>;
  /// Optional hook called after a batch's offsets are stored.
  using CommitHook = std::function<void(std::span<const Message> batch)>;

  ConsumerLoop(Options options, Producer& producer);
  ~ConsumerLoop();
  ConsumerLoop(const ConsumerLoop&) = delete;
  ConsumerLoop& operator=(const ConsumerLoop&) = delete;

  /// Subscribes and processes batches until Stop(). On return the consumer has committed its
  /// offsets and left the group. Throws ConfigError if it cannot subscribe.
  void Run(const BatchHandler& handler);

  /// Asks Run() to finish the batch in hand, commit and leave. Idempotent, noexcept.
  void Stop() noexcept;

  /// Pauses / resumes fetching from the given partitions (those currently assigned).
  void Pause(const std::vector<TopicPartition>& partitions);
  void Resume(const std::vector<TopicPartition>& partitions);
  /// Pause/resume every partition of `topic` currently assigned.
  void PauseTopic(std::string_view topic);
  void ResumeTopic(std::string_view topic);

  std::vector<TopicPartition> Assignment() const;
  /// Milliseconds since the epoch of the last completed poll (liveness).
  std::int64_t LastPollMs() const { return last_poll_ms_.load(); }
  /// True once the consumer has joined its group and received an assignment.
  bool Ready() const { return ready_.load(); }
  void SetCommitHook(CommitHook hook) { commit_hook_ = std::move(hook); }

  struct Impl;

 private:
  void FillFromLanes(std::vector<Message>& batch, std::chrono::milliseconds wait);
  Options options_;
  Producer& producer_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> last_poll_ms_{0};
  std::atomic<bool> ready_{false};
  CommitHook commit_hook_;
  std::map<BatchContext::PartitionKey, std::chrono::steady_clock::time_point> paused_until_;
  std::unique_ptr<Impl> impl_;  // declared last: destroyed first
};

}  // namespace herald::kafka
