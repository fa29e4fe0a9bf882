#include "plan/plan.hpp"

#include <set>

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/http/client.hpp"
#include "herald/schema/registry.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
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

RecipientResolver::RecipientResolver(std::string auth_url, std::string ugc_url)
    : auth_url_(std::move(auth_url)), ugc_url_(std::move(ugc_url)) {}

namespace {

// Follows a cursor-paginated listing; `ids_of` extracts the user ids of one page.
void Paginate(http::Client& client, const std::string& base_url,
              const std::function<std::vector<std::string>(const nlohmann::json&)>& ids_of,
              const std::function<void(const std::string&)>& emit) {
  std::string cursor;
  for (;;) {
    std::string url = base_url + (base_url.find('?') == std::string::npos ? "?" : "&") +
                      "limit=1000" + (cursor.empty() ? "" : "&cursor=" + http::UrlEncode(cursor));
    auto res = client.Get(url);
    if (res.status == 429 || res.status >= 500) {
      throw TransientError("GET " + url + " answered " + std::to_string(res.status));
    }
    if (res.status != 200) {
      throw PermanentError("GET " + url + " answered " + std::to_string(res.status) + ": " + res.body);
    }
    nlohmann::json page;
    try {
      page = nlohmann::json::parse(res.body);
    } catch (const nlohmann::json::exception& e) {
      throw TransientError("GET " + url + ": malformed body: " + e.what());
    }
    for (const auto& id : ids_of(page)) emit(id);
    if (!page.contains("next_cursor") || page["next_cursor"].is_null()) return;
    cursor = page["next_cursor"].get<std::string>();
  }
}

}  // namespace

void RecipientResolver::Resolve(const model::Event& event,
                                const std::function<void(const std::string&)>& emit) {
  std::set<std::string> seen;
  for (const auto& u : event.users) {
    if (seen.insert(u).second) emit(u);
  }
  if (!event.segment.is_null() || event.followers_of) {
    http::Client client;
    if (!event.segment.is_null()) {
      std::string query;
      auto add = [&](const char* field, const char* param) {
        if (!event.segment.contains(field)) return;
        for (const auto& v : event.segment[field]) {
          query += std::string(query.empty() ? "?" : "&") + param + "=" + http::UrlEncode(v.get<std::string>());
        }
      };
      add("tags", "tag");
      add("timezones", "timezone");
      add("locales", "locale");
      Paginate(client, auth_url_ + "/api/v1/users" + query,
               [](const nlohmann::json& page) {
                 std::vector<std::string> ids;
                 for (const auto& u : page.at("users")) ids.push_back(u.at("user_id").get<std::string>());
                 return ids;
               },
               emit);
    }
    if (event.followers_of) {
      Paginate(client, ugc_url_ + "/api/v1/content/" + http::UrlEncode(*event.followers_of) + "/followers",
               [](const nlohmann::json& page) {
                 return page.at("user_ids").get<std::vector<std::string>>();
               },
               emit);
    }
  }
}

}  // namespace plan

int RunPlan(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  std::vector<std::string> inputs;
  for (const auto* t : catalog.Family("events")) inputs.push_back(t->name);
  stage::Stage st(config, {"plan", inputs});
  auto registry = schema::Registry::Load(config.schema_dir);
  plan::RecipientResolver resolver(config.auth_url, config.ugc_url);
  auto& fanout = st.Metrics().GetCounter("herald_plan_recipients_total", "Requests emitted by fan-out");
  const std::string& requests_topic = catalog.Requests();
  auto log = Logger("plan");

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    for (const auto& m : batch) {
      model::Event event;
      try {
        event = model::ParseEvent(m.Value(), *registry,
                                  model::Origin{std::string(m.Topic()), m.Partition(), m.Offset()});
      } catch (const InvalidInput& e) {
        std::string cls = e.Field() == "/event_type" ? "unknown_type"
                          : std::string(e.what()).find("not valid JSON") != std::string::npos ? "invalid_json"
                                                                                         : "schema";
        st.DeadLetter(ctx, m, cls, e.what());
        continue;
      }
      try {
        resolver.Resolve(event, [&](const std::string& user_id) {
          auto req = plan::MakeRequest(event, user_id);
          st.Produce(ctx, {requests_topic, user_id, model::ToJson(req).dump(),
                           {{"herald-event-id", event.event_id}}});
          fanout.Inc();
        });
      } catch (const PermanentError& e) {
        st.DeadLetter(ctx, m, "recipients", e.what());
      }
    }
  });
}

}  // namespace herald::consumers
