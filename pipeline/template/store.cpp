#include "herald/template/store.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <kainjow/mustache.hpp>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/pg/migrate.hpp"

namespace herald::templates {
namespace {

// pg_advisory_xact_lock(class, key): the class keeps these locks apart from every other
// advisory lock (the migration lock uses the one-bigint form, a separate key space anyway).
constexpr int kLockClass = 0x48544d50;  // "HTMP"

constexpr const char* kLockKey = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

constexpr const char* kLatest = R"sql(
SELECT version, subject, text_body, html_body, deleted, created_by
FROM templates WHERE event_type = $1 AND channel = $2 AND locale = $3
ORDER BY version DESC LIMIT 1
)sql";

// Run under the key's lock, so max(version) cannot move before the insert commits.
constexpr const char* kInsertNext = R"sql(
INSERT INTO templates (event_type, channel, locale, version, subject, text_body, html_body,
  deleted, created_by)
SELECT $1::text, $2::text, $3::text, coalesce(max(version), 0) + 1, $4::text, $5::text, $6::text,
  $7::boolean, $8::text
FROM templates WHERE event_type = $1 AND channel = $2 AND locale = $3
RETURNING version
)sql";

constexpr const char* kColumns = R"sql(event_type, channel, locale, version, subject, text_body,
  html_body, deleted, created_by,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at)sql";

// The latest version of every key.
const std::string kLatestPerKey = std::string("SELECT DISTINCT ON (event_type, channel, locale) ") +
                                  kColumns +
                                  " FROM templates ORDER BY event_type, channel, locale, version DESC";

const std::string kVersionsOfKey = std::string("SELECT ") + kColumns +
                                   " FROM templates WHERE event_type = $1 AND channel = $2 AND locale = $3"
                                   " ORDER BY version DESC";

const std::string kOneVersion = std::string("SELECT ") + kColumns +
                                " FROM templates WHERE event_type = $1 AND channel = $2 AND locale = $3"
                                " AND version = $4";

// The table is append-only, so the row count alone changes on every save and delete; the
// newest created_at also catches a manual delete-and-insert.
constexpr const char* kFingerprint = "SELECT count(*), coalesce(max(created_at)::text, '') FROM templates";

const char* const kChannels[] = {"email", "sms", "telegram", "push"};

std::string Key(const std::string& event_type, const std::string& channel, const std::string& locale) {
  return event_type + "/" + channel + "/" + locale;
}

std::string Key(const Template& t) {
  return Key(t.event_type, t.channel, t.locale);
}

std::string Join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

bool Blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

bool Lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool Upper(char c) {
  return c >= 'A' && c <= 'Z';
}

bool ValidLocale(const std::string& l) {
  if (l.size() == 2) return Lower(l[0]) && Lower(l[1]);
  return l.size() == 5 && Lower(l[0]) && Lower(l[1]) && l[2] == '-' && Upper(l[3]) && Upper(l[4]);
}

struct Part {
  const char* name;
  const std::string* text;
};

std::vector<Part> Parts(const Template& t) {
  return {{"subject", &t.subject}, {"text", &t.text}, {"html", &t.html}};
}

// What is wrong with one part's mustache, or "" when nothing. Partials and delimiter changes
// are refused: there are no partials to include (kainjow would render them as nothing), and a
// changed delimiter hides the variables from the check.
std::string SyntaxProblem(const std::string& text) {
  for (std::size_t pos = text.find("{{"); pos != std::string::npos; pos = text.find("{{", pos + 2)) {
    if (text.compare(pos, 3, "{{{") == 0) {
      pos += 1;
      continue;
    }
    auto c = text.find_first_not_of(" \t", pos + 2);
    if (c == std::string::npos) break;
    if (text[c] == '>') return "partials ({{>name}}) are not supported";
    if (text[c] == '=') return "changing the delimiters ({{=<% %>=}}) is not supported";
  }
  kainjow::mustache::mustache m{text};
  if (!m.is_valid()) return "invalid mustache: " + m.error_message();
  return {};
}

// Unknown top-level variable -> the parts it is used in.
std::map<std::string, std::vector<std::string>> Unknown(const Template& t,
                                                        const schema::EventTypeInfo& type) {
  auto allowed_list = AllowedVariables(type);
  std::set<std::string> allowed(allowed_list.begin(), allowed_list.end());
  std::map<std::string, std::vector<std::string>> unknown;
  for (const auto& part : Parts(t)) {
    if (!SyntaxProblem(*part.text).empty()) continue;
    for (const auto& name : Variables(*part.text)) {
      std::string top = name.substr(0, name.find('.'));
      if (!allowed.contains(top)) unknown[top].push_back(part.name);
    }
  }
  for (auto& [_, parts] : unknown) parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  return unknown;
}

