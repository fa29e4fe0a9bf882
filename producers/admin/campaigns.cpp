#include "admin/campaigns.hpp"

#include <algorithm>
#include <set>

#include "herald/campaign/state.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/ids.hpp"
#include "herald/model/event.hpp"
#include "herald/schedule/cron.hpp"
#include "herald/stats/stats.hpp"
#include "herald/timing/window.hpp"
#include "herald/topics/catalog.hpp"

namespace herald::campaigns {
namespace {

using Json = nlohmann::json;

const std::set<std::string> kInputFields = {"name",  "event_type", "segment",  "channels", "priority",
                                            "deliver_window", "content", "data", "start_at", "end_at",
                                            "cron", "timezone", "version"};

// Timestamps leave PostgreSQL as RFC 3339 UTC with milliseconds.
std::string Ts(const char* column) {
  return std::string("to_char(") + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
}

const std::string& Columns() {
  static const std::string cols =
      "id, name, event_type, segment::text, array_to_json(channels)::text, priority, deliver_window::text, "
      "array_to_json(content)::text, data::text, " +
      Ts("start_at") + ", " + Ts("end_at") + ", cron, timezone, state, COALESCE(paused_from, ''), " +
      Ts("next_run_at") + ", runs, version, created_by, " + Ts("created_at") + ", " + Ts("updated_at");
  return cols;
}

std::optional<TimePoint> OptTs(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return ParseRfc3339(f.as<std::string>());
}

Campaign FromRow(const pqxx::row& r) {
  Campaign c;
  c.id = r[0].as<std::string>();
  c.name = r[1].as<std::string>();
  c.event_type = r[2].as<std::string>();
  c.segment = Json::parse(r[3].as<std::string>());
  c.channels = Json::parse(r[4].as<std::string>()).get<std::vector<std::string>>();
  c.priority = r[5].as<std::string>();
  c.deliver_window = r[6].is_null() ? Json(nullptr) : Json::parse(r[6].as<std::string>());
  c.content = Json::parse(r[7].as<std::string>()).get<std::vector<std::string>>();
  c.data = Json::parse(r[8].as<std::string>());
  c.start_at = OptTs(r[9]);
  c.end_at = OptTs(r[10]);
  if (!r[11].is_null()) c.cron = r[11].as<std::string>();
  c.timezone = r[12].as<std::string>();
  c.state = r[13].as<std::string>();
  c.paused_from = r[14].as<std::string>();
  c.next_run_at = OptTs(r[15]);
  c.runs = r[16].as<int>();
  c.version = r[17].as<int>();
  c.created_by = r[18].as<std::string>();
  c.created_at = r[19].as<std::string>();
  c.updated_at = r[20].as<std::string>();
  return c;
}

std::optional<std::string> OptTsText(const std::optional<TimePoint>& t) {
  if (!t) return std::nullopt;
  return FormatRfc3339(*t);
}

// A pointer into the event a run publishes, as the campaign field it comes from.
std::string CampaignField(const std::string& event_field) {
  static const std::vector<std::pair<std::string, std::string>> kMap = {
      {"/payload/segment", "/segment"}, {"/payload/user", "/segment/users"}, {"/payload/data", "/data"},
      {"/payload/content", "/content"}, {"/expires_dt", "/end_at"},          {"/payload", "/segment"}};
  for (const auto& [from, to] : kMap) {
    if (event_field.rfind(from, 0) == 0) return to + event_field.substr(from.size());
  }
  return event_field;
}

// A problem the schema reports on the payload as a whole names the field it misses.
std::string CampaignField(const std::string& event_field, const std::string& message) {
  if (event_field == "/payload" && message.find("content") != std::string::npos) return "/content";
  return CampaignField(event_field);
}

std::chrono::sys_seconds Secs(TimePoint t) { return std::chrono::floor<std::chrono::seconds>(t); }

// The first occurrence of a cron campaign at or after `from`.
std::optional<TimePoint> NextOccurrence(const Campaign& c, TimePoint from) {
  if (!c.cron) return std::nullopt;
  auto cron = schedule::Cron::Parse(*c.cron);
  auto next = cron.Next(Secs(from) - std::chrono::seconds(1), timing::FindZone(c.timezone));
  if (!next) return std::nullopt;
  if (c.end_at && *next >= *c.end_at) return std::nullopt;
  return TimePoint(*next);
}

}  // namespace

std::size_t CodePoints(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

Json ToJson(const Campaign& c) {
  auto opt = [](const std::optional<TimePoint>& t) { return t ? Json(FormatRfc3339(*t)) : Json(nullptr); };
  return {{"id", c.id},
          {"name", c.name},
          {"event_type", c.event_type},
          {"segment", c.segment},
          {"channels", c.channels},
          {"priority", c.priority},
          {"deliver_window", c.deliver_window},
          {"content", c.content},
          {"data", c.data},
          {"start_at", opt(c.start_at)},
          {"end_at", opt(c.end_at)},
          {"cron", c.cron ? Json(*c.cron) : Json(nullptr)},
          {"timezone", c.timezone},
          {"state", c.state},
          {"runs", c.runs},
          {"next_run_at", opt(c.next_run_at)},
          {"version", c.version},
          {"created_by", c.created_by},
          {"created_at", c.created_at},
          {"updated_at", c.updated_at}};
}

Campaign FromInput(const Json& body, const schema::Registry& registry, bool update, std::optional<int>* version) {
  Json errors = Json::array();
  auto fail = [&](const std::string& field, const std::string& error) {
    errors.push_back({{"field", field}, {"error", error}});
  };
  if (!body.is_object()) throw FieldErrors(Json::array({{{"field", ""}, {"error", "the body must be a JSON object"}}}));
  for (const auto& [k, v] : body.items()) {
    if (!kInputFields.count(k)) fail("/" + k, "unknown field '" + k + "'");
  }
  Campaign c;
  auto str = [&](const char* key, std::string& out, bool required, std::size_t max) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) {
      if (required) fail(std::string("/") + key, std::string(key) + " is required");
      return;
    }
    if (!it->is_string()) return fail(std::string("/") + key, std::string(key) + " must be a string");
    out = it->get<std::string>();
    if (required && out.empty()) fail(std::string("/") + key, std::string(key) + " must not be empty");
    if (CodePoints(out) > max) fail(std::string("/") + key, std::string(key) + " is longer than " + std::to_string(max) + " characters");
  };
  auto strings = [&](const char* key, std::vector<std::string>& out, std::size_t max) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return;
    if (!it->is_array()) return fail(std::string("/") + key, std::string(key) + " must be an array of strings");
    if (it->size() > max) return fail(std::string("/") + key, std::string(key) + " has more than " + std::to_string(max) + " items");
    for (std::size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string() || (*it)[i].get<std::string>().empty()) {
        fail(std::string("/") + key + "/" + std::to_string(i), "must be a non-empty string");
      } else {
        out.push_back((*it)[i].get<std::string>());
      }
    }
  };
  auto time = [&](const char* key, std::optional<TimePoint>& out) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return;
    if (!it->is_string()) return fail(std::string("/") + key, std::string(key) + " must be an RFC 3339 date-time string");
    out = ParseRfc3339(it->get<std::string>());
    if (!out) fail(std::string("/") + key, std::string(key) + " is not an RFC 3339 date-time");
  };
  str("name", c.name, true, 200);
  str("event_type", c.event_type, true, 64);
  str("priority", c.priority, false, 16);
  str("timezone", c.timezone, false, 64);
  if (c.timezone.empty()) c.timezone = "UTC";
  strings("channels", c.channels, 4);
  strings("content", c.content, 1000);
  time("start_at", c.start_at);
  time("end_at", c.end_at);
  if (auto it = body.find("cron"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) {
      fail("/cron", "cron must be a string");
    } else {
      try {
        c.cron = schedule::Cron::Parse(it->get<std::string>()).Expression();
      } catch (const InvalidInput& e) {
        fail("/cron", e.what());
      }
    }
  }
  if (!timing::FindZone(c.timezone)) fail("/timezone", "unknown IANA time zone '" + c.timezone + "'");
  if (c.start_at && c.end_at && *c.end_at <= *c.start_at) fail("/end_at", "end_at must be after start_at");
  if (auto it = body.find("segment"); it == body.end() || it->is_null()) {
    fail("/segment", "segment is required");
  } else if (!it->is_object()) {
    fail("/segment", "segment must be an object");
  } else {
    c.segment = *it;
    if (c.segment.contains("users") && c.segment.size() > 1) {
      fail("/segment", "a segment is either {users} or {tags, timezones, locales}, not both");
    }
  }
  if (auto it = body.find("deliver_window"); it != body.end()) c.deliver_window = *it;
  if (auto it = body.find("data"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) fail("/data", "data must be an object");
    else c.data = *it;
  }
  if (auto it = body.find("version"); it != body.end()) {
    if (!update) fail("/version", "version is only accepted on update");
    else if (!it->is_number_integer()) fail("/version", "version must be an integer");
    else if (version) *version = it->get<int>();
  }
  const auto* type = c.event_type.empty() ? nullptr : registry.Find(c.event_type);
  if (!c.event_type.empty() && !type) fail("/event_type", "unknown event type '" + c.event_type + "'");
  if (type) {
    std::set<std::string> seen;
    for (std::size_t i = 0; i < c.channels.size(); ++i) {
      const auto& ch = c.channels[i];
      if (!seen.insert(ch).second) fail("/channels/" + std::to_string(i), "channel '" + ch + "' is listed twice");
      if (std::find(type->channels.begin(), type->channels.end(), ch) == type->channels.end()) {
        std::string allowed;
        for (const auto& t : type->channels) allowed += (allowed.empty() ? "" : ", ") + t;
        fail("/channels/" + std::to_string(i), c.event_type + " is not sent on '" + ch + "' (it uses " + allowed + ")");
      }
    }
    if (c.priority.empty()) c.priority = type->default_priority;
    if (body.contains("channels") && body["channels"].is_array() && body["channels"].empty()) {
      fail("/channels", "channels must list at least one channel (omit it for all of the type's)");
    }
    if (c.channels.empty()) c.channels = type->channels;
  }
  if (!c.priority.empty() && c.priority != "high" && c.priority != "normal" && c.priority != "low") {
    fail("/priority", "priority must be high, normal or low");
  }
  // Everything else (segment fields, window, data against the type's schema) is exactly what
  // the event of a run must satisfy: validate that event.
  if (errors.empty()) {
    // A run's event must fit in one Kafka message (librdkafka's default limit is 1,000,000).
    if (RunEvent(c, 1, TimePoint{}).dump().size() > 900'000) {
      fail(c.segment.contains("users") ? "/segment/users" : "/data", "the campaign is too large for one event (900 kB): use a segment");
    }
    try {
      model::ParseEventDocument(RunEvent(c, 1, c.start_at.value_or(TimePoint{}) + std::chrono::seconds(1)), registry,
                                std::nullopt);
    } catch (const InvalidInput& e) {
      fail(CampaignField(e.Field(), e.what()), e.what());
    }
  }
  if (!errors.empty()) throw FieldErrors(errors);
  return c;
}

