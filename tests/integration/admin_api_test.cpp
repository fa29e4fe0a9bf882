// The admin API over HTTP against a real development stack: authentication and scopes, API
// keys from the CLI, request validation (every field error named by its JSON pointer), the body
// size limit, odd and SQL-looking strings stored verbatim, the campaign state machine,
// templates, preferences, statistics, unsubscribe links, and the OpenAPI document: responses are
// checked against the schemas it documents, and every documented route is shown to be served.
//
// One stack is shared by every test case (started on first use). Test cases use their own
// campaigns, template keys and users, so they do not depend on each other's order.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <set>
#include <thread>
#include <tuple>

#include "herald/common/time.hpp"
#include "herald/common/unsubscribe.hpp"
#include "herald/http/client.hpp"
#include "herald/pg/migrate.hpp"
#include "support/stack.hpp"

using json = nlohmann::json;
using herald::test::TestStack;
using namespace std::chrono_literals;

namespace {

TestStack& S() {
  static TestStack s(2000);
  return s;
}

const std::string kNoToken;  // as the token argument of Admin(): no Authorization header

// "<status> <raw body>" for failure messages.
std::string Show(const TestStack::ApiResponse& r) {
  return std::to_string(r.status) + " " + r.raw.substr(0, 2000);
}

// ---- the contract: openapi.json as the admin API serves it ----

std::size_t Utf8Length(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

// A small validator for the subset of JSON Schema (OpenAPI 3.0 flavour) the document uses:
// $ref, allOf / anyOf / oneOf, type, nullable, enum, required, properties,
// additionalProperties, items, min/max length and items, uniqueItems, minimum / maximum,
// pattern and format date-time.
class Contract {
 public:
  explicit Contract(json doc) : doc_(std::move(doc)) {}
  const json& Doc() const { return doc_; }

  // The schema of a documented JSON response; null when none is documented.
  json ResponseSchema(const std::string& method, const std::string& path, long status) const {
    const auto& responses = doc_.at("paths").at(path).at(method).at("responses");
    auto it = responses.find(std::to_string(status));
    if (it == responses.end()) return json("undocumented status");
    const json& r = Resolve(*it);
    if (!r.contains("content") || !r["content"].contains("application/json")) return nullptr;
    return r["content"]["application/json"].value("schema", json(nullptr));
  }

  // Every way `body` breaks the documented response `status` of `method path`.
  std::vector<std::string> Violations(const std::string& method, const std::string& path, long status,
                                      const json& body) const {
    std::vector<std::string> errs;
    auto schema = ResponseSchema(method, path, status);
    if (schema.is_string()) {
      errs.push_back(method + " " + path + ": status " + std::to_string(status) + " is not documented");
    } else if (!schema.is_null()) {
      Walk(schema, body, "", errs);
    }
    return errs;
  }

  std::vector<std::string> Violations(const std::string& schema_name, const json& value) const {
    std::vector<std::string> errs;
    Walk(doc_.at("components").at("schemas").at(schema_name), value, "", errs);
    return errs;
  }

 private:
  const json& Resolve(const json& s) const {
    const json* cur = &s;
    while (cur->is_object() && cur->contains("$ref")) {
      std::string ref = (*cur)["$ref"];
      cur = &doc_.at(json::json_pointer(ref.substr(1)));
    }
    return *cur;
  }

  void Walk(const json& schema, const json& v, const std::string& at, std::vector<std::string>& errs) const {
    const json& s = Resolve(schema);
    if (!s.is_object()) return;
    auto fail = [&](const std::string& m) { errs.push_back((at.empty() ? std::string("/") : at) + ": " + m); };
    if (v.is_null()) {
      if (s.value("nullable", false)) return;
      for (const char* k : {"type", "properties", "allOf", "anyOf", "oneOf", "enum"}) {
        if (s.contains(k)) return fail("null, but the schema is not nullable");
      }
      return;
    }
    if (s.contains("allOf")) {
      for (const auto& sub : s["allOf"]) Walk(sub, v, at, errs);
    }
    for (const char* kind : {"anyOf", "oneOf"}) {
      if (!s.contains(kind)) continue;
      int matching = 0;
      std::string why;
      for (const auto& sub : s[kind]) {
        std::vector<std::string> e;
        Walk(sub, v, at, e);
        if (e.empty()) ++matching;
        else why += (why.empty() ? "" : " | ") + e.front();
      }
      if (matching == 0) fail(std::string("matches none of the ") + kind + " alternatives (" + why + ")");
      if (std::string(kind) == "oneOf" && matching > 1) fail("matches more than one oneOf alternative");
    }
    if (s.contains("type")) {
      std::string t = s["type"];
      bool ok = t == "object"    ? v.is_object()
                : t == "array"   ? v.is_array()
                : t == "string"  ? v.is_string()
                : t == "integer" ? v.is_number_integer()
                : t == "number"  ? v.is_number()
                : t == "boolean" ? v.is_boolean()
                                 : true;
      if (!ok) return fail("expected " + t + ", got " + v.dump());
    }
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) {
      fail(v.dump() + " is not one of " + s["enum"].dump());
    }
    if (v.is_string()) {
      const auto& str = v.get_ref<const std::string&>();
      auto n = Utf8Length(str);
      if (s.contains("minLength") && n < s["minLength"].get<std::size_t>()) fail("shorter than minLength: " + v.dump());
      if (s.contains("maxLength") && n > s["maxLength"].get<std::size_t>()) fail("longer than maxLength");
      if (s.contains("pattern")) {
        try {
          if (!std::regex_search(str, std::regex(s["pattern"].get<std::string>()))) {
            fail(v.dump() + " does not match " + s["pattern"].get<std::string>());
          }
        } catch (const std::regex_error&) {
          // a pattern std::regex cannot compile: not checked
        }
      }
      if (s.value("format", "") == "date-time" && !herald::ParseRfc3339(str)) fail(v.dump() + " is not a date-time");
    }
    if (v.is_number()) {
      if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>()) fail("below minimum");
      if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>()) fail("above maximum");
    }
    if (v.is_array()) {
      if (s.contains("minItems") && v.size() < s["minItems"].get<std::size_t>()) fail("fewer than minItems");
      if (s.contains("maxItems") && v.size() > s["maxItems"].get<std::size_t>()) fail("more than maxItems");
      if (s.value("uniqueItems", false)) {
        std::set<std::string> seen;
        for (const auto& item : v) {
          if (!seen.insert(item.dump()).second) fail("duplicate item " + item.dump());
        }
      }
      if (s.contains("items")) {
        for (std::size_t i = 0; i < v.size(); ++i) Walk(s["items"], v[i], at + "/" + std::to_string(i), errs);
      }
    }
    if (v.is_object()) {
      for (const auto& r : s.value("required", json::array())) {
        if (!v.contains(r.get<std::string>())) fail("required property '" + r.get<std::string>() + "' is missing");
      }
      const json props = s.value("properties", json::object());
      for (const auto& [k, item] : v.items()) {
        if (props.contains(k)) {
          Walk(props[k], item, at + "/" + k, errs);
        } else if (s.contains("additionalProperties")) {
          const auto& extra = s["additionalProperties"];
          if (extra.is_boolean() && !extra.get<bool>()) fail("property '" + k + "' is not documented");
          else if (extra.is_object()) Walk(extra, item, at + "/" + k, errs);
        }
      }
    }
  }

  json doc_;
};

const Contract& Api() {
  static Contract c = [] {
    auto r = S().Admin("GET", "/openapi.json", nullptr, kNoToken);
    if (r.status != 200 || !r.body.is_object()) throw std::runtime_error("GET /openapi.json: " + Show(r));
    return Contract(r.body);
  }();
  return c;
}

// CHECKs `r` against the documented response of `method path` (path as in openapi.json).
#define CHECK_CONTRACT(method, path, r)                                        \
  do {                                                                         \
    auto violations_ = Api().Violations(method, path, (r).status, (r).body);   \
    INFO(method << " " << path << " -> " << Show(r));                         \
    for (const auto& v_ : violations_) UNSCOPED_INFO("contract: " << v_);      \
    CHECK(violations_.empty());                                                \
  } while (false)

// ---- field errors ----

// The error message for JSON pointer `field`: from `errors`, else the top-level field.
std::optional<std::string> ErrorAt(const json& body, const std::string& field) {
  if (!body.is_object()) return std::nullopt;
  if (body.contains("errors")) {
    for (const auto& e : body["errors"]) {
      if (e.value("field", "") == field) return e.value("error", "");
    }
  }
  if (body.value("field", "") == field) return body.value("error", "");
  return std::nullopt;
}

