#pragma once
// Test support: temporary directories, condition polling and Kafka topic readers.
// Tests wait for conditions (with a deadline), never for fixed amounts of time.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "herald/kafka/types.hpp"

namespace herald::test {

/// A fresh directory under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& Path() const { return path_; }

 private:
  std::string path_;
};

/// Polls `pred` every `interval` until it is true or `timeout` passes. Returns the final value.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval = std::chrono::milliseconds(20));

struct ReadRecord {
  std::string topic;
  std::int32_t partition;
  std::int64_t offset;
  std::string key;
  std::string value;
  std::vector<kafka::Header> headers;
  std::int64_t timestamp_ms = -1;  // the record's timestamp (the producer's clock)
};

/// Reads every record currently in `topic` (all partitions, from the beginning) with a plain
/// assign-based consumer, until `expected` records are read or `timeout` passes.
std::vector<ReadRecord> ReadTopic(const std::string& brokers, const std::string& topic, std::size_t expected,
                                  std::chrono::milliseconds timeout);

/// Reads `topics` (every partition, from the beginning) until `done(records so far)` is true
/// or `timeout` passes; returns what was read.
std::vector<ReadRecord> ReadTopicsUntil(const std::string& brokers, const std::vector<std::string>& topics,
                                        const std::function<bool(const std::vector<ReadRecord>&)>& done,
                                        std::chrono::milliseconds timeout);

/// Reads every record `topic` holds now: each partition from its start up to the high
/// watermark measured first. Throws std::runtime_error when that is not done within `timeout`.
std::vector<ReadRecord> ReadTopicToEnd(const std::string& brokers, const std::string& topic,
                                       std::chrono::milliseconds timeout);

/// One case of tests/corpus/bad_events.json: the exact bytes, and the error they must cause.
struct BadInput {
  std::string name;
  std::string body;
  std::string error;  // a substring of the message
  std::string field;  // the JSON pointer the ingest API names ("" = not checked)
};
std::vector<BadInput> LoadBadInputs();

/// Runs a shell command and returns its exit code; stdout into `out` when given.
int Run(const std::string& command, std::string* out = nullptr);

}  // namespace herald::test