Json RunEvent(const Campaign& c, int run, TimePoint now) {
  Json payload = Json::object();
  if (c.segment.contains("users")) payload["user"] = c.segment["users"];
  else payload["segment"] = c.segment;
  if (!c.content.empty()) payload["content"] = c.content;
  payload["data"] = c.data;
  Json e = {{"event_id", "campaign." + (c.id.empty() ? std::string("new") : c.id) + "." + std::to_string(run)},
            {"event_type", c.event_type},
            {"source", "admin"},
            {"created_dt", FormatRfc3339(now)},
            {"campaign_id", c.id.empty() ? std::string("new") : c.id},
            {"payload", payload}};
  if (!c.priority.empty()) e["priority"] = c.priority;
  if (!c.channels.empty()) e["channels"] = c.channels;
  if (!c.deliver_window.is_null()) e["deliver_window"] = c.deliver_window;
  if (c.end_at) e["expires_dt"] = FormatRfc3339(*c.end_at);
  return e;
}

// ---- storage ----

namespace {

std::optional<Campaign> Load(pqxx::work& tx, const std::string& id, bool lock) {
  auto rows = tx.exec_params("SELECT " + Columns() + " FROM campaigns WHERE id = $1 AND deleted_at IS NULL" +
                                 (lock ? " FOR UPDATE" : ""),
                             id);
  if (rows.empty()) return std::nullopt;
  return FromRow(rows[0]);
}

// Starts run `runs + 1` of a locked campaign: records it (unpublished) and advances the
// campaign. The caller commits, then publishes (PublishRun); a run whose publication failed
// is published by the scheduler's next pass (an outbox).
void LaunchRun(pqxx::work& tx, Campaign& c, TimePoint now) {
  int run = c.runs + 1;
  auto event = RunEvent(c, run, now);
  tx.exec_params(
      "INSERT INTO campaign_runs (campaign_id, run, event_id, event, started_at) VALUES ($1, $2, $3, $4::jsonb, "
      "$5::timestamptz) ON CONFLICT (campaign_id, run) DO NOTHING",
      c.id, run, event["event_id"].get<std::string>(), event.dump(), FormatRfc3339(now));
  c.runs = run;
  c.state = "running";
  c.next_run_at = NextOccurrence(c, now + std::chrono::seconds(1));
  c.version = tx.exec_params1(
                    "UPDATE campaigns SET runs = $2, state = 'running', paused_from = NULL, next_run_at = $3::timestamptz, "
                    "version = version + 1, updated_at = now() WHERE id = $1 RETURNING version",
                    c.id, run, OptTsText(c.next_run_at))[0]
                  .as<int>();
}

// Publishes the runs of `campaign_id` (every campaign when empty) not published yet.
// Returns how many; logs and skips a run the broker refuses for good.
int PublishRuns(pqxx::connection& conn, const std::string& campaign_id, const Publish& publish) {
  int n = 0;
  pqxx::work tx(conn);
  auto rows = tx.exec_params(
      "SELECT campaign_id, run, event_id, event::text FROM campaign_runs WHERE NOT published AND ($1 = '' OR "
      "campaign_id = $1) ORDER BY started_at FOR UPDATE SKIP LOCKED LIMIT 100",
      campaign_id);
  for (const auto& r : rows) {
    try {
      publish(topics::Catalog().Events("admin"), r[2].as<std::string>(), r[3].as<std::string>());
    } catch (const TransientError&) {
      throw;
    } catch (const std::exception& e) {
      Logger("campaigns")->error("run {} of campaign {} cannot be published: {}", r[1].as<int>(),
                                 r[0].as<std::string>(), e.what());
      continue;
    }
    tx.exec_params("UPDATE campaign_runs SET published = true WHERE campaign_id = $1 AND run = $2",
                   r[0].as<std::string>(), r[1].as<int>());
    ++n;
  }
  tx.commit();
  return n;
}

// After a committed change: the mirror follows. A failure here changes nothing committed
// (readers fall back to PostgreSQL while the mirror is absent), so it is logged, not thrown.
void Mirror(redis::Client& redis, const std::string& id, const std::string& state, int version) {
  try {
    campaign::WriteMirror(redis, id, state, version);
  } catch (const std::exception& e) {
    Logger("campaigns")->warn("campaign {}: Redis mirror not written ({}); stages read PostgreSQL", id, e.what());
  }
}

}  // namespace