// Whether some error's field starts with `prefix`.
bool ErrorUnder(const json& body, const std::string& prefix) {
  if (!body.is_object()) return false;
  if (body.value("field", "").rfind(prefix, 0) == 0) return true;
  for (const auto& e : body.value("errors", json::array())) {
    if (e.value("field", "").rfind(prefix, 0) == 0) return true;
  }
  return false;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- campaigns ----

// A valid campaign of the newsletter type (admin source, needs content).
json Promo(const std::string& name) {
  return {{"name", name},
          {"event_type", "promo.new_releases"},
          {"segment", {{"tags", {"drama-fans"}}}},
          {"channels", {"email", "push"}},
          {"content", {"movie-1", "movie-2"}},
          {"data", {{"headline", "Fresh dramas"}}}};
}

json CreateCampaign(const json& body) {
  auto r = S().Admin("POST", "/v1/campaigns", body);
  INFO(Show(r));
  REQUIRE(r.status == 201);
  REQUIRE(r.body.is_object());
  return r.body;
}

std::string Rfc3339(herald::TimePoint t) { return herald::FormatRfc3339(t); }

herald::TimePoint At(const json& v) {
  REQUIRE(v.is_string());
  auto t = herald::ParseRfc3339(v.get<std::string>());
  REQUIRE(t.has_value());
  return *t;
}

// ---- misc ----

std::string UnsubscribeSecret() {
  const auto& env = S().Dev().Env();
  auto it = env.find("HERALD_UNSUBSCRIBE_SECRET");
  return it != env.end() ? it->second : std::string("herald-dev-unsubscribe-secret");
}

std::string Unsubscribe(const std::string& user, const std::string& category, std::chrono::seconds valid_for) {
  herald::UnsubscribeClaim c{user, category, std::chrono::system_clock::now() + valid_for};
  return herald::MakeUnsubscribeToken(UnsubscribeSecret(), c);
}

// `herald apikey create`; returns the token (stdout), or "" with *rc set on failure.
std::string CreateApiKey(const std::string& scope, int* rc) {
  std::string out;
  *rc = herald::test::Run("HERALD_PG_URL='" + S().Env("HERALD_PG_URL") + "' " HERALD_BINARY
                          " apikey create --name t --scope " + scope + " 2>/dev/null",
                          &out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  return out;
}

std::unique_ptr<pqxx::connection> Pg() { return herald::pg::Connect(S().Env("HERALD_PG_URL")); }

}  // namespace

// =====================================================================================
// 1. Authentication and scopes
// =====================================================================================

TEST_CASE("requests without a valid bearer token get 401, a JSON error and a WWW-Authenticate Bearer header",
          "[admin][auth]") {
  auto before = S().Admin("GET", "/v1/campaigns", nullptr, S().AdminToken(false));
  REQUIRE(before.status == 200);

  for (const auto& token : {std::string(""), std::string("nope-not-a-token"), S().AdminToken(true) + "x"}) {
    INFO("token '" << token << "'");
    auto r = S().Admin("GET", "/v1/campaigns", nullptr, token);
    CHECK(r.status == 401);
    CHECK(r.headers["www-authenticate"] == "Bearer");
    CHECK(Contains(r.headers["content-type"], "application/json"));
    REQUIRE(r.body.is_object());
    CHECK(r.body["error"] == "missing or invalid bearer token");
    CHECK_CONTRACT("get", "/v1/campaigns", r);

    // A write without a token changes nothing.
    auto w = S().Admin("POST", "/v1/campaigns", Promo("unauthenticated"), token);
    CHECK(w.status == 401);
    CHECK(w.headers["www-authenticate"] == "Bearer");
    CHECK(w.body.value("error", "") == "missing or invalid bearer token");
  }
  auto after = S().Admin("GET", "/v1/campaigns", nullptr, S().AdminToken(false));
  CHECK(after.body["total"] == before.body["total"]);
}

TEST_CASE("the read token is refused (403) on write routes and changes nothing", "[admin][auth]") {
  const auto read = S().AdminToken(false);
  auto draft = CreateCampaign(Promo("scope check"));
  const std::string id = draft["id"];
  auto tmpl_before = S().Admin("GET", "/v1/templates/comment.liked/push/en");
  REQUIRE(tmpl_before.status == 200);

  struct Call {
    std::string method, path;
    json body;
  };
  std::vector<Call> calls = {
      {"POST", "/v1/campaigns", Promo("read scope")},
      {"PUT", "/v1/templates/comment.liked/push/en", {{"subject", "x {{liked_by}}"}, {"text", "read scope"}}},
      {"DELETE", "/v1/templates/comment.liked/push/en", nullptr},
      {"POST", "/v1/campaigns/" + id + "/launch", nullptr},
      {"POST", "/v1/campaigns/" + id + "/cancel", nullptr},
      {"PUT", "/v1/campaigns/" + id, Promo("renamed by a reader")},
      {"DELETE", "/v1/campaigns/" + id, nullptr},
      {"PUT", "/v1/users/u-scope/preferences", {{"locale", "en"}}},
  };
  for (const auto& c : calls) {
    auto r = S().Admin(c.method, c.path, c.body, read);
    INFO(c.method << " " << c.path << " -> " << Show(r));
    CHECK(r.status == 403);
    REQUIRE(r.body.is_object());
    CHECK(Contains(r.body.value("error", ""), "read scope"));
  }
  auto now = S().Admin("GET", "/v1/campaigns/" + id, nullptr, read);
  REQUIRE(now.status == 200);
  CHECK(now.body["state"] == "draft");
  CHECK(now.body["name"] == "scope check");
  CHECK(now.body["version"] == draft["version"]);
  auto tmpl_after = S().Admin("GET", "/v1/templates/comment.liked/push/en", nullptr, read);
  REQUIRE(tmpl_after.status == 200);
  CHECK(tmpl_after.body["version"] == tmpl_before.body["version"]);
  auto prefs = S().Admin("GET", "/v1/users/u-scope/preferences", nullptr, read);
  CHECK(prefs.body["locale"].is_null());
}

TEST_CASE("the read token is accepted on every GET route and on template previews", "[admin][auth]") {
  const auto read = S().AdminToken(false);
  auto draft = CreateCampaign(Promo("read routes"));
  const std::string id = draft["id"];
  const std::vector<std::string> paths = {
      "/v1/campaigns", "/v1/campaigns/" + id, "/v1/campaigns/" + id + "/stats", "/v1/templates",
      "/v1/templates/comment.liked/push/en", "/v1/templates/comment.liked/push/en/versions", "/v1/event-types",
      "/v1/stats", "/v1/stats/channels", "/v1/stats/timeline", "/v1/stats/failures", "/v1/users/u-1/preferences"};
  for (const auto& path : paths) {
    auto r = S().Admin("GET", path, nullptr, read);
    INFO("GET " << path << " -> " << Show(r));
    CHECK(r.status == 200);
    CHECK(r.body.is_object());
  }
  auto p = S().Admin("POST", "/v1/templates/preview", {{"event_type", "comment.liked"}}, read);
  INFO(Show(p));
  CHECK(p.status == 200);
}

TEST_CASE("API keys from `herald apikey create` authenticate with their scope", "[admin][auth][apikey]") {
  int rc = -1;
  auto read_key = CreateApiKey("read", &rc);
  REQUIRE(rc == 0);
  REQUIRE(read_key.size() >= 32);
  CHECK(read_key.find_first_of(" \t\n") == std::string::npos);

  auto get = S().Admin("GET", "/v1/campaigns", nullptr, read_key);
  INFO(Show(get));
  CHECK(get.status == 200);
  CHECK(S().Admin("GET", "/v1/event-types", nullptr, read_key).status == 200);
  auto post = S().Admin("POST", "/v1/campaigns", Promo("by a read key"), read_key);
  CHECK(post.status == 403);
  CHECK(Contains(post.body.value("error", ""), "read scope"));

  auto write_key = CreateApiKey("write", &rc);
  REQUIRE(rc == 0);
  REQUIRE(!write_key.empty());
  CHECK(write_key != read_key);
  auto created = S().Admin("POST", "/v1/campaigns", Promo("by a write key"), write_key);
  INFO(Show(created));
  CHECK(created.status == 201);

  // Only the digest is stored.
  {
    auto conn = Pg();
    pqxx::work tx(*conn);
    auto n = tx.exec_params1("SELECT count(*) FROM api_keys WHERE token_sha256 = $1 OR name = $1", read_key)[0].as<long>();
    CHECK(n == 0);
  }
  // A key that was never issued, however similar.
  CHECK(S().Admin("GET", "/v1/campaigns", nullptr, read_key.substr(0, read_key.size() - 1)).status == 401);

  CreateApiKey("admin", &rc);
  CHECK(rc != 0);  // only read and write exist
}

// =====================================================================================
// 2. Request validation
// =====================================================================================

TEST_CASE("bodies that are not JSON objects are refused with 400", "[admin][validation]") {
  SECTION("malformed JSON") {
    for (const std::string& raw : {std::string("{\"name\": "), std::string("{name: 'x'}"), std::string("{\"a\":1}}"),
                                   std::string("{\"name\": \"\xff\xfe\"}")}) {
      auto r = S().AdminRaw("POST", "/v1/campaigns", raw);
      INFO(raw << " -> " << Show(r));
      CHECK(r.status == 400);
      REQUIRE(r.body.is_object());
      CHECK(r.body.value("error", "").rfind("body is not valid JSON", 0) == 0);
      CHECK_CONTRACT("post", "/v1/campaigns", r);
    }
    auto t = S().AdminRaw("PUT", "/v1/templates/comment.liked/push/en", "{\"text\": ");
    CHECK(t.status == 400);
    CHECK(t.body.value("error", "").rfind("body is not valid JSON", 0) == 0);
    auto p = S().AdminRaw("PUT", "/v1/users/u-bad-json/preferences", "nul");
    CHECK(p.status == 400);
    CHECK(p.body.value("error", "").rfind("body is not valid JSON", 0) == 0);
  }
  SECTION("an empty body") {
    auto r = S().AdminRaw("POST", "/v1/campaigns", "");
    CHECK(r.status == 400);
    CHECK(Contains(r.body.value("error", ""), "JSON body"));
  }
  SECTION("an array, a number, a string or null where an object belongs") {
    for (const char* raw : {"[]", "[{\"name\": \"x\"}]", "42", "\"campaign\"", "null", "true"}) {
      for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
               {"POST", "/v1/campaigns"},
               {"PUT", "/v1/templates/comment.liked/push/en"},
               {"PUT", "/v1/users/u-bad-shape/preferences"},
               {"POST", "/v1/templates/preview"}}) {
        auto r = S().AdminRaw(method, path, raw);
        INFO(method << " " << path << " " << raw << " -> " << Show(r));
        CHECK(r.status == 400);
        REQUIRE(r.body.is_object());
        CHECK(Contains(r.body.value("error", ""), "object"));
      }
    }
  }
}

TEST_CASE("campaign bodies: every wrong field is reported with its JSON pointer", "[admin][validation][campaigns]") {
  auto post = [](const json& body) {
    auto r = S().Admin("POST", "/v1/campaigns", body);
    UNSCOPED_INFO(body.dump() << " -> " << Show(r));
    CHECK(r.status == 400);
    CHECK_CONTRACT("post", "/v1/campaigns", r);
    return r.body;
  };

  SECTION("wrong types, all at once") {
    auto b = post({{"name", 5},
                   {"event_type", "promo.new_releases"},
                   {"segment", "x"},
                   {"channels", "email"},
                   {"content", {"movie-1"}},
                   {"start_at", "tomorrow"},
                   {"data", json::array()}});
    REQUIRE(b["errors"].is_array());
    CHECK(b["errors"].size() >= 5);
    CHECK(Contains(ErrorAt(b, "/name").value_or("<none>"), "name must be a string"));
    CHECK(Contains(ErrorAt(b, "/segment").value_or("<none>"), "segment must be an object"));
    CHECK(Contains(ErrorAt(b, "/channels").value_or("<none>"), "channels must be an array"));
    CHECK(Contains(ErrorAt(b, "/start_at").value_or("<none>"), "start_at"));
    CHECK(Contains(ErrorAt(b, "/data").value_or("<none>"), "data must be an object"));
    // The top-level field/error are the first of the list.
    CHECK(b["field"] == b["errors"][0]["field"]);
    CHECK(b["error"] == b["errors"][0]["error"]);
  }
  SECTION("unknown fields are named") {
    auto body = Promo("unknown fields");
    body["colour"] = "red";
    body["Name"] = "case matters";
    auto b = post(body);
    CHECK(ErrorAt(b, "/colour").value_or("<none>") == "unknown field 'colour'");
    CHECK(ErrorAt(b, "/Name").value_or("<none>") == "unknown field 'Name'");
    body = Promo("version on create");
    body["version"] = 1;
    CHECK(ErrorAt(post(body), "/version").has_value());
  }
  SECTION("missing required fields") {
    auto b = post(json::object());
    CHECK(Contains(ErrorAt(b, "/name").value_or("<none>"), "name is required"));
    CHECK(Contains(ErrorAt(b, "/event_type").value_or("<none>"), "event_type is required"));
    CHECK(Contains(ErrorAt(b, "/segment").value_or("<none>"), "segment is required"));
    auto empty_name = Promo("");
    CHECK(ErrorAt(post(empty_name), "/name").has_value());
    auto null_segment = Promo("null segment");
    null_segment["segment"] = nullptr;
    CHECK(ErrorAt(post(null_segment), "/segment").has_value());
  }
  SECTION("an unknown event type") {
    auto body = Promo("unknown type");
    body["event_type"] = "promo.nonexistent";
    CHECK(Contains(ErrorAt(post(body), "/event_type").value_or("<none>"), "unknown event type 'promo.nonexistent'"));
  }
  SECTION("a channel the type does not use, and a repeated channel") {
    auto body = Promo("sms newsletter");
    body["channels"] = {"email", "sms"};
    auto msg = ErrorAt(post(body), "/channels/1").value_or("<none>");
    CHECK(Contains(msg, "'sms'"));
    CHECK(Contains(msg, "promo.new_releases"));
    body["channels"] = {"email", "email"};
    CHECK(Contains(ErrorAt(post(body), "/channels/1").value_or("<none>"), "twice"));
    body["channels"] = {"fax"};
    CHECK(ErrorAt(post(body), "/channels/0").has_value());
  }
  SECTION("a bad cron expression") {
    auto body = Promo("bad cron");
    body["cron"] = "61 * * * *";
    CHECK(Contains(ErrorAt(post(body), "/cron").value_or("<none>"), "minute 61"));
    body["cron"] = "* * * *";
    CHECK(ErrorAt(post(body), "/cron").has_value());
    body["cron"] = 5;
    CHECK(ErrorAt(post(body), "/cron").has_value());
  }
  SECTION("an unknown time zone") {
    auto body = Promo("bad zone");
    body["timezone"] = "Mars/Olympus_Mons";
    CHECK(Contains(ErrorAt(post(body), "/timezone").value_or("<none>"), "Mars/Olympus_Mons"));
  }
  SECTION("end_at not after start_at") {
    auto body = Promo("backwards");
    body["start_at"] = "2026-12-01T10:00:00Z";
    body["end_at"] = "2026-11-30T10:00:00Z";
    CHECK(Contains(ErrorAt(post(body), "/end_at").value_or("<none>"), "end_at must be after start_at"));
    body["end_at"] = body["start_at"];
    CHECK(ErrorAt(post(body), "/end_at").has_value());
    body["end_at"] = "2026-12-01";
    CHECK(ErrorAt(post(body), "/end_at").has_value());
  }
  SECTION("a segment with an unknown key is refused by the envelope schema") {
    auto body = Promo("odd segment");
    body["segment"] = {{"tags", {"drama-fans"}}, {"colour", "red"}};
    auto b = post(body);
    CHECK(ErrorUnder(b, "/segment"));
    CHECK(Contains(b.dump(), "colour"));
    body["segment"] = {{"locales", {"de"}}};
    CHECK(ErrorUnder(post(body), "/segment/locales"));
    body["segment"] = {{"users", {"u-1"}}, {"tags", {"x"}}};
    CHECK(ErrorUnder(post(body), "/segment"));
  }
  SECTION("the type's own schema: a newsletter needs content") {
    auto body = Promo("no content");
    body.erase("content");
    auto b = post(body);
    CHECK(Contains(b.value("error", ""), "content"));
    // The schema reports the missing property at /payload; the error must point at /content.
    CHECK(ErrorUnder(b, "/content"));
  }
  SECTION("priority and deliver_window") {
    auto body = Promo("bad priority");
    body["priority"] = "urgent";
    CHECK(ErrorAt(post(body), "/priority").has_value());
    body = Promo("bad window");
    body["deliver_window"] = {{"from", "25:00"}, {"to", "08:00"}};
    CHECK(ErrorUnder(post(body), "/deliver_window"));
  }
  SECTION("nothing invalid was stored") {
    auto list = S().Admin("GET", "/v1/campaigns?limit=500");
    REQUIRE(list.status == 200);
    for (const auto& c : list.body["campaigns"]) {
      CHECK(c["name"] != "odd segment");
      CHECK(c["name"] != "backwards");
      CHECK(c["name"] != "bad cron");
    }
  }
}

