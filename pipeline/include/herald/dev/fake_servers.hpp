#pragma once
// Fake upstream services (auth, ugc, movies) and delivery providers (sms, telegram,
// push) for development and tests, implementing the contract in
// design/UPSTREAMS.md, plus the deterministic synthetic data behind them.
//
// Synthetic data is a pure function of (seed, id): nothing is stored, so a fake auth
// service can serve millions of users. Hashing uses splitmix64/FNV-1a, never
// std::hash or rand(), so the data is identical across runs, builds and platforms.
//
// Every fake server also exposes the control API (not logged, never faulted):
//   GET    /_fake/health                 -> 200 {"status":"ok","role":...}
//   GET    /_fake/requests?path=<prefix> -> {"requests":[{method,path,body,at,status}],
//                                           "dropped": n}   oldest first
//   DELETE /_fake/requests               -> clears the log
//   GET    /_fake/faults                 -> {"faults":[...]}
//   PUT    /_fake/faults {path, latency_ms, error_rate, error, retry_after_s}
//   DELETE /_fake/faults                 -> clears all faults
//   GET    /_fake/stats                  -> {"delivered": n}  (providers: distinct sends)
// Request-log `path` includes the query string, `at` is RFC 3339 UTC with milliseconds
// (arrival time) and `status` is the code answered, 0 when nothing was answered
// (a hang or reset fault, or the request is still being processed).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace herald::dev {

enum class FakeRole { kAuth, kUgc, kMovies, kSms, kTelegram, kPush };

/// "auth", "ugc", "movies", "sms", "telegram", "push".
std::string_view FakeRoleName(FakeRole role);
/// Inverse of FakeRoleName; nullopt for any other text (case-sensitive).
std::optional<FakeRole> ParseFakeRole(std::string_view name);

struct FakeServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                             // 0 = pick a free port
  std::uint64_t seed = 42;                  // synthetic data seed
  std::uint64_t user_count = 1'000'000;     // users u-1 .. u-<user_count> exist; others are 404
  std::size_t request_log_limit = 100'000;  // oldest entries dropped beyond this (bounded memory)
  std::size_t threads = 64;                 // worker threads; each open connection holds one
  // sms and push only (other roles ignore it): when not empty, a data request without
  // "Authorization: Bearer <bearer_token>" is answered 401, like a real provider given a
  // missing or wrong API token; the control API never needs it. When empty, the constructor
  // takes it from the environment variable kFakeSmsTokenEnv / kFakePushTokenEnv, so that
  // `herald dev fakes` (and the dev stack, which sets them) can require one.
  std::string bearer_token;
};

inline constexpr const char* kFakeSmsTokenEnv = "HERALD_FAKE_SMS_TOKEN";
inline constexpr const char* kFakePushTokenEnv = "HERALD_FAKE_PUSH_TOKEN";

/// One HTTP server for one role, on its own background threads.
///
/// Thread safety: all methods may be called from any thread. Lifecycle: construct,
/// Start() once, Stop() (or destroy). Not copyable or movable.
///
/// Faults (PUT /_fake/faults) apply to every non-control path starting with `path`;
/// the longest matching prefix wins. `latency_ms` delays every matching request;
/// then, with probability `error_rate` (default 1.0), `error` is applied:
///   - an HTTP status (400..599, number or numeric string): answered with the role's
///     error body shape; 429 answers carry `Retry-After: <retry_after_s>` (default 1),
///     and for telegram also {"parameters":{"retry_after":n}}. The handler does not run.
///   - "hang": nothing is answered; the connection stays open until the client closes
///     it, Stop() is called, or 60 s pass, then it is reset. The handler does not run.
///   - "reset": the connection is closed with a TCP RST, nothing is answered. The
///     handler does not run.
///   - "malformed": the handler runs (side effects happen) and its 200 body is
///     truncated so that it is not valid JSON.
class FakeServer {
 public:
  FakeServer(FakeRole role, FakeServerOptions options);
  ~FakeServer();  // calls Stop()

  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;
  FakeServer(FakeServer&&) = delete;
  FakeServer& operator=(FakeServer&&) = delete;

  /// Binds and serves on background threads; returns once listening.
  /// Throws std::runtime_error if it cannot bind, std::logic_error if called twice.
  void Start();
  /// Stops accepting, wakes hung/delayed requests and joins all threads. Idempotent;
  /// returns within about a second even while requests hang.
  void Stop() noexcept;

