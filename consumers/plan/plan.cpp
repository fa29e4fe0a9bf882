#include "plan/plan.hpp"

#include <set>

#include "herald/campaign/state.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/lag.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/schema/registry.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "scheduler/schedules.hpp"
#include "stages.hpp"

namespace herald::consumers {
namespace plan {

model::NotificationRequest MakeRequest(const model::Event& event, const std::string& user_id) {
  model::NotificationRequest r;
  r.request_id = RequestId(event.event_id, user_id);
  r.event_id = event.event_id;
  r.event_type = event.event_type;
  r.source = event.source;
  r.campaign_id = event.campaign_id;
  r.channels = event.channels;
  r.user_id = user_id;
  r.priority = event.priority;
  r.created = event.created;
  r.not_before = event.start;
  r.expires_at = event.expires;
  r.deliver_window = event.deliver_window;
  r.content = event.content;
  r.data = event.data;
  return r;
}

namespace {

std::string NextPhase(const model::Event& event, const std::string& after) {
  static const std::vector<std::string> kOrder = {"users", "segment", "followers"};
  bool passed = after.empty();
  for (const auto& p : kOrder) {
    if (passed) {
      if (p == "users" && !event.users.empty()) return p;
      if (p == "segment" && !event.segment.is_null()) return p;
      if (p == "followers" && event.followers_of) return p;
    }
    if (p == after) passed = true;
  }
  return "done";
}

}  // namespace

JobState InitialState(const model::Event& event) { return {NextPhase(event, ""), "", 0}; }

RecipientPager::RecipientPager(std::string auth_url, std::string ugc_url, std::size_t page_size)
    : auth_url_(std::move(auth_url)), ugc_url_(std::move(ugc_url)), page_size_(page_size) {}

Page RecipientPager::Fetch(const model::Event& event, const JobState& state) {
  Page page;
  page.next = state;
  if (state.phase == "users") {
    std::set<std::string> seen;
    for (const auto& u : event.users) {
      if (seen.insert(u).second) page.user_ids.push_back(u);
    }
    page.next = {NextPhase(event, "users"), "", state.emitted + static_cast<std::int64_t>(page.user_ids.size())};
    return page;
  }
  std::string url;
  if (state.phase == "segment") {
    url = auth_url_ + "/api/v1/users?limit=" + std::to_string(page_size_);
    auto add = [&](const char* field, const char* param) {
      if (!event.segment.contains(field)) return;
      for (const auto& v : event.segment[field]) url += std::string("&") + param + "=" + http::UrlEncode(v.get<std::string>());
    };
    add("tags", "tag");
    add("timezones", "timezone");
    add("locales", "locale");
  } else if (state.phase == "followers") {
    url = ugc_url_ + "/api/v1/content/" + http::UrlEncode(*event.followers_of) + "/followers?limit=" +
          std::to_string(page_size_);
  } else {
    return page;
  }
  if (!state.cursor.empty()) url += "&cursor=" + http::UrlEncode(state.cursor);
  auto res = client_.Get(url);
  // 401/403 mean Herald's credentials or the upstream's configuration are wrong, 408/429/5xx
  // that it is overloaded: all of them are fixed without touching the event, so it waits.
  if (res.status == 401 || res.status == 403 || res.status == 408 || res.status == 429 || res.status >= 500) {
    throw TransientError("GET " + url + " answered " + std::to_string(res.status));
  }
  if (res.status != 200) throw PermanentError("GET " + url + " answered " + std::to_string(res.status) + ": " + res.body);
  auto doc = nlohmann::json::parse(res.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) throw TransientError("GET " + url + ": malformed body");
  try {
    if (state.phase == "segment") {
      for (const auto& u : doc.at("users")) page.user_ids.push_back(u.at("user_id").get<std::string>());
    } else {
      page.user_ids = doc.at("user_ids").get<std::vector<std::string>>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw TransientError("GET " + url + ": unexpected body: " + e.what());
  }
  page.next.emitted = state.emitted + static_cast<std::int64_t>(page.user_ids.size());
  if (doc.contains("next_cursor") && doc["next_cursor"].is_string()) {
    page.next.cursor = doc["next_cursor"].get<std::string>();
  } else {
    page.next.phase = NextPhase(event, state.phase);
    page.next.cursor.clear();
  }
  return page;
}

std::optional<JobState> Checkpoints::Load(const std::string& event_id) {
  auto r = redis_.Command({"HMGET", "herald:fanout:" + event_id, "phase", "cursor", "emitted"});
  // An error reply (LOADING, NOAUTH, ...) is not "no checkpoint": starting over would repeat
  // the whole fan-out.
  if (r.type == redis::Reply::Type::kError) throw TransientError("Redis HMGET: " + r.str);
  if (r.type != redis::Reply::Type::kArray || r.elements.size() != 3 || r.elements[0].IsNil()) return std::nullopt;
  JobState s;
  s.phase = r.elements[0].str;
  s.cursor = r.elements[1].str;
  try {
    s.emitted = r.elements[2].IsNil() ? 0 : std::stoll(r.elements[2].str);
  } catch (const std::exception&) {
    s.emitted = 0;
  }
  return s;
}

void Checkpoints::Save(const std::string& event_id, const JobState& state) {
  std::string key = "herald:fanout:" + event_id;
  auto replies = redis_.Pipeline({{"HSET", key, "phase", state.phase, "cursor", state.cursor, "emitted",
                                   std::to_string(state.emitted)},
                                  {"EXPIRE", key, std::to_string(14 * 24 * 3600)}});
  if (replies[0].type == redis::Reply::Type::kError) throw TransientError("Redis HSET: " + replies[0].str);
}

}  // namespace plan

namespace {

// Downstream lag, summed over the groups that consume what plan feeds: enrich on the
// requests topic (always counted: before it ever commits, everything retained is lag), and
// each channel's delivery group on its topics, counted once it has committed anywhere (a
// channel whose consumer is not deployed must not stall every fan-out). Measured at most once
// a second; what the fan-out produced meanwhile is added to the last measurement.
class DownstreamLag {
 public:
  explicit DownstreamLag(const config::Config& config) {
    for (auto& [group, topics] : topics::Catalog().ConsumerGroups()) {
      bool enrich = group == "herald-enrich";
      if (!enrich && !group.starts_with("herald-deliver-")) continue;
      groups_.push_back({std::make_unique<kafka::LagMonitor>(config.brokers, config.kafka, group), topics, enrich});
    }
  }
  /// Records produced since the last measurement count as lag until the next one, so a
  /// fan-out emitting pages faster than the measurement interval is still paced.
  void Emitted(std::int64_t n) { cached_ += n; }
  std::int64_t Get() {
    auto now = std::chrono::steady_clock::now();
    if (now - at_ < std::chrono::seconds(1)) return cached_;
    std::int64_t total = 0;
    for (auto& g : groups_) {
      std::int64_t group_lag = 0;
      bool committed_any = false;
      for (const auto& t : g.topics) {
        bool committed = false;
        group_lag += g.monitor->Lag(t, &committed);
        committed_any = committed_any || committed;
      }
      if (g.always || committed_any) total += group_lag;
    }
    cached_ = total;
    at_ = now;
    return total;
  }

