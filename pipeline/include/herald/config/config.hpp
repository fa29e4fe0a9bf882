#pragma once
// Herald's configuration: every setting in one table, read from HERALD_* environment
// variables and overridden by command-line flags. `herald config` prints the table;
// docs/configuration.md is generated from it.
//
// Secrets (tokens, passwords) may also come from a mounted file: HERALD_<NAME>_FILE, and so
// may raw librdkafka options: HERALD_KAFKA_<OPTION>_FILE (no librdkafka property ends in
// ".file"; file paths are *.location). The file's trailing newlines are stripped. Setting
// both NAME and NAME_FILE is an error. An unknown HERALD_* variable is an error, so a typo
// never silently falls back to a default.

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace herald::config {

struct Config {
  // Kafka
  std::string brokers = "127.0.0.1:39092";
  std::map<std::string, std::string> kafka;  // raw librdkafka settings (HERALD_KAFKA_<OPTION>[_FILE], --kafka)
  std::string group_id;                      // empty = the stage's default herald-<stage>
  std::string group_instance_id;             // static membership when set
  std::size_t batch_size = 500;
  std::chrono::milliseconds poll_timeout{100};
  std::chrono::milliseconds drain_timeout{8000};
  // Storage
  std::string pg_url = "postgresql://postgres@127.0.0.1:5432/herald";
  // Always the URL to connect with: HERALD_REDIS_PASSWORD, when set, is already folded into
  // it (whatever the order of variables and flags), so every redis::Client(redis_url) honours it.
  std::string redis_url = "redis://127.0.0.1:6379/0";
  std::string redis_password;  // HERALD_REDIS_PASSWORD: overrides the URL's password when not empty
  // Upstream APIs
  std::string auth_url = "http://127.0.0.1:18081";
  std::string ugc_url = "http://127.0.0.1:18082";
  std::string movies_url = "http://127.0.0.1:18083";
  std::chrono::milliseconds http_connect_timeout{1000};
  std::chrono::milliseconds http_timeout{5000};
  std::size_t http_concurrency = 16;
  std::chrono::milliseconds breaker_open_for{5000};
  std::chrono::seconds cache_ttl{600};
  std::size_t user_cache_entries = 20'000;  // users in each enrich process's LRU
  // Retries and fan-out
  std::vector<std::chrono::milliseconds> retry_delays = {std::chrono::seconds(30), std::chrono::minutes(5),
                                                         std::chrono::hours(1)};
  std::int64_t fanout_max_lag = 100'000;
  std::chrono::milliseconds lag_interval{15'000};  // admin: every group's lag metric
  // Timing
  std::string clock = "system";
  std::chrono::milliseconds scheduler_lease{30'000};
  std::chrono::milliseconds scheduler_interval{1'000};
  std::size_t bucket_shards = 16;
  bool builtin_schedules = true;
  // Providers
  std::string smtp_url = "smtp://127.0.0.1:2525";
  std::string smtp_from = "Herald Cinema <noreply@cinema.example>";
  std::string smtp_user;
  std::string smtp_password;
  std::string smtp_ca_file;
  std::string sms_url;
  std::string sms_token;   // sent as "Authorization: Bearer <token>" when set
  std::string telegram_url;
  std::string telegram_token = "herald-dev-bot";
  std::string push_url;
  std::string push_token;  // sent as "Authorization: Bearer <token>" when set
  double provider_rate = 200;   // messages/s per provider, shared by all replicas
  double provider_burst = 50;
  double smtp_rate = 100;       // emails/s through the SMTP server, shared by all replicas
  std::size_t smtp_connections = 4;  // SMTP connections per email delivery process
  std::size_t priority_share = 5;  // percent of a delivery batch kept for each lower priority
  std::string unsubscribe_url = "http://127.0.0.1:8081/v1/unsubscribe";
  std::string unsubscribe_secret = "herald-dev-unsubscribe-secret";
  std::chrono::seconds claim_lease{30};
  std::chrono::hours claim_ttl{24 * 7};
  // HTTP serving (ingest/admin APIs and every stage's /metrics, /healthz, /readyz)
  std::string http_host = "0.0.0.0";
  int http_port = 8080;
  std::size_t max_body_bytes = 1 << 20;
  std::string ingest_token;
  std::string admin_token;
  // Client-side addresses (herald publish/demo and scripts)
  std::string ingest_url;
  std::string admin_url;
  std::string smtp_dir;
  // Misc
  std::string schema_dir;
  std::string log_level = "info";
  std::string log_format = "text";
};

struct Key {
  std::string env;          // HERALD_BROKERS
  std::string flag;         // --brokers
  std::string default_text; // as documented
  std::string description;
  bool secret = false;
  std::function<void(Config&, const std::string&)> set;
};

/// The table of every setting.
const std::vector<Key>& Keys();

/// Builds a configuration from environment variables (a map, for testability). Throws
/// ConfigError for an unknown HERALD_* variable, a malformed value or an unreadable
/// <NAME>_FILE, naming the variable.
Config FromEnvironment(const std::map<std::string, std::string>& env);

/// The process environment as a map.
std::map<std::string, std::string> ProcessEnvironment();

/// Applies one setting by flag name (without dashes) or env name. Throws ConfigError.
void Apply(Config& config, const std::string& name, const std::string& value);

/// Parses "250ms", "5s", "2m", "1h", "7d" or a bare number of milliseconds.
std::chrono::milliseconds ParseDuration(const std::string& text);

/// A token list setting: "tokenA,label:tokenB" → {token: label} ("" for a bare token).
/// Used by HERALD_INGEST_TOKEN (label = source) and HERALD_ADMIN_TOKEN (label = scope).
std::map<std::string, std::string> ParseTokens(const std::string& spec);

/// Markdown table of all keys (docs/configuration.md).
std::string Describe();

}  // namespace herald::config
