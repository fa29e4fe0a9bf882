#include "enrich/enrich.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/http/client.hpp"
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
  std::vector<std::string> reachable;
  for (const auto& c : order) {
    if (AddressFor(user, c)) reachable.push_back(c);
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
    d.channel = type.channels.front();
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
  nlohmann::json vars = request.data.is_object() ? request.data : nlohmann::json::object();
  for (const char* f : {"user_id", "first_name", "last_name", "email", "locale", "timezone"}) {
    if (user.contains(f) && !user[f].is_null()) vars[f] = user[f];
  }
  vars["event_type"] = request.event_type;
  vars["event_id"] = request.event_id;
  del.vars = std::move(vars);
  d.channel = del.channel;
  d.delivery = std::move(del);
  d.status = model::Status::kAccepted;
  return d;
}

}  // namespace enrich

namespace {

// Fetches profiles with users:batchGet (≤ 500 ids per call), coalescing duplicate ids.
std::map<std::string, nlohmann::json> FetchUsers(http::Client& client, const std::string& auth_url,
                                                 const std::set<std::string>& ids) {
  std::map<std::string, nlohmann::json> out;
  std::vector<std::string> chunk;
  auto flush = [&] {
    if (chunk.empty()) return;
    nlohmann::json body = {{"ids", chunk}};
    auto res = client.Post(auth_url + "/api/v1/users:batchGet", body.dump());
    if (res.status != 200) {
      throw TransientError("auth users:batchGet answered " + std::to_string(res.status));
    }
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(res.body);
      for (auto& u : doc.at("users")) {
        auto id = u.at("user_id").get<std::string>();
        out[id] = std::move(u);
      }
    } catch (const nlohmann::json::exception& e) {
      throw TransientError(std::string("auth users:batchGet: malformed body: ") + e.what());
    }
    chunk.clear();
  };
  for (const auto& id : ids) {
    chunk.push_back(id);
    if (chunk.size() == 500) flush();
  }
  flush();
  return out;
}

// The status of a request that produces no delivery (suppressed before a channel is used).
model::StatusRecord StatusWithoutDelivery(const model::NotificationRequest& req,
                                          const std::string& channel, model::Status status,
                                          std::string reason) {
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

}  // namespace

int RunEnrich(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  stage::Stage st(config, {"enrich", {catalog.Requests()}});
  auto registry = schema::Registry::Load(config.schema_dir);
  http::Client auth({config.http_connect_timeout, config.http_timeout, "herald-enrich", ""});
  auto log = Logger("enrich");

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    std::vector<std::pair<const kafka::Message*, model::NotificationRequest>> requests;
    std::set<std::string> ids;
    for (const auto& m : batch) {
      try {
        auto req = model::RequestFromJson(nlohmann::json::parse(m.Value()));
        if (!registry->Find(req.event_type)) {
          throw InvalidInput("unknown event type '" + req.event_type + "'");
        }
        ids.insert(req.user_id);
        requests.emplace_back(&m, std::move(req));
      } catch (const nlohmann::json::exception& e) {
        st.DeadLetter(ctx, m, "invalid_json", e.what());
      } catch (const InvalidInput& e) {
        st.DeadLetter(ctx, m, "schema", e.what());
      }
    }
    auto users = FetchUsers(auth, config.auth_url, ids);
    for (const auto& [m, req] : requests) {
      const auto* type = registry->Find(req.event_type);
      auto it = users.find(req.user_id);
      if (it == users.end()) {
        st.EmitStatus(ctx, StatusWithoutDelivery(req, type->channels.front(),
                                                 model::Status::kSuppressed, "unknown user"));
        continue;
      }
      auto decision = enrich::Decide(req, it->second, *type);
      if (!decision.delivery) {
        st.EmitStatus(ctx, StatusWithoutDelivery(req, decision.channel, decision.status,
                                                 decision.reason));
        continue;
      }
      const auto& d = *decision.delivery;
      st.Produce(ctx, {catalog.Deliver(d.channel, model::PriorityName(d.request.priority)),
                       d.request.user_id, model::ToJson(d).dump(),
                       {{"herald-notification-id", d.notification_id}}});
      st.EmitStatus(ctx, model::MakeStatus(d, model::Status::kAccepted));
    }
  });
}

}  // namespace herald::consumers
