#include "herald/kafka/lag.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {

struct LagMonitor::Impl {
  std::string group;
  detail::KafkaHandle rk;
};

LagMonitor::LagMonitor(const std::string& brokers, const Settings& settings, std::string group)
    : impl_(std::make_unique<Impl>()) {
  impl_->group = std::move(group);
  // A consumer handle that never subscribes: it only asks the coordinator for the group's
  // committed offsets, so it does not join or disturb the group.
  auto conf = detail::BuildConf({{"bootstrap.servers", brokers},
                                 {"group.id", impl_->group},
                                 {"client.id", "herald-lag-" + impl_->group},
                                 {"enable.auto.commit", "false"}},
                                settings);
  impl_->rk = detail::CreateHandle(RD_KAFKA_CONSUMER, std::move(conf));
}

LagMonitor::~LagMonitor() {
  if (impl_ && impl_->rk) rd_kafka_consumer_close(impl_->rk.get());
}

std::vector<LagMonitor::PartitionLag> LagMonitor::Partitions(const std::string& topic) {
  rd_kafka_t* rk = impl_->rk.get();
  rd_kafka_poll(rk, 0);  // serve queued events (errors, logs) so they do not pile up
  int partitions = detail::PartitionCount(rk, topic, std::chrono::milliseconds(5000));

  detail::PartitionListHandle list{rd_kafka_topic_partition_list_new(partitions)};
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(rk, list.get(), 5000);
  if (err) throw TransientError("cannot read committed offsets of " + impl_->group + ": " + rd_kafka_err2str(err));

  std::vector<PartitionLag> out;
  for (int i = 0; i < list->cnt; ++i) {
    PartitionLag pl;
    pl.partition = list->elems[i].partition;
    auto [low, high] = detail::Watermarks(rk, topic, pl.partition, std::chrono::milliseconds(5000));
    pl.high = high;
    pl.committed = list->elems[i].offset >= 0 ? list->elems[i].offset : -1;
    pl.lag = high - (pl.committed >= 0 ? std::max(pl.committed, low) : low);
    if (pl.lag < 0) pl.lag = 0;
    out.push_back(pl);
  }
  return out;
}

std::int64_t LagMonitor::Lag(const std::string& topic, bool* committed_any) {
  std::int64_t total = 0;
  bool any = false;
  for (const auto& p : Partitions(topic)) {
    total += p.lag;
    any = any || p.committed >= 0;
  }
  if (committed_any) *committed_any = any;
  return total;
}

GroupLagExporter::GroupLagExporter(std::string brokers, Settings settings,
                                   std::map<std::string, std::vector<std::string>> groups,
                                   std::chrono::milliseconds interval, metrics::Registry& registry)
    : brokers_(std::move(brokers)),
      settings_(std::move(settings)),
      groups_(std::move(groups)),
      interval_(interval),
      registry_(registry) {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      MeasureOnce();
      lock.lock();
      cv_.wait_for(lock, interval_, [this] { return stop_; });
    }
  });
}

GroupLagExporter::~GroupLagExporter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool GroupLagExporter::Stopping() {
  std::lock_guard lock(mu_);
  return stop_;
}

void GroupLagExporter::MeasureOnce() {
  // Each group and topic can take the broker's full timeout per call when the broker is gone,
  // so a stop is honoured between them: shutting down waits for the topic in progress only
  // (one call when the broker is unreachable, since its metadata call then fails).
  for (const auto& [group, topics] : groups_) {
    if (Stopping()) return;
    try {
      auto& monitor = monitors_[group];
      if (!monitor) monitor = std::make_unique<LagMonitor>(brokers_, settings_, group);
      for (const auto& topic : topics) {
        if (Stopping()) return;
        for (const auto& p : monitor->Partitions(topic)) {
          registry_
              .GetGauge("herald_consumer_lag", "Records of a partition the group has not committed yet",
                        {{"group", group}, {"topic", topic}, {"partition", std::to_string(p.partition)}})
              .Set(static_cast<double>(p.lag));
        }
      }
      if (failing_[group]) Logger("kafka")->info("lag of {} measurable again", group);
      failing_[group] = false;
    } catch (const std::exception& e) {
      if (!failing_[group]) Logger("kafka")->warn("cannot measure the lag of {}: {}", group, e.what());
      failing_[group] = true;
    }
  }
}

}  // namespace herald::kafka
