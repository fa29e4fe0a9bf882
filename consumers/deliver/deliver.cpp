#include <unistd.h>

#include <algorithm>
#include <future>
#include <set>
#include <thread>

#include "deliver/claims.hpp"
#include "deliver/email.hpp"
#include "deliver/journal.hpp"
#include "deliver/providers.hpp"
#include "deliver/render.hpp"
#include "enrich/timing.hpp"
#include "herald/campaign/state.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/redis/client.hpp"
#include "herald/redis/rate_limiter.hpp"
#include "herald/schema/registry.hpp"
#include "herald/stage/stage.hpp"
#include "herald/template/renderer.hpp"
#include "herald/template/store.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {
namespace {

struct Item {
  const kafka::Message* msg;
  model::Delivery d;
  templates::Rendered rendered;
  std::string list_unsubscribe;  // email: the one-click unsubscribe URL, empty for transactional types
};


// Rounds of emails (one on each SMTP connection) per rate-limiter acquisition and campaign
// state check.
constexpr std::size_t kEmailRounds = 4;

// How long one email may take on its SMTP connection.
constexpr std::int64_t kSmtpTimeout = 15'000;  // ms

// Lower-priority records a delivery batch prepares at most (see the batch handler).
constexpr std::size_t kLowerPerBatch = 128;

}  // namespace

