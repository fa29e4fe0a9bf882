// The scheduler stage: releases parked notifications whose due instant has come from the
// Redis timezone buckets to their delivery topics, and fires due recurring schedules from
// PostgreSQL. Not a Kafka consumer: a loop over Redis and PostgreSQL, with the stage's
// producer, ops endpoints and metrics. Any number of replicas may run.

#include <unistd.h>

#include "admin/campaigns.hpp"
#include "herald/campaign/state.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/redis/client.hpp"
#include "herald/schema/registry.hpp"
#include "herald/stage/stage.hpp"
#include "herald/timing/buckets.hpp"
#include "scheduler/schedules.hpp"
#include "stages.hpp"

namespace herald::consumers {

int RunScheduler(const config::Config& config) {
  stage::Stage st(config, {"scheduler", {}, {}});
  auto log = Logger("scheduler");
  auto clock = TimeSource::FromSpec(config.clock);
  auto registry = schema::Registry::Load(config.schema_dir);
  redis::Client redis(config.redis_url);
  std::string owner = std::to_string(::getpid()) + "-" + RandomUuid().substr(0, 8);
  timing::Releaser releaser(redis, {.owner = owner, .lease = config.scheduler_lease});
  std::unique_ptr<pqxx::connection> pg;
  bool builtins_checked = false;

  auto& m = st.Metrics();
  auto& released = m.GetCounter("herald_scheduler_released_total", "Parked notifications released to delivery");
  auto& fired = m.GetCounter("herald_scheduler_fired_total", "Schedule occurrences fired");
  auto& campaign_actions = m.GetCounter("herald_scheduler_campaign_actions_total", "Campaign runs launched, ended or resumed");
  auto& unheld = m.GetCounter("herald_scheduler_unheld_total", "Held notifications of resumed or cancelled campaigns released");
  auto& passes = m.GetCounter("herald_scheduler_passes_total", "Completed passes over the buckets and schedules");
  auto backlog = [&](const char* due) -> metrics::Gauge& {
    return m.GetGauge("herald_scheduler_backlog", "Parked notifications by when they are due", {{"due", due}});
  };
  auto& overdue = backlog("now");
  auto& within_hour = backlog("within_1h");
  auto& within_day = backlog("within_24h");
  auto& later = backlog("later");
  // The backlog per due minute for the next hour (a fixed set of 60 series).
  std::vector<metrics::Gauge*> next_hour;
  for (int i = 0; i < 60; ++i) {
    next_hour.push_back(&m.GetGauge("herald_scheduler_due_per_minute",
                                    "Parked notifications due in the minute that starts this many minutes from now",
                                    {{"minutes", std::to_string(i)}}));
  }
  auto last_backlog = std::chrono::steady_clock::time_point{};
  campaign::States hold_states(redis, config.pg_url, std::chrono::milliseconds(0));

  // Produces records and waits until the broker acknowledged all of them; throws otherwise,
  // so the caller keeps its claim (bucket lease, schedule row) and nothing is forgotten.
  auto produce_all = [&](const std::vector<kafka::OutRecord>& records) {
    st.Producer().ProduceAll(records, config.drain_timeout + std::chrono::seconds(2));
  };
  // Parked notifications (timezone buckets and campaign holds) back to their delivery topics.
  auto release_chunk = [&](const std::vector<timing::Parked>& chunk) {
    std::vector<kafka::OutRecord> records;
    records.reserve(chunk.size());
    for (const auto& p : chunk) records.push_back({p.topic, p.key, p.payload, {{"herald-notification-id", p.notification_id}}});
    produce_all(records);
  };

  return st.RunLoop(
      [&]() -> bool {
        auto now = clock->Now();
        auto now_s = std::chrono::time_point_cast<std::chrono::seconds>(now);
        std::size_t n = releaser.ReleaseDue(now_s, [&](const std::vector<timing::Parked>& chunk) {
          release_chunk(chunk);
          released.Inc(chunk.size());
        });

        std::size_t f = 0;
        int c = 0;
        try {
          if (!pg) pg = pg::Connect(config.pg_url);
          if (!builtins_checked && config.builtin_schedules) {
            for (const auto& id : scheduler::EnsureBuiltinSchedules(*pg, *registry)) log->info("added built-in schedule {}", id);
            builtins_checked = true;
          }
          f = scheduler::FireDue(*pg, now, 100, [&](const std::vector<scheduler::Fired>& due) {
            std::vector<kafka::OutRecord> records;
            for (const auto& e : due) {
              log->info("schedule {} fires for {}", e.schedule_id, FormatRfc3339(e.occurrence));
              records.push_back({e.topic, e.key, e.value, {}});
            }
            produce_all(records);
          });
          fired.Inc(f);
          // Campaigns: due runs, ends, resumed fan-outs.
          c = campaigns::Store(*pg, *registry).Tick(now, redis, [&](const std::string& topic, const std::string& key,
                                                                    const std::string& value) {
            produce_all({{topic, key, value, {{"herald-event-id", key}}}});
          });
          campaign_actions.Inc(static_cast<std::uint64_t>(c));
          // Holds of campaigns that are no longer paused go back to delivery (a cancelled
          // campaign's are recorded as cancelled there).
          auto with_holds = campaign::CampaignsWithHolds(redis);
          if (!with_holds.empty()) {
            for (const auto& [id, state] : hold_states.Get(std::set<std::string>(with_holds.begin(), with_holds.end()))) {
              if (state == "paused") continue;
              // One campaign's failing release must not keep the others' held.
              try {
                auto r = campaign::ReleaseHold(redis, id, release_chunk, owner);
                if (r > 0) log->info("released {} held notifications of campaign {} ({})", r, id, state);
                unheld.Inc(r);
                n += r;
              } catch (const std::exception& e) {
                log->warn("releasing the hold of campaign {} failed: {}", id, e.what());
              }
            }
          }
        } catch (const pqxx::broken_connection& e) {
          pg.reset();
          throw TransientError(std::string("PostgreSQL: ") + e.what());
        }

        if (std::chrono::steady_clock::now() - last_backlog > std::chrono::seconds(5)) {
          last_backlog = std::chrono::steady_clock::now();
          double o = 0, h = 0, d = 0, l = 0;
          std::vector<double> per_minute(60, 0.0);
          for (const auto& [minute, count] :
               releaser.Backlog(now_s - std::chrono::hours(24 * 7), now_s + std::chrono::hours(24 * 30), 100000)) {
            auto in = minute - now_s.time_since_epoch().count();
            (in <= 0 ? o : in <= 3600 ? h : in <= 86400 ? d : l) += static_cast<double>(count);
            if (in > 0 && in <= 3600) per_minute[static_cast<std::size_t>((in - 1) / 60)] += static_cast<double>(count);
          }
          overdue.Set(o);
          within_hour.Set(h);
          within_day.Set(d);
          later.Set(l);
          for (std::size_t i = 0; i < per_minute.size(); ++i) next_hour[i]->Set(per_minute[i]);
        }
        passes.Inc();
        return n > 0 || f > 0 || c > 0;
      },
      config.scheduler_interval);
}

}  // namespace herald::consumers
