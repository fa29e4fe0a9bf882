#include "herald/kafka/reader.hpp"

#include <algorithm>
#include <map>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {

namespace {

StoredRecord ToStored(const std::string& topic, rd_kafka_message_t* m) {
  StoredRecord r;
  r.topic = topic;
  r.partition = m->partition;
  r.offset = m->offset;
  r.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
  if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) r.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      r.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  return r;
}

}  // namespace

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
      if (m->offset + 1 >= it->second) remaining.erase(it);
      out.push_back(ToStored(topic, m.get()));
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
                                 {"enable.partition.eof", "true"},  // Scan: the end of a partition is known even past markers
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

TopicReader::ScanResult TopicReader::Scan(const std::string& topic, const ScanOptions& options,
                                          const std::function<void(StoredRecord&&)>& sink,
                                          const std::function<void(std::int64_t, std::int64_t)>& progress) {
  rd_kafka_t* rk = impl_->rk.get();
  const int timeout_ms = static_cast<int>(options.timeout.count());
  int count = detail::PartitionCount(rk, topic, options.timeout);
  if (count == 0) throw ConfigError("topic " + topic + " does not exist");
  std::vector<std::int32_t> partitions = options.partitions;
  if (partitions.empty()) {
    for (int p = 0; p < count; ++p) partitions.push_back(p);
  }
  for (auto p : partitions) {
    if (p < 0 || p >= count) {
      throw ConfigError("topic " + topic + " has partitions 0.." + std::to_string(count - 1) + ", not " + std::to_string(p));
    }
  }

  // Ask the time index where the range starts and ends in every partition at once.
  auto lookup = [&](std::int64_t ts) -> std::optional<std::map<std::int32_t, std::int64_t>> {
    if (options.force_scan) return std::nullopt;
    detail::PartitionListHandle list{rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()))};
    for (auto p : partitions) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = ts;
    if (rd_kafka_offsets_for_times(rk, list.get(), timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
    std::map<std::int32_t, std::int64_t> out;
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].err) return std::nullopt;
      out[list->elems[i].partition] = list->elems[i].offset;  // -1: no record at or after ts
    }
    return out;
  };
  auto starts = lookup(options.from_ms);
  auto ends = starts ? lookup(options.to_ms) : std::nullopt;

  ScanResult result;
  std::int64_t to_read = 0;
  for (auto p : partitions) {
    auto [low, high] = detail::Watermarks(rk, topic, p, options.timeout);
    ScanPlan plan{p, low, high, false};
    if (starts && ends && low < high) {
      std::int64_t start = (*starts)[p];
      std::int64_t end = (*ends)[p];
      bool trusted = true;
      if (start < 0) {
        // "Nothing at or after from": true only if the newest record is older than that. A
        // broker without a time index (the mock cluster) answers -1 regardless.
        auto last = impl_->ReadUntil(topic, {{p, {high - 1, high}}}, options.timeout);
        trusted = !last.empty() && last.front().timestamp_ms < options.from_ms;
      } else if (start < low || start > high || (end >= 0 && end < start)) {
        trusted = false;
      }
      if (trusted) {
        plan.time_index = true;
        plan.start = start < 0 ? high : start;
        plan.end = end < 0 ? high : std::min(end, high);
      }
    }
    if (plan.start > plan.end) plan.start = plan.end;
    to_read += plan.end - plan.start;
    result.plan.push_back(plan);
  }

  auto last_progress = std::chrono::steady_clock::now();
  for (const auto& plan : result.plan) {
    if (plan.start >= plan.end) continue;
    detail::PartitionListHandle list{rd_kafka_topic_partition_list_new(1)};
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), plan.partition)->offset = plan.start;
    if (auto err = rd_kafka_assign(rk, list.get())) throw TransientError(std::string("assign: ") + rd_kafka_err2str(err));
    std::int64_t next = plan.start;
    auto stalled_since = std::chrono::steady_clock::now();
    while (next < plan.end) {
      detail::MessageHandle m{rd_kafka_consumer_poll(rk, 100)};
      auto now = std::chrono::steady_clock::now();
      if (progress && now - last_progress >= std::chrono::seconds(1)) {
        progress(result.read, to_read);
        last_progress = now;
      }
      if (!m) {
        if (now - stalled_since > options.timeout) {
          rd_kafka_assign(rk, nullptr);
          throw TransientError("reading " + topic + " [" + std::to_string(plan.partition) + "] stalled at offset " +
                               std::to_string(next));
        }
        continue;
      }
      stalled_since = now;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (m->partition == plan.partition && m->offset >= next) break;  // the rest were not records (markers)
        continue;
      }
      if (m->err) {
        Logger("kafka")->warn("replay of {} [{}]: {}", topic, plan.partition, rd_kafka_message_errstr(m.get()));
        continue;
      }
      if (m->partition != plan.partition || m->offset < next) continue;
      next = m->offset + 1;
      if (m->offset >= plan.end) break;
      ++result.read;
      auto ts = rd_kafka_message_timestamp(m.get(), nullptr);
      if (ts < options.from_ms || ts >= options.to_ms) continue;
      ++result.in_range;
      sink(ToStored(topic, m.get()));
    }
    rd_kafka_assign(rk, nullptr);
  }
  if (progress) progress(result.read, to_read);
  return result;
}

}  // namespace herald::kafka
