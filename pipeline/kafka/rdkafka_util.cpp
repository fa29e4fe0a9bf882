#include "kafka/rdkafka_util.hpp"

#include <chrono>
#include <mutex>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"

namespace herald::kafka::detail {
namespace {

void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  static auto log = Logger("kafka");
  // syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug.
  auto lvl = level <= 3   ? spdlog::level::err
             : level == 4 ? spdlog::level::warn
             : level <= 6 ? spdlog::level::info
                          : spdlog::level::debug;
  log->log(lvl, "{} {}: {}", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

void ErrorCallback(rd_kafka_t* rk, int err, const char* reason, void*) {
  static auto log = Logger("kafka");
  // Transport errors repeat every reconnect attempt; log each distinct one at most once a
  // second so a broker outage does not flood the log.
  static std::mutex mu;
  static auto last = std::chrono::steady_clock::time_point{};
  static std::string last_reason;
  {
    std::lock_guard lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (reason == last_reason && now - last < std::chrono::seconds(1)) return;
    last = now;
    last_reason = reason;
  }
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof buf);
    log->critical("{}: fatal error: {}", rd_kafka_name(rk), buf);
    RecordFatal(std::string(rd_kafka_name(rk)) + ": " + buf);
    return;
  }
  log->warn("{}: {} ({})", rd_kafka_name(rk), reason, rd_kafka_err2name(code));
}

std::mutex g_fatal_mu;
std::string g_fatal;

}  // namespace

void RecordFatal(const std::string& what) {
  std::lock_guard lock(g_fatal_mu);
  if (g_fatal.empty()) g_fatal = what;
}

}  // namespace herald::kafka::detail

namespace herald::kafka {

std::string FatalError() {
  std::lock_guard lock(detail::g_fatal_mu);
  return detail::g_fatal;
}

}  // namespace herald::kafka

namespace herald::kafka::detail {

ConfHandle BuildConf(const Settings& defaults, const Settings& overrides) {
  ConfHandle conf{rd_kafka_conf_new()};
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      throw ConfigError("kafka setting '" + k + "': " + err);
    }
  };
  for (const auto& [k, v] : defaults) set(k, v);
  for (const auto& [k, v] : overrides) set(k, v);
  rd_kafka_conf_set_log_cb(conf.get(), LogCallback);
  rd_kafka_conf_set_error_cb(conf.get(), ErrorCallback);
  return conf;
}

int PartitionCount(rd_kafka_t* rk, const std::string& topic, std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  std::unique_ptr<rd_kafka_topic_t, decltype(&rd_kafka_topic_destroy)> rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr),
                                                                           rd_kafka_topic_destroy);
  auto err = rd_kafka_metadata(rk, 0, rkt.get(), &md, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || !md || md->topic_cnt != 1) {
    if (md) rd_kafka_metadata_destroy(md);
    throw TransientError("cannot read metadata of " + topic);
  }
  int n = md->topics[0].err ? 0 : md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

std::pair<std::int64_t, std::int64_t> Watermarks(rd_kafka_t* rk, const std::string& topic, std::int32_t partition,
                                                 std::chrono::milliseconds timeout) {
  int64_t low = 0, high = 0;
  auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high, static_cast<int>(timeout.count()));
  if (err) throw TransientError("cannot read watermarks of " + topic + ": " + rd_kafka_err2str(err));
  return {low, high};
}

KafkaHandle CreateHandle(rd_kafka_type_t type, ConfHandle conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (!rk) throw ConfigError(std::string("cannot create Kafka client: ") + err);
  conf.release();  // rd_kafka_new took ownership
  return KafkaHandle{rk};
}

}  // namespace herald::kafka::detail
