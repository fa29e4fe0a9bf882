#pragma once
// Private helpers shared by the producer, the consumer loop and the embedded broker:
// one owning RAII wrapper per librdkafka handle, and configuration building.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <librdkafka/rdkafka.h>

#include "herald/kafka/types.hpp"

namespace herald::kafka::detail {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
struct TopicPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const noexcept {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const noexcept { rd_kafka_message_destroy(m); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const noexcept { rd_kafka_queue_destroy(q); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const noexcept { rd_kafka_headers_destroy(h); }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const noexcept { rd_kafka_error_destroy(e); }
};

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const noexcept { rd_kafka_metadata_destroy(md); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const noexcept { rd_kafka_AdminOptions_destroy(o); }
};
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const noexcept { rd_kafka_NewTopic_destroy(t); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const noexcept { rd_kafka_ConfigResource_destroy(r); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const noexcept { rd_kafka_event_destroy(e); }
};

using MetadataHandle = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;
using AdminOptionsHandle = std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;
using NewTopicHandle = std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>;
using ConfigResourceHandle = std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter>;
using EventHandle = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using ConfHandle = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using PartitionListHandle =
    std::unique_ptr<rd_kafka_topic_partition_list_t, TopicPartitionListDeleter>;
using MessageHandle = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using QueueHandle = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using HeadersHandle = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;
using ErrorHandle = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

/// Builds a configuration: `defaults` first, then `overrides` (raw kafka.* settings win).
/// Bridges librdkafka's log and error callbacks into the "kafka" spdlog logger.
/// Throws ConfigError naming the offending key.
ConfHandle BuildConf(const Settings& defaults, const Settings& overrides);

/// Set once any client in this process hit a fatal error (e.g. the idempotent producer was
/// fenced); the process must be restarted to recover.
void RecordFatal(const std::string& what);

/// Creates a client handle; throws ConfigError with librdkafka's message on failure.
KafkaHandle CreateHandle(rd_kafka_type_t type, ConfHandle conf);

/// The partition count of `topic` (0 when the broker reports it missing); throws
/// TransientError when the metadata does not arrive within `timeout`.
int PartitionCount(rd_kafka_t* rk, const std::string& topic, std::chrono::milliseconds timeout);

/// {low, high} watermark offsets of one partition; throws TransientError.
std::pair<std::int64_t, std::int64_t> Watermarks(rd_kafka_t* rk, const std::string& topic, std::int32_t partition,
                                                 std::chrono::milliseconds timeout);

}  // namespace herald::kafka::detail
