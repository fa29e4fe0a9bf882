#include <catch2/catch.hpp>

#include "deliver/providers.hpp"
#include "herald/dev/fake_servers.hpp"

using namespace herald::consumers::deliver;
using herald::dev::FakeRole;
using herald::dev::FakeServer;
using herald::http::Response;
using herald::http::Result;

namespace {

Result Answer(long status, std::string body, std::map<std::string, std::string> headers = {}) {
  Result r;
  r.response = Response{status, std::move(body), std::move(headers)};
  return r;
}

}  // namespace

TEST_CASE("provider answers are classified as sent, retry later or rejected", "[providers]") {
  auto sms = HttpProvider::Classify("sms", Answer(200, R"({"id":"SM1"})"));
  CHECK(sms.result == SendResult::kSent);
  CHECK(sms.message_id == "SM1");
  CHECK(HttpProvider::Classify("sms", Answer(400, R"({"error":"invalid phone number"})")).result == SendResult::kRejected);
  auto throttled = HttpProvider::Classify("sms", Answer(429, "{}", {{"retry-after", "2"}}));
  CHECK(throttled.result == SendResult::kRetryLater);
  CHECK(throttled.retry_after == std::chrono::seconds(2));
  CHECK(HttpProvider::Classify("sms", Answer(503, "")).result == SendResult::kRetryLater);

  CHECK(HttpProvider::Classify("telegram", Answer(200, R"({"ok":true,"result":{"message_id":7}})")).message_id == "7");
  auto blocked = HttpProvider::Classify(
      "telegram", Answer(403, R"({"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"})"));
  CHECK(blocked.result == SendResult::kRejected);
  CHECK(blocked.detail.find("blocked") != std::string::npos);
  auto tg429 = HttpProvider::Classify("telegram", Answer(429, R"({"ok":false,"parameters":{"retry_after":5}})"));
  CHECK(tg429.result == SendResult::kRetryLater);
  CHECK(tg429.retry_after == std::chrono::seconds(5));

  CHECK(HttpProvider::Classify("push", Answer(200, R"({"name":"projects/x/messages/1"})")).result == SendResult::kSent);
  CHECK(HttpProvider::Classify("push", Answer(404, R"({"error":{"status":"UNREGISTERED"}})")).result == SendResult::kRejected);
  CHECK(HttpProvider::Classify("push", Answer(200, "{truncated")).result == SendResult::kRetryLater);

  Result transport;
  transport.error = "POST http://x: Timeout was reached";
  CHECK(HttpProvider::Classify("push", transport).result == SendResult::kRetryLater);
}

TEST_CASE("a provider refusing Herald's credentials is retried later, not a fallback", "[providers]") {
  // 401 (any channel) and 403 (sms, push) are the provider refusing our token: not the
  // recipient's fault, so never kRejected (which would move the user to the next channel).
  for (const char* channel : {"sms", "push", "telegram"}) {
    INFO(channel);
    auto o = HttpProvider::Classify(channel, Answer(401, R"({"error":"invalid token"})"));
    CHECK(o.result == SendResult::kRetryLater);
    CHECK_FALSE(o.throttled);
    CHECK(o.detail.find("credentials") != std::string::npos);
  }
  CHECK(HttpProvider::Classify("sms", Answer(403, R"({"error":"forbidden"})")).result == SendResult::kRetryLater);
  auto push403 = HttpProvider::Classify("push", Answer(403, R"({"error":{"code":403,"status":"SENDER_ID_MISMATCH"}})"));
  CHECK(push403.result == SendResult::kRetryLater);
  CHECK(push403.detail.find("HERALD_PUSH_TOKEN") != std::string::npos);
  // Telegram's 403 is about one chat (the user blocked the bot): still a rejection.
  CHECK(HttpProvider::Classify("telegram", Answer(403, R"({"ok":false,"description":"Forbidden: bot was blocked by the user"})")).result ==
        SendResult::kRejected);
}

TEST_CASE("sms and push send their token as a bearer token to a provider that requires it", "[providers][http]") {
  for (auto role : {FakeRole::kSms, FakeRole::kPush}) {
    const std::string channel(herald::dev::FakeRoleName(role));
    INFO(channel);
    herald::dev::FakeServerOptions fake_options;
    fake_options.bearer_token = "right-token";
    FakeServer fake(role, fake_options);
    fake.Start();
    const OutMessage message{"n-1:" + channel, channel == "sms" ? "+79161234567" : "fcm-0123", "Title", "Text"};
    auto send = [&](const std::string& token) {
      HttpProvider provider({channel, fake.BaseUrl(), token, 4, std::chrono::milliseconds(1000), std::chrono::milliseconds(5000)});
      auto outcomes = provider.SendMany({message});
      REQUIRE(outcomes.size() == 1);
      return outcomes.front();
    };

    auto sent = send("right-token");
    INFO(sent.detail);
    CHECK(sent.result == SendResult::kSent);
    CHECK_FALSE(sent.message_id.empty());
    CHECK(fake.DeliveredCount() == 1);

    for (const std::string token : {"", "wrong-token"}) {
      INFO("token '" << token << "'");
      auto refused = send(token);
      CHECK(refused.result == SendResult::kRetryLater);  // not kRejected: no fallback
      CHECK_FALSE(refused.throttled);
      CHECK(refused.detail.find("answered 401") != std::string::npos);
    }
    CHECK(fake.DeliveredCount() == 1);
  }
}