TEST_CASE("name length is counted in characters, as the contract says (maxLength 200)", "[admin][validation][campaigns]") {
  auto ascii = Promo(std::string(200, 'a'));
  CHECK(S().Admin("POST", "/v1/campaigns", ascii).status == 201);
  auto too_long = Promo(std::string(201, 'a'));
  auto r = S().Admin("POST", "/v1/campaigns", too_long);
  CHECK(r.status == 400);
  CHECK(ErrorAt(r.body, "/name").has_value());

  // 150 Cyrillic letters: 150 characters, 300 bytes of UTF-8. Valid by the contract.
  std::string cyrillic;
  for (int i = 0; i < 150; ++i) cyrillic += "Ж";
  auto c = S().Admin("POST", "/v1/campaigns", Promo(cyrillic));
  INFO(Show(c));
  // 150 Cyrillic characters are 300 bytes: the limit counts characters.
  CHECK(c.status == 201);
}

// =====================================================================================
// 3. Body size limit
// =====================================================================================

TEST_CASE("bodies over 1 MiB get 413 with a JSON error", "[admin][limits]") {
  auto body = Promo("oversized");
  body["data"]["padding"] = std::string(1024 * 1024 + 16, 'x');
  auto raw = body.dump();
  REQUIRE(raw.size() > 1024 * 1024);
  auto r = S().AdminRaw("POST", "/v1/campaigns", raw);
  INFO(Show(r));
  CHECK(r.status == 413);
  REQUIRE(r.body.is_object());
  CHECK(r.body.value("error", "") == "request body too large");
  CHECK_CONTRACT("post", "/v1/campaigns", r);

  auto t = S().AdminRaw("PUT", "/v1/templates/comment.liked/push/en",
                        json{{"text", std::string(2 * 1024 * 1024, 'y')}}.dump());
  CHECK(t.status == 413);
  CHECK(t.body.is_object());

  // The server is still healthy, and a large body under the limit is read normally.
  auto ok = Promo("large but allowed");
  ok["data"]["padding"] = std::string(512 * 1024, 'x');
  auto created = S().Admin("POST", "/v1/campaigns", ok);
  INFO(created.status);
  CHECK(created.status == 201);
  if (created.status == 201) {
    auto back = S().Admin("GET", "/v1/campaigns/" + created.body["id"].get<std::string>());
    CHECK(back.body["data"]["padding"].get<std::string>().size() == 512 * 1024);
  }
}

// =====================================================================================
// 4. Odd strings are data, stored and returned verbatim
// =====================================================================================

TEST_CASE("SQL-looking and unusual strings are stored and returned verbatim", "[admin][strings]") {
  const std::string name = "Robert'); DROP TABLE campaigns;--";
  const json data = {{"quote", "it's \"quoted\" `back`"},
                     {"backslash", "C:\\temp\\new\\ \\\\server\\share \\n"},
                     {"percent", "100% off %s %d %% _ LIKE '%a%'"},
                     {"cyrillic", "Привет, мир! Ёжик"},
                     {"emoji", "🎬🍿 👩‍👩‍👧 ✓"},
                     {"sql", "'; DELETE FROM campaigns WHERE '1'='1'; --"},
                     {"json_in_string", "{\"a\": [1, 2]}"},
                     {"control", "tab\there\nnewline\r\n"}};
  auto body = Promo(name);
  body["data"] = data;
  body["segment"] = {{"tags", {"'; DROP TABLE users; --", "тег", "100%"}}};
  auto created = CreateCampaign(body);
  const std::string id = created["id"];
  CHECK(created["name"] == name);
  CHECK(created["data"] == data);

  auto got = S().Admin("GET", "/v1/campaigns/" + id);
  REQUIRE(got.status == 200);
  CHECK(got.body["name"].get<std::string>() == name);
  for (const auto& [k, v] : data.items()) {
    INFO(k);
    CHECK(got.body["data"][k].get<std::string>() == v.get<std::string>());
  }
  CHECK(got.body["segment"] == body["segment"]);
  CHECK_CONTRACT("get", "/v1/campaigns/{id}", got);

  // An update with the same strings keeps them.
  auto update = body;
  update["name"] = name + " (2)";
  auto put = S().Admin("PUT", "/v1/campaigns/" + id, update);
  INFO(Show(put));
  CHECK(put.status == 200);
  CHECK(put.body["name"] == name + " (2)");
  CHECK(put.body["data"] == data);

  // A query parameter that looks like SQL is refused, not interpreted.
  auto inj = S().Admin("GET", "/v1/campaigns?state=" + herald::http::UrlEncode("draft' OR '1'='1"));
  CHECK(inj.status == 400);
  CHECK(ErrorAt(inj.body, "/state").has_value());

  // Template text with SQL in it.
  const std::string text = "Hi {{first_name}} '; DELETE FROM templates; -- \\ % _ Привет 🎬 \"q\"";
  auto t = S().Admin("PUT", "/v1/templates/comment.liked/telegram/es", {{"text", text}});
  INFO(Show(t));
  REQUIRE(t.status == 201);
  CHECK(t.body["text"] == text);
  auto tg = S().Admin("GET", "/v1/templates/comment.liked/telegram/es");
  REQUIRE(tg.status == 200);
  CHECK(tg.body["text"].get<std::string>() == text);

  // A user id that looks like SQL is just an id.
  const std::string user = "x' OR '1'='1";
  auto prefs = S().Admin("GET", "/v1/users/" + herald::http::UrlEncode(user) + "/preferences");
  REQUIRE(prefs.status == 200);
  CHECK(prefs.body["user_id"] == user);
  CHECK(prefs.body["channels"].is_null());
  auto saved = S().Admin("PUT", "/v1/users/" + herald::http::UrlEncode(user) + "/preferences", {{"locale", "en"}});
  CHECK(saved.status == 200);
  CHECK(saved.body["user_id"] == user);

  // Everything is still there.
  auto list = S().Admin("GET", "/v1/campaigns?limit=500");
  REQUIRE(list.status == 200);
  CHECK(list.body["total"].get<long>() >= 1);
  bool found = false;
  for (const auto& c : list.body["campaigns"]) found = found || c["id"] == id;
  CHECK(found);
  auto templates = S().Admin("GET", "/v1/templates");
  REQUIRE(templates.status == 200);
  CHECK(templates.body["templates"].size() >= 32);
  auto conn = Pg();
  pqxx::work tx(*conn);
  for (const char* table : {"campaigns", "templates", "preferences", "opt_outs", "api_keys"}) {
    INFO(table);
    CHECK(!tx.exec_params1("SELECT to_regclass($1)::text", std::string(table))[0].is_null());
  }
  CHECK(tx.exec1("SELECT count(*) FROM templates")[0].as<long>() >= 32);
}

TEST_CASE("a NUL character in a string is refused with 400 or kept, never a 500", "[admin][strings]") {
  auto with_data = Promo("nul in data");
  with_data["data"]["note"] = std::string("a\0b", 3);
  auto r = S().Admin("POST", "/v1/campaigns", with_data);
  INFO(Show(r));
  // jsonb cannot hold \u0000: refused with a 400, never a 500.
  CHECK(r.status != 500);
  CHECK((r.status == 400 || r.status == 201));
  if (r.status == 201) {
    auto back = S().Admin("GET", "/v1/campaigns/" + r.body["id"].get<std::string>());
    CHECK(back.body["data"]["note"].get<std::string>() == std::string("a\0b", 3));
  }

  auto with_name = Promo(std::string("nul\0name", 8));
  auto n = S().Admin("POST", "/v1/campaigns", with_name);
  INFO(Show(n));
  CHECK(n.status != 500);
  if (n.status == 201) {
    // Stored: then exactly as sent, not cut at the NUL.
    // Text parameters go to libpq as C strings: a NUL must be refused, never cut silently.
    CHECK(n.body["name"].get<std::string>() == std::string("nul\0name", 8));
  } else {
    CHECK(n.status == 400);
  }

  auto t = S().Admin("PUT", "/v1/templates/comment.liked/telegram/it", {{"text", std::string("a\0b", 3)}});
  INFO(Show(t));
  CHECK(t.status != 500);
  // Likewise the template text.
  if (t.status == 201) CHECK(t.body["text"].get<std::string>() == std::string("a\0b", 3));
}

// =====================================================================================
// 5. Campaign lifecycle
// =====================================================================================