// "unknown variable {{x}} in text (allowed: ...)", or "" when there is none.
std::string UnknownMessage(const std::map<std::string, std::vector<std::string>>& unknown,
                           const schema::EventTypeInfo& type, std::string* first_part) {
  if (unknown.empty()) return {};
  std::vector<std::string> items;
  for (const auto& [name, parts] : unknown) items.push_back("{{" + name + "}} in " + Join(parts, " and "));
  if (first_part) *first_part = unknown.begin()->second.front();
  return std::string(unknown.size() == 1 ? "unknown variable " : "unknown variables ") + Join(items) +
         " (allowed for " + type.name + ": " + Join(AllowedVariables(type)) +
         ", or a payload.data field once declared in schemas/events/" + type.name + ".json)";
}

StoredTemplate FromRow(const pqxx::row& r) {
  StoredTemplate s;
  s.tmpl.event_type = r["event_type"].as<std::string>();
  s.tmpl.channel = r["channel"].as<std::string>();
  s.tmpl.locale = r["locale"].as<std::string>();
  s.tmpl.version = r["version"].as<int>();
  s.tmpl.subject = r["subject"].as<std::string>();
  s.tmpl.text = r["text_body"].as<std::string>();
  s.tmpl.html = r["html_body"].as<std::string>();
  s.deleted = r["deleted"].as<bool>();
  s.created_by = r["created_by"].as<std::string>();
  s.created_at = r["created_at"].as<std::string>();
  return s;
}

// Runs `fn`, turning the database failures an operator can act on into Herald errors.
template <typename Fn>
auto Db(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const pqxx::broken_connection& e) {
    throw TransientError(std::string(what) + ": PostgreSQL is unreachable: " + e.what());
  } catch (const pqxx::undefined_table&) {
    throw ConfigError(std::string(what) +
                      ": the templates table does not exist; apply the migrations with `herald migrate`");
  }
}

void CheckAuthor(const std::string& author) {
  if (Blank(author)) throw InvalidInput("the author of a template change must not be empty", "/created_by");
  if (author == kDefaultsAuthor) {
    throw InvalidInput(std::string("'") + kDefaultsAuthor + "' is reserved for the default templates loader",
                       "/created_by");
  }
}

// The caller holds the key's lock.
int InsertNext(pqxx::work& tx, const Template& t, bool deleted, const std::string& author) {
  return tx
      .exec_params1(kInsertNext, t.event_type, t.channel, t.locale, t.subject, t.text, t.html, deleted,
                    author)[0]
      .as<int>();
}

void LockKey(pqxx::work& tx, const std::string& event_type, const std::string& channel,
             const std::string& locale) {
  tx.exec_params(kLockKey, kLockClass, Key(event_type, channel, locale));
}

}  // namespace

const std::vector<std::string>& CommonVariables() {
  static const std::vector<std::string> kCommon = {"user_id",    "first_name", "last_name",
                                                   "email",      "locale",     "timezone",
                                                   "event_type", "event_id",   "unsubscribe_url"};
  return kCommon;
}

std::vector<std::string> AllowedVariables(const schema::EventTypeInfo& type) {
  std::set<std::string> names(CommonVariables().begin(), CommonVariables().end());
  names.insert(type.variables.begin(), type.variables.end());
  names.insert(type.data_fields.begin(), type.data_fields.end());
  return {names.begin(), names.end()};
}

std::vector<std::string> UnknownVariables(const Template& t, const schema::EventTypeInfo& type) {
  std::vector<std::string> out;
  for (const auto& [name, _] : Unknown(t, type)) out.push_back(name);
  return out;
}

void CheckVariables(const Template& t, const schema::EventTypeInfo& type) {
  std::string part;
  auto message = UnknownMessage(Unknown(t, type), type, &part);
  if (!message.empty()) throw InvalidInput("template " + Key(t) + ": " + message, "/" + part);
}

