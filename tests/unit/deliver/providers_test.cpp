#include <catch2/catch.hpp>

#include "deliver/providers.hpp"

using namespace herald::consumers::deliver;
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