Campaign Store::Create(Campaign c, const std::string& author) {
  c.id = "c-" + RandomUuid().substr(0, 18);
  pqxx::work tx(conn_);
  tx.exec_params(
      "INSERT INTO campaigns (id, name, event_type, segment, channels, priority, deliver_window, content, data, "
      "start_at, end_at, cron, timezone, created_by) VALUES ($1, $2, $3, $4::jsonb, "
      "ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), $6, $7::jsonb, "
      "ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), $9::jsonb, $10::timestamptz, $11::timestamptz, $12, $13, $14)",
      c.id, c.name, c.event_type, c.segment.dump(), Json(c.channels).dump(), c.priority,
      c.deliver_window.is_null() ? std::optional<std::string>() : c.deliver_window.dump(), Json(c.content).dump(),
      c.data.dump(), OptTsText(c.start_at), OptTsText(c.end_at), c.cron, c.timezone, author);
  auto out = *Load(tx, c.id, false);
  tx.commit();
  return out;
}

std::optional<Campaign> Store::Get(const std::string& id) {
  pqxx::work tx(conn_);
  return Load(tx, id, false);
}

std::pair<std::vector<Campaign>, long long> Store::List(const std::string& state, int limit, int offset) {
  pqxx::work tx(conn_);
  std::string where = "deleted_at IS NULL" + (state.empty() ? std::string() : " AND state = " + tx.quote(state));
  auto rows = tx.exec_params("SELECT " + Columns() + " FROM campaigns WHERE " + where +
                                 " ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
                             limit, offset);
  std::vector<Campaign> out;
  for (const auto& r : rows) out.push_back(FromRow(r));
  long long total = tx.exec1("SELECT count(*) FROM campaigns WHERE " + where)[0].as<long long>();
  return {out, total};
}

