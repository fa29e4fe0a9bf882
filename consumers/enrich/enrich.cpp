#include "enrich/enrich.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "herald/campaign/state.hpp"
#include "herald/common/errors.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "enrich/enricher.hpp"
#include "enrich/timing.hpp"
#include "herald/timing/buckets.hpp"
#include "herald/timing/window.hpp"
#include "herald/redis/client.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {
namespace enrich {

std::optional<std::string> AddressFor(const nlohmann::json& user, const std::string& channel) {
  auto str = [&](const char* field) -> std::optional<std::string> {
    auto it = user.find(field);
    if (it == user.end() || it->is_null()) return std::nullopt;
    std::string v = it->is_string() ? it->get<std::string>() : it->dump();
    if (v.empty()) return std::nullopt;
    return v;
  };
  if (channel == "email") return str("email");
  if (channel == "sms") return str("phone");
  if (channel == "telegram") return str("telegram_chat_id");
  if (channel == "push") {
    auto it = user.find("push_tokens");
    if (it != user.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
      return (*it)[0].get<std::string>();
    }
  }
  return std::nullopt;
}

Decision Decide(const model::NotificationRequest& request, const nlohmann::json& user,
                const schema::EventTypeInfo& type) {
  Decision d;
  std::vector<std::string> order;
  auto prefs = user.value("channels", std::vector<std::string>{});
  for (const auto& c : prefs) {
    if (std::find(type.channels.begin(), type.channels.end(), c) != type.channels.end()) {
      order.push_back(c);
    }
  }
  // Channels the type allows but the user did not list come last, in the type's order: a
  // welcome email still reaches a user whose preferences mention only push.
  for (const auto& c : type.channels) {
    if (std::find(order.begin(), order.end(), c) == order.end()) order.push_back(c);
  }
  // A campaign may restrict the channels (the user's order is kept).
  if (!request.channels.empty()) {
    std::erase_if(order, [&](const std::string& c) {
      return std::find(request.channels.begin(), request.channels.end(), c) == request.channels.end();
    });
  }
  std::vector<std::string> reachable;
  for (const auto& c : order) {
    if (AddressFor(user, c)) reachable.push_back(c);
  }
  // Opt-outs (preferences API, unsubscribe links) apply to every category but critical mail.
  if (auto it = user.find("opted_out"); !type.critical && it != user.end() && it->is_array()) {
    for (const auto& c : *it) {
      if (c == type.category) {
        d.status = model::Status::kSuppressed;
        d.reason = "user opted out of " + type.category;
        d.channel = reachable.empty() ? (order.empty() ? type.channels.front() : order.front()) : reachable.front();
        return d;
      }
    }
  }
  if (type.marketing && !type.critical && !user.value("marketing_opt_in", false)) {
    d.status = model::Status::kSuppressed;
    d.reason = "user has not opted in to marketing";
    d.channel = reachable.empty() ? type.channels.front() : reachable.front();
    return d;
  }
  if (reachable.empty()) {
    d.status = model::Status::kSuppressed;
    d.reason = "user has no address on any channel of " + type.name;
    d.channel = order.empty() ? type.channels.front() : order.front();
    return d;
  }
  model::Delivery del;
  del.request = request;
  del.channel = reachable.front();
  del.notification_id = NotificationId(request.event_id, request.user_id, del.channel);
  del.address = *AddressFor(user, del.channel);
  del.locale = user.value("locale", "en");
  del.timezone = user.value("timezone", "UTC");
  del.fallback.assign(reachable.begin() + 1, reachable.end());
  if (auto q = user.find("quiet_hours"); q != user.end() && q->is_object() && q->contains("from") && q->contains("to")) {
    del.quiet_hours = model::Window{q->value("from", ""), q->value("to", "")};
  }
  for (const auto& c : reachable) del.contacts[c] = *AddressFor(user, c);
  d.channel = del.channel;
  d.delivery = std::move(del);
  d.status = model::Status::kAccepted;
  return d;
}

model::StatusRecord StatusWithoutDelivery(const model::NotificationRequest& req, const std::string& channel,
                                          model::Status status, std::string reason) {
  model::StatusRecord s;
  s.notification_id = NotificationId(req.event_id, req.user_id, channel);
  s.event_id = req.event_id;
  s.event_type = req.event_type;
  s.campaign_id = req.campaign_id;
  s.user_id = req.user_id;
  s.channel = channel;
  s.priority = req.priority;
  s.status = status;
  s.reason = std::move(reason);
  s.at = NowMs();
  s.created = req.created;
  return s;
}

EnricherOptions OptionsFromConfig(const config::Config& config) {
  EnricherOptions eo;
  eo.auth_url = config.auth_url;
  eo.ugc_url = config.ugc_url;
  eo.movies_url = config.movies_url;
  eo.concurrency = config.http_concurrency;
  eo.connect_timeout = config.http_connect_timeout;
  eo.timeout = config.http_timeout;
  eo.breaker_open_for = config.breaker_open_for;
  eo.cache_ttl = config.cache_ttl;
  eo.user_cache_entries = config.user_cache_entries;
  auto pg = std::make_shared<std::unique_ptr<pqxx::connection>>();
  eo.preferences = [pg, pg_url = config.pg_url](const std::set<std::string>& ids) {
    std::map<std::string, nlohmann::json> out;
    std::string list = nlohmann::json(ids).dump();
    try {
      if (!*pg || !(*pg)->is_open()) *pg = pg::Connect(pg_url);
      pqxx::work tx(**pg);
      const char* in = " = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))";
      for (const auto& r : tx.exec_params(std::string("SELECT user_id, array_to_json(channels)::text, quiet_hours::text, "
                                                      "locale FROM preferences WHERE user_id") + in, list)) {
        auto& o = out[r[0].as<std::string>()];
        o = nlohmann::json::object();
        if (!r[1].is_null()) o["channels"] = nlohmann::json::parse(r[1].as<std::string>());
        if (!r[2].is_null()) o["quiet_hours"] = nlohmann::json::parse(r[2].as<std::string>());
        if (!r[3].is_null()) o["locale"] = r[3].as<std::string>();
      }
      for (const auto& r : tx.exec_params(std::string("SELECT user_id, category FROM opt_outs WHERE user_id") + in, list)) {
        out[r[0].as<std::string>()]["opted_out"].push_back(r[1].as<std::string>());
      }
      tx.commit();
    } catch (const pqxx::failure& e) {
      pg->reset();
      throw TransientError(std::string("preferences unavailable: ") + e.what());
    }
    return out;
  };
  return eo;
}

}  // namespace enrich

