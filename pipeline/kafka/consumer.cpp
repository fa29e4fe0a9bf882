#include "herald/kafka/consumer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <cstring>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/time.hpp"
#include "herald/metrics/registry.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {

// ---- Message ---------------------------------------------------------------------------

struct Message::Impl {
  detail::MessageHandle msg;
};

Message::Message(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Message::Message(Message&&) noexcept = default;
Message& Message::operator=(Message&&) noexcept = default;
Message::~Message() = default;

std::string_view Message::Topic() const { return rd_kafka_topic_name(impl_->msg->rkt); }
std::int32_t Message::Partition() const { return impl_->msg->partition; }
std::int64_t Message::Offset() const { return impl_->msg->offset; }
std::optional<std::string_view> Message::Key() const {
  if (!impl_->msg->key) return std::nullopt;
  return std::string_view(static_cast<const char*>(impl_->msg->key), impl_->msg->key_len);
}
std::string_view Message::Value() const {
  if (!impl_->msg->payload) return {};
  return std::string_view(static_cast<const char*>(impl_->msg->payload), impl_->msg->len);
}
std::int64_t Message::TimestampMs() const {
  rd_kafka_timestamp_type_t type;
  return rd_kafka_message_timestamp(impl_->msg.get(), &type);
}
std::optional<std::string_view> Message::HeaderValue(std::string_view name) const {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(impl_->msg.get(), &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  const void* value = nullptr;
  size_t size = 0;
  std::string key(name);
  if (rd_kafka_header_get_last(hdrs, key.c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), size);
}
std::vector<Header> Message::Headers() const {
  std::vector<Header> out;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(impl_->msg.get(), &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
                     RD_KAFKA_RESP_ERR_NO_ERROR;
       ++i) {
    out.push_back({name, value ? std::string(static_cast<const char*>(value), size) : ""});
  }
  return out;
}

// ---- BatchContext ----------------------------------------------------------------------

void BatchContext::Defer(const Message& m) {
  PartitionKey key{std::string(m.Topic()), m.Partition()};
  auto [it, inserted] = deferred_.try_emplace(key, m.Offset());
  if (!inserted) it->second = std::min(it->second, m.Offset());
}

bool BatchContext::IsDeferred(const Message& m) const {
  PartitionKey key{std::string(m.Topic()), m.Partition()};
  auto it = deferred_.find(key);
  if (it != deferred_.end() && m.Offset() >= it->second) return true;
  auto y = yielded_.find(key);
  return y != yielded_.end() && m.Offset() >= y->second;
}

void BatchContext::Yield(const Message& m) {
  PartitionKey key{std::string(m.Topic()), m.Partition()};
  auto [it, inserted] = yielded_.try_emplace(key, m.Offset());
  if (!inserted) it->second = std::min(it->second, m.Offset());
}

int BatchContext::LaneOf(const Message& m) const { return lanes_ ? lanes_->lane_of(m) : -1; }

bool BatchContext::HigherWaiting(const Message& m) const {
  if (!lanes_) return false;
  int lane = lanes_->lane_of(m);
  return lane > 0 && lanes_->waiting_above(lane);
}

bool BatchContext::YieldLowerBeyond(const Message& m, std::size_t cap) {
  if (LaneOf(m) <= 0) return false;
  const std::size_t guaranteed = Guaranteed();
  if (lower_yielding_ || lower_taken_ >= std::max(cap, guaranteed) || (lower_taken_ >= guaranteed && HigherWaiting(m))) {
    lower_yielding_ = true;
    Yield(m);
    return true;
  }
  ++lower_taken_;
  return false;
}

bool BatchContext::ShouldYield(const Message& next) {
  if (!lanes_) return false;
  int lane = lanes_->lane_of(next);
  if (lane <= 0) return false;
  if (lower_served_ >= lanes_->guaranteed && lanes_->waiting_above(lane)) return true;
  ++lower_served_;
  return false;
}

void BatchContext::PauseFor(const Message& m, std::chrono::milliseconds d) {
  auto& slot = pauses_[{std::string(m.Topic()), m.Partition()}];
  slot = std::max(slot, d);
}

// ---- ConsumerLoop ----------------------------------------------------------------------

struct ConsumerLoop::Impl {
  ConsumerLoop* owner = nullptr;
  // Partitions revoked since the current batch started: their records in hand now belong
  // to another member and are dropped before the handler sees them.
  std::set<std::pair<std::string, std::int32_t>> revoked;
  detail::KafkaHandle rk;
  std::shared_ptr<spdlog::logger> log = Logger("kafka");
  // Priority lanes: one queue per lane that its partitions' fetch queues are forwarded to,
  // and a pipe every queue (the consumer queue too) signals when it becomes non-empty, so
  // the loop can wait on all of them at once. Declared after rk: destroyed before it.
  std::map<std::string, int, std::less<>> lane_of_topic;
  std::vector<detail::QueueHandle> lane_queues;
  detail::QueueHandle consumer_queue;
  int wake_fds[2] = {-1, -1};
  BatchContext::LaneHooks hooks;
  // Records a batch yielded (BatchContext::Yield), per lane, in order: served before the
  // lane's queue so nothing is fetched twice and partition order holds.
  std::vector<std::deque<Message>> carry;

  bool LaneWaiting(std::size_t lane) const {
    return !carry[lane].empty() || rd_kafka_queue_length(lane_queues[lane].get()) > 0;
  }
  // Forgets carried records of partitions that are rewound or no longer ours.
  void DropCarry(const std::string& topic, std::int32_t partition) {
    for (auto& q : carry) {
      std::erase_if(q, [&](const Message& m) { return m.Partition() == partition && m.Topic() == topic; });
    }
  }

  ~Impl() {
    for (auto& q : lane_queues) rd_kafka_queue_io_event_enable(q.get(), -1, nullptr, 0);
    if (consumer_queue) rd_kafka_queue_io_event_enable(consumer_queue.get(), -1, nullptr, 0);
    lane_queues.clear();
    consumer_queue.reset();
    for (int fd : wake_fds) {
      if (fd >= 0) ::close(fd);
    }
  }

  // Routes newly assigned lane partitions into their lane's queue. Must run before the
  // partitions are assigned: librdkafka then keeps the application's forwarding.
  void RouteLanes(rd_kafka_t* handle, const rd_kafka_topic_partition_list_t* parts) {
    if (lane_queues.empty()) return;
    for (int i = 0; i < parts->cnt; ++i) {
      auto it = lane_of_topic.find(std::string_view(parts->elems[i].topic));
      if (it == lane_of_topic.end()) continue;
      detail::QueueHandle pq{rd_kafka_queue_get_partition(handle, parts->elems[i].topic, parts->elems[i].partition)};
      if (!pq) {
        log->warn("no queue for {} [{}]: its records arrive without priority", parts->elems[i].topic,
                  parts->elems[i].partition);
        continue;
      }
      rd_kafka_queue_forward(pq.get(), lane_queues[static_cast<std::size_t>(it->second)].get());
    }
  }

  // Appends a consumed message to `batch`, or logs it when it carries an error instead.
  // Returns whether it was a record.
  bool Accept(detail::MessageHandle msg, std::vector<Message>& batch) {
    if (msg->err) {
      if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        log->warn("{}: consume error on {} [{}]: {}", owner->options_.group_id,
                  msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", msg->partition, rd_kafka_message_errstr(msg.get()));
      }
      return false;
    }
    batch.emplace_back(std::make_unique<Message::Impl>(Message::Impl{std::move(msg)}));
    return true;
  }

  void DrainWake() {
    char buf[256];
    while (::read(wake_fds[0], buf, sizeof buf) > 0) {
    }
  }

  // Consumer lag per assigned partition from librdkafka's statistics (every
  // statistics.interval.ms), as herald_consumer_lag{group,topic,partition}: the partition's
  // high watermark minus the group's committed offset (the stored offset before the first
  // commit, everything retained before any). Series of partitions this member no longer
  // owns are removed, so a revoked partition does not keep reporting a stale lag here.
  std::set<std::pair<std::string, std::int32_t>> lag_series;
  void ReportLag(const char* json, std::size_t len) {
    auto doc = nlohmann::json::parse(json, json + len, nullptr, false);
    if (!doc.is_object() || !doc.contains("topics") || !doc["topics"].is_object()) return;
    auto& m = metrics::Default();
    const std::string& group = owner->options_.group_id;
    auto labels = [&](const std::string& topic, std::int32_t partition) {
      return metrics::Labels{{"group", group}, {"topic", topic}, {"partition", std::to_string(partition)}};
    };
    std::set<std::pair<std::string, std::int32_t>> seen;
    for (const auto& [name, topic] : doc["topics"].items()) {
      if (!topic.is_object() || !topic.contains("partitions") || !topic["partitions"].is_object()) continue;
      for (const auto& [id, p] : topic["partitions"].items()) {
        if (!p.is_object()) continue;
        auto partition = p.value("partition", std::int32_t{-1});
        if (partition < 0 || !p.value("desired", false)) continue;  // -1: the internal UA partition
        auto lag = p.value("consumer_lag", std::int64_t{-1});
        if (lag < 0) lag = p.value("consumer_lag_stored", std::int64_t{-1});
        if (lag < 0) {
          auto hi = p.value("hi_offset", std::int64_t{-1});
          auto lo = p.value("lo_offset", std::int64_t{-1});
          if (hi >= 0 && lo >= 0) lag = hi - lo;
        }
        if (lag < 0) continue;  // watermarks not known yet
        m.GetGauge("herald_consumer_lag", "Records of a partition the group has not committed yet", labels(name, partition))
            .Set(static_cast<double>(lag));
        seen.insert({name, partition});
      }
    }
    for (const auto& [topic, partition] : lag_series) {
      if (!seen.count({topic, partition})) m.RemoveGauge("herald_consumer_lag", labels(topic, partition));
    }
    lag_series = std::move(seen);
  }

  static int OnStats(rd_kafka_t*, char* json, std::size_t len, void* opaque) {
    try {
      static_cast<Impl*>(opaque)->ReportLag(json, len);
    } catch (const std::exception& e) {
      static_cast<Impl*>(opaque)->log->warn("consumer statistics not understood: {}", e.what());
    }
    return 0;  // librdkafka frees the JSON
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->log->info("{}: assigned {} partition(s)", self->owner->options_.group_id, parts->cnt);
      self->RouteLanes(rk, parts);
      if (cooperative) {
        detail::ErrorHandle e{rd_kafka_incremental_assign(rk, parts)};
        if (e) self->log->error("incremental assign failed: {}", rd_kafka_error_string(e.get()));
      } else {
        rd_kafka_assign(rk, parts);
      }
      self->owner->ready_.store(true);
      return;
    }
    // Revoke (or lost): commit what is stored so the next owner starts exactly after the
    // last fully acknowledged batch. Work in flight is not stored yet, so it is reprocessed.
    self->log->info("{}: revoking {} partition(s)", self->owner->options_.group_id, parts->cnt);
    for (int i = 0; i < parts->cnt; ++i) {
      self->revoked.insert({parts->elems[i].topic, parts->elems[i].partition});
      self->DropCarry(parts->elems[i].topic, parts->elems[i].partition);
      self->owner->paused_until_.erase({parts->elems[i].topic, parts->elems[i].partition});
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && !rd_kafka_assignment_lost(rk)) {
      rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, nullptr, 0);
      if (cerr != RD_KAFKA_RESP_ERR_NO_ERROR && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        self->log->warn("commit on revoke failed: {}", rd_kafka_err2str(cerr));
      }
    }
    if (cooperative) {
      detail::ErrorHandle e{rd_kafka_incremental_unassign(rk, parts)};
      if (e) self->log->error("incremental unassign failed: {}", rd_kafka_error_string(e.get()));
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
};

namespace {

detail::PartitionListHandle ToList(const std::vector<TopicPartition>& parts) {
  detail::PartitionListHandle list{
      rd_kafka_topic_partition_list_new(static_cast<int>(parts.size()))};
  for (const auto& p : parts) {
    auto* e = rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    e->offset = p.offset;
  }
  return list;
}

}  // namespace

ConsumerLoop::ConsumerLoop(Options options, Producer& producer)
    : options_(std::move(options)), producer_(producer), impl_(std::make_unique<Impl>()) {
  impl_->owner = this;
  Settings defaults = {
      {"bootstrap.servers", options_.brokers},
      {"group.id", options_.group_id},
      {"client.id", options_.group_id},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"enable.auto.commit", "true"},
      {"enable.auto.offset.store", "false"},
      {"auto.commit.interval.ms", "1000"},
      {"auto.offset.reset", "earliest"},
      {"enable.partition.eof", "false"},
      {"session.timeout.ms", "10000"},
      {"heartbeat.interval.ms", "1000"},
      {"max.poll.interval.ms", "300000"},
      {"queued.max.messages.kbytes", "16384"},  // bound prefetch memory per consumer
      // How long a fetch waits at the broker when there is nothing new. A real broker answers
      // as soon as data arrives, but the embedded (mock) broker holds every such fetch for the
      // full wait, which would add up to 500 ms (the default) per hop on the way of a
      // password reset. Idle, this costs each consumer 50 empty fetches a second per broker.
      {"fetch.wait.max.ms", "20"},
      // How often librdkafka reports statistics, from which the consumer lag metric comes.
      {"statistics.interval.ms", "5000"},
  };
  if (!options_.group_instance_id.empty()) {
    defaults["group.instance.id"] = options_.group_instance_id;
  }
  auto conf = detail::BuildConf(defaults, options_.settings);
  rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::OnRebalance);
  rd_kafka_conf_set_stats_cb(conf.get(), &Impl::OnStats);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  impl_->rk = detail::CreateHandle(RD_KAFKA_CONSUMER, std::move(conf));
  rd_kafka_poll_set_consumer(impl_->rk.get());
  if (!options_.lanes.empty()) {
    if (::pipe2(impl_->wake_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      throw TransientError(std::string("pipe2: ") + std::strerror(errno));
    }
    static const char kWake = 1;
    std::size_t guaranteed = 0;
    for (std::size_t i = 0; i < options_.lanes.size(); ++i) {
      const auto& lane = options_.lanes[i];
      if (!impl_->lane_of_topic.emplace(lane.topic, static_cast<int>(i)).second) {
        throw ConfigError("consumer lanes: topic " + lane.topic + " is listed twice");
      }
      impl_->lane_queues.emplace_back(rd_kafka_queue_new(impl_->rk.get()));
      impl_->carry.emplace_back();
      rd_kafka_queue_io_event_enable(impl_->lane_queues.back().get(), impl_->wake_fds[1], &kWake, 1);
      if (i > 0) guaranteed += lane.reserved;
      if (std::find(options_.topics.begin(), options_.topics.end(), lane.topic) == options_.topics.end()) {
        options_.topics.push_back(lane.topic);
      }
    }
    impl_->consumer_queue.reset(rd_kafka_queue_get_consumer(impl_->rk.get()));
    rd_kafka_queue_io_event_enable(impl_->consumer_queue.get(), impl_->wake_fds[1], &kWake, 1);
    Impl* impl = impl_.get();
    impl_->hooks.lane_of = [impl](const Message& m) {
      auto it = impl->lane_of_topic.find(m.Topic());
      return it == impl->lane_of_topic.end() ? -1 : it->second;
    };
    impl_->hooks.waiting_above = [impl](int lane) {
      for (int j = 0; j < lane && j < static_cast<int>(impl->lane_queues.size()); ++j) {
        if (impl->LaneWaiting(static_cast<std::size_t>(j))) return true;
      }
      return false;
    };
    impl_->hooks.guaranteed = guaranteed;
  }
}

// Fills `batch` from the priority lanes: first every lane up to what it may take while the
// lanes below it keep their reserved slots, then whatever room is left, highest lane first.
// Waits up to `wait` for the first record. Rebalances and records of topics outside the
// lanes come through the consumer queue, served here too.
void ConsumerLoop::FillFromLanes(std::vector<Message>& batch, std::chrono::milliseconds wait) {
  rd_kafka_t* rk = impl_->rk.get();
  const std::size_t cap = options_.batch_size;
  auto deadline = std::chrono::steady_clock::now() + wait;
  std::vector<rd_kafka_message_t*> raw(cap);
  auto take = [&](std::size_t lane, std::size_t n) {
    auto& carried = impl_->carry[lane];
    while (n > 0 && !carried.empty()) {
      batch.push_back(std::move(carried.front()));
      carried.pop_front();
      --n;
    }
    if (n == 0 || !carried.empty()) return;
    ssize_t got = rd_kafka_consume_batch_queue(impl_->lane_queues[lane].get(), 0, raw.data(), n);
    for (ssize_t i = 0; i < got; ++i) impl_->Accept(detail::MessageHandle{raw[static_cast<std::size_t>(i)]}, batch);
  };
  const auto& lanes = options_.lanes;
  while (true) {
    impl_->DrainWake();
    // Serves rebalance callbacks and errors; returns records of non-lane topics.
    while (batch.size() < cap) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 0);
      if (!m) break;
      impl_->Accept(detail::MessageHandle{m}, batch);
    }
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      std::size_t keep = 0;
      for (std::size_t j = i + 1; j < lanes.size(); ++j) {
        if (impl_->LaneWaiting(j)) keep += lanes[j].reserved;
      }
      std::size_t room = cap > batch.size() + keep ? cap - batch.size() - keep : 0;
      take(i, room);
    }
    for (std::size_t i = 0; i < lanes.size() && batch.size() < cap; ++i) take(i, cap - batch.size());
    if (!batch.empty() || stop_.load()) return;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return;
    pollfd pfd{impl_->wake_fds[0], POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left, 1)));
  }
}