Campaign Store::Update(const std::string& id, const Campaign& c, std::optional<int> version, TimePoint now) {
  pqxx::work tx(conn_);
  auto current = Load(tx, id, true);
  if (!current) throw NotFound("no campaign " + id);
  if (current->state != "draft" && current->state != "scheduled" && current->state != "paused") {
    throw Conflict("a " + current->state + " campaign cannot be edited", current->state);
  }
  if (version && *version != current->version) {
    throw Conflict("campaign " + id + " is at version " + std::to_string(current->version) + ", not " +
                       std::to_string(*version) + ": reload it and apply the change again",
                   current->state);
  }
  Campaign next = *current;
  next.name = c.name;
  next.event_type = c.event_type;
  next.segment = c.segment;
  next.channels = c.channels;
  next.priority = c.priority;
  next.deliver_window = c.deliver_window;
  next.content = c.content;
  next.data = c.data;
  next.start_at = c.start_at;
  next.end_at = c.end_at;
  next.cron = c.cron;
  next.timezone = c.timezone;
  // A scheduled campaign's next run follows the new timing.
  bool waiting = next.state == "scheduled" || (next.state == "paused" && next.paused_from == "scheduled");
  if (waiting || (next.cron && next.state == "paused")) {
    TimePoint from = std::max(next.start_at.value_or(now), now);
    next.next_run_at = next.cron ? NextOccurrence(next, from) : std::optional<TimePoint>(from);
    if (next.cron && !next.next_run_at) throw Conflict("the cron has no occurrence before end_at", next.state);
  }
  tx.exec_params(
      "UPDATE campaigns SET name = $2, event_type = $3, segment = $4::jsonb, "
      "channels = ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), priority = $6, deliver_window = $7::jsonb, "
      "content = ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), data = $9::jsonb, start_at = $10::timestamptz, "
      "end_at = $11::timestamptz, cron = $12, timezone = $13, next_run_at = $14::timestamptz, "
      "version = version + 1, updated_at = now() WHERE id = $1",
      id, next.name, next.event_type, next.segment.dump(), Json(next.channels).dump(), next.priority,
      next.deliver_window.is_null() ? std::optional<std::string>() : next.deliver_window.dump(),
      Json(next.content).dump(), next.data.dump(), OptTsText(next.start_at), OptTsText(next.end_at), next.cron,
      next.timezone, OptTsText(next.next_run_at));
  auto out = *Load(tx, id, false);
  tx.commit();
  return out;
}

