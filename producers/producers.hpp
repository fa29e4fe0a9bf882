#pragma once
// Entry points of the producers: the ingest HTTP API and the publish CLI.

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/config/config.hpp"
#include "herald/schema/registry.hpp"

namespace herald::producers {

/// Where a validated event goes: its topic, key and (possibly generated) event_id.
struct Routed {
  std::string topic;
  std::string key;
  std::string event_id;
  nlohmann::json event;  // the event as published (event_id filled in)
};

/// Validates one event and decides its topic (events.<source>.v1: the event's source, else
/// `source_hint` (the caller's token), else its type's source) and key (first recipient,
/// else followers_of, else event_id). A missing event_id is generated. Throws InvalidInput.
/// A source that contradicts `source_hint` is an error.
Routed RouteEvent(nlohmann::json event, const schema::Registry& registry,
                  const std::string& source_hint);

/// What a POST /v1/events body asks for: one event or a batch (an array, or {"events": [...]}),
/// each validated and routed; or, when anything is wrong, `error`: the 400 body naming every
/// problem ({error, field, errors: [{field, error}]}). Never throws on input.
struct IngestRequest {
  bool batch = false;
  std::vector<Routed> routed;
  nlohmann::json error;  // null when accepted
};
IngestRequest ParseIngest(std::string_view body, const schema::Registry& registry, const std::string& source_hint);

int RunIngest(const config::Config& config);

/// The admin API (producers/admin): serves until SIGTERM.
int RunAdmin(const config::Config& config);
/// Stores a new admin API key (its SHA-256 only) and returns the token. Throws InvalidInput
/// for a scope other than read or write.
std::string CreateApiKey(const config::Config& config, const std::string& name, const std::string& scope);

struct PublishOptions {
  std::string file;   // "-" or empty = stdin; one JSON document, an array, or JSON lines
  std::string topic;  // override the routed topic
  bool validate = true;
};
/// Publishes events; prints one event_id per line to `out`. Returns the exit code.
int RunPublish(const config::Config& config, const PublishOptions& options, std::ostream& out);

}  // namespace herald::producers