TEST_CASE("campaign lifecycle over HTTP: create, read, list, edit, launch, pause, resume, cancel, delete",
          "[admin][campaigns][lifecycle]") {
  auto& s = S();
  const auto now = s.Now();

  // create
  auto r = s.Admin("POST", "/v1/campaigns", Promo("lifecycle"));
  INFO(Show(r));
  REQUIRE(r.status == 201);
  CHECK_CONTRACT("post", "/v1/campaigns", r);
  const std::string id = r.body["id"];
  REQUIRE(!id.empty());
  CHECK(r.headers["location"] == "/v1/campaigns/" + id);
  CHECK(r.body["state"] == "draft");
  CHECK(r.body["version"] == 1);
  CHECK(r.body["runs"] == 0);
  CHECK(r.body["priority"] == "low");  // the type's default
  CHECK(r.body["timezone"] == "UTC");
  CHECK(r.body["next_run_at"].is_null());
  CHECK(r.body["channels"] == json::array({"email", "push"}));

  // read
  auto got = s.Admin("GET", "/v1/campaigns/" + id);
  REQUIRE(got.status == 200);
  CHECK(got.body == r.body);
  CHECK_CONTRACT("get", "/v1/campaigns/{id}", got);

  // list
  auto drafts = s.Admin("GET", "/v1/campaigns?state=draft&limit=500");
  REQUIRE(drafts.status == 200);
  bool listed = false;
  json mine = drafts.body;  // the list's shape, with only this test's campaign in it
  mine["campaigns"] = json::array();
  for (const auto& c : drafts.body["campaigns"]) {
    CHECK(c["state"] == "draft");
    if (c["id"] == id) {
      listed = true;
      mine["campaigns"].push_back(c);
    }
  }
  CHECK(listed);
  CHECK(Api().Violations("CampaignList", mine) == std::vector<std::string>{});
  CHECK(drafts.body["total"].get<long>() >= static_cast<long>(drafts.body["campaigns"].size()));
  auto one = s.Admin("GET", "/v1/campaigns?limit=1");
  REQUIRE(one.status == 200);
  CHECK(one.body["campaigns"].size() == 1);
  for (std::string q : std::vector<std::string>{"limit=0", "limit=501", "limit=abc", "limit=5x", "offset=-1", "state=bogus"}) {
    auto bad = s.Admin("GET", "/v1/campaigns?" + q);
    INFO(q << " -> " << Show(bad));
    CHECK(bad.status == 400);
    CHECK(ErrorAt(bad.body, "/" + q.substr(0, q.find('='))).has_value());
  }

  // edit with the right version, then a stale one
  auto edit = Promo("lifecycle (edited)");
  edit["version"] = 1;
  auto put = s.Admin("PUT", "/v1/campaigns/" + id, edit);
  INFO(Show(put));
  REQUIRE(put.status == 200);
  CHECK_CONTRACT("put", "/v1/campaigns/{id}", put);
  CHECK(put.body["version"] == 2);
  CHECK(put.body["name"] == "lifecycle (edited)");
  CHECK(put.body["state"] == "draft");
  auto stale = s.Admin("PUT", "/v1/campaigns/" + id, edit);  // still version 1
  CHECK(stale.status == 409);
  CHECK(stale.body["state"] == "draft");
  CHECK(Contains(stale.body.value("error", ""), "version 2"));
  CHECK_CONTRACT("put", "/v1/campaigns/{id}", stale);
  CHECK(s.Admin("GET", "/v1/campaigns/" + id).body["version"] == 2);
  auto bad_edit = Promo("lifecycle");
  bad_edit["version"] = "2";
  CHECK(ErrorAt(s.Admin("PUT", "/v1/campaigns/" + id, bad_edit).body, "/version").has_value());

  // launch with start_at an hour ahead: scheduled for then
  const auto start = now + 1h;
  auto timed = Promo("lifecycle (edited)");
  timed["start_at"] = Rfc3339(start);
  timed["version"] = 2;
  REQUIRE(s.Admin("PUT", "/v1/campaigns/" + id, timed).status == 200);
  auto launched = s.Admin("POST", "/v1/campaigns/" + id + "/launch");
  INFO(Show(launched));
  REQUIRE(launched.status == 200);
  CHECK_CONTRACT("post", "/v1/campaigns/{id}/launch", launched);
  CHECK(launched.body["state"] == "scheduled");
  CHECK(At(launched.body["next_run_at"]) == start);
  CHECK(At(launched.body["start_at"]) == start);
  CHECK(launched.body["runs"] == 0);
  CHECK(launched.body["version"] == 4);

  // edits of a scheduled campaign move its next run
  auto later = timed;
  later["start_at"] = Rfc3339(start + 1h);
  later["version"] = 4;
  auto moved = s.Admin("PUT", "/v1/campaigns/" + id, later);
  INFO(Show(moved));
  REQUIRE(moved.status == 200);
  CHECK(moved.body["state"] == "scheduled");
  CHECK(At(moved.body["next_run_at"]) == start + 1h);

  auto scheduled = s.Admin("GET", "/v1/campaigns?state=scheduled&limit=500");
  bool in_scheduled = false;
  for (const auto& c : scheduled.body["campaigns"]) in_scheduled = in_scheduled || c["id"] == id;
  CHECK(in_scheduled);

  // a scheduled campaign cannot be deleted
  auto del_scheduled = s.Admin("DELETE", "/v1/campaigns/" + id);
  CHECK(del_scheduled.status == 409);
  CHECK(del_scheduled.body["state"] == "scheduled");
  CHECK_CONTRACT("delete", "/v1/campaigns/{id}", del_scheduled);

  // pause, resume, cancel
  auto paused = s.Admin("POST", "/v1/campaigns/" + id + "/pause");
  INFO(Show(paused));
  REQUIRE(paused.status == 200);
  CHECK(paused.body["state"] == "paused");
  auto pause_again = s.Admin("POST", "/v1/campaigns/" + id + "/pause");
  CHECK(pause_again.status == 409);
  CHECK(pause_again.body["state"] == "paused");
  auto resumed = s.Admin("POST", "/v1/campaigns/" + id + "/resume");
  INFO(Show(resumed));
  REQUIRE(resumed.status == 200);
  CHECK(resumed.body["state"] == "scheduled");
  CHECK(At(resumed.body["next_run_at"]) == start + 1h);
  auto relaunch = s.Admin("POST", "/v1/campaigns/" + id + "/launch");
  CHECK(relaunch.status == 409);
  CHECK(relaunch.body["state"] == "scheduled");
  auto cancelled = s.Admin("POST", "/v1/campaigns/" + id + "/cancel");
  INFO(Show(cancelled));
  REQUIRE(cancelled.status == 200);
  CHECK(cancelled.body["state"] == "cancelled");
  CHECK(cancelled.body["next_run_at"].is_null());

  // nothing moves a cancelled campaign
  for (std::string action : std::vector<std::string>{"resume", "launch", "pause", "cancel"}) {
    auto refused = s.Admin("POST", "/v1/campaigns/" + id + "/" + action);
    INFO(action << " -> " << Show(refused));
    CHECK(refused.status == 409);
    CHECK(refused.body["state"] == "cancelled");
    CHECK(Contains(refused.body.value("error", ""), "cancelled"));
    CHECK_CONTRACT("post", "/v1/campaigns/{id}/" + action, refused);
  }
  auto edit_cancelled = later;
  edit_cancelled.erase("version");
  auto refused_edit = s.Admin("PUT", "/v1/campaigns/" + id, edit_cancelled);
  CHECK(refused_edit.status == 409);
  CHECK(refused_edit.body["state"] == "cancelled");

  // delete
  auto del = s.Admin("DELETE", "/v1/campaigns/" + id);
  INFO(Show(del));
  CHECK(del.status == 204);
  CHECK(del.raw.empty());
  auto gone = s.Admin("GET", "/v1/campaigns/" + id);
  CHECK(gone.status == 404);
  CHECK(Contains(gone.body.value("error", ""), id));
  CHECK_CONTRACT("get", "/v1/campaigns/{id}", gone);
  CHECK(s.Admin("DELETE", "/v1/campaigns/" + id).status == 404);
}

TEST_CASE("campaigns are listed newest first; offset pages through them", "[admin][campaigns]") {
  auto a = CreateCampaign(Promo("order A"));
  auto b = CreateCampaign(Promo("order B"));
  auto list = S().Admin("GET", "/v1/campaigns?limit=500");
  REQUIRE(list.status == 200);
  std::vector<std::string> ids;
  for (const auto& c : list.body["campaigns"]) ids.push_back(c["id"]);
  auto pos = [&](const json& c) { return std::find(ids.begin(), ids.end(), c["id"].get<std::string>()) - ids.begin(); };
  REQUIRE(pos(a) < static_cast<long>(ids.size()));
  REQUIRE(pos(b) < static_cast<long>(ids.size()));
  CHECK(pos(b) < pos(a));
  auto second = S().Admin("GET", "/v1/campaigns?limit=1&offset=1");
  REQUIRE(second.status == 200);
  REQUIRE(second.body["campaigns"].size() == 1);
  CHECK(second.body["campaigns"][0]["id"] == ids.at(1));
  CHECK(second.body["total"] == list.body["total"]);
  auto past_end = S().Admin("GET", "/v1/campaigns?offset=1000000");
  REQUIRE(past_end.status == 200);
  CHECK(past_end.body["campaigns"] == json::array());
  CHECK(past_end.body["total"] == list.body["total"]);
}

TEST_CASE("concurrent edits and launches of one campaign: exactly one wins, the rest get 409",
          "[admin][campaigns][concurrency]") {
  constexpr int kThreads = 8;
  auto c = CreateCampaign(Promo("race"));
  const std::string id = c["id"];

  std::vector<long> statuses(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto body = Promo("race " + std::to_string(i));
      body["version"] = 1;
      statuses[i] = S().Admin("PUT", "/v1/campaigns/" + id, body).status;
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  CHECK(std::count(statuses.begin(), statuses.end(), 200L) == 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 409L) == kThreads - 1);
  auto after = S().Admin("GET", "/v1/campaigns/" + id);
  CHECK(after.body["version"] == 2);

  auto timed = Promo("race");
  timed["start_at"] = Rfc3339(S().Now() + 2h);
  REQUIRE(S().Admin("PUT", "/v1/campaigns/" + id, timed).status == 200);
  std::fill(statuses.begin(), statuses.end(), 0);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { statuses[i] = S().Admin("POST", "/v1/campaigns/" + id + "/launch").status; });
  }
  for (auto& t : threads) t.join();
  CHECK(std::count(statuses.begin(), statuses.end(), 200L) == 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 409L) == kThreads - 1);
  auto launched = S().Admin("GET", "/v1/campaigns/" + id);
  CHECK(launched.body["state"] == "scheduled");
  CHECK(launched.body["version"] == 4);
  CHECK(S().Admin("POST", "/v1/campaigns/" + id + "/cancel").status == 200);
}

TEST_CASE("concurrent template saves get distinct, consecutive versions", "[admin][templates][concurrency]") {
  constexpr int kThreads = 6;
  const std::string key = "/v1/templates/comment.liked/push/de";
  auto first = S().Admin("PUT", key, {{"text", "{{liked_by}} gefällt das"}});
  REQUIRE(first.status == 201);
  const int v = first.body["version"];
  std::vector<long> statuses(kThreads, 0);
  std::vector<int> versions(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto r = S().Admin("PUT", key, {{"text", "{{liked_by}} #" + std::to_string(i)}});
      statuses[i] = r.status;
      if (r.status == 201) versions[i] = r.body["version"];
    });
  }
  for (auto& t : threads) t.join();
  CHECK(std::count(statuses.begin(), statuses.end(), 201L) == kThreads);
  std::set<int> got(versions.begin(), versions.end());
  std::set<int> want;
  for (int i = 1; i <= kThreads; ++i) want.insert(v + i);
  CHECK(got == want);
  auto history = S().Admin("GET", key + "/versions");
  REQUIRE(history.status == 200);
  CHECK(history.body["versions"].size() == static_cast<std::size_t>(kThreads + 1));
}