void Store::Delete(const std::string& id) {
  pqxx::work tx(conn_);
  auto current = Load(tx, id, true);
  if (!current) throw NotFound("no campaign " + id);
  if (current->state != "draft" && current->state != "completed" && current->state != "cancelled") {
    throw Conflict("a " + current->state + " campaign cannot be deleted: cancel it first", current->state);
  }
  // Kept, marked deleted: notifications of it may still be in flight (a cancelled campaign's
  // must still read as cancelled), and its statistics stay.
  tx.exec_params("UPDATE campaigns SET deleted_at = now(), version = version + 1 WHERE id = $1", id);
  tx.commit();
}

Campaign Store::Act(const std::string& id, const std::string& action, TimePoint now, redis::Client& redis,
                    const Publish& publish) {
  pqxx::work tx(conn_);
  auto found = Load(tx, id, true);
  if (!found) throw NotFound("no campaign " + id);
  Campaign c = *found;
  auto refuse = [&](const std::string& allowed) {
    throw Conflict("cannot " + action + " a " + c.state + " campaign (only " + allowed + ")", c.state);
  };
  std::string sql;
  if (action == "launch") {
    if (c.state != "draft") refuse("a draft");
    if (c.end_at && *c.end_at <= now) {
      throw Conflict("end_at " + FormatRfc3339(*c.end_at) + " has passed: nothing would be sent", c.state);
    }
    auto templates = tx.exec_params(
        "SELECT DISTINCT t.channel FROM templates t WHERE t.event_type = $1 AND NOT t.deleted AND t.version = "
        "(SELECT max(version) FROM templates u WHERE u.event_type = t.event_type AND u.channel = t.channel AND "
        "u.locale = t.locale)",
        c.event_type);
    if (templates.empty()) throw Conflict("no live template for " + c.event_type + ": create one first", c.state);
  } else if (action == "pause") {
    if (c.state != "running" && c.state != "scheduled") refuse("a running or scheduled one");
  } else if (action == "resume") {
    if (c.state != "paused") refuse("a paused one");
  } else if (action == "cancel") {
    if (c.state == "completed" || c.state == "cancelled") refuse("a draft, scheduled, running or paused one");
  } else {
    throw NotFound("no action '" + action + "' (launch, pause, resume or cancel)");
  }
  // Readers fall back to PostgreSQL while the change is in progress (see campaign/state.hpp).
  campaign::InvalidateMirror(redis, id);
  if (action == "launch") {
    TimePoint first = std::max(c.start_at.value_or(now), now);
    if (c.cron) {
      c.next_run_at = NextOccurrence(c, first);
      if (!c.next_run_at) throw Conflict("the cron has no occurrence before end_at", c.state);
      tx.exec_params("UPDATE campaigns SET state = 'scheduled', next_run_at = $2::timestamptz, version = version + 1, "
                     "updated_at = now() WHERE id = $1",
                     id, OptTsText(c.next_run_at));
    } else if (c.start_at && *c.start_at > now) {
      tx.exec_params("UPDATE campaigns SET state = 'scheduled', next_run_at = $2::timestamptz, version = version + 1, "
                     "updated_at = now() WHERE id = $1",
                     id, FormatRfc3339(*c.start_at));
    } else {
      LaunchRun(tx, c, now);
    }
  } else if (action == "pause") {
    tx.exec_params("UPDATE campaigns SET state = 'paused', paused_from = state, version = version + 1, "
                   "updated_at = now() WHERE id = $1",
                   id);
  } else if (action == "resume") {
    tx.exec_params("UPDATE campaigns SET state = COALESCE(paused_from, 'running'), paused_from = NULL, "
                   "version = version + 1, updated_at = now() WHERE id = $1",
                   id);
  } else {
    tx.exec_params("UPDATE campaigns SET state = 'cancelled', paused_from = NULL, next_run_at = NULL, "
                   "version = version + 1, updated_at = now() WHERE id = $1",
                   id);
  }
  auto out = *Load(tx, id, false);
  tx.commit();
  Mirror(redis, id, out.state, out.version);
  if (action == "launch" && out.state == "running") {
    try {
      PublishRuns(conn_, id, publish);
    } catch (const std::exception& e) {
      // Launched and recorded: the scheduler publishes the run on its next pass.
      Logger("campaigns")->warn("campaign {}: run not published yet ({}); the scheduler retries", id, e.what());
    }
  }
  return out;
}

