#include "enrich/timing.hpp"

#include "herald/common/errors.hpp"
#include "herald/config/config.hpp"
#include "herald/timing/window.hpp"

namespace herald::consumers::enrich {
namespace {

std::optional<timing::LocalWindow> WindowOf(const std::optional<model::Window>& w) {
  if (!w) return std::nullopt;
  return timing::ParseWindow(w->from, w->to);
}

}  // namespace

std::optional<TimePoint> ExpiresAt(const model::NotificationRequest& req, const schema::EventTypeInfo& type) {
  std::optional<TimePoint> expires = req.expires_at;
  if (auto it = type.meta.find("max_age"); it != type.meta.end() && it->is_string()) {
    TimePoint stale = req.created + config::ParseDuration(it->get<std::string>());
    if (!expires || stale < *expires) expires = stale;
  }
  return expires;
}

TimingDecision DecideTiming(const model::Delivery& d, const schema::EventTypeInfo& type, TimePoint now) {
  using namespace std::chrono;
  TimingDecision out;
  const auto& req = d.request;
  auto expires = ExpiresAt(req, type);
  if (expires && now >= *expires) {
    out.kind = TimingDecision::Kind::kExpire;
    out.reason = "not delivered by " + FormatRfc3339(*expires);
    return out;
  }
  TimePoint earliest = req.not_before && *req.not_before > now ? *req.not_before : now;
  std::optional<timing::LocalWindow> window, quiet;
  if (!type.critical) {
    std::optional<model::Window> w = req.deliver_window;
    if (!w) {
      if (auto it = type.meta.find("deliver_window"); it != type.meta.end() && it->is_object()) {
        w = model::Window{it->value("from", ""), it->value("to", "")};
      }
    }
    window = WindowOf(w);  // the event schema and the type file guarantee HH:MM
    try {
      // Quiet hours hold normal and low priorities; high-priority account mail (a welcome)
      // goes through like critical mail does.
      if (req.priority != model::Priority::kHigh) quiet = WindowOf(d.quiet_hours);
    } catch (const InvalidInput&) {
      quiet.reset();  // malformed quiet hours from the user service: ignored, not fatal
    }
  }
  const auto* tz = timing::FindZone(d.timezone);
  if (!tz) tz = timing::FindZone("UTC");
  auto due_s = timing::FirstAllowed(ceil<seconds>(earliest), tz, window, quiet);
  TimePoint due = time_point_cast<milliseconds>(due_s);
  if (due < earliest) due = earliest;
  if (expires && due >= *expires) {
    out.kind = TimingDecision::Kind::kExpire;
    out.reason = "its delivery time " + FormatRfc3339(due) + " is after it expires (" + FormatRfc3339(*expires) + ")";
    return out;
  }
  if (due - now <= seconds(1)) return out;
  out.kind = TimingDecision::Kind::kPark;
  out.due = due;
  out.reason = due == earliest ? "start_dt" : quiet ? "delivery window or quiet hours" : "delivery window";
  return out;
}

}  // namespace herald::consumers::enrich