TEST_CASE("unknown campaigns and unknown actions are 404", "[admin][campaigns]") {
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/campaigns/c-does-not-exist"},
           {"PUT", "/v1/campaigns/c-does-not-exist"},
           {"DELETE", "/v1/campaigns/c-does-not-exist"},
           {"POST", "/v1/campaigns/c-does-not-exist/launch"},
           {"POST", "/v1/campaigns/c-does-not-exist/pause"},
           {"POST", "/v1/campaigns/c-does-not-exist/resume"},
           {"POST", "/v1/campaigns/c-does-not-exist/cancel"},
           {"GET", "/v1/campaigns/c-does-not-exist/stats"},
           {"POST", "/v1/campaigns/x/explode"},
           {"GET", "/v1/nothing-here"}}) {
    auto r = S().Admin(method, path, method == "PUT" ? Promo("ghost") : json(nullptr));
    INFO(method << " " << path << " -> " << Show(r));
    CHECK(r.status == 404);
    REQUIRE(r.body.is_object());
    CHECK(!r.body.value("error", "").empty());
  }
  // An existing campaign with an unknown action is still 404, and unchanged.
  auto c = CreateCampaign(Promo("explode"));
  auto r = S().Admin("POST", "/v1/campaigns/" + c["id"].get<std::string>() + "/explode");
  CHECK(r.status == 404);
  CHECK(S().Admin("GET", "/v1/campaigns/" + c["id"].get<std::string>()).body["state"] == "draft");
}

TEST_CASE("channels: omitted means the type's channels; an empty list is refused", "[admin][campaigns]") {
  auto body = Promo("all channels");
  body.erase("channels");
  auto c = CreateCampaign(body);
  // The Campaign schema: channels has minItems 1, "the channels used (the type's when none were
  // chosen)".
  // Without channels, the type's channels are stored and returned.
  CHECK(c["channels"] == json::array({"email", "telegram", "push"}));

  body["channels"] = json::array();
  auto r = S().Admin("POST", "/v1/campaigns", body);
  INFO(Show(r));
  // CampaignInput.channels has minItems 1.
  CHECK(r.status == 400);
  CHECK(ErrorAt(r.body, "/channels").has_value());
}

TEST_CASE("a draft can be deleted; a campaign for users needs the type's data", "[admin][campaigns]") {
  json body = {{"name", "likes digest"},
               {"event_type", "comment.liked"},
               {"segment", {{"users", {"u-1", "u-2"}}}},
               {"data", {{"liked_by", "Anna"}, {"comment_id", "cm-1"}}}};
  auto c = CreateCampaign(body);
  CHECK(c["segment"] == body["segment"]);
  CHECK(c["priority"] == "normal");
  body["data"].erase("liked_by");
  auto r = S().Admin("POST", "/v1/campaigns", body);
  CHECK(r.status == 400);
  CHECK(ErrorUnder(r.body, "/data"));
  body["data"] = {{"liked_by", 5}};
  CHECK(ErrorUnder(S().Admin("POST", "/v1/campaigns", body).body, "/data/liked_by"));

  const std::string id = c["id"];
  CHECK(S().Admin("DELETE", "/v1/campaigns/" + id).status == 204);
  CHECK(S().Admin("GET", "/v1/campaigns/" + id).status == 404);
}

TEST_CASE("launch: a cron campaign is scheduled for its next occurrence in its zone; a past end_at is refused",
          "[admin][campaigns][lifecycle]") {
  const auto now = S().Now();  // 2026-11-21T10:00:05Z when the stack starts

  auto body = Promo("daily at nine, Moscow time");
  body["cron"] = "0 9 * * *";
  body["timezone"] = "Europe/Moscow";
  auto c = CreateCampaign(body);
  CHECK(c["cron"] == "0 9 * * *");
  CHECK(c["timezone"] == "Europe/Moscow");
  const std::string id = c["id"];
  auto launched = S().Admin("POST", "/v1/campaigns/" + id + "/launch");
  INFO(Show(launched));
  REQUIRE(launched.status == 200);
  CHECK(launched.body["state"] == "scheduled");
  CHECK(launched.body["runs"] == 0);
  // 09:00 in Moscow is 06:00 UTC: the first one after `now`.
  auto next = At(launched.body["next_run_at"]);
  CHECK(next > now);
  CHECK(next <= now + 24h);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(next.time_since_epoch()).count();
  CHECK(secs % 86400 == 6 * 3600);
  CHECK(S().Admin("POST", "/v1/campaigns/" + id + "/cancel").body["state"] == "cancelled");

  // A cron with no occurrence before end_at has nothing to run.
  auto short_window = Promo("nine o'clock, but over at eleven");
  short_window["cron"] = "0 9 * * *";
  short_window["start_at"] = Rfc3339(now);
  short_window["end_at"] = Rfc3339(now + 1h);
  auto sw = CreateCampaign(short_window);
  auto none = S().Admin("POST", "/v1/campaigns/" + sw["id"].get<std::string>() + "/launch");
  INFO(Show(none));
  CHECK(none.status == 409);
  CHECK(none.body["state"] == "draft");
  CHECK(Contains(none.body.value("error", ""), "no occurrence"));

  auto ended = Promo("already over");
  ended["start_at"] = Rfc3339(now - 2h);
  ended["end_at"] = Rfc3339(now - 1h);
  auto e = CreateCampaign(ended);
  auto refused = S().Admin("POST", "/v1/campaigns/" + e["id"].get<std::string>() + "/launch");
  INFO(Show(refused));
  CHECK(refused.status == 409);
  CHECK(refused.body["state"] == "draft");
  CHECK(Contains(refused.body.value("error", ""), "has passed"));
  CHECK(S().Admin("GET", "/v1/campaigns/" + e["id"].get<std::string>()).body["state"] == "draft");
}

// =====================================================================================
// 6. Templates
// =====================================================================================

TEST_CASE("templates: versioned saves, reads, history, validation", "[admin][templates]") {
  const std::string key = "/v1/templates/comment.liked/push/en";
  auto current = S().Admin("GET", key);
  REQUIRE(current.status == 200);
  CHECK_CONTRACT("get", "/v1/templates/{event_type}/{channel}/{locale}", current);
  const int n = current.body["version"];
  REQUIRE(n >= 1);

  const json body = {{"subject", "{{liked_by}} liked your comment"},
                     {"text", "API test v{{#comment_excerpt}}: {{comment_excerpt}}{{/comment_excerpt}}"}};
  auto saved = S().Admin("PUT", key, body);
  INFO(Show(saved));
  REQUIRE(saved.status == 201);
  CHECK_CONTRACT("put", "/v1/templates/{event_type}/{channel}/{locale}", saved);
  CHECK(saved.body["version"] == n + 1);
  CHECK(saved.body["text"] == body["text"]);
  CHECK(saved.body["subject"] == body["subject"]);
  CHECK(saved.body["created_by"] == "admin-api");
  CHECK(saved.body["event_type"] == "comment.liked");
  CHECK(saved.body["channel"] == "push");
  CHECK(saved.body["locale"] == "en");

  auto got = S().Admin("GET", key);
  REQUIRE(got.status == 200);
  CHECK(got.body["version"] == n + 1);
  CHECK(got.body["text"] == body["text"]);
  auto old = S().Admin("GET", key + "?version=" + std::to_string(n));
  REQUIRE(old.status == 200);
  CHECK(old.body["version"] == n);
  CHECK(old.body["text"] == current.body["text"]);
  CHECK(S().Admin("GET", key + "?version=" + std::to_string(n + 100)).status == 404);
  CHECK(S().Admin("GET", key + "?version=0").status == 400);

  auto versions = S().Admin("GET", key + "/versions");
  REQUIRE(versions.status == 200);
  const auto& list = versions.body["versions"];
  REQUIRE(list.size() >= 2);
  CHECK(list[0]["version"] == n + 1);
  CHECK(list[0]["text"] == body["text"]);
  CHECK(list[1]["version"] == n);
  for (std::size_t i = 1; i < list.size(); ++i) CHECK(list[i - 1]["version"].get<int>() > list[i]["version"].get<int>());
  // TemplateVersion requires `deleted` on live versions too.
  CHECK_CONTRACT("get", "/v1/templates/{event_type}/{channel}/{locale}/versions", versions);

  // an unknown variable is named, and nothing is saved
  auto coupon = S().Admin("PUT", key, {{"subject", "hi"}, {"text", "Use {{coupon}} today"}});
  INFO(Show(coupon));
  CHECK(coupon.status == 400);
  CHECK(Contains(coupon.body.value("error", ""), "coupon"));
  CHECK(Contains(ErrorAt(coupon.body, "/text").value_or("<none>"), "coupon"));
  CHECK_CONTRACT("put", "/v1/templates/{event_type}/{channel}/{locale}", coupon);
  CHECK(S().Admin("GET", key).body["version"] == n + 1);

  // a channel the type does not use
  auto sms = S().Admin("PUT", "/v1/templates/comment.liked/sms/en", {{"text", "liked"}});
  INFO(Show(sms));
  CHECK(sms.status == 400);
  CHECK(ErrorAt(sms.body, "/channel").has_value());
  CHECK(S().Admin("GET", "/v1/templates/comment.liked/sms/en").status == 404);

  // other field rules
  auto unknown_type = S().Admin("PUT", "/v1/templates/nope.nothing/push/en", {{"text", "x"}});
  CHECK(unknown_type.status == 400);
  CHECK(ErrorAt(unknown_type.body, "/event_type").has_value());
  auto no_subject = S().Admin("PUT", "/v1/templates/comment.liked/email/fr", {{"text", "x"}});
  CHECK(no_subject.status == 400);
  CHECK(ErrorAt(no_subject.body, "/subject").has_value());
  auto html_push = S().Admin("PUT", key, {{"text", "x"}, {"html", "<p>x</p>"}});
  CHECK(html_push.status == 400);
  CHECK(ErrorAt(html_push.body, "/html").has_value());
  auto bad_mustache = S().Admin("PUT", key, {{"text", "{{#liked_by}}unclosed"}});
  CHECK(bad_mustache.status == 400);
  CHECK(ErrorAt(bad_mustache.body, "/text").has_value());
  auto unknown_field = S().Admin("PUT", key, {{"text", "x"}, {"body", "y"}});
  CHECK(unknown_field.status == 400);
  CHECK(ErrorAt(unknown_field.body, "/body").value_or("") == "unknown field 'body'");
  for (std::string locale : std::vector<std::string>{"e", "eng", "en-us", "EN", "en-GB-x"}) {
    auto bad_locale = S().Admin("PUT", "/v1/templates/comment.liked/push/" + locale, {{"text", "{{liked_by}}"}});
    INFO(locale << " -> " << Show(bad_locale));
    CHECK(bad_locale.status == 400);
    CHECK(ErrorAt(bad_locale.body, "/locale").has_value());
  }
  auto wrong_type = S().Admin("PUT", key, {{"text", 5}});
  CHECK(wrong_type.status == 400);
  CHECK(ErrorAt(wrong_type.body, "/text").has_value());
  CHECK(S().Admin("GET", key).body["version"] == n + 1);
}

