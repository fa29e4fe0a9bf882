#include <map>

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/untrusted_json.hpp"
#include "herald/model/event.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "producers.hpp"

namespace herald::producers {

Routed RouteEvent(nlohmann::json event, const schema::Registry& registry,
                  const std::string& source_hint) {
  if (!event.is_object()) throw InvalidInput("an event must be a JSON object", "");
  if (!event.contains("event_id")) event["event_id"] = RandomUuid();
  auto parsed = model::ParseEventDocument(event, registry, std::nullopt);
  std::string source = event.contains("source") ? parsed.source
                       : !source_hint.empty()   ? source_hint
                                                : parsed.source;
  if (!source_hint.empty() && source != source_hint) {
    throw InvalidInput("source '" + source + "' does not match the caller's source '" + source_hint + "'",
                       "/source");
  }
  Routed r;
  r.topic = topics::Catalog().Events(source);
  r.key = !parsed.users.empty() ? parsed.users.front()
          : parsed.followers_of ? *parsed.followers_of
                                : parsed.event_id;
  r.event_id = parsed.event_id;
  r.event = std::move(event);
  return r;
}

IngestRequest ParseIngest(std::string_view body, const schema::Registry& registry, const std::string& source_hint) {
  IngestRequest out;
  auto reject = [&](const std::string& error, const std::string& field) {
    out.error = {{"error", error}, {"field", field}, {"errors", {{{"field", field}, {"error", error}}}}};
    return out;
  };
  nlohmann::json doc;
  try {
    doc = ParseUntrusted(body, kMaxJsonDepth, /*reject_nul=*/false);  // each event is checked as it is routed
  } catch (const InvalidInput& e) {
    return reject(e.what(), e.Field());
  }
  out.batch = doc.is_array() || (doc.is_object() && doc.contains("events") && !doc.contains("event_type"));
  nlohmann::json items = doc.is_array() ? doc : out.batch ? doc["events"] : nlohmann::json::array({doc});
  if (!items.is_array() || items.empty() || items.size() > 1000) {
    return reject("a batch must be a non-empty array of at most 1000 events", "/events");
  }
  // Validate everything first: a batch is accepted whole or not at all.
  nlohmann::json errors = nlohmann::json::array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    try {
      out.routed.push_back(RouteEvent(items[i], registry, source_hint));
    } catch (const InvalidInput& e) {
      std::string field = out.batch ? "/events/" + std::to_string(i) + e.Field() : e.Field();
      errors.push_back({{"field", field}, {"error", e.what()}});
    }
  }
  if (!errors.empty()) {
    out.routed.clear();
    out.error = {{"error", errors[0]["error"]}, {"field", errors[0]["field"]}, {"errors", errors}};
  }
  return out;
}

int RunIngest(const config::Config& config) {
  if (config.ingest_token.empty()) {
    throw ConfigError("HERALD_INGEST_TOKEN is required: the ingest API does not run unauthenticated");
  }
  stage::Stage st(config, {"ingest", {}});
  auto registry = schema::Registry::Load(config.schema_dir);
  // "tokenA,auth:tokenB": a bare token may publish any source, "source:token" only its own.
  auto tokens = config::ParseTokens(config.ingest_token);
  auto& accepted = st.Metrics().GetCounter("herald_ingest_events_total", "Events accepted by the ingest API");
  auto& rejected = st.Metrics().GetCounter("herald_ingest_rejected_total", "Requests rejected by the ingest API");
  auto& raw = st.Http().Raw();
  raw.set_payload_max_length(config.max_body_bytes);
  http::AddOpsRoutes(st.Http(), st.Metrics(), nullptr, nullptr);

  raw.Post("/v1/events", [&](const httplib::Request& req, httplib::Response& res) {
    auto auth = req.get_header_value("Authorization");
    auto it = auth.rfind("Bearer ", 0) == 0 ? tokens.find(auth.substr(7)) : tokens.end();
    if (it == tokens.end()) {
      rejected.Inc();
      res.set_header("WWW-Authenticate", "Bearer");
      return http::JsonError(res, 401, "missing or invalid bearer token");
    }
    auto parsed = ParseIngest(req.body, *registry, it->second);
    if (!parsed.error.is_null()) {
      rejected.Inc();
      return http::Json(res, 400, parsed.error);
    }
    const auto& routed = parsed.routed;
    const bool batch = parsed.batch;
    try {
      std::vector<kafka::OutRecord> records;
      for (const auto& r : routed) records.push_back({r.topic, r.key, r.event.dump(), {{"herald-event-id", r.event_id}}});
      st.Producer().ProduceAll(records, std::chrono::seconds(10));
    } catch (const Error& e) {
      res.set_header("Retry-After", "1");
      return http::JsonError(res, 503, std::string("the broker did not acknowledge the event: ") + e.what());
    }
    accepted.Inc(routed.size());
    if (!batch) return http::Json(res, 202, {{"event_id", routed[0].event_id}});
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& r : routed) ids.push_back(r.event_id);
    http::Json(res, 202, {{"event_ids", ids}});
  });
  Logger("ingest")->info("ingest API: POST http://{}:{}/v1/events", config.http_host, config.http_port);
  return st.ServeUntilSignal();
}

}  // namespace herald::producers