  /// The bound port after Start(); the configured port before.
  int Port() const;
  /// "http://<host>:<port>" ("127.0.0.1" when bound to 0.0.0.0).
  std::string BaseUrl() const;
  FakeRole Role() const;
  /// Providers: messages accepted, counting a repeated idempotency key once.
  std::uint64_t DeliveredCount() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------
// Deterministic synthetic data, exposed for tests and for other parts of Herald.
// ---------------------------------------------------------------------------------

/// The timezones users are drawn from: DST zones, zones without DST, half-hour and
/// 45-minute offsets, and UTC.
std::span<const std::string_view> SyntheticTimezones();
/// The user tags: premium, family, kids, sports, new, churn-risk.
std::span<const std::string_view> SyntheticTags();

/// User "u-<index>" as served by GET /api/v1/users/{id}. Same (seed, index) -> same
/// JSON. Fields: user_id, first_name, last_name, email, phone (E.164 or null),
/// telegram_chat_id (integer or null), push_tokens[], timezone, locale ("ru"|"en"),
/// birthday_date, tags[], channels[] (preference order, non-empty, only channels with
/// an address), quiet_hours ({"from","to"} or null), marketing_opt_in.
nlohmann::json SyntheticUser(std::uint64_t seed, std::uint64_t index);

/// "u-123" -> 123 when 1 <= 123 <= user_count; nullopt for anything else
/// (no sign, no leading zeros, no whitespace).
std::optional<std::uint64_t> ParseUserIndex(std::string_view user_id, std::uint64_t user_count);
/// 123 -> "u-123".
std::string UserIdFromIndex(std::uint64_t index);

/// Segment filter for the user listing; an empty field matches everything.
struct UserFilter {
  std::string tag;
  std::string timezone;
  std::string locale;
};

/// Same answer as filtering SyntheticUser(seed, index), without building the JSON.
bool SyntheticUserMatches(std::uint64_t seed, std::uint64_t index, const UserFilter& filter);

/// One page of a scan over the user index space.
struct IndexPage {
  std::vector<std::uint64_t> indices;       // ascending
  std::optional<std::uint64_t> next_index;  // continue here; nullopt = no more
};

/// Indices examined per page at most: a page can be short (even empty) with a
/// next_index when matches are sparse, so callers loop until next_index is nullopt.
inline constexpr std::uint64_t kDefaultScanBudget = 200'000;

/// Users matching `filter`, scanning from `first_index` (>= 1).
IndexPage SyntheticUserPage(std::uint64_t seed, const UserFilter& filter,
                            std::uint64_t first_index, std::size_t limit,
                            std::uint64_t user_count,
                            std::uint64_t scan_budget = kDefaultScanBudget);

/// Followers of a content id, scanning from `first_index` (>= 1).
/// "series-big-<N>" is followed by exactly u-1 .. u-min(N, user_count); any other id
/// by a pseudo-random 0.5%..5% of all users.
IndexPage SyntheticFollowerPage(std::uint64_t seed, std::string_view content_id,
                                std::uint64_t first_index, std::size_t limit,
                                std::uint64_t user_count,
                                std::uint64_t scan_budget = kDefaultScanBudget);

/// Watch history items {movie_id, watched_at (RFC 3339, seconds), seconds} with
/// from_ms <= watched_at < to_ms (Unix epoch milliseconds), ascending. Per-day events
/// are fixed, so overlapping ranges agree. Cost is linear in the number of days.
nlohmann::json SyntheticWatchHistory(std::uint64_t seed, std::uint64_t index,
                                     std::int64_t from_ms, std::int64_t to_ms);

/// Bookmarks items {movie_id, added_at (RFC 3339, seconds)}, ascending by added_at.
nlohmann::json SyntheticBookmarks(std::uint64_t seed, std::uint64_t index);

/// Catalogue entry for "movie-<n>" (film), "ep-<n>" (episode) or "series-<slug>"
/// (latest episode of a series), slug = [a-z0-9-]+. Fields: movie_id, kind, title,
/// title_ru, season, episode (null for films), release_date, genres[], url, and
/// series_id for episodes. Returns a null JSON value for any other id.
nlohmann::json SyntheticMovie(std::uint64_t seed, std::string_view movie_id);

}  // namespace herald::dev