TEST_CASE("templates: delete leaves a tombstone; the numbering continues", "[admin][templates]") {
  const std::string key = "/v1/templates/comment.liked/push/fr";
  auto created = S().Admin("PUT", key, {{"text", "{{liked_by}} a aimé votre commentaire"}});
  INFO(Show(created));
  REQUIRE(created.status == 201);
  const int v = created.body["version"];

  auto del = S().Admin("DELETE", key);
  CHECK(del.status == 204);
  CHECK(del.raw.empty());
  auto gone = S().Admin("GET", key);
  CHECK(gone.status == 404);
  CHECK_CONTRACT("get", "/v1/templates/{event_type}/{channel}/{locale}", gone);
  auto again = S().Admin("DELETE", key);
  CHECK(again.status == 404);
  CHECK_CONTRACT("delete", "/v1/templates/{event_type}/{channel}/{locale}", again);

  auto history = S().Admin("GET", key + "/versions");
  REQUIRE(history.status == 200);
  REQUIRE(history.body["versions"].size() >= 2);
  CHECK(history.body["versions"][0]["deleted"] == true);
  CHECK(history.body["versions"][0]["version"] == v + 1);
  auto listed = S().Admin("GET", "/v1/templates?event_type=comment.liked");
  for (const auto& t : listed.body["templates"]) CHECK(!(t["channel"] == "push" && t["locale"] == "fr"));

  auto revived = S().Admin("PUT", key, {{"text", "{{liked_by}} a aimé"}});
  REQUIRE(revived.status == 201);
  CHECK(revived.body["version"] == v + 2);
  CHECK(S().Admin("GET", key).status == 200);

  CHECK(S().Admin("DELETE", "/v1/templates/comment.liked/push/xx").status == 404);
  CHECK(S().Admin("GET", "/v1/templates/comment.liked/push/xx/versions").status == 404);
}

TEST_CASE("template previews render every stored template; drafts report problems", "[admin][templates][preview]") {
  auto stored = S().Admin("GET", "/v1/templates?event_type=promo.new_releases");
  REQUIRE(stored.status == 200);
  CHECK_CONTRACT("get", "/v1/templates", stored);
  std::set<std::pair<std::string, std::string>> keys;
  for (const auto& t : stored.body["templates"]) {
    CHECK(t["event_type"] == "promo.new_releases");
    keys.insert({t["channel"].get<std::string>(), t["locale"].get<std::string>()});
  }
  CHECK(keys.size() == 6);  // email, telegram, push × en, ru

  auto r = S().Admin("POST", "/v1/templates/preview", {{"event_type", "promo.new_releases"}});
  INFO(Show(r));
  REQUIRE(r.status == 200);
  CHECK_CONTRACT("post", "/v1/templates/preview", r);
  std::set<std::pair<std::string, std::string>> previewed;
  for (const auto& p : r.body["previews"]) {
    INFO(p.dump());
    previewed.insert({p["channel"].get<std::string>(), p["locale"].get<std::string>()});
    CHECK(!p.contains("error"));
    CHECK(!p.contains("unknown_variables"));
    CHECK(!p.value("text", "").empty());
    CHECK(!Contains(p.value("text", ""), "{{"));
    if (p["channel"] == "email") {
      CHECK(!p.value("subject", "").empty());
      CHECK(!p.value("html", "").empty());
    }
  }
  CHECK(previewed == keys);
  CHECK(r.body["previews"].size() == keys.size());

  auto one = S().Admin("POST", "/v1/templates/preview",
                       {{"event_type", "promo.new_releases"}, {"channel", "push"}, {"locale", "en"}});
  REQUIRE(one.status == 200);
  CHECK(one.body["previews"].size() == 1);

  // caller data reaches the render
  auto with_data = S().Admin("POST", "/v1/templates/preview",
                             {{"event_type", "comment.liked"},
                              {"channel", "push"},
                              {"locale", "en"},
                              {"template", {{"text", "{{liked_by}} liked it"}}},
                              {"data", {{"liked_by", "Zoë"}}}});
  REQUIRE(with_data.status == 200);
  REQUIRE(with_data.body["previews"].size() == 1);
  CHECK(with_data.body["previews"][0]["text"] == "Zoë liked it");

  // a draft with an unknown variable
  auto draft = S().Admin("POST", "/v1/templates/preview",
                         {{"event_type", "comment.liked"},
                          {"channel", "push"},
                          {"locale", "en"},
                          {"template", {{"text", "Hi {{first_name}}, {{missing_var}}"}}}});
  INFO(Show(draft));
  REQUIRE(draft.status == 200);
  CHECK_CONTRACT("post", "/v1/templates/preview", draft);
  REQUIRE(draft.body["previews"].size() == 1);
  const auto& p = draft.body["previews"][0];
  CHECK(p["unknown_variables"] == json::array({"missing_var"}));
  CHECK(Contains(p.value("error", ""), "missing_var"));

  auto bad_type = S().Admin("POST", "/v1/templates/preview", {{"event_type", "nope.nothing"}});
  CHECK(bad_type.status == 400);
  CHECK(ErrorAt(bad_type.body, "/event_type").has_value());
  auto no_key = S().Admin("POST", "/v1/templates/preview", {{"event_type", "comment.liked"}, {"template", {{"text", "x"}}}});
  CHECK(no_key.status == 400);
  CHECK(ErrorAt(no_key.body, "/template").has_value());
  auto extra = S().Admin("POST", "/v1/templates/preview", {{"event_type", "comment.liked"}, {"colour", "red"}});
  CHECK(extra.status == 400);
  CHECK(ErrorAt(extra.body, "/colour").has_value());
  auto bad_data = S().Admin("POST", "/v1/templates/preview", {{"event_type", "comment.liked"}, {"data", {1, 2}}});
  CHECK(bad_data.status == 400);
  CHECK(ErrorAt(bad_data.body, "/data").has_value());
}

TEST_CASE("every stored template of every event type previews without an error", "[admin][templates][preview]") {
  auto types = S().Admin("GET", "/v1/event-types");
  REQUIRE(types.status == 200);
  int previews = 0;
  for (const auto& t : types.body["event_types"]) {
    const std::string name = t["name"];
    auto r = S().Admin("POST", "/v1/templates/preview", {{"event_type", name}});
    INFO(name << " -> " << Show(r));
    REQUIRE(r.status == 200);
    CHECK(!r.body["previews"].empty());
    for (const auto& p : r.body["previews"]) {
      INFO(p.dump());
      CHECK(!p.contains("error"));
      CHECK(!p.value("text", "").empty());
      ++previews;
    }
  }
  CHECK(previews >= 32);
}

TEST_CASE("GET /v1/event-types lists the 7 types with channels and variables", "[admin][templates]") {
  auto r = S().Admin("GET", "/v1/event-types");
  REQUIRE(r.status == 200);
  CHECK_CONTRACT("get", "/v1/event-types", r);
  std::set<std::string> names;
  for (const auto& t : r.body["event_types"]) {
    INFO(t.dump());
    names.insert(t["name"]);
    REQUIRE(t["channels"].is_array());
    CHECK(!t["channels"].empty());
    for (const auto& c : t["channels"]) {
      CHECK(std::set<std::string>{"email", "sms", "telegram", "push"}.count(c.get<std::string>()) == 1);
    }
    REQUIRE(t["variables"].is_array());
    CHECK(Contains(t["variables"].dump(), "\"first_name\""));
    CHECK(Contains(t["variables"].dump(), "\"unsubscribe_url\""));
  }
  CHECK(names == std::set<std::string>{"bookmark.reminder", "comment.liked", "episode.released", "promo.new_releases",
                                       "stats.monthly", "user.password_reset", "user.registered"});
  for (const auto& t : r.body["event_types"]) {
    if (t["name"] == "comment.liked") {
      CHECK(t["channels"] == json::array({"push", "telegram", "email"}));
      CHECK(Contains(t["variables"].dump(), "\"liked_by\""));
      CHECK(t["category"] == "social");
    }
    if (t["name"] == "promo.new_releases") {
      CHECK(Contains(t["variables"].dump(), "\"releases\""));
      CHECK(t["marketing"] == true);
    }
    if (t["name"] == "user.password_reset") CHECK(t["critical"] == true);
  }
}

// =====================================================================================
// 7. Preferences
// =====================================================================================

TEST_CASE("preferences: defaults, a valid save, and every invalid field named", "[admin][preferences]") {
  auto empty = S().Admin("GET", "/v1/users/u-pref-nothing/preferences");
  REQUIRE(empty.status == 200);
  CHECK_CONTRACT("get", "/v1/users/{user_id}/preferences", empty);
  CHECK(empty.body == json::object({{"user_id", "u-pref-nothing"},
                            {"channels", nullptr},
                            {"quiet_hours", nullptr},
                            {"locale", nullptr},
                            {"opt_outs", json::array()},
                            {"updated_at", nullptr}}));

  const std::string path = "/v1/users/u-pref-set/preferences";
  const json prefs = {{"channels", {"push", "email"}},
                      {"quiet_hours", {{"from", "22:00"}, {"to", "08:00"}}},
                      {"locale", "ru"},
                      {"opt_outs", {"marketing"}}};
  auto put = S().Admin("PUT", path, prefs);
  INFO(Show(put));
  REQUIRE(put.status == 200);
  CHECK_CONTRACT("put", "/v1/users/{user_id}/preferences", put);
  CHECK(put.body["user_id"] == "u-pref-set");
  for (const auto& [k, v] : prefs.items()) {
    INFO(k);
    CHECK(put.body[k] == v);
  }
  CHECK(put.body["updated_at"].is_string());
  auto got = S().Admin("GET", path);
  REQUIRE(got.status == 200);
  CHECK(got.body == put.body);

  // invalid values: each named, nothing stored
  auto bad = S().Admin("PUT", path,
                       {{"channels", {"fax"}},
                        {"quiet_hours", {{"from", "25:00"}, {"to", "08:00"}}},
                        {"locale", "de"},
                        {"opt_outs", {"nonsense"}}});
  INFO(Show(bad));
  CHECK(bad.status == 400);
  CHECK_CONTRACT("put", "/v1/users/{user_id}/preferences", bad);
  CHECK(ErrorAt(bad.body, "/channels/0").has_value());
  CHECK(ErrorAt(bad.body, "/quiet_hours/from").has_value());
  CHECK(!ErrorAt(bad.body, "/quiet_hours/to").has_value());
  CHECK(ErrorAt(bad.body, "/locale").has_value());
  CHECK(Contains(ErrorAt(bad.body, "/opt_outs/0").value_or("<none>"), "marketing"));
  CHECK(bad.body["errors"].size() == 4);
  auto unknown = S().Admin("PUT", path, {{"locale", "en"}, {"timezone", "Europe/Moscow"}});
  CHECK(unknown.status == 400);
  CHECK(ErrorAt(unknown.body, "/timezone").value_or("") == "unknown field 'timezone'");
  for (const auto& [text, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"channels": []})", "/channels"},
           {R"({"channels": "email"})", "/channels"},
           {R"({"channels": ["email", "email"]})", "/channels/1"},
           {R"({"quiet_hours": "22:00-08:00"})", "/quiet_hours"},
           {R"({"quiet_hours": {"from": "22:00"}})", "/quiet_hours"},
           {R"({"quiet_hours": {"off": false}})", "/quiet_hours"},
           {R"({"quiet_hours": {"from": "7:00", "to": "08:00"}})", "/quiet_hours/from"},
           {R"({"locale": 5})", "/locale"},
           {R"({"opt_outs": "marketing"})", "/opt_outs"},
           {R"({"opt_outs": ["marketing", 5]})", "/opt_outs/1"}}) {
    const json body = json::parse(text);
    auto r = S().Admin("PUT", path, body);
    INFO(body.dump() << " -> " << Show(r));
    CHECK(r.status == 400);
    CHECK(ErrorAt(r.body, field).has_value());
  }
  CHECK(S().Admin("GET", path).body == got.body);

  // quiet hours off; absent fields are stored as null (opt_outs empty)
  auto off = S().Admin("PUT", path, {{"quiet_hours", {{"off", true}}}});
  REQUIRE(off.status == 200);
  CHECK(off.body["quiet_hours"] == json::object({{"off", true}}));
  CHECK(off.body["channels"].is_null());
  CHECK(off.body["locale"].is_null());
  CHECK(off.body["opt_outs"] == json::array());
  CHECK_CONTRACT("put", "/v1/users/{user_id}/preferences", off);
}

