// The admin API: templates, campaigns, preferences, statistics, unsubscribe links, and the
// OpenAPI document with its documentation page. See producers/admin/README.md.

#include <strings.h>

#include <limits>
#include <mutex>
#include <regex>
#include <set>

#include "admin/campaigns.hpp"
#include "enrich/enricher.hpp"
#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/unsubscribe.hpp"
#include "herald/common/untrusted_json.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/kafka/lag.hpp"
#include "herald/kafka/reader.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/redis/client.hpp"
#include "herald/stage/stage.hpp"
#include "herald/stats/stats.hpp"
#include "herald/template/store.hpp"
#include "herald/timing/window.hpp"
#include "herald/topics/catalog.hpp"
#include "producers.hpp"

namespace herald::producers {
namespace {

using Json = nlohmann::json;

enum class Scope { kNone, kRead, kWrite };

// "write:tokA,read:tokB"; a bare token has the write scope.
std::map<std::string, Scope> ParseAdminTokens(const std::string& spec) {
  std::map<std::string, Scope> out;
  for (const auto& [token, label] : config::ParseTokens(spec)) out[token] = label == "read" ? Scope::kRead : Scope::kWrite;
  return out;
}

// A handful of PostgreSQL connections shared by the HTTP worker threads.
class PgPool {
 public:
  PgPool(std::string url, std::size_t size) : url_(std::move(url)), size_(size) {}
  class Lease {
   public:
    Lease(PgPool& pool, std::unique_ptr<pqxx::connection> c) : pool_(pool), conn_(std::move(c)) {}
    ~Lease() { pool_.Return(std::move(conn_)); }
    pqxx::connection& operator*() { return *conn_; }
    void Broken() { conn_.reset(); }

   private:
    PgPool& pool_;
    std::unique_ptr<pqxx::connection> conn_;
  };
  Lease Get() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->is_open()) return Lease(*this, std::move(c));
      --open_;
    }
    ++open_;
    lock.unlock();
    try {
      return Lease(*this, pg::Connect(url_));
    } catch (...) {
      std::lock_guard g(mu_);
      --open_;
      cv_.notify_one();
      throw;
    }
  }

 private:
  void Return(std::unique_ptr<pqxx::connection> c) {
    std::lock_guard g(mu_);
    if (c && c->is_open()) idle_.push_back(std::move(c));
    else --open_;
    cv_.notify_one();
  }
  std::string url_;
  std::size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t open_ = 0;
};

// Parses a JSON request body; throws InvalidInput naming the problem (invalid JSON, nesting
// deeper than kMaxJsonDepth, NUL characters).
Json Body(const httplib::Request& req) {
  if (req.body.empty()) throw InvalidInput("the request needs a JSON body");
  return ParseUntrusted(req.body);
}

void RejectUnknown(const Json& body, const std::set<std::string>& allowed) {
  if (!body.is_object()) throw InvalidInput("the body must be a JSON object");
  Json errors = Json::array();
  for (const auto& [k, v] : body.items()) {
    if (!allowed.count(k)) errors.push_back({{"field", "/" + k}, {"error", "unknown field '" + k + "'"}});
  }
  if (!errors.empty()) throw campaigns::FieldErrors(errors);
}

std::string OptString(const Json& body, const char* key, const std::string& fallback = {}) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw InvalidInput(std::string(key) + " must be a string", std::string("/") + key);
  return it->get<std::string>();
}

int QueryInt(const httplib::Request& req, const char* key, int fallback, int min, int max) {
  if (!req.has_param(key)) return fallback;
  auto v = req.get_param_value(key);
  try {
    std::size_t used = 0;
    int n = std::stoi(v, &used);
    if (used != v.size() || n < min || n > max) throw std::out_of_range("range");
    return n;
  } catch (const std::exception&) {
    throw InvalidInput(std::string(key) + " must be an integer from " + std::to_string(min) + " to " +
                           std::to_string(max),
                       std::string("/") + key);
  }
}

Json TemplateJson(const templates::StoredTemplate& s, bool with_body) {
  Json j = {{"event_type", s.tmpl.event_type}, {"channel", s.tmpl.channel},   {"locale", s.tmpl.locale},
            {"version", s.tmpl.version},       {"created_at", s.created_at}, {"created_by", s.created_by}};
  if (with_body) {
    j["subject"] = s.tmpl.subject;
    j["text"] = s.tmpl.text;
    j["html"] = s.tmpl.html;
  }
  j["deleted"] = s.deleted;
  return j;
}

// The body of a template save or a preview draft: {subject?, text, html?}.
templates::Template TemplateBody(const Json& body, std::string event_type, std::string channel, std::string locale) {
  RejectUnknown(body, {"subject", "text", "html"});
  templates::Template t;
  t.event_type = std::move(event_type);
  t.channel = std::move(channel);
  t.locale = std::move(locale);
  t.subject = OptString(body, "subject");
  t.text = OptString(body, "text");
  t.html = OptString(body, "html");
  return t;
}

