#include "herald/kafka/producer.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {

struct Producer::Impl {
  Options options;
  detail::KafkaHandle rk;
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> in_flight{0};
  std::mutex mu;
  std::condition_variable drained;  // signalled after every delivery report
  std::thread poller;               // declared last: stops before the state it uses

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    std::unique_ptr<DeliveryCallback> cb{static_cast<DeliveryCallback*>(m->_private)};
    DeliveryReport report;
    report.topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    report.partition = m->partition;
    report.offset = m->offset;
    report.ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!report.ok) report.error = rd_kafka_err2str(m->err);
    // Reported from here on: count it before the callback runs, so whoever the callback
    // wakes already sees InFlight() without this record.
    self->in_flight.fetch_sub(1);
    if (cb && *cb) {
      try {
        (*cb)(report);
      } catch (const std::exception& e) {
        Logger("kafka")->error("delivery callback for {} threw: {}", report.topic, e.what());
      }
    }
    {
      std::lock_guard lock(self->mu);
    }
    self->drained.notify_all();
  }
};

Producer::Producer(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  Settings defaults = {
      {"bootstrap.servers", options.brokers},
      {"client.id", options.client_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", std::to_string(options.linger.count())},
      {"queue.buffering.max.messages", std::to_string(options.max_queued_messages)},
      {"message.timeout.ms", std::to_string(options.delivery_timeout.count())},
      {"compression.type", "lz4"},
  };
  auto conf = detail::BuildConf(defaults, options.settings);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::OnDelivery);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  impl_->rk = detail::CreateHandle(RD_KAFKA_PRODUCER, std::move(conf));
  impl_->poller = std::thread([impl = impl_.get()] {
    while (!impl->stop.load()) rd_kafka_poll(impl->rk.get(), 50);
  });
}

Producer::~Producer() {
  if (!impl_) return;
  if (!Flush(impl_->options.flush_timeout)) {
    Logger("kafka")->error("producer: {} records not acknowledged at shutdown; they will be "
                           "reprocessed from the last committed offsets",
                           InFlight());
  }
  impl_->stop.store(true);
  if (impl_->poller.joinable()) impl_->poller.join();
  // Purge what is left so outstanding callbacks run (as failures) before destruction.
  rd_kafka_purge(impl_->rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  // Serve the purged records' reports (as failures) so every callback runs exactly once.
  for (int i = 0; i < 20 && impl_->in_flight.load() > 0; ++i) rd_kafka_poll(impl_->rk.get(), 50);
  impl_->rk.reset();
}

void Producer::Produce(const OutRecord& record, DeliveryCallback on_delivery) {
  auto cb = std::make_unique<DeliveryCallback>(std::move(on_delivery));
  detail::HeadersHandle headers;
  if (!record.headers.empty()) {
    headers.reset(rd_kafka_headers_new(record.headers.size()));
    for (const auto& h : record.headers) {
      rd_kafka_header_add(headers.get(), h.key.data(), static_cast<ssize_t>(h.key.size()),
                          h.value.data(), static_cast<ssize_t>(h.value.size()));
    }
  }
  auto deadline = std::chrono::steady_clock::now() + impl_->options.enqueue_timeout;
  for (;;) {
    rd_kafka_headers_t* hdrs = headers ? rd_kafka_headers_copy(headers.get()) : nullptr;
    impl_->in_flight.fetch_add(1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        impl_->rk.get(), RD_KAFKA_V_TOPIC(record.topic.c_str()),
        RD_KAFKA_V_PARTITION(record.partition), RD_KAFKA_V_TIMESTAMP(record.timestamp_ms),
        RD_KAFKA_V_KEY(record.key.empty() ? nullptr : const_cast<char*>(record.key.data()),
                       record.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(record.value.data()), record.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(cb.get()), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      cb.release();  // owned by the delivery report now
      return;
    }
    impl_->in_flight.fetch_sub(1);
    if (hdrs) rd_kafka_headers_destroy(hdrs);  // not taken over on failure
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw TransientError("producer queue full for " +
                             std::to_string(impl_->options.enqueue_timeout.count()) +
                             " ms: the broker is not keeping up or is unreachable");
      }
      std::unique_lock lock(impl_->mu);
      impl_->drained.wait_for(lock, std::chrono::milliseconds(10));
      continue;
    }
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
        err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
      throw InvalidInput("cannot produce to " + record.topic + ": " + rd_kafka_err2str(err));
    }
    throw TransientError("cannot produce to " + record.topic + ": " + rd_kafka_err2str(err));
  }
}

DeliveryReport Producer::ProduceSync(const OutRecord& record, std::chrono::milliseconds timeout) {
  AckGroup group;
  Produce(record, group.Track());
  auto failures = group.Wait(timeout);
  if (!failures.empty()) {
    throw TransientError("delivery to " + record.topic + " failed: " + failures.front().error);
  }
  std::lock_guard lock(group.state_->mu);
  return group.state_->last;
}

void Producer::ProduceAll(const std::vector<OutRecord>& records, std::chrono::milliseconds timeout) {
  AckGroup group;
  for (const auto& r : records) Produce(r, group.Track());
  auto failures = group.Wait(timeout);
  if (!failures.empty()) {
    throw TransientError(std::to_string(failures.size()) + " record(s) not acknowledged: " + failures.front().error);
  }
}

bool Producer::Flush(std::chrono::milliseconds timeout) {
  return rd_kafka_flush(impl_->rk.get(), static_cast<int>(timeout.count())) ==
             RD_KAFKA_RESP_ERR_NO_ERROR &&
         impl_->in_flight.load() == 0;
}

std::size_t Producer::InFlight() const { return impl_->in_flight.load(); }

Producer::DeliveryCallback AckGroup::Track() {
  {
    std::lock_guard lock(state_->mu);
    ++state_->pending;
  }
  return [state = state_](const DeliveryReport& r) {
    std::lock_guard lock(state->mu);
    if (!r.ok) state->failures.push_back(r);
    state->last = r;
    if (--state->pending == 0) state->cv.notify_all();
  };
}

std::vector<DeliveryReport> AckGroup::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [this] { return state_->pending == 0; })) {
    throw TransientError(std::to_string(state_->pending) +
                         " produced records not acknowledged within " +
                         std::to_string(timeout.count()) + " ms");
  }
  return state_->failures;
}

std::size_t AckGroup::Pending() const {
  std::lock_guard lock(state_->mu);
  return state_->pending;
}

}  // namespace herald::kafka