ConsumerLoop::~ConsumerLoop() {
  Stop();
  // If Run() never ran or threw before closing, close here: librdkafka's shutdown order is
  // close consumer, then destroy.
  if (impl_ && impl_->rk && !rd_kafka_consumer_closed(impl_->rk.get())) {
    rd_kafka_consumer_close(impl_->rk.get());
  }
}

void ConsumerLoop::Stop() noexcept { stop_.store(true); }

void ConsumerLoop::Run(const BatchHandler& handler) {
  rd_kafka_t* rk = impl_->rk.get();
  auto& log = impl_->log;
  {
    detail::PartitionListHandle subs{
        rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size()))};
    for (const auto& t : options_.topics) {
      rd_kafka_topic_partition_list_add(subs.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, subs.get());
    if (err) throw ConfigError(std::string("cannot subscribe: ") + rd_kafka_err2str(err));
  }

  std::vector<Message> batch;
  batch.reserve(options_.batch_size);
  auto backoff = std::chrono::milliseconds(100);

  while (!stop_.load()) {
    batch.clear();
    impl_->revoked.clear();
    if (!paused_until_.empty()) {
      auto now = std::chrono::steady_clock::now();
      std::vector<TopicPartition> due;
      for (auto it = paused_until_.begin(); it != paused_until_.end();) {
        if (it->second <= now) {
          due.push_back({it->first.first, it->first.second, -1});
          it = paused_until_.erase(it);
        } else {
          ++it;
        }
      }
      if (!due.empty()) Resume(due);
    }
    // Wait up to poll_timeout for the first record, then take what is already fetched.
    auto wait = options_.poll_timeout;
    if (!options_.lanes.empty()) FillFromLanes(batch, wait);
    while (options_.lanes.empty() && batch.size() < options_.batch_size) {
      rd_kafka_message_t* raw = rd_kafka_consumer_poll(rk, static_cast<int>(wait.count()));
      if (!raw) break;
      if (impl_->Accept(detail::MessageHandle{raw}, batch)) wait = std::chrono::milliseconds(0);
    }
    last_poll_ms_.store(NowMs().time_since_epoch().count());
    if (!impl_->revoked.empty()) {
      std::erase_if(batch, [&](const Message& m) {
        return impl_->revoked.count({std::string(m.Topic()), m.Partition()}) > 0;
      });
    }
    if (batch.empty()) continue;

    // First and last offset per partition of this batch.
    std::map<std::pair<std::string, std::int32_t>, std::pair<std::int64_t, std::int64_t>> span;
    for (const auto& m : batch) {
      auto key = std::make_pair(std::string(m.Topic()), m.Partition());
      auto [it, inserted] = span.try_emplace(key, m.Offset(), m.Offset());
      if (!inserted) {
        it->second.first = std::min(it->second.first, m.Offset());
        it->second.second = std::max(it->second.second, m.Offset());
      }
    }

    bool ok = false;
    std::map<BatchContext::PartitionKey, std::int64_t> deferred;
    std::map<BatchContext::PartitionKey, std::chrono::milliseconds> pauses;
    std::map<BatchContext::PartitionKey, std::int64_t> yielded;
    try {
      AckGroup acks;
      BatchContext ctx(producer_, acks);
      if (!options_.lanes.empty()) ctx.SetLaneHooks(&impl_->hooks);
      handler(batch, ctx);
      auto failures = acks.Wait(options_.ack_timeout);
      if (!failures.empty()) {
        throw TransientError(std::to_string(failures.size()) + " produced record(s) failed, first: " +
                             failures.front().topic + ": " + failures.front().error);
      }
      deferred = ctx.Deferred();
      pauses = ctx.Pauses();
      yielded = ctx.Yielded();
      ok = true;
    } catch (const std::exception& e) {
      log->error("{}: batch of {} record(s) from {} [{}] @{} failed, will retry in {} ms: {}",
                 options_.group_id, batch.size(), batch.front().Topic(),
                 batch.front().Partition(), batch.front().Offset(), backoff.count(), e.what());
    }

    if (ok) {
      std::vector<TopicPartition> store;
      std::vector<TopicPartition> rewind;
      for (const auto& [tp, range] : span) {
        auto d = deferred.find(tp);
        auto y = yielded.find(tp);
        if (d == deferred.end() && y != yielded.end()) {
          // Handed back without a rewind: store up to the first record not done and keep
          // the rest for the next batch.
          if (y->second > range.first) store.push_back({tp.first, tp.second, y->second});
          continue;
        }
        if (d == deferred.end()) {
          store.push_back({tp.first, tp.second, range.second + 1});
        } else {
          if (d->second > range.first) store.push_back({tp.first, tp.second, d->second});
          rewind.push_back({tp.first, tp.second, d->second});
        }
      }
      if (!store.empty()) {
        auto list = ToList(store);
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(rk, list.get());
        if (err && err != RD_KAFKA_RESP_ERR__STATE) {
          log->warn("{}: storing offsets failed: {}", options_.group_id, rd_kafka_err2str(err));
        }
      }
      // Deferred partitions: pause first (if asked), then rewind to the first record not done.
      auto now = std::chrono::steady_clock::now();
      std::vector<TopicPartition> to_pause;
      for (const auto& [tp, d] : pauses) {
        if (d.count() <= 0) continue;
        to_pause.push_back({tp.first, tp.second, -1});
        paused_until_[tp] = now + d;
      }
      if (!to_pause.empty()) Pause(to_pause);
      if (!rewind.empty()) {
        for (const auto& tp : rewind) impl_->DropCarry(tp.topic, tp.partition);
        auto list = ToList(rewind);
        detail::ErrorHandle serr{rd_kafka_seek_partitions(rk, list.get(), 5000)};
        if (serr) log->warn("seek failed: {}", rd_kafka_error_string(serr.get()));
      }
      if (commit_hook_) commit_hook_(batch);
      if (!yielded.empty()) {
        // Newest first to the front of each lane's carry, so the lane keeps partition order.
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
          BatchContext::PartitionKey tp{std::string(it->Topic()), it->Partition()};
          auto y = yielded.find(tp);
          if (y == yielded.end() || it->Offset() < y->second || deferred.count(tp)) continue;
          auto lane = impl_->lane_of_topic.find(tp.first);
          if (lane == impl_->lane_of_topic.end()) continue;  // not a lane topic: read again
          impl_->carry[static_cast<std::size_t>(lane->second)].push_front(std::move(*it));
        }
      }
      backoff = std::chrono::milliseconds(100);
      continue;
    }

    // Rewind every partition of the batch to its first record and try again later.
    std::vector<TopicPartition> rewind;
    for (const auto& [tp, range] : span) {
      rewind.push_back({tp.first, tp.second, range.first});
      if (!impl_->carry.empty()) impl_->DropCarry(tp.first, tp.second);
    }
    auto list = ToList(rewind);
    detail::ErrorHandle serr{rd_kafka_seek_partitions(rk, list.get(), 5000)};
    if (serr) log->warn("seek failed: {}", rd_kafka_error_string(serr.get()));
    batch.clear();
    auto until = std::chrono::steady_clock::now() + backoff;
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      // Keep serving rebalances and heartbeats while backing off; nothing is fetched from
      // paused partitions.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }

  log->info("{}: stopping: committing offsets and leaving the group", options_.group_id);
  rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, nullptr, 0);
  if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    log->warn("{}: final commit failed: {}", options_.group_id, rd_kafka_err2str(cerr));
  }
  rd_kafka_consumer_close(rk);
}