 private:
  struct Group {
    std::unique_ptr<kafka::LagMonitor> monitor;
    std::vector<std::string> topics;
    bool always = false;
  };
  std::vector<Group> groups_;
  std::int64_t cached_ = 0;
  std::chrono::steady_clock::time_point at_{};
};

}  // namespace

int RunPlan(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  // The event topics as priority lanes: auth (password resets, sign-ups: one recipient,
  // urgent), then ugc, content and admin (where campaigns and follower fan-outs come from).
  // A batch takes the higher lanes first, each lower lane keeps HERALD_PRIORITY_SHARE percent
  // of it, and a long fan-out steps aside between pages when a higher lane has records.
  stage::StageSpec spec{"plan", {}, {}};
  const std::size_t reserved =
      config.priority_share == 0 ? 0 : std::max<std::size_t>(1, config.batch_size * config.priority_share / 100);
  std::set<std::string> laned;
  for (const char* source : {"auth", "ugc", "content", "admin"}) {
    spec.lanes.push_back({catalog.Events(source), spec.lanes.empty() ? 0 : reserved});
    laned.insert(catalog.Events(source));
  }
  for (const auto* t : catalog.Family("events")) {
    if (!laned.count(t->name)) spec.lanes.push_back({t->name, reserved});
  }
  stage::Stage st(config, spec);
  auto registry = schema::Registry::Load(config.schema_dir);
  plan::RecipientPager pager(config.auth_url, config.ugc_url);
  redis::Client redis(config.redis_url);
  plan::Checkpoints checkpoints(redis);
  DownstreamLag lag(config);
  auto& m = st.Metrics();
  auto& fanout = m.GetCounter("herald_plan_recipients_total", "Requests emitted by fan-out");
  auto& paced = m.GetCounter("herald_plan_paced_total", "Times a fan-out waited for downstream lag");
  auto& pages = m.GetCounter("herald_plan_pages_total", "Recipient pages fanned out");
  auto& stepped_aside =
      m.GetCounter("herald_plan_fanout_yields_total", "Times a fan-out stepped aside for events of a higher lane");
  auto& lag_gauge = m.GetGauge("herald_plan_downstream_lag", "Records downstream consumers have not processed");
  auto clock = TimeSource::FromSpec(config.clock);
  std::unique_ptr<pqxx::connection> pg;  // for schedules; connected on first use
  auto& schedules_registered = m.GetCounter("herald_plan_schedules_registered_total", "Recurring events stored as schedules");
  auto log = Logger("plan");
  campaign::States campaign_states(redis, config.pg_url);
  // A campaign run's fan-out progress, for its statistics (planned recipients) and for the
  // scheduler (a fan-out stopped by a pause is published again once the campaign resumes).
  auto record_run = [&](const model::Event& event, std::int64_t fanned_out, bool complete, bool paused) {
    if (!event.campaign_id) return;
    try {
      if (!pg) pg = pg::Connect(config.pg_url);
      pqxx::work tx(*pg);
      tx.exec_params("UPDATE campaign_runs SET fanned_out = $2, fanout_complete = $3, fanout_paused = $4 WHERE event_id = $1",
                     event.event_id, fanned_out, complete, paused);
      tx.commit();
    } catch (const pqxx::failure& e) {
      pg.reset();
      throw TransientError(std::string("recording the fan-out of ") + event.event_id + ": " + e.what());
    }
  };

  auto emit = [&](const model::Event& event, const std::vector<std::string>& users, kafka::AckGroup* acks,
                  kafka::BatchContext& ctx) {
    // High-priority requests have a topic of their own, which enrich reads first.
    const auto& requests_topic = catalog.Requests(model::PriorityName(event.priority));
    for (const auto& user_id : users) {
      kafka::OutRecord rec{requests_topic, user_id, model::ToJson(plan::MakeRequest(event, user_id)).dump(),
                           {{"herald-event-id", event.event_id}}};
      if (acks) st.Producer().Produce(rec, acks->Track());
      else st.Produce(ctx, rec);
    }
    fanout.Inc(users.size());
  };

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    // One time budget per batch: a batch of many fan-out events must not keep the poll loop
    // away for longer than a couple of seconds (max.poll.interval.ms).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (const auto& msg : batch) {
      if (ctx.IsDeferred(msg)) continue;
      model::Event event;
      try {
        event = model::ParseEvent(msg.Value(), *registry,
                                  model::Origin{std::string(msg.Topic()), msg.Partition(), msg.Offset()});
      } catch (const InvalidInput& e) {
        std::string cls = e.Field() == "/event_type" ? "unknown_type"
                          : std::string(e.what()).find("not valid JSON") != std::string::npos ? "invalid_json"
                                                                                         : "schema";
        st.DeadLetter(ctx, msg, cls, e.what());
        continue;
      }
      if (event.schedule) {
        // A recurring event: stored as a schedule; the scheduler publishes each occurrence.
        try {
          if (!pg) pg = pg::Connect(config.pg_url);
          scheduler::RegisterSchedule(*pg, event, clock->Now());
          schedules_registered.Inc();
        } catch (const InvalidInput& e) {
          st.DeadLetter(ctx, msg, "schedule", e.what());
        } catch (const pqxx::failure& e) {
          pg.reset();
          throw TransientError(std::string("registering the schedule of ") + event.event_id + ": " + e.what());
        }
        continue;
      }
      std::string campaign_state = event.campaign_id ? campaign_states.Get(*event.campaign_id) : "running";
      if (campaign_state == "cancelled" || campaign_state == "completed") {
        // Cancelled (or ended) before its fan-out finished: no more recipients. An id that
        // names no campaign here is an upstream's own label and changes nothing.
        log->info("fan-out of {} stops: campaign {} is {}", event.event_id, *event.campaign_id, campaign_state);
        auto done = checkpoints.Load(event.event_id).value_or(plan::InitialState(event));
        record_run(event, done.emitted, true, false);
        continue;
      }
      if (event.segment.is_null() && !event.followers_of) {
        auto users = pager.Fetch(event, plan::InitialState(event)).user_ids;
        emit(event, users, nullptr, ctx);
        record_run(event, static_cast<std::int64_t>(users.size()), true, false);
        continue;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ctx.Defer(msg);  // out of time for this batch: continue with the next poll
        continue;
      }
      // A fan-out job: resume from the checkpoint, work for a while, then yield.
      plan::JobState state;
      try {
        state = checkpoints.Load(event.event_id).value_or(plan::InitialState(event));
      } catch (const TransientError& e) {
        log->warn("fan-out of {} waits: {}", event.event_id, e.what());
        ctx.Defer(msg);
        ctx.PauseFor(msg, std::chrono::seconds(2));
        continue;
      }
      while (state.phase != "done") {
        if (event.campaign_id && campaign_states.Get(*event.campaign_id) == "paused") {
          // Paused: the checkpoint keeps the place; the event is done with for now (holding
          // it would block its partition). The scheduler publishes it again on resume.
          record_run(event, state.emitted, false, true);
          log->info("fan-out of {} paused at {} recipients", event.event_id, state.emitted);
          break;
        }
        std::int64_t current_lag = 0;
        try {
          current_lag = lag.Get();
        } catch (const TransientError& e) {
          log->warn("fan-out of {} waits: downstream lag unknown: {}", event.event_id, e.what());
          ctx.Defer(msg);
          ctx.PauseFor(msg, std::chrono::seconds(2));
          break;
        }
        lag_gauge.Set(static_cast<double>(current_lag));
        if (current_lag > config.fanout_max_lag) {
          paced.Inc();
          ctx.Defer(msg);
          ctx.PauseFor(msg, std::chrono::milliseconds(500));
          break;
        }
        plan::Page page;
        try {
          page = pager.Fetch(event, state);
        } catch (const TransientError& e) {
          log->warn("fan-out of {} paused: {}", event.event_id, e.what());
          ctx.Defer(msg);
          ctx.PauseFor(msg, std::chrono::seconds(2));
          break;
        } catch (const PermanentError& e) {
          st.DeadLetter(ctx, msg, "recipients", e.what());
          state.phase = "done";
          break;
        }
        kafka::AckGroup acks;
        emit(event, page.user_ids, &acks, ctx);
        auto failures = acks.Wait(config.drain_timeout + std::chrono::seconds(2));
        if (!failures.empty()) throw TransientError("fan-out page not acknowledged: " + failures.front().error);
        lag.Emitted(static_cast<std::int64_t>(page.user_ids.size()));
        state = page.next;
        checkpoints.Save(event.event_id, state);
        record_run(event, state.emitted, state.phase == "done", false);
        pages.Inc();
        if (state.phase != "done" && (std::chrono::steady_clock::now() > deadline || ctx.HigherWaiting(msg))) {
          // Out of time, or events of a higher lane are waiting: the loop commits what is
          // done, handles those, and comes straight back to this fan-out.
          if (ctx.HigherWaiting(msg)) stepped_aside.Inc();
          ctx.Defer(msg);
          break;
        }
      }
      if (state.phase == "done") {
        // Also when the checkpoint was done already (a redelivered or re-published event):
        // the run's record must say so.
        record_run(event, state.emitted, true, false);
        log->info("fan-out of {} ({}) complete: {} recipients", event.event_id, event.event_type, state.emitted);
      }
    }
  });
}

}  // namespace herald::consumers
