#pragma once
// `herald replay`: the records of a topic over a time range, for analysts.
//
//   herald replay --topic events.content.v1 --from 2026-11-20T00:00:00Z --to -1h
//       [--partition N]... [--where event_type=episode.released]...
//       [--format jsonl|csv] [--out FILE] | [--publish TOPIC [--allow-live]] | [--dry-run]
//
// Output (default): one line per record (JSON Lines, or CSV with a header row) with topic,
// partition, offset, timestamp, key, headers and value. --publish re-produces each record
// (key, value and headers, plus herald-replayed-from) to another topic, a sandbox by
// default; publishing into one of Herald's own topics needs --allow-live and is safe from
// duplicate sends because notification ids are deterministic and delivery never sends an id
// twice. --dry-run runs plan (validation, fan-out), enrich (user data, channel, timing) and
// rendering for the replayed records — events, requests or deliveries — and writes what
// would be sent, sending nothing: nothing is produced, claimed or recorded, and no cache is
// written.

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/common/time.hpp"
#include "herald/config/config.hpp"
#include "herald/kafka/reader.hpp"

namespace herald::producers::replay {

struct Options {
  std::string topic;
  std::string from;  // RFC 3339, "now", or an age: "2h" / "-2h" = two hours ago
  std::string to = "now";
  std::vector<std::int32_t> partitions;
  std::vector<std::string> where;  // field=value, all must match
  std::string format = "jsonl";    // jsonl | csv
  std::string out = "-";           // file, "-" = stdout
  std::string publish;             // topic to re-produce into
  bool allow_live = false;         // --publish may target a Herald topic
  bool dry_run = false;
  bool scan = false;               // never use the broker's time index
  std::size_t limit = 0;           // stop after this many matching records (0 = all)
  bool quiet = false;              // no progress on stderr
};

/// "now", RFC 3339, or an age ("90s", "15m", "2h", "7d", with or without a leading '-')
/// relative to `now`. Throws InvalidInput naming the text.
TimePoint ParseWhen(const std::string& text, TimePoint now);

/// A field filter: `path=value`. The path is dotted (payload.data.city); `key` is the record
/// key and `header.<name>` a header. A bare name is also looked up under `payload` (events)
/// and `request` (deliveries), and `user_id` also matches an event's recipient list
/// (payload.user). A value matches a string equal to it, a number or boolean written the
/// same, or an array holding such an element.
struct Filter {
  std::string path;
  std::string value;
};
Filter ParseFilter(const std::string& text);  // throws InvalidInput
bool Matches(const kafka::StoredRecord& record, const nlohmann::json& value, const std::vector<Filter>& filters);

/// The JSON Lines form of a record: value as JSON when it parses, else as a string.
nlohmann::json RecordJson(const kafka::StoredRecord& record, const nlohmann::json& value);
/// One CSV field (RFC 4180 quoting).
std::string CsvField(const std::string& text);

/// Runs a replay; progress and the summary go to `err`. Returns the exit code (0 ok, 1 error,
/// 2 bad arguments); errors are reported on `err`.
int Run(const config::Config& config, const Options& options, std::ostream& out, std::ostream& err);

}  // namespace herald::producers::replay
