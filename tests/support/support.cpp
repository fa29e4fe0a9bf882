#include "support/support.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace herald::test {

TempDir::TempDir() {
  char tmpl[] = "/tmp/herald-test-XXXXXX";
  path_ = ::mkdtemp(tmpl);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(interval);
  }
  return pred();
}

// A consumed message as a ReadRecord: topic, partition, offset, key, value, timestamp, headers.
static ReadRecord ToReadRecord(rd_kafka_message_t* m) {
  ReadRecord r{rd_kafka_topic_name(m->rkt), m->partition, m->offset,
               m->key ? std::string(static_cast<char*>(m->key), m->key_len) : "",
               std::string(static_cast<char*>(m->payload), m->len), {}};
  r.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      r.headers.push_back({name, std::string(static_cast<const char*>(val), size)});
    }
  }
  return r;
}

using ReaderHandle = std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)>;

// An assign-based consumer for reading topics in tests (nothing committed).
static ReaderHandle NewReader(const std::string& brokers) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", "herald-test-reader", err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  ReaderHandle rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err), rd_kafka_destroy);
  if (!rk) throw std::runtime_error(std::string("cannot create a Kafka consumer: ") + err);
  return rk;
}

std::vector<ReadRecord> ReadTopicsUntil(const std::string& brokers, const std::vector<std::string>& topics,
                                        const std::function<bool(const std::vector<ReadRecord>&)>& done,
                                        std::chrono::milliseconds timeout) {
  auto rk = NewReader(brokers);
  std::vector<ReadRecord> out;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(16);
  for (const auto& topic : topics) {
    const rd_kafka_metadata_t* md = nullptr;
    std::unique_ptr<rd_kafka_topic_t, decltype(&rd_kafka_topic_destroy)> rkt(
        rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr), rd_kafka_topic_destroy);
    if (rd_kafka_metadata(rk.get(), 0, rkt.get(), &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    int partitions = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out) && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m) continue;
    if (!m->err) {
      auto r = ToReadRecord(m);
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

std::vector<ReadRecord> ReadTopic(const std::string& brokers, const std::string& topic, std::size_t expected,
                                  std::chrono::milliseconds timeout) {
  return ReadTopicsUntil(brokers, {topic}, [expected](const auto& r) { return r.size() >= expected; }, timeout);
}

std::vector<ReadRecord> ReadTopicToEnd(const std::string& brokers, const std::string& topic,
                                       std::chrono::milliseconds timeout) {
  auto rk = NewReader(brokers);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    return static_cast<int>(std::max<long long>(ms, 1));
  };
  const rd_kafka_metadata_t* md = nullptr;
  std::unique_ptr<rd_kafka_topic_t, decltype(&rd_kafka_topic_destroy)> rkt(rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr),
                                                                          rd_kafka_topic_destroy);
  if (auto e = rd_kafka_metadata(rk.get(), 0, rkt.get(), &md, left_ms()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error("metadata of " + topic + ": " + rd_kafka_err2str(e));
  }
  int partitions = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  std::map<std::int32_t, std::int64_t> end;  // partition -> high watermark, for those with records
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0, high = 0;
    if (auto e = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, left_ms());
        e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_topic_partition_list_destroy(list);
      throw std::runtime_error("watermarks of " + topic + " [" + std::to_string(p) + "]: " + rd_kafka_err2str(e));
    }
    if (high > low) end[p] = high;
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<ReadRecord> out;
  while (!end.empty()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      rd_kafka_consumer_close(rk.get());
      throw std::runtime_error("reading " + topic + " to its end took longer than " + std::to_string(timeout.count()) +
                               " ms (" + std::to_string(end.size()) + " partition(s) not read)");
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m) continue;
    if (!m->err) {
      auto r = ToReadRecord(m);
      if (auto it = end.find(r.partition); it != end.end() && r.offset + 1 >= it->second) end.erase(it);
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

int Run(const std::string& command, std::string* out) {
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    if (out) out->append(buf, n);
  }
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<BadInput> LoadBadInputs() {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/tests/corpus/bad_events.json");
  auto doc = nlohmann::json::parse(in);
  std::vector<BadInput> out;
  for (const auto& c : doc.at("cases")) {
    BadInput b;
    b.name = c.at("name").get<std::string>();
    b.error = c.at("error").get<std::string>();
    b.field = c.value("field", "");
    if (c.contains("bytes")) {
      // Latin-1: each code point below 256 is one byte (invalid UTF-8 cannot be JSON text).
      auto wide = c.at("bytes").get<std::string>();
      for (std::size_t i = 0; i < wide.size(); ++i) {
        auto ch = static_cast<unsigned char>(wide[i]);
        if (ch == 0xC3 && i + 1 < wide.size()) {
          b.body += static_cast<char>((static_cast<unsigned char>(wide[++i]) & 0x3F) | 0xC0);
        } else if (ch == 0xC2 && i + 1 < wide.size()) {
          b.body += wide[++i];
        } else {
          b.body += wide[i];
        }
      }
    } else {
      b.body = c.at("body").get<std::string>();
    }
    auto replace = [&](const std::string& marker, const std::string& with) {
      if (auto pos = b.body.find(marker); pos != std::string::npos) b.body.replace(pos, marker.size(), with);
    };
    if (c.contains("generate")) {
      const auto& g = c["generate"];
      if (g.contains("deep")) {
        auto n = g["deep"].get<std::size_t>();
        replace("{{DEEP}}", std::string(n, '[') + std::string(n, ']'));
      }
      if (g.contains("huge")) replace("{{HUGE}}", std::string(g["huge"].get<std::size_t>(), 'x'));
    }
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace herald::test