void ThrowTemplateErrors(const std::vector<schema::ValidationError>& problems) {
  if (problems.empty()) return;
  Json errors = Json::array();
  for (const auto& p : problems) errors.push_back({{"field", p.field}, {"error", p.message}});
  throw campaigns::FieldErrors(errors);
}

// Sample variables for a preview: what enrichment would build for a synthetic user (in the
// preview's locale) and synthetic movies, with the caller's data on top; declared data fields
// the caller did not give show as "[field]".
Json SampleVars(const schema::EventTypeInfo& type, const std::string& locale, const Json& data) {
  model::NotificationRequest req;
  req.event_id = "preview";
  req.event_type = type.name;
  req.user_id = "u-1";
  req.created = NowMs();
  req.content = {"movie-1", "movie-2", "movie-3"};
  req.data = data.is_object() ? data : Json::object();
  for (const auto& f : type.data_fields) {
    if (!req.data.contains(f)) req.data[f] = "[" + f + "]";
  }
  auto user = dev::SyntheticUser(42, 1);
  user["locale"] = locale.substr(0, 2);
  Json ugc = nullptr;
  if (type.name == "bookmark.reminder") ugc = {{"items", dev::SyntheticBookmarks(42, 1)}};
  if (type.name == "stats.monthly") {
    auto [from, to] = consumers::enrich::StatsMonth(req, nullptr);
    auto ms = [](TimePoint t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    };
    ugc = {{"items", dev::SyntheticWatchHistory(42, 1, ms(from), ms(to))}};
  }
  std::map<std::string, Json> movies;
  for (const auto& id : consumers::enrich::MovieIdsNeeded(req, ugc)) movies[id] = dev::SyntheticMovie(42, id);
  auto vars = consumers::enrich::BuildVars(req, user, movies, ugc);
  vars["unsubscribe_url"] = "https://cinema.example/unsubscribe?token=preview";
  return vars;
}

// ---- preferences ----

const std::set<std::string> kChannels = {"email", "sms", "telegram", "push"};

Json LoadPreferences(pqxx::work& tx, const std::string& user_id) {
  Json p = {{"user_id", user_id}, {"channels", nullptr}, {"quiet_hours", nullptr}, {"locale", nullptr},
            {"opt_outs", Json::array()}, {"updated_at", nullptr}};
  auto rows = tx.exec_params(
      "SELECT array_to_json(channels)::text, quiet_hours::text, locale, to_char(updated_at AT TIME ZONE 'UTC', "
      "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM preferences WHERE user_id = $1",
      user_id);
  if (!rows.empty()) {
    if (!rows[0][0].is_null()) p["channels"] = Json::parse(rows[0][0].as<std::string>());
    if (!rows[0][1].is_null()) p["quiet_hours"] = Json::parse(rows[0][1].as<std::string>());
    if (!rows[0][2].is_null()) p["locale"] = rows[0][2].as<std::string>();
    p["updated_at"] = rows[0][3].as<std::string>();
  }
  for (const auto& r : tx.exec_params("SELECT category FROM opt_outs WHERE user_id = $1 ORDER BY category", user_id)) {
    p["opt_outs"].push_back(r[0].as<std::string>());
  }
  return p;
}

