#pragma once
// HTTP delivery providers (UPSTREAMS.md): SMS (Twilio-like), Telegram Bot API sendMessage,
// push (FCM-like). A provider sends a batch concurrently on libcurl multi (at most
// `concurrency` requests in flight) and classifies each outcome:
//   sent        — accepted (with the provider's message id)
//   retry later — timeouts, connection failures, 5xx, 429 (with Retry-After when given), and
//                 401 (any channel) / 403 (sms, push): the provider refused Herald's own
//                 credentials, a misconfiguration that no other channel should pay for; the
//                 notification waits in the retry tiers (then the DLQ, for a replay once the
//                 token is fixed)
//   rejected    — permanent for this address: invalid number (400), bot blocked (telegram's
//                 403), unregistered token (404); the notification moves to the next channel.
// Not thread-safe: one provider per delivery thread.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deliver/email.hpp"
#include "herald/http/multi_client.hpp"

namespace herald::consumers::deliver {

struct OutMessage {
  std::string notification_id;  // idempotency key where the provider supports one
  std::string address;          // phone, chat id or push token
  std::string title;            // push only
  std::string text;
};

struct ProviderOutcome {
  SendResult result = SendResult::kRetryLater;
  std::string detail;
  std::string message_id;
  std::optional<std::chrono::seconds> retry_after;
  bool throttled = false;  // the provider said 429: slow down (not a failure of this message)
};

class HttpProvider {
 public:
  struct Options {
    std::string channel;   // sms | telegram | push
    std::string base_url;
    std::string token;     // telegram: the bot token, in the URL; sms, push: sent as
                           // "Authorization: Bearer <token>" when not empty
    std::size_t concurrency = 16;
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds timeout{10000};
  };
  explicit HttpProvider(Options options);
  const std::string& Channel() const { return options_.channel; }
  std::vector<ProviderOutcome> SendMany(const std::vector<OutMessage>& messages);

  /// Pure: how one HTTP answer (or transport error) is classified for `channel`.
  static ProviderOutcome Classify(const std::string& channel, const http::Result& r);

 private:
  http::Request Build(const OutMessage& m) const;
  Options options_;
  http::MultiClient client_;
};

}  // namespace herald::consumers::deliver
