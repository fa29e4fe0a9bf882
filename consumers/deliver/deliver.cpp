#include <unistd.h>

#include <set>

#include "deliver/claims.hpp"
#include "deliver/email.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/redis/client.hpp"
#include "herald/stage/stage.hpp"
#include "herald/template/renderer.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {

int RunDeliver(const config::Config& config, const std::string& channel) {
  if (channel != "email") {
    throw ConfigError("deliver: channel '" + channel + "' has no provider yet; available: email");
  }
  const auto& catalog = topics::Catalog();
  std::vector<std::string> inputs;
  for (const char* p : {"high", "normal", "low"}) inputs.push_back(catalog.Deliver(channel, p));
  stage::Stage st(config, {"deliver-" + channel, inputs});
  auto templates = templates::TemplateStore::Builtin();
  redis::Client redis(config.redis_url);
  std::string owner = std::to_string(::getpid()) + "-" + RandomUuid().substr(0, 8);
  deliver::Claims claims(redis, owner, config.claim_lease, config.claim_ttl);
  deliver::SmtpSender smtp({config.smtp_url, config.smtp_from, config.smtp_user, config.smtp_password,
                            config.http_connect_timeout, std::chrono::milliseconds(15000)});
  auto& m = st.Metrics();
  metrics::Labels l = {{"channel", channel}, {"provider", "smtp"}};
  auto& sent = m.GetCounter("herald_deliveries_total", "Delivery outcomes", {{"channel", channel}, {"provider", "smtp"}, {"outcome", "sent"}});
  auto& failed = m.GetCounter("herald_deliveries_total", "Delivery outcomes", {{"channel", channel}, {"provider", "smtp"}, {"outcome", "failed"}});
  auto& dupes = m.GetCounter("herald_duplicates_suppressed_total", "Deliveries skipped because already sent", l);
  auto& e2e = m.GetHistogram("herald_end_to_end_seconds", "Event created_dt to sent", l);
  auto log = Logger("deliver");
  // Sent, but the claim could not be marked done (Redis hiccup): remembered here so a retry
  // of the batch marks it instead of sending again. Bounded: cleared once marked.
  std::set<std::string> sent_unmarked;

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    for (const auto& msg : batch) {
      if (ctx.IsDeferred(msg)) continue;
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
      if (sent_unmarked.count(d.notification_id)) {
        claims.MarkDone(d.notification_id, d.channel, "sent");  // throws again if Redis is still away
        sent_unmarked.erase(d.notification_id);
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kSent));
        continue;
      }
      std::string done_outcome;
      switch (claims.Claim(d.notification_id, d.channel, &done_outcome)) {
        case deliver::ClaimState::kDone:
          // Already handled (a redelivery after a crash, rebalance or replay): never send
          // again, but state the outcome once more so the ledger is complete even if the
          // first status record was lost with the batch that sent it. The ledger is idempotent.
          dupes.Inc();
          if (done_outcome == "sent") st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kSent));
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
      const auto* tmpl = templates.Find(d.request.event_type, d.channel, d.locale);
      templates::Rendered rendered;
      try {
        if (!tmpl) throw InvalidInput("no template for " + d.request.event_type + "/" + d.channel + "/" + d.locale);
        rendered = templates::Render(*tmpl, d.vars);
      } catch (const InvalidInput& e) {
        claims.MarkDone(d.notification_id, d.channel, "failed");
        st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, e.what()));
        failed.Inc();
        continue;
      }
      deliver::Email email;
      email.to = d.address;
      email.to_name = d.vars.contains("first_name") && d.vars["first_name"].is_string() ? d.vars["first_name"].get<std::string>() : "";
      email.subject = rendered.subject;
      email.text = rendered.text;
      email.html = rendered.html;
      email.message_id = d.notification_id + "@herald";
      auto outcome = smtp.Send(email);
      if (outcome.result == deliver::SendResult::kRetryLater) {
        // Not sent: free the claim and let the retry tiers bring it back later, so one
        // failing send never blocks the partition.
        claims.Release(d.notification_id, d.channel);
        if (st.Retry(ctx, msg, "smtp: " + outcome.detail)) {
          auto s = model::MakeStatus(d, model::Status::kRetried, outcome.detail);
          s.attempt = stage::Stage::Attempt(msg) + 1;
          st.EmitStatus(ctx, s);
        } else {
          st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kFailed, "retries exhausted: " + outcome.detail));
        }
        continue;
      }
      auto status = outcome.result == deliver::SendResult::kSent ? model::Status::kSent : model::Status::kFailed;
      try {
        claims.MarkDone(d.notification_id, d.channel, std::string(model::StatusName(status)));
      } catch (const TransientError&) {
        if (status == model::Status::kSent) sent_unmarked.insert(d.notification_id);
        throw;
      }
      auto s = model::MakeStatus(d, status, status == model::Status::kSent ? "" : outcome.detail);
      s.provider = "smtp";
      s.provider_message_id = email.message_id;
      st.EmitStatus(ctx, s);
      if (status == model::Status::kSent) {
        sent.Inc();
        e2e.Observe(std::chrono::duration<double>(s.at - d.request.created).count());
      } else {
        failed.Inc();
      }
    }
  });
}

}  // namespace herald::consumers