Json ValidatePreferences(const Json& body, const schema::Registry& registry) {
  RejectUnknown(body, {"channels", "quiet_hours", "locale", "opt_outs"});
  Json errors = Json::array();
  auto fail = [&](const std::string& f, const std::string& e) { errors.push_back({{"field", f}, {"error", e}}); };
  Json out = {{"channels", nullptr}, {"quiet_hours", nullptr}, {"locale", nullptr}, {"opt_outs", Json::array()}};
  if (auto it = body.find("channels"); it != body.end() && !it->is_null()) {
    if (!it->is_array() || it->empty()) {
      fail("/channels", "channels must be a non-empty array of email, sms, telegram, push");
    } else {
      std::set<std::string> seen;
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto& c = (*it)[i];
        if (!c.is_string() || !kChannels.count(c.get<std::string>())) {
          fail("/channels/" + std::to_string(i), "must be one of email, sms, telegram, push");
        } else if (!seen.insert(c.get<std::string>()).second) {
          fail("/channels/" + std::to_string(i), "channel '" + c.get<std::string>() + "' is listed twice");
        }
      }
      out["channels"] = *it;
    }
  }
  if (auto it = body.find("quiet_hours"); it != body.end() && !it->is_null()) {
    static const std::regex kHm("^([01][0-9]|2[0-3]):[0-5][0-9]$");
    if (it->is_object() && it->size() == 1 && it->contains("off") && (*it)["off"] == true) {
      out["quiet_hours"] = *it;
    } else if (!it->is_object() || it->size() != 2 || !it->contains("from") || !it->contains("to")) {
      fail("/quiet_hours", "quiet_hours must be {\"from\": \"HH:MM\", \"to\": \"HH:MM\"}, {\"off\": true} or null");
    } else {
      for (const char* k : {"from", "to"}) {
        const auto& v = (*it)[k];
        if (!v.is_string() || !std::regex_match(v.get<std::string>(), kHm)) {
          fail(std::string("/quiet_hours/") + k, std::string(k) + " must be a local time HH:MM (00:00 to 23:59)");
        }
      }
      out["quiet_hours"] = *it;
    }
  }
  if (auto it = body.find("locale"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "ru" && *it != "en")) fail("/locale", "locale must be ru, en or null");
    else out["locale"] = *it;
  }
  if (auto it = body.find("opt_outs"); it != body.end() && !it->is_null()) {
    std::set<std::string> categories;
    for (const auto* t : registry.Types()) categories.insert(t->category);
    if (!it->is_array()) {
      fail("/opt_outs", "opt_outs must be an array of categories");
    } else {
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto& c = (*it)[i];
        if (!c.is_string() || !categories.count(c.get<std::string>())) {
          std::string known;
          for (const auto& k : categories) known += (known.empty() ? "" : ", ") + k;
          fail("/opt_outs/" + std::to_string(i), "must be a category: " + known);
        } else {
          out["opt_outs"].push_back(c);
        }
      }
    }
  }
  if (!errors.empty()) throw campaigns::FieldErrors(errors);
  return out;
}

void CheckUserId(const std::string& id) {
  if (campaigns::CodePoints(id) > 128 || id.find('\0') != std::string::npos) {
    throw InvalidInput("a user id has at most 128 characters and no NUL", "/user_id");
  }
}

const char* kUnsubscribePage = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unsubscribe</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #555;background:#222;color:#fff;cursor:pointer}</style>
</head><body>{{body}}</body></html>
)html";

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void Page(httplib::Response& res, int status, const std::string& body_html) {
  std::string page = kUnsubscribePage;
  page.replace(page.find("{{body}}"), 8, body_html);
  res.status = status;
  res.set_content(page, "text/html; charset=utf-8");
}

}  // namespace

std::string CreateApiKey(const config::Config& config, const std::string& name, const std::string& scope) {
  if (scope != "read" && scope != "write") throw InvalidInput("scope must be read or write", "/scope");
  if (name.empty()) throw InvalidInput("a key needs a name", "/name");
  std::string token = "hk_";
  for (int i = 0; i < 2; ++i) {
    for (char c : RandomUuid()) {
      if (c != '-') token += c;
    }
  }
  auto conn = pg::Connect(config.pg_url);
  pqxx::work tx(*conn);
  tx.exec_params("INSERT INTO api_keys (token_sha256, name, scope) VALUES ($1, $2, $3)", Sha256Hex(token), name, scope);
  tx.commit();
  return token;
}