namespace {

// Lower-priority requests an enrich batch takes at most (or its guaranteed share, when
// larger); the rest stay in memory for the next batch. A high-priority request that arrives
// while a batch is being enriched waits for at most this many others and their upstream calls.
constexpr std::size_t kLowerPerBatch = 128;

}  // namespace

int RunEnrich(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  // Two lanes: high-priority requests first; the others keep HERALD_PRIORITY_SHARE percent
  // of every batch while they have records, so a password reset never waits behind a
  // campaign's fan-out and the fan-out is never starved.
  stage::StageSpec spec{"enrich", {}, {}};
  spec.lanes.push_back({catalog.Requests("high"), 0});
  if (catalog.Requests("high") != catalog.Requests()) {
    spec.lanes.push_back({catalog.Requests(), config.priority_share == 0 ? 0
                                                : std::max<std::size_t>(1, config.batch_size * config.priority_share / 100)});
  }
  stage::Stage st(config, spec);
  auto registry = schema::Registry::Load(config.schema_dir);
  redis::Client redis(config.redis_url);
  enrich::Enricher enricher(enrich::OptionsFromConfig(config), *registry, &redis, st.Metrics());
  campaign::States campaign_states(redis, config.pg_url);
  auto clock = TimeSource::FromSpec(config.clock);
  timing::Buckets buckets(redis, {.shards = config.bucket_shards});
  auto& scheduled = st.Metrics().GetCounter("herald_enrich_parked_total", "Notifications parked until their delivery time");
  auto& expired = st.Metrics().GetCounter("herald_enrich_expired_total", "Notifications dropped as expired");
  auto& yields = st.Metrics().GetCounter(
      "herald_priority_yields_total",
      "Batches that handed lower-priority records back for the next batch (the per-batch cap, or higher-priority ones waiting)",
      {{"stage", "enrich"}});

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    std::vector<model::NotificationRequest> requests;
    std::vector<const kafka::Message*> sources;
    std::set<std::string> campaign_ids;
    for (const auto& m : batch) {
      if (ctx.YieldLowerBeyond(m, kLowerPerBatch)) continue;
      try {
        requests.push_back(model::RequestFromJson(nlohmann::json::parse(m.Value())));
        sources.push_back(&m);
        if (requests.back().campaign_id) campaign_ids.insert(*requests.back().campaign_id);
      } catch (const nlohmann::json::exception& e) {
        st.DeadLetter(ctx, m, "invalid_json", e.what());
      } catch (const InvalidInput& e) {
        st.DeadLetter(ctx, m, "schema", e.what());
      }
    }
    if (ctx.LowerYielded()) yields.Inc();
    // Requests of a cancelled campaign end here (a paused one's are held by delivery).
    if (!campaign_ids.empty()) {
      auto states = campaign_states.Get(campaign_ids);
      std::size_t kept = 0;
      for (std::size_t i = 0; i < requests.size(); ++i) {
        const auto& req = requests[i];
        if (req.campaign_id && states[*req.campaign_id] == "cancelled") {
          const auto* type = registry->Find(req.event_type);
          std::string channel = !req.channels.empty() ? req.channels.front() : type ? type->channels.front() : "none";
          st.EmitStatus(ctx, enrich::StatusWithoutDelivery(req, channel, model::Status::kCancelled,
                                                           "campaign " + *req.campaign_id + " is " + states[*req.campaign_id]));
          continue;
        }
        if (kept != i) {
          requests[kept] = std::move(requests[i]);
          sources[kept] = sources[i];
        }
        ++kept;
      }
      requests.resize(kept);
      sources.resize(kept);
    }
    // Bad data from an upstream (a null where a string belongs, ...) must cost only the
    // record it concerns: if the batch fails on data, redo it record by record and
    // dead-letter the ones that still fail.
    std::vector<enrich::Outcome> outcomes;
    try {
      outcomes = enricher.Process(requests);
    } catch (const TransientError&) {
      throw;
    } catch (const std::exception&) {
      outcomes.clear();
      for (const auto& req : requests) {
        try {
          outcomes.push_back(std::move(enricher.Process({req}).front()));
        } catch (const TransientError&) {
          throw;
        } catch (const std::exception& e) {
          enrich::Outcome bad;
          bad.kind = enrich::Outcome::Kind::kInvalid;
          bad.reason = std::string("enrichment failed on upstream data: ") + e.what();
          outcomes.push_back(std::move(bad));
        }
      }
    }
    auto now = clock->Now();
    std::vector<timing::Parked> parked;
    std::vector<model::StatusRecord> scheduled_statuses;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      auto& o = outcomes[i];
      const auto& m = *sources[i];
      switch (o.kind) {
        case enrich::Outcome::Kind::kDeliver: {
          auto& d = o.delivery;
          const auto* type = registry->Find(d.request.event_type);
          auto timing = type ? enrich::DecideTiming(d, *type, now) : enrich::TimingDecision{};
          if (timing.kind == enrich::TimingDecision::Kind::kExpire) {
            st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kExpired, timing.reason));
            expired.Inc();
            break;
          }
          const auto& topic = catalog.Deliver(d.channel, model::PriorityName(d.request.priority));
          if (timing.kind == enrich::TimingDecision::Kind::kPark) {
            d.request.not_before = timing.due;
            // The bucket is labelled with the zone the decision used (UTC for an unknown one).
            parked.push_back({d.notification_id, timing::FindZone(d.timezone) ? d.timezone : "UTC", std::chrono::time_point_cast<std::chrono::seconds>(timing.due),
                              model::Dump(model::ToJson(d)), d.request.user_id, topic});
            auto s = model::MakeStatus(d, model::Status::kScheduled, "due " + FormatRfc3339(timing.due) + ": " + timing.reason);
            scheduled_statuses.push_back(std::move(s));
            break;
          }
          st.Produce(ctx, {topic, d.request.user_id, model::Dump(model::ToJson(d)), {{"herald-notification-id", d.notification_id}}});
          st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kAccepted));
          break;
        }
        case enrich::Outcome::Kind::kStatus:
          st.EmitStatus(ctx, o.status);
          break;
        case enrich::Outcome::Kind::kRetry:
          if (!st.Retry(ctx, m, o.reason)) {
            // Exhausted: the dead letter has the record; the ledger learns it failed.
            const auto* type = registry->Find(requests[i].event_type);
            st.EmitStatus(ctx, enrich::StatusWithoutDelivery(requests[i], type ? type->channels.front() : "none",
                                                             model::Status::kFailed, "retries exhausted: " + o.reason));
          }
          break;
        case enrich::Outcome::Kind::kPark:
          st.Retry(ctx, m, o.reason, /*consume_attempt=*/false);
          break;
        case enrich::Outcome::Kind::kInvalid:
          st.DeadLetter(ctx, m, "schema", o.reason);
          break;
      }
    }
    // Notifications that must wait go to the Redis timezone buckets before the batch is
    // committed; the scheduler releases them when due.
    if (!parked.empty()) {
      buckets.Park(parked);
      scheduled.Inc(parked.size());
      for (const auto& status : scheduled_statuses) st.EmitStatus(ctx, status);
    }
  });
}

}  // namespace herald::consumers