int RunDeliver(const config::Config& config, const std::string& channel) {
  if (channel != "email" && channel != "sms" && channel != "telegram" && channel != "push") {
    throw ConfigError("deliver: unknown channel '" + channel + "' (email, sms, telegram or push)");
  }
  const auto& catalog = topics::Catalog();
  // Priority lanes: high first; normal and low each keep a share of every batch while they
  // have records (HERALD_PRIORITY_SHARE percent), so they are slowed but never starved.
  std::size_t reserved = config.priority_share == 0
                             ? 0
                             : std::max<std::size_t>(1, config.batch_size * config.priority_share / 100);
  stage::StageSpec spec{"deliver-" + channel, {}, {}};
  spec.lanes.push_back({catalog.Deliver(channel, "high"), 0});
  spec.lanes.push_back({catalog.Deliver(channel, "normal"), reserved});
  spec.lanes.push_back({catalog.Deliver(channel, "low"), reserved});
  stage::Stage st(config, spec);
  auto registry = schema::Registry::Load(config.schema_dir);
  auto clock = TimeSource::FromSpec(config.clock);
  // Templates come from PostgreSQL (versioned; `herald migrate` loads the defaults) and are
  // reloaded when they change; a batch renders from one consistent snapshot.
  templates::TemplateCache template_cache({config.pg_url});
  redis::Client redis(config.redis_url);
  std::string owner = std::to_string(::getpid()) + "-" + RandomUuid().substr(0, 8);
  deliver::Claims claims(redis, owner, config.claim_lease, config.claim_ttl);
  {
    // A send starts with at least two thirds of its claim's lease left (see keep_claims);
    // one that may take longer could outlive its claim.
    const auto send_timeout = channel == "email" ? std::chrono::milliseconds(kSmtpTimeout)
                                                 : std::chrono::duration_cast<std::chrono::milliseconds>(config.http_timeout);
    if (std::chrono::duration_cast<std::chrono::milliseconds>(config.claim_lease) * 2 / 3 < send_timeout) {
      Logger("deliver")->warn("HERALD_CLAIM_LEASE ({}s) is short for a send that may take {} ms: two thirds of the lease should exceed it",
                              config.claim_lease.count(), send_timeout.count());
    }
  }
  // Sends begun and not yet recorded, so the owner taking over after a crash does not send
  // again what the provider may already have delivered. SMS needs none: it carries the
  // notification id as the provider's idempotency key, so a repeat is delivered once.
  deliver::SendJournal journal(redis, owner, config.claim_ttl);
  const bool journaled = channel != "sms";
  std::vector<std::unique_ptr<deliver::SmtpSender>> smtp;  // one connection each (email)
  std::unique_ptr<deliver::HttpProvider> provider;
  std::unique_ptr<redis::RateLimiter> limiter;
  std::string provider_name = channel == "email" ? "smtp" : channel;
  if (channel == "email") {
    limiter = std::make_unique<redis::RateLimiter>(
        redis, redis::RateLimiter::Options{"smtp", config.smtp_rate, config.provider_burst, 0.05, 0.1});
    for (std::size_t i = 0; i < config.smtp_connections; ++i) {
      smtp.push_back(std::make_unique<deliver::SmtpSender>(deliver::SmtpSender::Options{
          config.smtp_url, config.smtp_from, config.smtp_user, config.smtp_password, config.http_connect_timeout,
          std::chrono::milliseconds(kSmtpTimeout), config.smtp_ca_file}));
    }
  } else {
    provider = std::make_unique<deliver::HttpProvider>(deliver::HttpProvider::Options{
        channel,
        channel == "sms" ? config.sms_url : channel == "telegram" ? config.telegram_url : config.push_url,
        channel == "sms" ? config.sms_token : channel == "telegram" ? config.telegram_token : config.push_token,
        config.http_concurrency, config.http_connect_timeout, config.http_timeout});
    limiter = std::make_unique<redis::RateLimiter>(
        redis, redis::RateLimiter::Options{channel, config.provider_rate, config.provider_burst, 0.05, 0.1});
  }
  auto& m = st.Metrics();
  metrics::Labels l = {{"channel", channel}, {"provider", provider_name}};
  auto outcome_counter = [&](const char* outcome) -> metrics::Counter& {
    return m.GetCounter("herald_deliveries_total", "Delivery outcomes",
                        {{"channel", channel}, {"provider", provider_name}, {"outcome", outcome}});
  };
  auto& sent = outcome_counter("sent");
  auto& failed = outcome_counter("failed");
  auto& retried = outcome_counter("retried");
  auto& fallbacks = outcome_counter("fallback");
  auto& dupes = m.GetCounter("herald_duplicates_suppressed_total", "Deliveries skipped because already sent", l);
  auto e2e = [&, by_priority = std::map<model::Priority, metrics::Histogram*>()](model::Priority p) mutable -> metrics::Histogram& {
    auto& h = by_priority[p];
    if (!h) {
      h = &m.GetHistogram("herald_end_to_end_seconds", "Event created_dt to sent",
                          {{"channel", channel}, {"provider", provider_name}, {"priority", std::string(model::PriorityName(p))}});
    }
    return *h;
  };
  auto& limiter_waits = m.GetCounter("herald_rate_limiter_waits_total", "Times sends waited for the provider's rate limit", l);
  auto& throttles = m.GetCounter("herald_provider_throttled_total", "429 answers from the provider", l);
  auto& yields = m.GetCounter("herald_priority_yields_total",
                              "Batches that handed lower-priority records back because higher-priority ones were waiting", l);
  auto& renewals = m.GetCounter("herald_claim_renewals_total",
                                "Times a batch renewed its claims because it outlasted a third of the lease", l);
  auto& claims_lost = m.GetCounter("herald_claims_lost_total",
                                   "Claims found no longer held before their send (the lease ran out); not sent by this owner", l);
  auto& rate_factor = m.GetGauge("herald_rate_limit_factor", "Share of the full provider rate in use (adaptive)", l);
  // Sent, but the claim could not be marked done (Redis hiccup): remembered here so a retry
  // of the batch marks it instead of sending again.
  std::set<std::string> sent_unmarked;
  // Refused by the provider (or to retry), but the claim and the journal could not be
  // updated: remembered so a retry of the batch does not take its journal entry for a send
  // whose outcome is unknown.
  std::set<std::string> unsent_unmarked;
  // Campaign states: a paused campaign's notifications are held (released on resume by the
  // scheduler), a cancelled one's are recorded as cancelled. Checked per record and again
  // before every send chunk, so a pause or cancel stops sending within one chunk.
  campaign::States campaign_states(redis, config.pg_url, std::chrono::milliseconds(0));
  auto& held = m.GetCounter("herald_campaign_held_total", "Notifications held because their campaign is paused", l);
  auto& cancelled = m.GetCounter("herald_campaign_cancelled_total", "Notifications not sent because their campaign was cancelled", l);

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    std::vector<Item> items;
    std::map<std::string, std::vector<timing::Parked>> holds;
    // True when the record's campaign stops it: held (paused) or recorded as cancelled.
    auto stop_for = [&](const model::Delivery& d, const kafka::Message& msg, const campaign::State& state) {
      if (state == "paused") {
        holds[*d.request.campaign_id].push_back(
            {d.notification_id, "UTC", {}, std::string(msg.Value()), d.request.user_id, std::string(msg.Topic())});
        held.Inc();
        return true;
      }
      if (state == "cancelled") {
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kCancelled, "campaign " + *d.request.campaign_id + " was cancelled"));
        cancelled.Inc();
        return true;
      }
      return false;
    };
    // Read once per batch while preparing (one Redis read per campaign), and afresh before
    // every send chunk.
    std::map<std::string, campaign::State> batch_states;
    auto stopped_by_campaign = [&](const model::Delivery& d, const kafka::Message& msg) {
      if (!d.request.campaign_id) return false;
      auto it = batch_states.find(*d.request.campaign_id);
      if (it == batch_states.end()) {
        it = batch_states.emplace(*d.request.campaign_id, campaign_states.Get(*d.request.campaign_id)).first;
      }
      return stop_for(d, msg, it->second);
    };
    // A permanent failure moves the notification to the next channel the user can be
    // reached on, as a new notification (its id includes the channel).
    auto fall_back = [&](const model::Delivery& d, const std::string& detail) {
      std::string next;
      std::vector<std::string> rest;
      for (std::size_t k = 0; k < d.fallback.size(); ++k) {
        if (next.empty() && d.contacts.contains(d.fallback[k]) && d.contacts[d.fallback[k]].is_string()) {
          next = d.fallback[k];
        } else if (!next.empty()) {
          rest.push_back(d.fallback[k]);
        }
      }
      if (next.empty()) return;
      model::Delivery nd = d;
      nd.channel = next;
      nd.fallback = rest;
      nd.address = d.contacts[next].get<std::string>();
      nd.notification_id = NotificationId(d.request.event_id, d.request.user_id, next);
      nd.attempt = 0;
      st.Produce(ctx, {catalog.Deliver(next, model::PriorityName(d.request.priority)), d.request.user_id,
                       model::Dump(model::ToJson(nd)), {{"herald-notification-id", nd.notification_id}}});
      st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFallback, "falling back to " + next + ": " + detail));
      st.EmitStatus(ctx, model::MakeStatus(nd, model::Status::kAccepted, "fallback from " + d.channel));
      fallbacks.Inc();
    };
    template_cache.RefreshIfDue();
    auto templates = template_cache.Current();
    const auto now = clock->Now();  // one reading per batch (a file clock is a file read)
    std::set<std::string> claimed_in_batch;
    struct Candidate {
      const kafka::Message* msg;
      model::Delivery d;
      const schema::EventTypeInfo* type;
    };
    std::vector<Candidate> candidates;
    for (const auto& msg : batch) {
      if (ctx.IsDeferred(msg)) continue;
      // At most kLowerPerBatch lower-priority records are prepared (claimed, rendered) per
      // batch, fewer once urgent records wait; the rest stay in memory for the next one. A
      // high-priority record arriving meanwhile then waits for a short batch, and no claim or
      // rendering is wasted on records a yield would hand back.
      if (ctx.YieldLowerBeyond(msg, kLowerPerBatch)) continue;
      model::Delivery d;
      try {
        d = model::DeliveryFromJson(nlohmann::json::parse(msg.Value()));
      } catch (const nlohmann::json::exception& e) {
        st.DeadLetter(ctx, msg, "invalid_json", e.what());
        continue;
      } catch (const InvalidInput& e) {
        st.DeadLetter(ctx, msg, "schema", e.what());
        continue;
      }
      const auto* type = registry->Find(d.request.event_type);
      // Released late (a scheduler outage, a long retry): a stale notification is dropped.
      if (type) {
        if (auto expires = enrich::ExpiresAt(d.request, *type); expires && now >= *expires) {
          st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kExpired, "not delivered by " + FormatRfc3339(*expires)));
          continue;
        }
      }
      if (stopped_by_campaign(d, msg)) continue;
      if (sent_unmarked.count(d.notification_id)) {
        claims.MarkDone(d.notification_id, d.channel, "sent");  // throws again if Redis is still away
        if (journaled) journal.End({{d.notification_id, d.channel}});
        sent_unmarked.erase(d.notification_id);
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kSent));
        continue;
      }
      // The same notification twice in one batch (its upstream batch was produced again after
      // a failed acknowledgement, or a retry raced a redelivery): the claim taken for the
      // first copy is this owner's, which a claim reports as claimed again, so the copy is
      // skipped here and the first speaks for both.
      if (!claimed_in_batch.insert(d.notification_id).second) {
        dupes.Inc();
        continue;
      }
      candidates.push_back({&msg, std::move(d), type});
    }
    if (ctx.LowerYielded()) yields.Inc();

    // Claims for the whole batch in one Redis round trip, then each record in order.
    std::vector<deliver::Claims::Id> claim_ids;
    claim_ids.reserve(candidates.size());
    for (const auto& c : candidates) claim_ids.emplace_back(c.d.notification_id, c.d.channel);
    // Every claim taken here is this owner's until at least confirmed_at + the lease.
    auto confirmed_at = std::chrono::steady_clock::now();
    auto claimed = claims.ClaimMany(claim_ids);
    // Of the notifications claimed, those whose send an earlier attempt began and never
    // recorded: it stopped with the send in flight (killed, or its batch failed on Redis).
    std::vector<std::string> begun_by(candidates.size());
    if (journaled) {
      std::vector<deliver::JournalKey> keys;
      std::vector<std::size_t> at;
      for (std::size_t i = 0; i < candidates.size(); ++i) {
        if (claimed[i].state != deliver::ClaimState::kClaimed) continue;
        keys.push_back({candidates[i].d.notification_id, candidates[i].d.channel});
        at.push_back(i);
      }
      auto owners = journal.InFlight(keys);
      for (std::size_t k = 0; k < at.size(); ++k) begun_by[at[k]] = owners[k];
    }
    std::vector<deliver::Claims::Id> unclaim;  // claimed, then behind a deferred record of their partition
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      auto& [msg_ptr, d, type] = candidates[i];
      const auto& msg = *msg_ptr;
      const auto& done_outcome = claimed[i].outcome;
      if (ctx.IsDeferred(msg)) {
        if (claimed[i].state == deliver::ClaimState::kClaimed) unclaim.push_back(claim_ids[i]);
        continue;
      }
      switch (claimed[i].state) {
        case deliver::ClaimState::kDone:
          // Already handled (a redelivery after a crash, rebalance or replay, or the retry of
          // a batch whose output was not acknowledged): never send again, but state the
          // outcome once more, and produce the fallback again after a rejection, so nothing
          // is lost with the output of the batch that handled it. The ledger is idempotent
          // (an equal status keeps its first reason) and the fallback has a deterministic id.
          dupes.Inc();
          if (done_outcome == "sent") {
            st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kSent));
          } else if (done_outcome == "rejected") {
            st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, "rejected by " + provider_name + " (restated on redelivery)"));
            fall_back(d, "rejected by " + provider_name);
          } else if (done_outcome == "failed") {
            st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, "could not be rendered (restated on redelivery)"));
          } else if (done_outcome == "unknown") {
            st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed,
                                                 "outcome unknown: a send was in flight when an earlier attempt stopped (restated on redelivery)"));
          }
          continue;
        case deliver::ClaimState::kHeldByOther:
          // Another replica is sending it right now (or crashed mid-send and its lease will
          // expire): come back to this partition later; the others flow on.
          ctx.Defer(msg);
          ctx.PauseFor(msg, std::chrono::seconds(1));
          continue;
        case deliver::ClaimState::kClaimed:
          break;
      }
      const bool known_unsent = unsent_unmarked.erase(d.notification_id) > 0;
      if (!begun_by[i].empty() && !known_unsent) {
        // The provider may or may not have delivered it, and a second send could reach the
        // user twice: it is not sent again. The outcome is recorded first (a crash after
        // that finds the claim done), then it fails with the reason and is dead-lettered,
        // where an operator sees it.
        const std::string reason = "outcome unknown: " + provider_name + " had the send in flight when an earlier attempt (" +
                                   begun_by[i] + ") stopped; it may have been delivered, so it is not sent again";
        claims.MarkDone(d.notification_id, d.channel, "unknown");
        journal.End({{d.notification_id, d.channel}});
        st.DeadLetter(ctx, msg, "send_outcome_unknown", reason);
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, reason));
        failed.Inc();
        continue;
      }
      try {
        auto prepared = deliver::Render(d, type, *templates, config.unsubscribe_url, config.unsubscribe_secret);
        items.push_back({&msg, d, std::move(prepared.rendered), std::move(prepared.list_unsubscribe)});
      } catch (const InvalidInput& e) {
        claims.MarkDone(d.notification_id, d.channel, "failed");
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, e.what()));
        failed.Inc();
      }
    }
    claims.ReleaseMany(unclaim);

    // Each outcome is recorded as soon as it is known, so a crash leaves at most the sends in
    // flight with an unknown outcome (one email per SMTP connection, or one concurrent
    // provider chunk), which the send journal keeps from being sent again.
    auto handle = [&](const Item& item, const deliver::ProviderOutcome& o) {
      const auto& d = item.d;
      const auto& msg = *item.msg;
      if (o.result == deliver::SendResult::kRetryLater) {
        // Not sent: the claim was freed (handle_all), and the retry tiers bring it back
        // later, so one failing send never blocks the partition.
        // A 429 is the provider asking to slow down, not a failure of this message: it waits
        // in the retry tier without using up an attempt.
        if (st.Retry(ctx, msg, provider_name + ": " + o.detail, /*consume_attempt=*/!o.throttled)) {
          auto s = model::MakeStatus(d, model::Status::kRetried, o.detail);
          s.attempt = stage::Stage::Attempt(msg) + 1;
          st.EmitStatus(ctx, s);
          retried.Inc();
        } else {
          st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, "retries exhausted: " + o.detail));
          failed.Inc();
        }
        return;
      }
      auto status = o.result == deliver::SendResult::kSent ? model::Status::kSent : model::Status::kFailed;
      auto s = model::MakeStatus(d, status, status == model::Status::kSent ? "" : o.detail);
      s.provider = provider_name;
      s.provider_message_id = o.message_id;
      st.EmitStatus(ctx, s);
      if (status == model::Status::kSent) {
        sent.Inc();
        e2e(d.request.priority).Observe(std::chrono::duration<double>(s.at - d.request.created).count());
        return;
      }
      failed.Inc();
      fall_back(d, o.detail);
    };

    // Records a chunk's outcomes: one Redis round trip marks the sent and rejected
    // notifications done ("rejected", not "failed", which is a template that cannot be
    // rendered: a redelivery knows to produce the fallback again), one frees the claims of
    // those to retry. When Redis fails, what was sent is remembered in sent_unmarked, so the
    // batch's retry marks it instead of sending it again.
    auto handle_all = [&](std::size_t begin, const std::vector<deliver::ProviderOutcome>& outcomes) {
      std::vector<deliver::Claims::Id> done, release;
      std::vector<std::string> done_as;
      for (std::size_t k = 0; k < outcomes.size(); ++k) {
        const auto& d = items[begin + k].d;
        if (outcomes[k].result == deliver::SendResult::kRetryLater) {
          release.emplace_back(d.notification_id, d.channel);
        } else {
          done.emplace_back(d.notification_id, d.channel);
          done_as.push_back(outcomes[k].result == deliver::SendResult::kSent ? "sent" : "rejected");
        }
      }
      try {
        // The journal's entries end after the claims are done and before any is released:
        // a crash in between leaves either a done claim or a send that never happened.
        claims.MarkDoneMany(done, done_as);
        if (journaled) {
          std::vector<deliver::JournalKey> ended;
          for (std::size_t k = 0; k < outcomes.size(); ++k) ended.push_back({items[begin + k].d.notification_id, items[begin + k].d.channel});
          journal.End(ended);
        }
        claims.ReleaseMany(release);
      } catch (const TransientError&) {
        for (std::size_t k = 0; k < outcomes.size(); ++k) {
          (outcomes[k].result == deliver::SendResult::kSent ? sent_unmarked : unsent_unmarked).insert(items[begin + k].d.notification_id);
        }
        throw;
      }
      for (std::size_t k = 0; k < outcomes.size(); ++k) handle(items[begin + k], outcomes[k]);
    };

    // Sends in chunks (concurrent for HTTP providers; one email on each SMTP connection),
    // each paid for with tokens from the provider's bucket shared by all
    // replicas. Between chunks the stage yields to higher priorities: when a higher lane has
    // records waiting and this batch has served its guaranteed share of lower-lane records,
    // the rest is handed back (claims released, partitions rewound) and the next batch takes
    // the urgent records first.
    //
    // Enters items [begin, end) in the send journal just before they go to the provider.
    auto begin_sends = [&](std::size_t begin, std::size_t end) {
      std::vector<deliver::JournalKey> keys;
      for (std::size_t i = begin; i < end; ++i) keys.push_back({items[i].d.notification_id, items[i].d.channel});
      journal.Begin(keys);
    };
    // Before a send, the claims of the items still to send are renewed when a third of the
    // lease has passed since they were last confirmed, so a batch that outlasts the lease (a
    // slow provider, a rate limit) keeps them, and every send starts with at least two thirds
    // of its lease left. A claim this owner no longer holds (the process stalled past the
    // lease: it expired, or another replica took it) is not sent: its item is dropped from
    // the batch and its partition rewound to it, so it is read again and claimed anew. The
    // items behind it on that partition are dropped too (their claims released), so nothing
    // goes out ahead of it. Returns false when items from `from` on were dropped.
    const auto renew_after = std::chrono::duration_cast<std::chrono::milliseconds>(claims.Lease()) / 3;
    auto keep_claims = [&](std::size_t from) {
      const auto now = std::chrono::steady_clock::now();
      if (from >= items.size() || now - confirmed_at < renew_after) return true;
      std::vector<deliver::Claims::Id> ids;
      for (std::size_t i = from; i < items.size(); ++i) ids.emplace_back(items[i].d.notification_id, items[i].d.channel);
      auto held = claims.RenewMany(ids);
      confirmed_at = now;
      renewals.Inc();
      if (std::all_of(held.begin(), held.end(), [](bool h) { return h; })) return true;
      for (std::size_t i = from; i < items.size(); ++i) {
        if (held[i - from]) continue;
        claims_lost.Inc();
        Logger("deliver")->warn("claim of {} on {} is no longer held (its lease ran out): not sent by this owner",
                                items[i].d.notification_id, channel);
        ctx.Defer(*items[i].msg);
        ctx.PauseFor(*items[i].msg, std::chrono::seconds(1));
      }
      std::vector<Item> kept;
      std::vector<deliver::Claims::Id> behind;  // held, but behind a lost one on its partition
      for (std::size_t i = from; i < items.size(); ++i) {
        if (!held[i - from]) continue;
        if (ctx.IsDeferred(*items[i].msg)) {
          behind.emplace_back(items[i].d.notification_id, items[i].d.channel);
          continue;
        }
        kept.push_back(std::move(items[i]));
      }
      claims.ReleaseMany(behind);
      items.erase(items.begin() + static_cast<std::ptrdiff_t>(from), items.end());
      for (auto& it : kept) items.push_back(std::move(it));
      return false;
    };
    // send_chunk sends items [begin, end), whose claims keep_claims has just confirmed, and
    // records each outcome. It returns where it stopped (`end`, or earlier when keep_claims
    // dropped items before a later SMTP round: those from there on changed),
    // whether the provider asked to slow down, and the longest Retry-After it gave.
    struct ChunkResult {
      std::size_t until;
      bool throttled = false;
      std::optional<std::chrono::seconds> retry_after;
    };
    auto send_chunk = [&](std::size_t begin, std::size_t end) {
      ChunkResult result{end};
      auto note = [&](const deliver::ProviderOutcome& o) {
        if (!o.throttled) return;
        result.throttled = true;
        if (o.retry_after && (!result.retry_after || *o.retry_after > *result.retry_after)) result.retry_after = o.retry_after;
      };
      if (!smtp.empty()) {
        // In rounds of one email on each connection at once; a round's outcomes are recorded
        // as soon as its sends are done, so a crash leaves at most one email per connection
        // with an unknown outcome.
        auto send_one = [&](std::size_t i, deliver::SmtpSender& sender) {
          const auto& it = items[i];
          deliver::Email email;
          email.to = it.d.address;
          email.to_name = it.d.vars.contains("first_name") && it.d.vars["first_name"].is_string()
                              ? it.d.vars["first_name"].get<std::string>()
                              : "";
          email.subject = it.rendered.subject;
          email.text = it.rendered.text;
          email.html = it.rendered.html;
          email.message_id = it.d.notification_id + "@herald";
          email.list_unsubscribe = it.list_unsubscribe;
          auto o = sender.Send(email);
          return deliver::ProviderOutcome{o.result, o.detail, email.message_id, std::nullopt, o.throttled};
        };
        for (std::size_t round = begin; round < end; round += smtp.size()) {
          if (round > begin && !keep_claims(round)) {  // the chunk's first round: checked before it
            result.until = round;
            return result;
          }
          const std::size_t round_end = std::min(end, round + smtp.size());
          begin_sends(round, round_end);
          std::vector<std::future<deliver::ProviderOutcome>> in_flight;
          for (std::size_t i = round + 1; i < round_end; ++i) {
            in_flight.push_back(std::async(std::launch::async, send_one, i, std::ref(*smtp[i - round])));
          }
          std::vector<deliver::ProviderOutcome> outcomes;
          outcomes.push_back(send_one(round, *smtp[0]));
          for (auto& f : in_flight) outcomes.push_back(f.get());
          for (const auto& o : outcomes) note(o);
          handle_all(round, outcomes);
        }
        return result;
      }
      std::vector<deliver::OutMessage> out;
      for (std::size_t i = begin; i < end; ++i) {
        out.push_back({items[i].d.notification_id, items[i].d.address, items[i].rendered.subject, items[i].rendered.text});
      }
      if (journaled) begin_sends(begin, end);
      auto outcomes = provider->SendMany(out);
      for (const auto& o : outcomes) note(o);
      handle_all(begin, outcomes);
      return result;
    };
    // Hands the items from `from` on back unsent: a yield keeps them in memory for the next
    // batch; a pause (provider Retry-After) rewinds their partitions and waits.
    auto hand_back = [&](std::size_t from, std::chrono::milliseconds pause) {
      std::vector<deliver::Claims::Id> release;
      for (std::size_t i = from; i < items.size(); ++i) release.emplace_back(items[i].d.notification_id, items[i].d.channel);
      claims.ReleaseMany(release);
      for (std::size_t i = from; i < items.size(); ++i) {
        if (pause.count() > 0) {
          ctx.Defer(*items[i].msg);
          ctx.PauseFor(*items[i].msg, pause);
        } else {
          ctx.Yield(*items[i].msg);
        }
      }
    };
    std::size_t chunk = !smtp.empty() ? smtp.size() * kEmailRounds : std::max<std::size_t>(config.http_concurrency, 1);
    std::size_t start = 0;
    while (start < items.size()) {
      std::size_t want = 0;
      while (want < chunk && start + want < items.size() && !ctx.ShouldYield(*items[start + want].msg)) ++want;
      if (want == 0) {
        yields.Inc();
        hand_back(start, std::chrono::milliseconds(0));
        break;
      }
      // A pause or cancel that arrived while this batch was being sent stops the rest.
      std::set<std::string> campaign_ids;
      for (std::size_t i = start; i < items.size(); ++i) {
        if (items[i].d.request.campaign_id) campaign_ids.insert(*items[i].d.request.campaign_id);
      }
      auto now_states = campaign_ids.empty() ? std::map<std::string, campaign::State>{} : campaign_states.Get(campaign_ids);
      auto state_of = [&](const Item& it) {
        return it.d.request.campaign_id ? now_states[*it.d.request.campaign_id] : campaign::State("running");
      };
      auto first_stopped = std::stable_partition(items.begin() + start, items.end(), [&](const Item& it) {
        auto state = state_of(it);
        return state != "paused" && state != "cancelled";
      });
      if (first_stopped != items.end()) {
        for (auto it = first_stopped; it != items.end(); ++it) {
          claims.Release(it->d.notification_id, it->d.channel);
          stop_for(it->d, *it->msg, state_of(*it));
        }
        items.erase(first_stopped, items.end());
        continue;
      }
      if (!keep_claims(start)) continue;  // before taking tokens for items that are not sent
      auto grant = limiter->Acquire(static_cast<std::int64_t>(want));
      rate_factor.Set(grant.factor);
      if (grant.granted == 0 && grant.wait <= std::chrono::milliseconds(1000)) {
        limiter_waits.Inc();
        std::this_thread::sleep_for(grant.wait);  // pacing: this is the rate limit itself
        continue;
      }
      if (grant.granted == 0) {
        // Blocked for longer (a Retry-After): hand the rest back and come back when due,
        // without holding the poll loop.
        limiter_waits.Inc();
        hand_back(start, grant.wait);
        break;
      }
      std::size_t end = start + static_cast<std::size_t>(grant.granted);
      auto chunk_result = send_chunk(start, end);
      if (chunk_result.throttled) {
        throttles.Inc();
        limiter->Throttled(chunk_result.retry_after);
      } else if (chunk_result.until > start) {
        limiter->Succeeded();
      }
      start = chunk_result.until;
    }
    if (!holds.empty()) campaign::Hold(redis, holds);
  });
}

}  // namespace herald::consumers
