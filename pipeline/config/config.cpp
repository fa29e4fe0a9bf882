#include "herald/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "herald/common/errors.hpp"
#include "herald/redis/client.hpp"

extern char** environ;

namespace herald::config {
namespace {

std::size_t ParseSize(const std::string& name, const std::string& v) {
  try {
    std::size_t pos = 0;
    long long n = std::stoll(v, &pos);
    if (pos != v.size() || n < 0) throw std::invalid_argument(v);
    return static_cast<std::size_t>(n);
  } catch (const std::exception&) {
    throw ConfigError(name + ": '" + v + "' is not a non-negative integer");
  }
}

int ParsePort(const std::string& name, const std::string& v) {
  auto n = ParseSize(name, v);
  if (n > 65535) throw ConfigError(name + ": port " + v + " is out of range");
  return static_cast<int>(n);
}

template <typename Field>
std::function<void(Config&, const std::string&)> Str(Field Config::*field) {
  return [field](Config& c, const std::string& v) { c.*field = v; };
}

// HERALD_REDIS_PASSWORD is folded into redis_url by whichever of the two settings comes
// last, so environment variables and flags may arrive in any order and every Redis client
// keeps taking just the URL. The URL is checked here too, so a bad one (or rediss://)
// stops the process at start-up with the setting's name.
void SetRedisUrl(Config& c, const std::string& url) {
  try {
    redis::ParseUrl(url);
    c.redis_url = c.redis_password.empty() ? url : redis::WithPassword(url, c.redis_password);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("HERALD_REDIS_URL: ") + e.what());
  }
}

void SetRedisPassword(Config& c, const std::string& password) {
  c.redis_password = password;
  if (!password.empty()) c.redis_url = redis::WithPassword(c.redis_url, password);
}

std::vector<Key> BuildKeys() {
  using namespace std::chrono;
  std::vector<Key> k;
  auto add = [&](std::string env, std::string flag, std::string def, std::string desc,
                 std::function<void(Config&, const std::string&)> set, bool secret = false) {
    k.push_back({std::move(env), std::move(flag), std::move(def), std::move(desc), secret,
                 std::move(set)});
  };
  add("HERALD_BROKERS", "brokers", "127.0.0.1:39092", "Kafka bootstrap servers", Str(&Config::brokers));
  add("HERALD_KAFKA_<OPTION>", "kafka", "", "Raw librdkafka setting: HERALD_KAFKA_SECURITY_PROTOCOL=ssl or --kafka security.protocol=ssl (repeatable); HERALD_KAFKA_SASL_PASSWORD_FILE=/path reads sasl.password from a file",
      [](Config& c, const std::string& v) {
        auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) throw ConfigError("--kafka expects key=value, got '" + v + "'");
        c.kafka[v.substr(0, eq)] = v.substr(eq + 1);
      },
      true);
  add("HERALD_GROUP_ID", "group-id", "herald-<stage>", "Consumer group id", Str(&Config::group_id));
  add("HERALD_GROUP_INSTANCE_ID", "group-instance-id", "", "Static group membership id (fewer rebalances on restart)", Str(&Config::group_instance_id));
  add("HERALD_BATCH_SIZE", "batch-size", "500", "Records per poll batch",
      [](Config& c, const std::string& v) {
        c.batch_size = ParseSize("HERALD_BATCH_SIZE", v);
        if (c.batch_size == 0) throw ConfigError("HERALD_BATCH_SIZE must be at least 1");
      });
  add("HERALD_POLL_TIMEOUT", "poll-timeout", "100ms", "How long a poll waits for the first record",
      [](Config& c, const std::string& v) { c.poll_timeout = ParseDuration(v); });
  add("HERALD_DRAIN_TIMEOUT", "drain-timeout", "8s", "On SIGTERM, how long in-flight work may take before the stage leaves its group",
      [](Config& c, const std::string& v) { c.drain_timeout = ParseDuration(v); });
  add("HERALD_PG_URL", "pg-url", "postgresql://postgres@127.0.0.1:5432/herald", "PostgreSQL connection URL", Str(&Config::pg_url), true);
  add("HERALD_REDIS_URL", "redis-url", "redis://127.0.0.1:6379/0",
      "Redis URL: redis://[[user]:password@]host:port/db, user and password percent-encoded; a user is a Redis 6 ACL user (AUTH user password). "
      "rediss:// is refused: Herald has no TLS to Redis, so run a TLS-terminating sidecar (e.g. stunnel) and point this URL at it",
      SetRedisUrl, true);
  add("HERALD_REDIS_PASSWORD", "redis-password", "", "Redis password; when set it replaces the password in HERALD_REDIS_URL (the URL's user is kept), so the URL can live in a ConfigMap",
      SetRedisPassword, true);
  add("HERALD_AUTH_URL", "auth-url", "http://127.0.0.1:18081", "auth API base URL", Str(&Config::auth_url));
  add("HERALD_UGC_URL", "ugc-url", "http://127.0.0.1:18082", "ugc API base URL", Str(&Config::ugc_url));
  add("HERALD_MOVIES_URL", "movies-url", "http://127.0.0.1:18083", "movies API base URL", Str(&Config::movies_url));
  add("HERALD_HTTP_CONNECT_TIMEOUT", "http-connect-timeout", "1s", "Upstream HTTP connect timeout",
      [](Config& c, const std::string& v) { c.http_connect_timeout = ParseDuration(v); });
  add("HERALD_HTTP_TIMEOUT", "http-timeout", "5s", "Upstream HTTP total timeout per request",
      [](Config& c, const std::string& v) { c.http_timeout = ParseDuration(v); });
  add("HERALD_HTTP_CONCURRENCY", "http-concurrency", "16", "Upstream HTTP requests in flight at once per stage",
      [](Config& c, const std::string& v) {
        c.http_concurrency = ParseSize("HERALD_HTTP_CONCURRENCY", v);
        if (c.http_concurrency == 0) throw ConfigError("HERALD_HTTP_CONCURRENCY must be at least 1");
      });
  add("HERALD_BREAKER_OPEN_FOR", "breaker-open-for", "5s", "How long an open circuit breaker refuses calls before a probe",
      [](Config& c, const std::string& v) { c.breaker_open_for = ParseDuration(v); });
  add("HERALD_CACHE_TTL", "cache-ttl", "10m", "How long enrichment data (users, movies) stays in the Redis cache",
      [](Config& c, const std::string& v) { c.cache_ttl = duration_cast<seconds>(ParseDuration(v)); });
  add("HERALD_USER_CACHE_ENTRIES", "user-cache-entries", "20000",
      "Users each enrich process keeps in memory (about 2.5 KiB each; 0 = none); the Redis cache is shared and unbounded by this",
      [](Config& c, const std::string& v) { c.user_cache_entries = ParseSize("HERALD_USER_CACHE_ENTRIES", v); });
  add("HERALD_RETRY_DELAYS", "retry-delays", "30s,5m,1h", "Delays of the three retry tiers (notify.retry.30s, .5m, .1h)",
      [](Config& c, const std::string& v) {
        std::vector<milliseconds> delays;
        std::size_t start = 0;
        while (start <= v.size()) {
          auto comma = v.find(',', start);
          delays.push_back(ParseDuration(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        if (delays.size() != 3) throw ConfigError("HERALD_RETRY_DELAYS needs three delays, e.g. 30s,5m,1h");
        c.retry_delays = delays;
      });
  add("HERALD_FANOUT_MAX_LAG", "fanout-max-lag", "100000", "A fan-out waits while downstream consumers lag by more than this many records",
      [](Config& c, const std::string& v) { c.fanout_max_lag = static_cast<std::int64_t>(ParseSize("HERALD_FANOUT_MAX_LAG", v)); });
  add("HERALD_LAG_INTERVAL", "lag-interval", "15s", "How often `herald admin` measures every consumer group's lag from committed offsets (herald_consumer_lag, also while a stage is down); 0 turns it off",
      [](Config& c, const std::string& v) { c.lag_interval = ParseDuration(v); });
  add("HERALD_CLOCK", "clock", "system", "Time source for timing decisions and the scheduler: system, or file:/path holding an RFC 3339 instant (tests, drills)",
      Str(&Config::clock));
  add("HERALD_SCHEDULER_LEASE", "scheduler-lease", "30s", "How long a scheduler replica holds a bucket it releases before another may take it over",
      [](Config& c, const std::string& v) { c.scheduler_lease = duration_cast<milliseconds>(ParseDuration(v)); });
  add("HERALD_SCHEDULER_INTERVAL", "scheduler-interval", "1s", "How often the scheduler looks for due buckets and schedules when idle",
      [](Config& c, const std::string& v) { c.scheduler_interval = duration_cast<milliseconds>(ParseDuration(v)); });
  add("HERALD_BUILTIN_SCHEDULES", "builtin-schedules", "on", "Whether the scheduler adds the event types' built-in recurring schedules (stats.monthly, bookmark.reminder): on or off",
      [](Config& c, const std::string& v) {
        if (v != "on" && v != "off") throw ConfigError("HERALD_BUILTIN_SCHEDULES must be on or off, got '" + v + "'");
        c.builtin_schedules = v == "on";
      });
  add("HERALD_BUCKET_SHARDS", "bucket-shards", "16", "Redis keys per (due minute, time zone) bucket, so no key grows huge",
      [](Config& c, const std::string& v) {
        c.bucket_shards = ParseSize("HERALD_BUCKET_SHARDS", v);
        if (c.bucket_shards == 0 || c.bucket_shards > 1024) throw ConfigError("HERALD_BUCKET_SHARDS must be 1..1024");
      });
  add("HERALD_SMTP_URL", "smtp-url", "smtp://127.0.0.1:2525", "SMTP server (smtp:// or smtps://)", Str(&Config::smtp_url));
  add("HERALD_SMTP_FROM", "smtp-from", "Herald Cinema <noreply@cinema.example>", "From header of emails", Str(&Config::smtp_from));
  add("HERALD_SMTP_USER", "smtp-user", "", "SMTP user name", Str(&Config::smtp_user), true);
  add("HERALD_SMTP_PASSWORD", "smtp-password", "", "SMTP password", Str(&Config::smtp_password), true);
  add("HERALD_SMS_URL", "sms-url", "", "SMS provider base URL", Str(&Config::sms_url));
  add("HERALD_SMS_TOKEN", "sms-token", "", "SMS provider API token, sent as Authorization: Bearer <token> (none when empty)", Str(&Config::sms_token), true);
  add("HERALD_TELEGRAM_URL", "telegram-url", "", "Telegram Bot API base URL", Str(&Config::telegram_url));
  add("HERALD_TELEGRAM_TOKEN", "telegram-token", "herald-dev-bot", "Telegram bot token", Str(&Config::telegram_token), true);
  add("HERALD_PUSH_URL", "push-url", "", "Push provider base URL", Str(&Config::push_url));
  add("HERALD_PUSH_TOKEN", "push-token", "", "Push provider API token, sent as Authorization: Bearer <token> (none when empty)", Str(&Config::push_token), true);
  add("HERALD_PROVIDER_RATE", "provider-rate", "200", "Messages per second a provider (sms, telegram, push) is sent, across all replicas; a 429 lowers it adaptively",
      [](Config& c, const std::string& v) {
        c.provider_rate = static_cast<double>(ParseSize("HERALD_PROVIDER_RATE", v));
        if (c.provider_rate <= 0) throw ConfigError("HERALD_PROVIDER_RATE must be at least 1");
      });
  add("HERALD_PROVIDER_BURST", "provider-burst", "50", "Token-bucket size of the provider rate limit",
      [](Config& c, const std::string& v) {
        c.provider_burst = static_cast<double>(ParseSize("HERALD_PROVIDER_BURST", v));
        if (c.provider_burst < 1) throw ConfigError("HERALD_PROVIDER_BURST must be at least 1");
      });
  add("HERALD_SMTP_CA_FILE", "smtp-ca-file", "", "CA bundle that verifies the SMTP server's certificate after STARTTLS (default: the system's)", Str(&Config::smtp_ca_file));
  add("HERALD_SMTP_RATE", "smtp-rate", "100", "Emails per second sent through the SMTP server, across all replicas; an SMTP 421 lowers it adaptively",
      [](Config& c, const std::string& v) {
        c.smtp_rate = static_cast<double>(ParseSize("HERALD_SMTP_RATE", v));
        if (c.smtp_rate <= 0) throw ConfigError("HERALD_SMTP_RATE must be at least 1");
      });
  add("HERALD_SMTP_CONNECTIONS", "smtp-connections", "4", "SMTP connections each email delivery process sends over at once (one email in flight on each)",
      [](Config& c, const std::string& v) {
        c.smtp_connections = ParseSize("HERALD_SMTP_CONNECTIONS", v);
        if (c.smtp_connections == 0 || c.smtp_connections > 64) throw ConfigError("HERALD_SMTP_CONNECTIONS must be between 1 and 64");
      });
  add("HERALD_PRIORITY_SHARE", "priority-share", "5", "Percent of every delivery batch kept for each lower priority (normal, low) while it has records, so high never starves them",
      [](Config& c, const std::string& v) {
        c.priority_share = ParseSize("HERALD_PRIORITY_SHARE", v);
        if (c.priority_share > 45) throw ConfigError("HERALD_PRIORITY_SHARE must be at most 45 (percent)");
      });
  add("HERALD_UNSUBSCRIBE_URL", "unsubscribe-url", "http://127.0.0.1:8080/v1/unsubscribe", "Public URL of the one-click unsubscribe endpoint (List-Unsubscribe); the signed token is appended as ?token=",
      Str(&Config::unsubscribe_url));
  add("HERALD_UNSUBSCRIBE_SECRET", "unsubscribe-secret", "herald-dev-unsubscribe-secret", "HMAC key that signs unsubscribe tokens", Str(&Config::unsubscribe_secret), true);
  add("HERALD_CLAIM_LEASE", "claim-lease", "30s", "How long a delivery claim is held before another replica may take it over",
      [](Config& c, const std::string& v) { c.claim_lease = duration_cast<seconds>(ParseDuration(v)); });
  add("HERALD_CLAIM_TTL", "claim-ttl", "7d", "How long a sent claim blocks a duplicate send",
      [](Config& c, const std::string& v) { c.claim_ttl = duration_cast<hours>(ParseDuration(v)); });
  add("HERALD_HTTP_HOST", "http-host", "0.0.0.0", "Address the stage's HTTP server binds", Str(&Config::http_host));
  add("HERALD_HTTP_PORT", "http-port", "8080", "Port of the stage's HTTP server (API, /metrics, /healthz, /readyz)",
      [](Config& c, const std::string& v) { c.http_port = ParsePort("HERALD_HTTP_PORT", v); });
  add("HERALD_MAX_BODY_BYTES", "max-body-bytes", "1048576", "Largest accepted HTTP request body",
      [](Config& c, const std::string& v) { c.max_body_bytes = ParseSize("HERALD_MAX_BODY_BYTES", v); });
  add("HERALD_INGEST_TOKEN", "ingest-token", "", "Bearer token(s) for the ingest API, comma-separated, optionally source:token", Str(&Config::ingest_token), true);
  add("HERALD_ADMIN_TOKEN", "admin-token", "", "Admin API bearer tokens: \"write:<token>,read:<token>\" (a bare token has the write scope)", Str(&Config::admin_token), true);
  add("HERALD_INGEST_URL", "ingest-url", "", "Ingest API URL (clients: herald demo, scripts)", Str(&Config::ingest_url));
  add("HERALD_ADMIN_URL", "admin-url", "", "Admin API URL (clients)", Str(&Config::admin_url));
  add("HERALD_SMTP_DIR", "smtp-dir", "", "Directory where the dev SMTP sink writes one .eml per message", Str(&Config::smtp_dir));
  add("HERALD_SCHEMA_DIR", "schema-dir", "", "Extra schema directory (events/*.json) for event types added without a rebuild", Str(&Config::schema_dir));
  add("HERALD_LOG_LEVEL", "log-level", "info", "trace, debug, info, warn, error, critical or off",
      [](Config& c, const std::string& v) {
        static const std::vector<std::string> ok = {"trace", "debug", "info", "warn", "error", "critical", "off"};
        if (std::find(ok.begin(), ok.end(), v) == ok.end()) throw ConfigError("HERALD_LOG_LEVEL: unknown level '" + v + "'");
        c.log_level = v;
      });
  add("HERALD_LOG_FORMAT", "log-format", "text", "text or json",
      [](Config& c, const std::string& v) {
        if (v != "text" && v != "json") throw ConfigError("HERALD_LOG_FORMAT must be text or json, got '" + v + "'");
        c.log_format = v;
      });
  return k;
}

std::string ReadSecretFile(const std::string& name, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(name + ": cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string v = ss.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

// Environment variables that are not Herald settings but are written to dev.env for scripts,
// or are read by `herald dev fakes` (the tokens its fake sms and push providers require).
bool IsInformational(const std::string& name) {
  return name == "HERALD_STATE_DIR" || name == "HERALD_BROKERS_DIRECT" || name == "HERALD_FAKE_SMS_TOKEN" ||
         name == "HERALD_FAKE_PUSH_TOKEN";
}

}  // namespace

const std::vector<Key>& Keys() {
  static const std::vector<Key> keys = BuildKeys();
  return keys;
}

std::chrono::milliseconds ParseDuration(const std::string& text) {
  std::size_t pos = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &pos);
  } catch (const std::exception&) {
    throw ConfigError("'" + text + "' is not a duration (e.g. 250ms, 5s, 2m, 1h, 7d)");
  }
  if (n < 0) throw ConfigError("duration '" + text + "' is negative");
  std::string unit = text.substr(pos);
  using namespace std::chrono;
  if (unit.empty() || unit == "ms") return milliseconds(n);
  if (unit == "s") return seconds(n);
  if (unit == "m") return minutes(n);
  if (unit == "h") return hours(n);
  if (unit == "d") return hours(24 * n);
  throw ConfigError("duration '" + text + "' has an unknown unit (use ms, s, m, h or d)");
}

void Apply(Config& config, const std::string& name, const std::string& value) {
  for (const auto& key : Keys()) {
    if (key.flag == name || key.env == name) {
      key.set(config, value);
      return;
    }
  }
  throw ConfigError("unknown setting '" + name + "'");
}

std::map<std::string, std::string> ParseTokens(const std::string& spec) {
  std::map<std::string, std::string> tokens;
  std::size_t start = 0;
  while (start <= spec.size()) {
    auto comma = spec.find(',', start);
    std::string item = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto colon = item.find(':');
    std::string token = colon == std::string::npos ? item : item.substr(colon + 1);
    if (!token.empty()) tokens[token] = colon == std::string::npos ? "" : item.substr(0, colon);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return tokens;
}

Config FromEnvironment(const std::map<std::string, std::string>& env) {
  Config c;
  for (const auto& [name, value] : env) {
    if (!name.starts_with("HERALD_") || IsInformational(name)) continue;
    auto from_both = [&env, &name = name](const std::string& base) {
      if (env.contains(base)) throw ConfigError("both " + base + " and " + name + " are set: keep one");
    };
    if (name.starts_with("HERALD_KAFKA_")) {
      // HERALD_KAFKA_SASL_PASSWORD_FILE=/path: sasl.password from the file. Unambiguous, as
      // no librdkafka property ends in ".file" (file paths are the *.location properties).
      constexpr std::size_t kPrefix = sizeof("HERALD_KAFKA_") - 1;
      bool kafka_file = name.ends_with("_FILE") && name.size() > kPrefix + 5;
      std::string base = kafka_file ? name.substr(0, name.size() - 5) : name;
      if (kafka_file) from_both(base);
      std::string opt = base.substr(kPrefix);
      for (auto& ch : opt) ch = ch == '_' ? '.' : static_cast<char>(std::tolower(ch));
      c.kafka[opt] = kafka_file ? ReadSecretFile(name, value) : value;
      continue;
    }
    // A setting whose own name ends in _FILE (HERALD_SMTP_CA_FILE) is itself; otherwise
    // NAME_FILE is the secret NAME read from a file.
    const Key* key = nullptr;
    for (const auto& k : Keys()) {
      if (k.env == name) key = &k;
    }
    bool from_file = !key && name.ends_with("_FILE");
    std::string base = from_file ? name.substr(0, name.size() - 5) : name;
    for (const auto& k : Keys()) {
      if (!key && k.env == base) key = &k;
    }
    if (!key) {
      throw ConfigError("unknown environment variable " + name +
                        " (see `herald config` for the list of settings)");
    }
    if (from_file && !key->secret) {
      throw ConfigError(name + ": only secrets can be read from files");
    }
    if (from_file) from_both(base);
    key->set(c, from_file ? ReadSecretFile(name, value) : value);
  }
  return c;
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::string Describe() {
  std::string out = "| environment | flag | default | description |\n|---|---|---|---|\n";
  for (const auto& k : Keys()) {
    out += "| `" + k.env + "` | `--" + k.flag + "` | " +
           (k.default_text.empty() ? "" : "`" + k.default_text + "`") + " | " + k.description +
           (k.secret ? " (secret: also `" + k.env + "_FILE`)" : "") + " |\n";
  }
  return out;
}

}  // namespace herald::config