void ConsumerLoop::Pause(const std::vector<TopicPartition>& partitions) {
  auto list = ToList(partitions);
  rd_kafka_pause_partitions(impl_->rk.get(), list.get());
}

void ConsumerLoop::Resume(const std::vector<TopicPartition>& partitions) {
  auto list = ToList(partitions);
  rd_kafka_resume_partitions(impl_->rk.get(), list.get());
}

std::vector<TopicPartition> ConsumerLoop::Assignment() const {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  std::vector<TopicPartition> out;
  if (rd_kafka_assignment(impl_->rk.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  detail::PartitionListHandle list{raw};
  for (int i = 0; i < list->cnt; ++i) {
    out.push_back({list->elems[i].topic, list->elems[i].partition, list->elems[i].offset});
  }
  return out;
}

void ConsumerLoop::PauseTopic(std::string_view topic) {
  auto all = Assignment();
  std::erase_if(all, [&](const TopicPartition& p) { return p.topic != topic; });
  if (!all.empty()) Pause(all);
}

void ConsumerLoop::ResumeTopic(std::string_view topic) {
  auto all = Assignment();
  std::erase_if(all, [&](const TopicPartition& p) { return p.topic != topic; });
  if (!all.empty()) Resume(all);
}

}  // namespace herald::kafka