TEST_CASE("preferences: user ids up to 128 characters are served, as the contract says", "[admin][preferences]") {
  const std::string ascii(128, 'u');
  auto a = S().Admin("GET", "/v1/users/" + ascii + "/preferences");
  CHECK(a.status == 200);
  CHECK(a.body.value("user_id", "") == ascii);
  // 100 characters, 200 bytes of UTF-8.
  std::string cyrillic;
  for (int i = 0; i < 100; ++i) cyrillic += "ю";
  auto c = S().Admin("GET", "/v1/users/" + herald::http::UrlEncode(cyrillic) + "/preferences");
  INFO(Show(c));
  // The 128-character limit on user ids counts characters: a 100-character Cyrillic id is valid.
  CHECK(c.status == 200);
  CHECK(c.body.value("user_id", "") == cyrillic);
}

// =====================================================================================
// 8. Statistics
// =====================================================================================

TEST_CASE("statistics endpoints answer with the documented shape", "[admin][stats]") {
  auto stats = S().Admin("GET", "/v1/stats");
  REQUIRE(stats.status == 200);
  for (const char* k : {"by_status", "by_channel", "by_provider", "latency_ms"}) CHECK(stats.body.contains(k));
  CHECK(stats.body["latency_ms"]["count"].is_number_integer());
  // With no deliveries latency_ms.p50/p90/p99/max are null, as the Latency schema allows.
  CHECK_CONTRACT("get", "/v1/stats", stats);

  auto channels = S().Admin("GET", "/v1/stats/channels");
  REQUIRE(channels.status == 200);
  REQUIRE(channels.body["channels"].is_array());
  CHECK_CONTRACT("get", "/v1/stats/channels", channels);

  auto timeline = S().Admin("GET", "/v1/stats/timeline");
  REQUIRE(timeline.status == 200);
  CHECK(timeline.body["step_s"] == 60);
  CHECK(timeline.body["points"].is_array());
  CHECK_CONTRACT("get", "/v1/stats/timeline", timeline);
  auto stepped = S().Admin("GET", "/v1/stats/timeline?step=300&from=2026-11-21T00:00:00Z&to=2026-11-21T12:00:00Z");
  REQUIRE(stepped.status == 200);
  CHECK(stepped.body["step_s"] == 300);
  for (const auto& [q, field] : std::vector<std::pair<std::string, std::string>>{
           {"from=yesterday", "/from"},
           {"to=2026-13-01T00:00:00Z", "/to"},
           {"step=10", "/step"},
           {"step=abc", "/step"},
           {"from=2026-11-21T12:00:00Z&to=2026-11-21T00:00:00Z", "/from"}}) {
    auto r = S().Admin("GET", "/v1/stats/timeline?" + q);
    INFO(q << " -> " << Show(r));
    CHECK(r.status == 400);
    CHECK(ErrorAt(r.body, field).has_value());
    CHECK_CONTRACT("get", "/v1/stats/timeline", r);
  }

  auto failures = S().Admin("GET", "/v1/stats/failures");
  REQUIRE(failures.status == 200);
  CHECK(failures.body["reasons"].is_array());
  CHECK_CONTRACT("get", "/v1/stats/failures", failures);
  CHECK(S().Admin("GET", "/v1/stats/failures?limit=100").status == 200);
  for (std::string q : std::vector<std::string>{"limit=0", "limit=101"}) {
    auto r = S().Admin("GET", "/v1/stats/failures?" + q);
    CHECK(r.status == 400);
    CHECK(ErrorAt(r.body, "/limit").has_value());
  }

  auto c = CreateCampaign(Promo("stats"));
  const std::string id = c["id"];
  auto cs = S().Admin("GET", "/v1/campaigns/" + id + "/stats");
  INFO(Show(cs));
  REQUIRE(cs.status == 200);
  // campaign_id and state are required by the CampaignStats schema.
  CHECK(cs.body["campaign_id"] == id);
  CHECK(cs.body["state"] == "draft");
  CHECK(cs.body["progress"]["planned"] == 0);
  CHECK(cs.body["progress"]["pending"] == 0);
  CHECK_CONTRACT("get", "/v1/campaigns/{id}/stats", cs);
  auto scoped = S().Admin("GET", "/v1/stats/timeline?campaign_id=" + id);
  CHECK(scoped.status == 200);
  CHECK(scoped.body["points"] == json::array());
  auto unknown = S().Admin("GET", "/v1/campaigns/c-no-such-campaign/stats");
  CHECK(unknown.status == 404);
  CHECK_CONTRACT("get", "/v1/campaigns/{id}/stats", unknown);
}

TEST_CASE("timeline and failures read what the ledger recorded, per campaign", "[admin][stats]") {
  const auto now = S().Now();
  auto minute = [](herald::TimePoint t) {
    return herald::TimePoint(std::chrono::floor<std::chrono::minutes>(t));
  };
  const auto recent = minute(now - 30min);
  const auto older = minute(now - 3h);
  {
    auto conn = Pg();
    pqxx::work tx(*conn);
    for (const auto& [at, channel, status, n] : std::vector<std::tuple<herald::TimePoint, std::string, std::string, int>>{
             {recent, "email", "sent", 3}, {recent, "push", "failed", 1}, {older, "email", "sent", 5}}) {
      tx.exec_params("INSERT INTO delivery_timeline (minute, campaign_id, channel, status, n) "
                     "VALUES ($1::timestamptz, 'c-timeline-probe', $2, $3, $4)",
                     Rfc3339(at), channel, status, n);
    }
    for (const auto& [channel, reason, n] : std::vector<std::tuple<std::string, std::string, int>>{
             {"email", "550 5.1.1 mailbox unavailable", 7}, {"telegram", "403 Forbidden: bot was blocked", 9},
             {"push", "410 token expired", 1}}) {
      tx.exec_params("INSERT INTO delivery_failures (campaign_id, channel, reason, n) VALUES ('c-failure-probe', $1, $2, $3)",
                     channel, reason, n);
    }
    tx.commit();
  }

  const std::string q = "/v1/stats/timeline?campaign_id=c-timeline-probe";
  auto all = S().Admin("GET", q + "&from=" + herald::http::UrlEncode(Rfc3339(now - 4h)) +
                                "&to=" + herald::http::UrlEncode(Rfc3339(now + 1min)));
  INFO(Show(all));
  REQUIRE(all.status == 200);
  CHECK_CONTRACT("get", "/v1/stats/timeline", all);
  REQUIRE(all.body["points"].size() == 3);
  CHECK(At(all.body["points"][0]["at"]) == older);
  CHECK(all.body["points"][0]["n"] == 5);
  long total = 0;
  for (const auto& p : all.body["points"]) total += p["n"].get<long>();
  CHECK(total == 9);

  auto hourly = S().Admin("GET", q + "&step=3600&from=" + herald::http::UrlEncode(Rfc3339(now - 4h)));
  REQUIRE(hourly.status == 200);
  CHECK(hourly.body["step_s"] == 3600);
  for (const auto& p : hourly.body["points"]) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(At(p["at"]).time_since_epoch()).count();
    CHECK(secs % 3600 == 0);
  }

  // The documented default window is the 24 hours before `to`: all three points.
  auto dflt = S().Admin("GET", q);
  INFO(Show(dflt));
  REQUIRE(dflt.status == 200);
  CHECK(dflt.body["points"].size() == 3);

  auto failures = S().Admin("GET", "/v1/stats/failures?campaign_id=c-failure-probe");
  INFO(Show(failures));
  REQUIRE(failures.status == 200);
  CHECK_CONTRACT("get", "/v1/stats/failures", failures);
  REQUIRE(failures.body["reasons"].size() == 3);
  CHECK(failures.body["reasons"][0] ==
        json::object({{"channel", "telegram"}, {"reason", "403 Forbidden: bot was blocked"}, {"n", 9}}));
  CHECK(failures.body["reasons"][1]["n"] == 7);
  CHECK(failures.body["reasons"][2]["n"] == 1);
  auto top = S().Admin("GET", "/v1/stats/failures?campaign_id=c-failure-probe&limit=1");
  REQUIRE(top.status == 200);
  CHECK(top.body["reasons"].size() == 1);
  CHECK(S().Admin("GET", "/v1/stats/failures?campaign_id=c-nothing-here").body["reasons"] == json::array());
}

// =====================================================================================
// 9. Unsubscribe links
// =====================================================================================

TEST_CASE("unsubscribe: the page, the one-click POST, idempotence and refused tokens", "[admin][unsubscribe]") {
  const std::string user = "u-unsub-1";
  const std::string token = Unsubscribe(user, "marketing", 24h);
  const std::string url = "/v1/unsubscribe?token=" + token;

  auto page = S().Admin("GET", url, nullptr, kNoToken);
  INFO(Show(page));
  REQUIRE(page.status == 200);
  CHECK(Contains(page.headers["content-type"], "text/html"));
  CHECK(Contains(page.raw, "<form"));
  CHECK(Contains(page.raw, "method=\"post\""));
  CHECK(Contains(page.raw, token));
  CHECK(Contains(page.raw, "marketing"));
  // Looking at the page changes nothing.
  CHECK(S().Admin("GET", "/v1/users/" + user + "/preferences").body["opt_outs"] == json::array());

  auto post = S().AdminRaw("POST", url, "List-Unsubscribe=One-Click", kNoToken, "application/x-www-form-urlencoded");
  INFO(Show(post));
  CHECK(post.status == 200);
  CHECK(Contains(post.raw, "unsubscribed"));
  auto prefs = S().Admin("GET", "/v1/users/" + user + "/preferences");
  REQUIRE(prefs.status == 200);
  CHECK(prefs.body["opt_outs"] == json::array({"marketing"}));

  auto again = S().AdminRaw("POST", url, "List-Unsubscribe=One-Click", kNoToken, "application/x-www-form-urlencoded");
  CHECK(again.status == 200);
  CHECK(S().Admin("GET", "/v1/users/" + user + "/preferences").body["opt_outs"] == json::array({"marketing"}));

  // A second category for the same user adds to the list.
  auto social = "/v1/unsubscribe?token=" + Unsubscribe(user, "social", 24h);
  CHECK(S().AdminRaw("POST", social, "List-Unsubscribe=One-Click", kNoToken, "application/x-www-form-urlencoded").status ==
        200);
  CHECK(S().Admin("GET", "/v1/users/" + user + "/preferences").body["opt_outs"] == json::array({"marketing", "social"}));

  // Refused tokens: changed, expired, signed with another secret, malformed, absent.
  const std::string other = "u-unsub-2";
  const std::string good = Unsubscribe(other, "marketing", 24h);
  auto changed = [&](std::size_t i) {
    std::string t = good;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    return t;
  };
  auto dot = good.find('.');
  REQUIRE(dot != std::string::npos);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"payload character changed", changed(1)},
      {"signature character changed", changed(dot + 1)},
      {"expired", Unsubscribe(other, "marketing", -1h)},
      {"another secret",
       herald::MakeUnsubscribeToken("not-the-secret", {other, "marketing", std::chrono::system_clock::now() + 24h})},
      {"malformed", "not-a-token"},
      {"empty", ""}};
  for (const auto& [why, t] : refused) {
    INFO(why << ": " << t);
    auto g = S().Admin("GET", "/v1/unsubscribe?token=" + t, nullptr, kNoToken);
    CHECK(g.status == 400);
    CHECK(Contains(g.headers["content-type"], "text/html"));
    CHECK(!Contains(g.raw, "<form"));
    auto p = S().AdminRaw("POST", "/v1/unsubscribe?token=" + t, "List-Unsubscribe=One-Click", kNoToken,
                          "application/x-www-form-urlencoded");
    CHECK(p.status == 400);
  }
  CHECK(Contains(S().Admin("GET", "/v1/unsubscribe?token=" + Unsubscribe(other, "marketing", -1h), nullptr, kNoToken).raw,
                 "expired"));
  auto none = S().Admin("GET", "/v1/unsubscribe", nullptr, kNoToken);
  CHECK(none.status == 400);
  auto none_post = S().AdminRaw("POST", "/v1/unsubscribe", "List-Unsubscribe=One-Click", kNoToken,
                                "application/x-www-form-urlencoded");
  CHECK(none_post.status == 400);
  CHECK(S().Admin("GET", "/v1/users/" + other + "/preferences").body["opt_outs"] == json::array());
}