std::vector<schema::ValidationError> CheckTemplate(const Template& t, const schema::Registry& registry) {
  std::vector<schema::ValidationError> errors;
  const auto* type = registry.Find(t.event_type);
  if (!type) {
    std::vector<std::string> known;
    for (const auto* info : registry.Types()) known.push_back(info->name);
    errors.push_back(
        {"/event_type", "unknown event type '" + t.event_type + "' (known: " + Join(known) + ")"});
  }
  if (std::find(std::begin(kChannels), std::end(kChannels), t.channel) == std::end(kChannels)) {
    errors.push_back({"/channel", "unknown channel '" + t.channel + "' (email, sms, telegram or push)"});
  } else if (type &&
             std::find(type->channels.begin(), type->channels.end(), t.channel) == type->channels.end()) {
    errors.push_back({"/channel", t.event_type + " is not delivered by " + t.channel +
                                      " (its channels: " + Join(type->channels) + ")"});
  }
  if (!ValidLocale(t.locale)) {
    errors.push_back(
        {"/locale", "locale '" + t.locale +
                        "' must be a 2-letter language code, optionally with a region (en, ru, pt-BR)"});
  }
  if (t.channel == "email" && Blank(t.subject))
    errors.push_back({"/subject", "an email template needs a subject"});
  if (Blank(t.text)) {
    errors.push_back({"/text", t.channel == "email"
                                   ? "an email template needs a text part (the plain-text alternative)"
                                   : "the template needs a text"});
  }
  if (t.channel != "email" && !t.html.empty()) {
    errors.push_back({"/html", "only email templates have an html part (put the message in text)"});
  }
  for (const auto& part : Parts(t)) {
    auto problem = SyntaxProblem(*part.text);
    if (!problem.empty())
      errors.push_back({std::string("/") + part.name, std::string(part.name) + ": " + problem});
  }
  if (type) {
    std::string part;
    auto message = UnknownMessage(Unknown(t, *type), *type, &part);
    if (!message.empty()) errors.push_back({"/" + part, message});
  }
  return errors;
}

void ValidateTemplate(const Template& t, const schema::Registry& registry) {
  auto errors = CheckTemplate(t, registry);
  if (errors.empty()) return;
  std::vector<std::string> messages;
  for (const auto& e : errors) messages.push_back(e.message);
  throw InvalidInput("template " + Key(t) + " is invalid: " + Join(messages, "; "), errors.front().field);
}

int SaveTemplate(pqxx::connection& conn, const schema::Registry& registry, const Template& t,
                 const std::string& author) {
  ValidateTemplate(t, registry);
  CheckAuthor(author);
  return Db("saving a template", [&] {
    pqxx::work tx(conn);
    LockKey(tx, t.event_type, t.channel, t.locale);
    int version = InsertNext(tx, t, false, author);
    tx.commit();
    return version;
  });
}

std::optional<int> DeleteTemplate(pqxx::connection& conn, const std::string& event_type,
                                  const std::string& channel, const std::string& locale,
                                  const std::string& author) {
  CheckAuthor(author);
  return Db("deleting a template", [&]() -> std::optional<int> {
    pqxx::work tx(conn);
    LockKey(tx, event_type, channel, locale);
    auto latest = tx.exec_params(kLatest, event_type, channel, locale);
    if (latest.empty() || latest[0]["deleted"].as<bool>()) return std::nullopt;
    Template tombstone;
    tombstone.event_type = event_type;
    tombstone.channel = channel;
    tombstone.locale = locale;
    int version = InsertNext(tx, tombstone, true, author);
    tx.commit();
    return version;
  });
}

std::vector<StoredTemplate> ListTemplates(pqxx::connection& conn, bool include_deleted) {
  return Db("listing templates", [&] {
    pqxx::work tx(conn);
    std::vector<StoredTemplate> out;
    for (const auto& row : tx.exec(kLatestPerKey)) {
      auto s = FromRow(row);
      if (include_deleted || !s.deleted) out.push_back(std::move(s));
    }
    tx.commit();
    return out;
  });
}

TemplateStore LoadTemplates(pqxx::connection& conn) {
  TemplateStore store;
  for (auto& s : ListTemplates(conn)) store.Add(std::move(s.tmpl));
  return store;
}

std::optional<StoredTemplate> GetTemplate(pqxx::connection& conn, const std::string& event_type,
                                          const std::string& channel, const std::string& locale,
                                          std::optional<int> version) {
  return Db("reading a template", [&]() -> std::optional<StoredTemplate> {
    pqxx::work tx(conn);
    auto rows = version ? tx.exec_params(kOneVersion, event_type, channel, locale, *version)
                        : tx.exec_params(kVersionsOfKey + " LIMIT 1", event_type, channel, locale);
    tx.commit();
    if (rows.empty()) return std::nullopt;
    auto s = FromRow(rows[0]);
    if (!version && s.deleted) return std::nullopt;
    return s;
  });
}

std::vector<StoredTemplate> TemplateHistory(pqxx::connection& conn, const std::string& event_type,
                                            const std::string& channel, const std::string& locale) {
  return Db("reading a template's history", [&] {
    pqxx::work tx(conn);
    std::vector<StoredTemplate> out;
    for (const auto& row : tx.exec_params(kVersionsOfKey, event_type, channel, locale))
      out.push_back(FromRow(row));
    tx.commit();
    return out;
  });
}

