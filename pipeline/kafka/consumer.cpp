#include "herald/kafka/consumer.hpp"

#include <algorithm>
#include <map>
#include <thread>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/time.hpp"
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
  auto it = deferred_.find({std::string(m.Topic()), m.Partition()});
  return it != deferred_.end() && m.Offset() >= it->second;
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

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->log->info("{}: assigned {} partition(s)", self->owner->options_.group_id, parts->cnt);
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
  };
  if (!options_.group_instance_id.empty()) {
    defaults["group.instance.id"] = options_.group_instance_id;
  }
  auto conf = detail::BuildConf(defaults, options_.settings);
  rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::OnRebalance);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  impl_->rk = detail::CreateHandle(RD_KAFKA_CONSUMER, std::move(conf));
  rd_kafka_poll_set_consumer(impl_->rk.get());
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
    while (batch.size() < options_.batch_size) {
      rd_kafka_message_t* raw = rd_kafka_consumer_poll(rk, static_cast<int>(wait.count()));
      if (!raw) break;
      detail::MessageHandle msg{raw};
      if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          log->warn("{}: consume error on {} [{}]: {}", options_.group_id,
                    msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", msg->partition,
                    rd_kafka_message_errstr(msg.get()));
        }
        continue;
      }
      batch.emplace_back(std::make_unique<Message::Impl>(Message::Impl{std::move(msg)}));
      wait = std::chrono::milliseconds(0);
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
    try {
      AckGroup acks;
      BatchContext ctx(producer_, acks);
      handler(batch, ctx);
      auto failures = acks.Wait(options_.ack_timeout);
      if (!failures.empty()) {
        throw TransientError(std::to_string(failures.size()) + " produced record(s) failed, first: " +
                             failures.front().topic + ": " + failures.front().error);
      }
      deferred = ctx.Deferred();
      pauses = ctx.Pauses();
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
        auto list = ToList(rewind);
        detail::ErrorHandle serr{rd_kafka_seek_partitions(rk, list.get(), 5000)};
        if (serr) log->warn("seek failed: {}", rd_kafka_error_string(serr.get()));
      }
      if (commit_hook_) commit_hook_(batch);
      backoff = std::chrono::milliseconds(100);
      continue;
    }

    // Rewind every partition of the batch to its first record and try again later.
    std::vector<TopicPartition> rewind;
    for (const auto& [tp, range] : span) rewind.push_back({tp.first, tp.second, range.first});
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
