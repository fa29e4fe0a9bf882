#pragma once
// A development stack for integration tests: real PostgreSQL, Redis, SMTP sink, embedded
// broker, fake upstreams and every stage as processes, with short retry delays so tests
// exercise the retry tiers quickly.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/common/time.hpp"
#include "herald/dev/stack.hpp"
#include "support/support.hpp"

namespace herald::test {

class TestStack {
 public:
  explicit TestStack(std::uint64_t fake_users = 1'000'000, std::map<std::string, std::string> extra_env = {});
  ~TestStack();
  std::string Env(const std::string& k) const { return stack->Env().at(k); }
  dev::DevStack& Dev() { return *stack; }

  /// Mails received per envelope recipient.
  std::map<std::string, int> MailCounts() const;
  int MailsTo(const std::string& address) const;
  /// Number of .eml files (cheap, for large runs).
  std::size_t MailFiles() const;
  /// Publishes JSON events with `herald publish`; returns the event ids.
  std::vector<std::string> Publish(const std::vector<nlohmann::json>& events) const;
  /// GET a stage's /metrics and return the value of one series (0 when absent).
  double Metric(const std::string& stage, const std::string& series) const;
  /// The fake server control API of a role ("auth", "ugc", ...).
  void SetFault(const std::string& role, const nlohmann::json& fault) const;
  void ClearFaults(const std::string& role) const;
  nlohmann::json FakeRequests(const std::string& role, const std::string& path_prefix) const;

  /// The admin API's tokens (HERALD_ADMIN_TOKEN is "write:<w>,read:<r>" in the dev stack).
  std::string AdminToken(bool write = true) const;
  struct ApiResponse {
    long status = 0;
    nlohmann::json body;  // null when the body is not JSON
    std::string raw;
    std::map<std::string, std::string> headers;
  };
  /// Calls the admin API: `body` null = no body; `token` defaults to the write token, "" = none.
  ApiResponse Admin(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr,
                    std::optional<std::string> token = std::nullopt) const;
  /// Same with a raw body (malformed JSON, oversized, ...).
  ApiResponse AdminRaw(const std::string& method, const std::string& path, const std::string& body,
                       std::optional<std::string> token = std::nullopt,
                       const std::string& content_type = "application/json") const;

  /// The stages' clock for timing decisions (HERALD_CLOCK=file:...): pinned at
  /// kStartClock when the stack starts, moved only by the test.
  static constexpr const char* kStartClock = "2026-11-21T10:00:05Z";
  TimePoint Now() const;
  void SetClock(TimePoint t) const;
  void AdvanceClock(std::chrono::milliseconds d) const { SetClock(Now() + d); }
  const std::string& ClockFile() const { return clock_file_; }

 private:
  TempDir dir_;
  std::string clock_file_;
  std::unique_ptr<dev::DevStack> stack;
};

/// The dev stack's services without stages (PostgreSQL migrated with the default templates,
/// Redis, SMTP sink, broker, fakes), for tests of a library against real servers.
struct ServicesStack {
  ServicesStack();
  TempDir dir;
  std::unique_ptr<dev::DevStack> stack;
  std::string pg_url;
};

std::string EmailOf(int user);

/// Synthetic user u-<i> as the stack's fake auth API serves it (seed 42).
nlohmann::json SyntheticUser(int i);
/// The first user at or after `from` for whom `pred` holds.
int FindUser(int from, const std::function<bool(const nlohmann::json&)>& pred);
/// Whether a user's first channel works at the fake providers (no dead push token, no
/// chat that blocked the bot).
bool FirstChannelWorks(const nlohmann::json& user);

}  // namespace herald::test