int Store::Tick(TimePoint now, redis::Client& redis, const Publish& publish) {
  int actions = 0;
  std::string now_s = FormatRfc3339(now);
  auto log = Logger("campaigns");
  // Completes the campaigns in `rows` (id, version) in the mirror too.
  auto mirror_completed = [&](const pqxx::result& rows) {
    for (const auto& r : rows) Mirror(redis, r[0].as<std::string>(), "completed", r[1].as<int>());
    actions += static_cast<int>(rows.size());
  };
  // 1. Campaigns past end_at are completed.
  {
    pqxx::work tx(conn_);
    auto ids = tx.exec_params(
        "SELECT id FROM campaigns WHERE state IN ('scheduled', 'running', 'paused') AND end_at <= $1::timestamptz "
        "FOR UPDATE SKIP LOCKED LIMIT 100",
        now_s);
    for (const auto& r : ids) campaign::InvalidateMirror(redis, r[0].as<std::string>());
    auto rows = tx.exec_params(
        "UPDATE campaigns SET state = 'completed', paused_from = NULL, next_run_at = NULL, version = version + 1, "
        "updated_at = now() WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) RETURNING id, version",
        [&] {
          Json list = Json::array();
          for (const auto& r : ids) list.push_back(r[0].as<std::string>());
          return list.dump();
        }());
    tx.commit();
    mirror_completed(rows);
  }
  // 2. Due runs, one campaign per transaction. A campaign that cannot launch (its zone or
  // cron no longer valid) stops waiting instead of blocking the ones behind it.
  for (int i = 0; i < 20; ++i) {
    pqxx::work tx(conn_);
    auto rows = tx.exec_params("SELECT " + Columns() +
                                   " FROM campaigns WHERE state IN ('scheduled', 'running') AND next_run_at <= "
                                   "$1::timestamptz ORDER BY next_run_at FOR UPDATE SKIP LOCKED LIMIT 1",
                               now_s);
    if (rows.empty()) break;
    auto c = FromRow(rows[0]);
    campaign::InvalidateMirror(redis, c.id);
    try {
      LaunchRun(tx, c, now);
    } catch (const pqxx::failure&) {
      throw;
    } catch (const std::exception& e) {
      log->error("campaign {} cannot launch its run: {}; it waits for an edit", c.id, e.what());
      tx.abort();
      pqxx::work fix(conn_);
      fix.exec_params("UPDATE campaigns SET next_run_at = NULL, version = version + 1, updated_at = now() WHERE id = $1",
                      c.id);
      fix.commit();
      continue;
    }
    tx.commit();
    Mirror(redis, c.id, c.state, c.version);
    ++actions;
  }
  // 3. Runs recorded but not published (a crash or a broker outage after the commit).
  actions += PublishRuns(conn_, "", publish);
  // 4. Fan-outs that stopped at a pause continue once their campaign runs again.
  {
    pqxx::work tx(conn_);
    auto rows = tx.exec(
        "SELECT r.campaign_id, r.run, r.event_id, r.event::text FROM campaign_runs r JOIN campaigns c ON c.id = "
        "r.campaign_id WHERE r.fanout_paused AND r.published AND c.state IN ('running', 'cancelled', 'completed') "
        "FOR UPDATE OF r SKIP LOCKED LIMIT 100");
    for (const auto& r : rows) {
      publish(topics::Catalog().Events("admin"), r[2].as<std::string>(), r[3].as<std::string>());
      tx.exec_params("UPDATE campaign_runs SET fanout_paused = false WHERE campaign_id = $1 AND run = $2",
                     r[0].as<std::string>(), r[1].as<int>());
      ++actions;
    }
    tx.commit();
  }
  // 5. One-off campaigns whose fan-out is complete and nothing is pending are completed.
  {
    pqxx::work tx(conn_);
    auto candidates = tx.exec(
        "SELECT c.id FROM campaigns c WHERE c.state = 'running' AND c.cron IS NULL AND c.next_run_at IS NULL AND "
        "c.runs > 0 AND NOT EXISTS (SELECT 1 FROM campaign_runs r WHERE r.campaign_id = c.id AND NOT "
        "(r.fanout_complete AND r.published)) FOR UPDATE OF c SKIP LOCKED LIMIT 100");
    Json done = Json::array();
    for (const auto& r : candidates) {
      auto id = r[0].as<std::string>();
      auto s = stats::CampaignStats(tx, id);
      if (!s.is_null() && s["progress"]["pending"].get<long long>() == 0) done.push_back(id);
    }
    for (const auto& id : done) campaign::InvalidateMirror(redis, id.get<std::string>());
    auto rows = tx.exec_params(
        "UPDATE campaigns SET state = 'completed', version = version + 1, updated_at = now() WHERE id = "
        "ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) AND state = 'running' RETURNING id, version",
        done.dump());
    tx.commit();
    mirror_completed(rows);
  }
  return actions;
}

}  // namespace herald::campaigns