TEST_CASE("unsubscribe: clients asking for JSON get JSON", "[admin][unsubscribe]") {
  const std::string user = "u-unsub-json";
  const std::string url = S().Env("HERALD_ADMIN_URL") + "/v1/unsubscribe?token=" + Unsubscribe(user, "content", 24h);
  std::string out;
  REQUIRE(herald::test::Run("curl -s -w '\\n%{http_code}' -X POST -H 'Accept: application/json' "
                            "-H 'Content-Type: application/x-www-form-urlencoded' --data 'List-Unsubscribe=One-Click' '" +
                                url + "'",
                            &out) == 0);
  auto nl = out.rfind('\n');
  REQUIRE(nl != std::string::npos);
  INFO(out);
  CHECK(out.substr(nl + 1) == "200");
  auto body = json::parse(out.substr(0, nl), nullptr, false);
  CHECK(body == json::object({{"user_id", user}, {"category", "content"}, {"unsubscribed", true}}));
  CHECK(Api().Violations("post", "/v1/unsubscribe", 200, body).empty());
  CHECK(S().Admin("GET", "/v1/users/" + user + "/preferences").body["opt_outs"] == json::array({"content"}));

  out.clear();
  REQUIRE(herald::test::Run("curl -s -w '\\n%{http_code}' -H 'Accept: application/json' '" + S().Env("HERALD_ADMIN_URL") +
                                "/v1/unsubscribe?token=" + Unsubscribe(user, "content", -1h) + "'",
                            &out) == 0);
  nl = out.rfind('\n');
  REQUIRE(nl != std::string::npos);
  CHECK(out.substr(nl + 1) == "400");
  auto err = json::parse(out.substr(0, nl), nullptr, false);
  CHECK(err.value("field", "") == "/token");
  CHECK(Contains(err.value("error", ""), "expired"));
}

TEST_CASE("unsubscribe: a token with any single character changed is refused", "[admin][unsubscribe]") {
  const std::string good = Unsubscribe("u-unsub-3", "marketing", 24h);
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  REQUIRE(S().Admin("GET", "/v1/unsubscribe?token=" + good, nullptr, kNoToken).status == 200);
  std::vector<std::string> accepted;
  for (std::size_t i = 0; i < good.size(); ++i) {
    if (good[i] == '.') continue;
    auto at = kAlphabet.find(good[i]);
    REQUIRE(at != std::string::npos);
    std::string t = good;
    t[i] = kAlphabet[at ^ 1];  // the neighbouring value: only the lowest bit differs
    if (S().Admin("GET", "/v1/unsubscribe?token=" + t, nullptr, kNoToken).status != 400) {
      accepted.push_back(std::to_string(i) + ": " + t);
    }
  }
  for (const auto& a : accepted) UNSCOPED_INFO("accepted altered token at " << a);
  // Changing the unused low bits of the last base64url character (of either part) gives a
  // token that was never issued: refused.
  CHECK(accepted.empty());
}

// =====================================================================================
// 10. Documentation and route coverage
// =====================================================================================

TEST_CASE("the OpenAPI document and the docs page are served without a token", "[admin][docs]") {
  auto spec = S().Admin("GET", "/openapi.json", nullptr, kNoToken);
  REQUIRE(spec.status == 200);
  CHECK(Contains(spec.headers["content-type"], "application/json"));
  REQUIRE(spec.body.is_object());
  CHECK(spec.body["openapi"].get<std::string>().rfind("3.", 0) == 0);
  CHECK(spec.body["paths"].size() >= 20);
  CHECK(spec.body["components"]["schemas"].contains("Campaign"));

  auto docs = S().Admin("GET", "/docs", nullptr, kNoToken);
  REQUIRE(docs.status == 200);
  CHECK(Contains(docs.headers["content-type"], "text/html"));
  std::string lower = docs.raw;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  CHECK(Contains(lower, "<html"));
  CHECK(Contains(docs.raw, "openapi.json"));
}

TEST_CASE("every documented /v1 route is served (without a token 401, unsubscribe 400, never 404)",
          "[admin][docs][routes]") {
  const json& doc = Api().Doc();
  const std::map<std::string, std::string> params = {{"{event_type}", "comment.liked"}, {"{channel}", "push"},
                                                     {"{locale}", "en"},               {"{id}", "c-route-check"},
                                                     {"{user_id}", "u-route-check"}};
  int checked = 0;
  for (const auto& [path, item] : doc["paths"].items()) {
    if (path.rfind("/v1/", 0) != 0) continue;
    for (const auto& [method, op] : item.items()) {
      if (method != "get" && method != "post" && method != "put" && method != "delete") continue;
      std::string url = path;
      for (const auto& [name, value] : params) {
        for (auto at = url.find(name); at != std::string::npos; at = url.find(name)) url.replace(at, name.size(), value);
      }
      INFO(method << " " << path << " as " << url);
      CHECK(url.find('{') == std::string::npos);
      // The ingest operation is served by the ingest process (see `servers` and its tag).
      bool ingest = Contains(op.value("tags", json::array()).dump(), "\"ingest\"");
      std::string base = ingest ? S().Env("HERALD_INGEST_URL") : S().Env("HERALD_ADMIN_URL");
      std::string verb = method;
      std::transform(verb.begin(), verb.end(), verb.begin(), [](unsigned char c) { return std::toupper(c); });
      herald::http::Client::Options o;
      o.timeout = 30s;
      herald::http::Client client(o);
      auto r = client.Request(verb, base + url, verb == "GET" || verb == "DELETE" ? "" : "{}");
      INFO("-> " << r.status << " " << r.body.substr(0, 300));
      CHECK(r.status != 404);
      CHECK(r.status != 405);
      CHECK(r.status == (path == "/v1/unsubscribe" ? 400 : 401));
      if (r.status == 401) CHECK(r.headers["www-authenticate"] == "Bearer");
      ++checked;
    }
  }
  CHECK(checked >= 25);
}

TEST_CASE("dead letters: listed newest first, re-driven to their origin, with refusals", "[admin][dlq]") {
  // An event of a type nobody knows, straight onto Kafka: plan dead-letters it.
  herald::test::TempDir tmp;
  std::string file = tmp.Path() + "/bad.jsonl";
  std::ofstream(file) << R"({"event_id": "dlq-probe-1", "event_type": "no.such.type", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-1"]}})"
                      << "\n";
  std::string out;
  REQUIRE(herald::test::Run("HERALD_BROKERS=" + S().Env("HERALD_BROKERS") + " " HERALD_BINARY
                            " publish --no-validate --topic events.auth.v1 --file " + file + " 2>&1",
                            &out) == 0);
  auto probes = [&] {
    std::vector<json> found;
    auto r = S().Admin("GET", "/v1/dead-letters?limit=100", nullptr, S().AdminToken(false));
    REQUIRE(r.status == 200);
    for (const auto& rec : r.body["records"]) {
      if (rec["original"].is_string() && rec["original"].get<std::string>().find("dlq-probe-1") != std::string::npos) {
        found.push_back(rec);
      }
    }
    return found;
  };
  std::vector<json> found;
  REQUIRE(herald::test::WaitUntil([&] { return !(found = probes()).empty(); }, 30s, 100ms));
  const auto& rec = found.front();
  CHECK(rec["error_class"] == "unknown_type");
  CHECK(rec["stage"] == "plan");
  CHECK(rec["origin"]["topic"] == "events.auth.v1");
  CHECK(rec["reason"].get<std::string>().find("no.such.type") != std::string::npos);

  // Refusals first: wrong scope, bad body, no such record.
  json where = {{"partition", rec["partition"]}, {"offset", rec["offset"]}};
  CHECK(S().Admin("POST", "/v1/dead-letters/redrive", where, S().AdminToken(false)).status == 403);
  auto bad = S().Admin("POST", "/v1/dead-letters/redrive", {{"partition", "x"}, {"offset", -1}});
  CHECK(bad.status == 400);
  CHECK(bad.body["errors"].size() == 2);
  CHECK(S().Admin("POST", "/v1/dead-letters/redrive", {{"partition", 0}, {"offset", 99999999}}).status == 404);
  CHECK(S().Admin("POST", "/v1/dead-letters/redrive", {{"partition", 0}, {"offset", 0}, {"extra", 1}}).status == 400);

  // Re-driven, the event goes back to plan, which dead-letters it again: a second record.
  auto redriven = S().Admin("POST", "/v1/dead-letters/redrive", where);
  INFO(redriven.raw);
  REQUIRE(redriven.status == 200);
  CHECK(redriven.body["topic"] == "events.auth.v1");
  REQUIRE(herald::test::WaitUntil([&] { return probes().size() == 2; }, 30s, 100ms));
  auto who = S().Admin("GET", "/v1/whoami", nullptr, S().AdminToken(false));
  CHECK(who.body["scope"] == "read");
  CHECK(S().Admin("GET", "/v1/whoami").body["scope"] == "write");
}

TEST_CASE("hostile bodies: deep nesting and numbers out of range are 400s, and the server stays up", "[admin][negative]") {
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  auto r = S().AdminRaw("POST", "/v1/templates/preview", deep);
  CHECK(r.status == 400);
  CHECK(r.body["error"].get<std::string>().find("nested deeper") != std::string::npos);
  auto big = S().AdminRaw("PUT", "/v1/campaigns/c-x", R"({"version": 1e999})");
  CHECK(big.status == 400);
  auto huge_partition = S().Admin("POST", "/v1/dead-letters/redrive", {{"partition", 4294967296LL}, {"offset", 0}});
  CHECK(huge_partition.status == 400);
  CHECK(S().Admin("GET", "/v1/whoami").status == 200);  // still serving
}
