#include "herald/kafka/reader.hpp"

#include <algorithm>
#include <map>

#include "herald/common/errors.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {

struct TopicReader::Impl {
  detail::KafkaHandle rk;

  // Reads from the assigned start offsets until each partition reached its end offset.
  std::vector<StoredRecord> ReadUntil(const std::string& topic, const std::map<std::int32_t, std::pair<std::int64_t, std::int64_t>>& ranges,
                                      std::chrono::milliseconds timeout) {
    std::vector<StoredRecord> out;
    std::map<std::int32_t, std::int64_t> remaining;
    detail::PartitionListHandle list{rd_kafka_topic_partition_list_new(static_cast<int>(ranges.size()))};
    for (const auto& [p, range] : ranges) {
      if (range.first >= range.second) continue;
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = range.first;
      remaining[p] = range.second;
    }
    if (remaining.empty()) return out;
    if (auto err = rd_kafka_assign(rk.get(), list.get())) throw TransientError(std::string("assign: ") + rd_kafka_err2str(err));
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!remaining.empty() && std::chrono::steady_clock::now() < deadline) {
      detail::MessageHandle m{rd_kafka_consumer_poll(rk.get(), 100)};
      if (!m || m->err) continue;
      auto it = remaining.find(m->partition);
      if (it == remaining.end()) continue;
      if (m->offset >= it->second) {  // past the end (the wanted offsets were compacted away)
        remaining.erase(it);
        continue;
      }
      StoredRecord r;
      r.topic = topic;
      r.partition = m->partition;
      r.offset = m->offset;
      r.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
      if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
          r.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
        }
      }
      if (m->offset + 1 >= it->second) remaining.erase(it);
      out.push_back(std::move(r));
    }
    rd_kafka_assign(rk.get(), nullptr);
    if (!remaining.empty()) throw TransientError("reading " + topic + " timed out");
    return out;
  }
};

TopicReader::TopicReader(const std::string& brokers, const Settings& settings) : impl_(std::make_unique<Impl>()) {
  auto conf = detail::BuildConf({{"bootstrap.servers", brokers},
                                 {"group.id", "herald-reader"},  // required by librdkafka; never joined or committed
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"enable.partition.eof", "false"},
                                 {"client.id", "herald-reader"}},
                                settings);
  impl_->rk = detail::CreateHandle(RD_KAFKA_CONSUMER, std::move(conf));
}

TopicReader::~TopicReader() {
  if (impl_ && impl_->rk) rd_kafka_consumer_close(impl_->rk.get());
}

std::vector<StoredRecord> TopicReader::Tail(const std::string& topic, std::size_t limit, std::chrono::milliseconds timeout) {
  std::map<std::int32_t, std::pair<std::int64_t, std::int64_t>> ranges;
  int partitions = detail::PartitionCount(impl_->rk.get(), topic, timeout);
  for (int p = 0; p < partitions; ++p) {
    auto [low, high] = detail::Watermarks(impl_->rk.get(), topic, p, timeout);
    ranges[p] = {std::max(low, high - static_cast<std::int64_t>(limit)), high};
  }
  auto records = impl_->ReadUntil(topic, ranges, timeout);
  std::sort(records.begin(), records.end(), [](const StoredRecord& a, const StoredRecord& b) {
    return std::tie(a.timestamp_ms, a.partition, a.offset) > std::tie(b.timestamp_ms, b.partition, b.offset);
  });
  if (records.size() > limit) records.resize(limit);
  return records;
}

std::optional<StoredRecord> TopicReader::At(const std::string& topic, std::int32_t partition, std::int64_t offset,
                                            std::chrono::milliseconds timeout) {
  if (partition < 0 || offset < 0 || partition >= detail::PartitionCount(impl_->rk.get(), topic, timeout)) return std::nullopt;
  auto [low, high] = detail::Watermarks(impl_->rk.get(), topic, partition, timeout);
  if (offset < low || offset >= high) return std::nullopt;
  auto records = impl_->ReadUntil(topic, {{partition, {offset, offset + 1}}}, timeout);
  if (records.empty()) return std::nullopt;
  return records.front();
}

}  // namespace herald::kafka