std::vector<std::string> LoadDefaultTemplates(pqxx::connection& conn, const schema::Registry& registry) {
  std::vector<Template> defaults;
  for (const auto& f : embedded::Templates()) {
    Template t;
    try {
      t = TemplateFromJson(nlohmann::json::parse(f.content));
    } catch (const std::exception& e) {
      throw ConfigError("default template " + std::string(f.path) + " is malformed: " + e.what());
    }
    auto errors = CheckTemplate(t, registry);
    if (!errors.empty()) {
      throw ConfigError("default template " + std::string(f.path) + " is invalid: " + errors.front().message);
    }
    defaults.push_back(std::move(t));
  }
  // Locks are taken in key order, so concurrent loaders cannot deadlock each other (a save or
  // delete holds a single key's lock).
  std::sort(defaults.begin(), defaults.end(),
            [](const Template& a, const Template& b) { return Key(a) < Key(b); });
  return Db("loading the default templates", [&] {
    std::vector<std::string> done;
    pqxx::work tx(conn);
    for (const auto& t : defaults) {
      LockKey(tx, t.event_type, t.channel, t.locale);
      auto latest = tx.exec_params(kLatest, t.event_type, t.channel, t.locale);
      if (latest.empty()) {
        int v = InsertNext(tx, t, false, kDefaultsAuthor);
        done.push_back("added " + Key(t) + " v" + std::to_string(v));
        continue;
      }
      const auto& row = latest[0];
      int current = row["version"].as<int>();
      bool deleted = row["deleted"].as<bool>();
      auto author = row["created_by"].as<std::string>();
      bool same = !deleted && row["subject"].as<std::string>() == t.subject &&
                  row["text_body"].as<std::string>() == t.text &&
                  row["html_body"].as<std::string>() == t.html;
      if (same) continue;
      if (author != kDefaultsAuthor) {
        done.push_back("kept " + Key(t) + " v" + std::to_string(current) +
                       (deleted ? " (deleted by " : " (edited by ") + author +
                       "; the default differs and is not applied)");
        continue;
      }
      int v = InsertNext(tx, t, false, kDefaultsAuthor);
      done.push_back("updated " + Key(t) + " to v" + std::to_string(v) + " (the default changed)");
    }
    tx.commit();
    return done;
  });
}

TemplateCache::TemplateCache(Options options) : options_(std::move(options)) {
  std::lock_guard lock(refresh_mu_);
  RefreshLocked();
  if (!store_) throw ConfigError("no templates in PostgreSQL; load the defaults with `herald migrate`");
}

TemplateCache::~TemplateCache() = default;

std::shared_ptr<const TemplateStore> TemplateCache::Current() const {
  std::lock_guard lock(store_mu_);
  return store_;
}

bool TemplateCache::RefreshIfDue() noexcept {
  std::unique_lock lock(refresh_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  if (std::chrono::steady_clock::now() - last_check_ < options_.refresh_interval) return false;
  try {
    return RefreshLocked();
  } catch (const std::exception& e) {
    // One warning per interval at most: the next attempt waits for the interval too.
    Logger("templates")
        ->warn("cannot refresh the templates, still serving the snapshot loaded before: {}", e.what());
    return false;
  }
}

bool TemplateCache::Refresh() {
  std::lock_guard lock(refresh_mu_);
  return RefreshLocked();
}

bool TemplateCache::RefreshLocked() {
  last_check_ = std::chrono::steady_clock::now();
  return Db("loading templates", [&] {
    try {
      if (!conn_ || !conn_->is_open()) conn_ = pg::Connect(options_.pg_url);
      // One snapshot for the fingerprint and the rows, so they agree.
      pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(*conn_);
      auto fp_row = tx.exec1(kFingerprint);
      Fingerprint fp{fp_row[0].as<long long>(), fp_row[1].as<std::string>()};
      if (store_ && fp == fingerprint_) return false;
      auto store = std::make_shared<TemplateStore>();
      for (const auto& row : tx.exec(kLatestPerKey)) {
        auto s = FromRow(row);
        if (!s.deleted) store->Add(std::move(s.tmpl));
      }
      tx.commit();
      if (store->Size() == 0) {
        throw ConfigError(
            "the templates table holds no live template; load the defaults with `herald migrate`");
      }
      auto log = Logger("templates");
      if (store_) log->info("templates changed: now serving {} templates", store->Size());
      {
        std::lock_guard lock(store_mu_);
        store_ = std::move(store);
      }
      fingerprint_ = fp;
      return true;
    } catch (const pqxx::broken_connection&) {
      conn_.reset();  // reconnect on the next attempt
      throw;
    }
  });
}

}  // namespace herald::templates