int RunAdmin(const config::Config& config) {
  auto tokens = ParseAdminTokens(config.admin_token);
  if (tokens.empty()) {
    throw ConfigError("HERALD_ADMIN_TOKEN is required (\"write:<token>,read:<token>\"): the admin API does not run unauthenticated");
  }
  if (config.unsubscribe_secret.empty()) throw ConfigError("HERALD_UNSUBSCRIBE_SECRET is required by the admin API");
  stage::Stage st(config, {"admin", {}});
  auto registry = schema::Registry::Load(config.schema_dir);
  auto clock = TimeSource::FromSpec(config.clock);
  PgPool pool(config.pg_url, 4);
  std::mutex redis_mu;  // one connection: admin traffic is light
  redis::Client redis(config.redis_url);
  auto log = Logger("admin");
  auto& m = st.Metrics();
  auto& requests = m.GetCounter("herald_admin_requests_total", "Admin API requests answered");
  auto& rejected = m.GetCounter("herald_admin_rejected_total", "Admin API requests refused (4xx)");
  auto& unsubscribed = m.GetCounter("herald_unsubscribes_total", "Opt-outs recorded from unsubscribe links");
  // Every stage's consumer lag, also while the stage is down (its own statistics stop then).
  std::unique_ptr<kafka::GroupLagExporter> lag_exporter;
  if (config.lag_interval.count() > 0) {
    lag_exporter = std::make_unique<kafka::GroupLagExporter>(config.brokers, config.kafka, topics::Catalog().ConsumerGroups(),
                                                             config.lag_interval, m);
  }

  // API keys stored in PostgreSQL (only their SHA-256), looked up on a miss and remembered
  // for a minute; configured tokens are checked first.
  std::mutex keys_mu;
  std::map<std::string, std::pair<Scope, std::chrono::steady_clock::time_point>> key_cache;
  auto scope_of = [&](const std::string& token) -> Scope {
    if (auto it = tokens.find(token); it != tokens.end()) return it->second;
    auto digest = Sha256Hex(token);
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard g(keys_mu);
      if (auto it = key_cache.find(digest); it != key_cache.end() && now - it->second.second < std::chrono::minutes(1)) {
        return it->second.first;
      }
    }
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    auto rows = tx.exec_params("SELECT scope FROM api_keys WHERE token_sha256 = $1 AND revoked_at IS NULL", digest);
    Scope s = rows.empty() ? Scope::kNone : rows[0][0].as<std::string>() == "write" ? Scope::kWrite : Scope::kRead;
    std::lock_guard g(keys_mu);
    if (key_cache.size() > 10'000) key_cache.clear();
    key_cache[digest] = {s, now};
    return s;
  };

  auto request_scope = [&](const httplib::Request& req) {
    auto auth = req.get_header_value("Authorization");
    bool bearer = auth.size() > 7 && strncasecmp(auth.c_str(), "Bearer ", 7) == 0;
    return bearer ? scope_of(auth.substr(7)) : Scope::kNone;
  };

  auto publish = [&](const std::string& topic, const std::string& key, const std::string& value,
                     std::vector<kafka::Header> headers = {}) {
    if (headers.empty()) headers.push_back({"herald-event-id", key});
    st.Producer().ProduceSync({topic, key, value, headers}, std::chrono::seconds(10));
  };

  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  // Every API route: authentication and scope, then the handler, with errors mapped to
  // JSON answers (400 field errors, 404, 409, 503).
  auto route = [&](const char* method, const std::string& pattern, Scope need, Handler h) {
    auto wrapped = [&, need, h](const httplib::Request& req, httplib::Response& res) {
      requests.Inc();
      try {
        if (need != Scope::kNone) {
          Scope have = request_scope(req);
          if (have == Scope::kNone) {
            rejected.Inc();
            res.set_header("WWW-Authenticate", "Bearer");
            return http::JsonError(res, 401, "missing or invalid bearer token");
          }
          if (need == Scope::kWrite && have != Scope::kWrite) {
            rejected.Inc();
            return http::JsonError(res, 403, "this token has the read scope; the request needs write");
          }
        }
        h(req, res);
        if (res.status >= 400) rejected.Inc();
      } catch (const campaigns::FieldErrors& e) {
        rejected.Inc();
        http::Json(res, 400, {{"error", e.what()}, {"field", e.Field()}, {"errors", e.Errors()}});
      } catch (const InvalidInput& e) {
        rejected.Inc();
        Json body = {{"error", e.what()}};
        if (!e.Field().empty()) body["field"] = e.Field();
        http::Json(res, 400, body);
      } catch (const campaigns::NotFound& e) {
        rejected.Inc();
        http::JsonError(res, 404, e.what());
      } catch (const campaigns::Conflict& e) {
        rejected.Inc();
        http::Json(res, 409, {{"error", e.what()}, {"state", e.State()}});
      } catch (const TransientError& e) {
        res.set_header("Retry-After", "1");
        http::JsonError(res, 503, e.what());
      } catch (const pqxx::broken_connection& e) {
        res.set_header("Retry-After", "1");
        http::JsonError(res, 503, std::string("PostgreSQL unavailable: ") + e.what());
      } catch (const Json::exception& e) {
        rejected.Inc();
        http::JsonError(res, 400, std::string("a value has the wrong type: ") + e.what());
      } catch (const pqxx::integrity_constraint_violation& e) {
        rejected.Inc();
        http::JsonError(res, 409, "a concurrent change conflicts with this one: try again");
      } catch (const pqxx::data_exception& e) {
        // A value PostgreSQL cannot store (validation lets few through): the client's to fix.
        rejected.Inc();
        http::JsonError(res, 400, std::string("a value cannot be stored: ") + e.what());
      }
    };
    auto& raw = st.Http().Raw();
    std::string verb(method);
    if (verb == "GET") raw.Get(pattern, wrapped);
    else if (verb == "POST") raw.Post(pattern, wrapped);
    else if (verb == "PUT") raw.Put(pattern, wrapped);
    else if (verb == "DELETE") raw.Delete(pattern, wrapped);
  };
  auto& raw = st.Http().Raw();
  raw.set_payload_max_length(config.max_body_bytes);

  // ---- templates ----
  const std::string kKey = R"(/v1/templates/([a-z0-9_.]+)/([a-z]+)/([A-Za-z-]+))";
  route("GET", "/v1/templates", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    Json out = Json::array();
    std::string type = req.get_param_value("event_type");
    for (const auto& t : templates::ListTemplates(*lease)) {
      if (type.empty() || t.tmpl.event_type == type) out.push_back(TemplateJson(t, false));
    }
    http::Json(res, 200, {{"templates", out}});
  });
  route("GET", kKey, Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    std::optional<int> version;
    if (req.has_param("version")) version = QueryInt(req, "version", 1, 1, 1'000'000);
    auto lease = pool.Get();
    auto t = templates::GetTemplate(*lease, req.matches[1], req.matches[2], req.matches[3], version);
    if (!t) throw campaigns::NotFound("no template " + std::string(req.matches[1]) + "/" + std::string(req.matches[2]) + "/" + std::string(req.matches[3]));
    http::Json(res, 200, TemplateJson(*t, true));
  });
  route("GET", kKey + "/versions", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    Json out = Json::array();
    for (const auto& t : templates::TemplateHistory(*lease, req.matches[1], req.matches[2], req.matches[3])) {
      out.push_back(TemplateJson(t, true));
    }
    if (out.empty()) throw campaigns::NotFound("no template " + std::string(req.matches[1]) + "/" + std::string(req.matches[2]) + "/" + std::string(req.matches[3]));
    http::Json(res, 200, {{"versions", out}});
  });
  route("PUT", kKey, Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    auto t = TemplateBody(Body(req), req.matches[1], req.matches[2], req.matches[3]);
    ThrowTemplateErrors(templates::CheckTemplate(t, *registry));
    auto lease = pool.Get();
    int version = templates::SaveTemplate(*lease, *registry, t, "admin-api");
    http::Json(res, 201, TemplateJson(*templates::GetTemplate(*lease, t.event_type, t.channel, t.locale, version), true));
  });
  route("DELETE", kKey, Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    if (!templates::DeleteTemplate(*lease, req.matches[1], req.matches[2], req.matches[3], "admin-api")) {
      throw campaigns::NotFound("no live template " + std::string(req.matches[1]) + "/" + std::string(req.matches[2]) + "/" + std::string(req.matches[3]));
    }
    res.status = 204;
  });
  route("POST", "/v1/templates/preview", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req);
    RejectUnknown(body, {"event_type", "channel", "locale", "template", "data"});
    auto type_name = OptString(body, "event_type");
    const auto* type = registry->Find(type_name);
    if (!type) throw InvalidInput("unknown event type '" + type_name + "'", "/event_type");
    auto channel = OptString(body, "channel");
    auto locale = OptString(body, "locale");
    Json data = body.value("data", Json::object());
    if (!data.is_object()) throw InvalidInput("data must be an object", "/data");
    std::vector<templates::Template> candidates;
    if (body.contains("template")) {
      if (channel.empty() || locale.empty()) throw InvalidInput("a draft template needs channel and locale", "/template");
      candidates.push_back(TemplateBody(body["template"], type_name, channel, locale));
    } else {
      auto lease = pool.Get();
      for (const auto& s : templates::ListTemplates(*lease)) {
        if (s.tmpl.event_type != type_name) continue;
        if (!channel.empty() && s.tmpl.channel != channel) continue;
        if (!locale.empty() && s.tmpl.locale != locale) continue;
        candidates.push_back(s.tmpl);
      }
    }
    Json previews = Json::array();
    for (const auto& t : candidates) {
      Json p = {{"channel", t.channel}, {"locale", t.locale}};
      auto unknown = templates::UnknownVariables(t, *type);
      if (!unknown.empty()) p["unknown_variables"] = unknown;
      auto problems = templates::CheckTemplate(t, *registry);
      try {
        if (!problems.empty()) {
          std::string all;
          for (const auto& pr : problems) all += (all.empty() ? "" : "; ") + pr.message;
          throw InvalidInput(all);
        }
        auto r = templates::Render(t, SampleVars(*type, t.locale, data));
        p["subject"] = r.subject;
        p["text"] = r.text;
        p["html"] = r.html;
      } catch (const InvalidInput& e) {
        p["error"] = e.what();
      }
      previews.push_back(p);
    }
    http::Json(res, 200, {{"previews", previews}});
  });
  route("GET", "/v1/event-types", Scope::kRead, [&](const httplib::Request&, httplib::Response& res) {
    Json out = Json::array();
    for (const auto* t : registry->Types()) {
      out.push_back({{"name", t->name}, {"title", t->title}, {"priority", t->default_priority},
                     {"critical", t->critical}, {"marketing", t->marketing}, {"category", t->category},
                     {"channels", t->channels}, {"variables", templates::AllowedVariables(*t)},
                     {"data_fields", t->data_fields}});
    }
    http::Json(res, 200, {{"event_types", out}});
  });

  // ---- campaigns ----
  const std::string kCampaign = R"(/v1/campaigns/([A-Za-z0-9_-]{1,64}))";
  route("GET", "/v1/campaigns", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    static const std::set<std::string> kStates = {"", "draft", "scheduled", "running", "paused", "completed", "cancelled"};
    auto state = req.get_param_value("state");
    if (!kStates.count(state)) throw InvalidInput("state must be draft, scheduled, running, paused, completed or cancelled", "/state");
    int limit = QueryInt(req, "limit", 100, 1, 500);
    int offset = QueryInt(req, "offset", 0, 0, 1'000'000'000);
    auto lease = pool.Get();
    auto [list, total] = campaigns::Store(*lease, *registry).List(state, limit, offset);
    Json out = Json::array();
    for (const auto& c : list) out.push_back(campaigns::ToJson(c));
    http::Json(res, 200, {{"campaigns", out}, {"total", total}});
  });
  route("POST", "/v1/campaigns", Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    auto c = campaigns::FromInput(Body(req), *registry, false);
    auto lease = pool.Get();
    auto created = campaigns::Store(*lease, *registry).Create(c, "admin-api");
    res.set_header("Location", "/v1/campaigns/" + created.id);
    http::Json(res, 201, campaigns::ToJson(created));
  });
  route("GET", kCampaign, Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    auto c = campaigns::Store(*lease, *registry).Get(req.matches[1]);
    if (!c) throw campaigns::NotFound("no campaign " + std::string(req.matches[1]));
    http::Json(res, 200, campaigns::ToJson(*c));
  });
  route("PUT", kCampaign, Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    std::optional<int> version;
    auto c = campaigns::FromInput(Body(req), *registry, true, &version);
    auto lease = pool.Get();
    http::Json(res, 200, campaigns::ToJson(campaigns::Store(*lease, *registry).Update(req.matches[1], c, version, clock->Now())));
  });
  route("DELETE", kCampaign, Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    campaigns::Store(*lease, *registry).Delete(req.matches[1]);
    res.status = 204;
  });
  route("POST", kCampaign + "/(launch|pause|resume|cancel)", Scope::kWrite,
        [&](const httplib::Request& req, httplib::Response& res) {
          auto lease = pool.Get();
          std::lock_guard g(redis_mu);
          auto c = campaigns::Store(*lease, *registry).Act(req.matches[1], req.matches[2], clock->Now(), redis, publish);
          log->info("campaign {} {}: now {}", c.id, std::string(req.matches[2]), c.state);
          http::Json(res, 200, campaigns::ToJson(c));
        });
  route("GET", kCampaign + "/stats", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    auto s = stats::CampaignStats(tx, req.matches[1]);
    if (s.is_null()) throw campaigns::NotFound("no campaign " + std::string(req.matches[1]));
    http::Json(res, 200, s);
  });

  // ---- statistics ----
  route("GET", "/v1/stats", Scope::kRead, [&](const httplib::Request&, httplib::Response& res) {
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    http::Json(res, 200, stats::OverallStats(tx));
  });
  route("GET", "/v1/stats/channels", Scope::kRead, [&](const httplib::Request&, httplib::Response& res) {
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    http::Json(res, 200, stats::ChannelStats(tx));
  });
  route("GET", "/v1/stats/timeline", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    auto time_param = [&](const char* key, TimePoint fallback) {
      if (!req.has_param(key)) return fallback;
      auto t = ParseRfc3339(req.get_param_value(key));
      if (!t) throw InvalidInput(std::string(key) + " must be an RFC 3339 date-time", std::string("/") + key);
      return *t;
    };
    auto now = clock->Now();
    auto to = time_param("to", now);
    auto from = time_param("from", to - std::chrono::hours(24));
    if (from >= to) throw InvalidInput("from must be before to", "/from");
    int step = QueryInt(req, "step", 60, 60, 86'400 * 31);
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    http::Json(res, 200, stats::Timeline(tx, req.get_param_value("campaign_id"), from, to, std::chrono::seconds(step)));
  });
  route("GET", "/v1/stats/failures", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    int limit = QueryInt(req, "limit", 10, 1, 100);
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    http::Json(res, 200, stats::TopFailures(tx, req.get_param_value("campaign_id"), limit));
  });

  // ---- preferences ----
  const std::string kPrefs = R"(/v1/users/([^/]+)/preferences)";
  route("GET", kPrefs, Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    CheckUserId(req.matches[1]);
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    http::Json(res, 200, LoadPreferences(tx, req.matches[1]));
  });
  route("PUT", kPrefs, Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    std::string user = req.matches[1];
    CheckUserId(user);
    auto p = ValidatePreferences(Body(req), *registry);
    auto lease = pool.Get();
    pqxx::work tx(*lease);
    tx.exec_params(
        "INSERT INTO preferences (user_id, channels, quiet_hours, locale, updated_at) VALUES ($1, "
        "CASE WHEN $2::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text($2::jsonb)) END, "
        "$3::jsonb, $4, now()) ON CONFLICT (user_id) DO UPDATE SET channels = EXCLUDED.channels, "
        "quiet_hours = EXCLUDED.quiet_hours, locale = EXCLUDED.locale, updated_at = now()",
        user, p["channels"].is_null() ? std::optional<std::string>() : p["channels"].dump(),
        p["quiet_hours"].is_null() ? std::optional<std::string>() : p["quiet_hours"].dump(),
        p["locale"].is_null() ? std::optional<std::string>() : p["locale"].get<std::string>());
    tx.exec_params(
        "DELETE FROM opt_outs WHERE user_id = $1 AND category <> ALL(ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))",
        user, p["opt_outs"].dump());
    tx.exec_params(
        "INSERT INTO opt_outs (user_id, category, source) SELECT $1, c, 'api' FROM jsonb_array_elements_text($2::jsonb) c "
        "ON CONFLICT DO NOTHING",
        user, p["opt_outs"].dump());
    auto out = LoadPreferences(tx, user);
    tx.commit();
    http::Json(res, 200, out);
  });

  // ---- unsubscribe (the signed token is the credential) ----
  auto verify = [&](const httplib::Request& req, httplib::Response& res) -> std::optional<UnsubscribeClaim> {
    std::string why;
    auto claim = VerifyUnsubscribeToken(config.unsubscribe_secret, req.get_param_value("token"),
                                        std::chrono::system_clock::now(), &why);
    if (!claim) {
      rejected.Inc();
      if (req.get_header_value("Accept").find("application/json") != std::string::npos) {
        http::JsonError(res, 400, "this unsubscribe link is not valid (" + why + ")", "/token");
      } else {
        Page(res, 400, "<h1>This link is not valid</h1><p>The unsubscribe link is " + HtmlEscape(why) +
                           ". Use the link from a recent email.</p>");
      }
    }
    return claim;
  };
  route("GET", "/v1/unsubscribe", Scope::kNone, [&](const httplib::Request& req, httplib::Response& res) {
    auto claim = verify(req, res);
    if (!claim) return;
    Page(res, 200,
         "<h1>Unsubscribe</h1><p>Stop sending <b>" + HtmlEscape(claim->category) + "</b> messages to this account?</p>"
         "<form method=\"post\" action=\"/v1/unsubscribe?token=" + HtmlEscape(req.get_param_value("token")) +
         "\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>");
  });
  route("POST", "/v1/unsubscribe", Scope::kNone, [&](const httplib::Request& req, httplib::Response& res) {
    auto claim = verify(req, res);
    if (!claim) return;
    {
      auto lease = pool.Get();
      pqxx::work tx(*lease);
      tx.exec_params("INSERT INTO opt_outs (user_id, category, source) VALUES ($1, $2, 'unsubscribe') ON CONFLICT DO NOTHING",
                     claim->user_id, claim->category);
      tx.commit();
    }
    unsubscribed.Inc();
    log->info("user {} unsubscribed from {}", claim->user_id, claim->category);
    if (req.get_header_value("Accept").find("application/json") != std::string::npos) {
      return http::Json(res, 200, {{"user_id", claim->user_id}, {"category", claim->category}, {"unsubscribed", true}});
    }
    Page(res, 200, "<h1>You are unsubscribed</h1><p>You will not receive <b>" + HtmlEscape(claim->category) +
                       "</b> messages any more.</p>");
  });

  route("GET", "/v1/whoami", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    http::Json(res, 200, {{"scope", request_scope(req) == Scope::kWrite ? "write" : "read"}});
  });

  // ---- dead letters: browse notify.dlq.v1 and re-drive a record to where it came from ----
  std::timed_mutex reader_mu;  // one reader (a Kafka client) for the whole server
  std::unique_ptr<kafka::TopicReader> reader;
  auto with_reader = [&](const std::function<void(kafka::TopicReader&)>& f) {
    // One read at a time; a request that waits too long is told to come back rather than tie
    // up the HTTP workers.
    std::unique_lock g(reader_mu, std::defer_lock);
    if (!g.try_lock_for(std::chrono::seconds(5))) throw TransientError("dead letters are being read by another request");
    if (!reader) reader = std::make_unique<kafka::TopicReader>(config.brokers, config.kafka);
    f(*reader);
  };
  auto dead_letter_json = [](const kafka::StoredRecord& r) {
    Json out = {{"partition", r.partition}, {"offset", r.offset}, {"timestamp", nullptr}};
    if (r.timestamp_ms >= 0) out["timestamp"] = FormatRfc3339(TimePoint(std::chrono::milliseconds(r.timestamp_ms)));
    auto doc = Json::parse(r.value, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      out["error_class"] = "unreadable";
      out["reason"] = "the dead letter is not JSON";
      out["original"] = r.value;
      return out;
    }
    for (const char* k : {"stage", "error_class", "reason", "origin", "key"}) out[k] = doc.value(k, Json(nullptr));
    out["original"] = doc.contains("original") && doc["original"].is_string() ? doc["original"] : Json(doc.value("original", Json(nullptr)).dump());
    return out;
  };
  route("GET", "/v1/dead-letters", Scope::kRead, [&](const httplib::Request& req, httplib::Response& res) {
    int limit = QueryInt(req, "limit", 50, 1, 500);
    Json records = Json::array();
    with_reader([&](kafka::TopicReader& r) {
      for (const auto& rec : r.Tail(topics::Catalog().Dlq(), static_cast<std::size_t>(limit), std::chrono::seconds(10))) {
        records.push_back(dead_letter_json(rec));
      }
    });
    http::Json(res, 200, {{"records", records}});
  });
  route("POST", "/v1/dead-letters/redrive", Scope::kWrite, [&](const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req);
    RejectUnknown(body, {"partition", "offset"});
    Json errors = Json::array();
    for (const char* k : {"partition", "offset"}) {
      long long max = std::string(k) == "partition" ? std::numeric_limits<std::int32_t>::max()
                                                    : std::numeric_limits<std::int64_t>::max();
      if (!body.contains(k) || !body[k].is_number_integer() || body[k].get<long long>() < 0 ||
          body[k].get<long long>() > max) {
        errors.push_back({{"field", std::string("/") + k}, {"error", std::string(k) + " must be an integer from 0 to " + std::to_string(max)}});
      }
    }
    if (!errors.empty()) throw campaigns::FieldErrors(errors);
    auto partition = body["partition"].get<std::int32_t>();
    auto offset = body["offset"].get<std::int64_t>();
    std::optional<kafka::StoredRecord> rec;
    with_reader([&](kafka::TopicReader& r) { rec = r.At(topics::Catalog().Dlq(), partition, offset, std::chrono::seconds(10)); });
    if (!rec) throw campaigns::NotFound("no dead letter at partition " + std::to_string(partition) + ", offset " + std::to_string(offset));
    model::DeadLetter dl;
    try {
      dl = model::DeadLetterFromJson(Json::parse(rec->value));
    } catch (const std::exception& e) {
      throw campaigns::Conflict(std::string("the dead letter cannot be read: ") + e.what(), "unreadable");
    }
    // Only records that came from a topic a stage consumes go back; never into the dead
    // letters, statuses or retry tiers themselves.
    const auto* origin = topics::Catalog().Find(dl.origin.topic);
    if (!origin || origin->family == "dlq" || origin->family == "status" || origin->family == "retry") {
      throw campaigns::Conflict("records from '" + dl.origin.topic + "' are not re-driven", "not_redrivable");
    }
    publish(dl.origin.topic, dl.key.value_or(""), dl.original,
            {{"herald-redriven-from", topics::Catalog().Dlq() + ":" + std::to_string(partition) + ":" + std::to_string(offset)}});
    log->info("re-drove dead letter {}:{} to {}", partition, offset, dl.origin.topic);
    http::Json(res, 200, {{"topic", dl.origin.topic}, {"redriven", true}});
  });

  // ---- documentation ----
  auto asset = [](const std::string& name) -> std::string_view {
    for (const auto& f : embedded::Web()) {
      if (f.path == name) return f.content;
    }
    return {};
  };
  raw.Get("/openapi.json", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(asset("openapi.json")), "application/json");
  });
  raw.Get("/docs", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(asset("docs.html")), "text/html; charset=utf-8");
  });
  // The manager console (producers/admin/web/console), compiled in.
  raw.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/console/"); });
  raw.Get("/console", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/console/"); });
  raw.Get(R"(/console/([A-Za-z0-9_.-]*))", [&](const httplib::Request& req, httplib::Response& res) {
    std::string file = req.matches[1];
    if (file.empty()) file = "index.html";
    auto content = asset("console/" + file);
    if (content.empty()) return http::JsonError(res, 404, "no such file");
    static const std::map<std::string, std::string> kTypes = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".png", "image/png"},                 {".json", "application/json"}};
    auto dot = file.rfind('.');
    auto type = dot == std::string::npos ? kTypes.end() : kTypes.find(file.substr(dot));
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
    // Scripts only from Herald itself; inline styles for email HTML in the preview frame.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
                   "script-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
    res.set_content(std::string(content), type == kTypes.end() ? "application/octet-stream" : type->second);
  });
  http::AddOpsRoutes(st.Http(), st.Metrics(), nullptr, [&]() -> std::string {
    try {
      auto lease = pool.Get();
      pqxx::work tx(*lease);
      tx.exec("SELECT 1 FROM campaigns LIMIT 1");
      return {};
    } catch (const std::exception& e) {
      return std::string("PostgreSQL: ") + e.what();
    }
  });
  log->info("admin API on http://{}:{} (docs at /docs)", config.http_host, config.http_port);
  return st.ServeUntilSignal();
}

}  // namespace herald::producers
