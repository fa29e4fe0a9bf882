#include "deliver/providers.hpp"

#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"

namespace herald::consumers::deliver {

using nlohmann::json;

HttpProvider::HttpProvider(Options options)
    : options_(std::move(options)),
      client_(http::MultiClient::Options{options_.concurrency, options_.concurrency, options_.connect_timeout,
                                         options_.timeout, "herald-deliver-" + options_.channel,
                                         options_.channel == "telegram" ? "" : options_.token}) {
  if (options_.channel != "sms" && options_.channel != "telegram" && options_.channel != "push") {
    throw ConfigError("no HTTP provider for channel '" + options_.channel + "'");
  }
  if (options_.base_url.empty()) {
    throw ConfigError("HERALD_" + std::string(options_.channel == "sms" ? "SMS" : options_.channel == "push" ? "PUSH" : "TELEGRAM") +
                      "_URL is required for the " + options_.channel + " channel");
  }
}

http::Request HttpProvider::Build(const OutMessage& m) const {
  http::Request r;
  r.method = "POST";
  if (options_.channel == "sms") {
    r.url = options_.base_url + "/v1/messages";
    r.body = json{{"to", m.address}, {"body", m.text}, {"idempotency_key", m.notification_id}}.dump();
  } else if (options_.channel == "telegram") {
    r.url = options_.base_url + "/bot" + options_.token + "/sendMessage";
    json chat = m.address;
    try {
      chat = std::stoll(m.address);
    } catch (const std::exception&) {
    }
    r.body = json{{"chat_id", chat}, {"text", m.text}}.dump();
  } else {
    r.url = options_.base_url + "/v1/send";
    r.body = json{{"token", m.address}, {"title", m.title}, {"body", m.text},
                  {"data", {{"notification_id", m.notification_id}}}}.dump();
  }
  return r;
}

ProviderOutcome HttpProvider::Classify(const std::string& channel, const http::Result& r) {
  ProviderOutcome o;
  if (!r.response) {
    o.result = SendResult::kRetryLater;
    o.detail = r.error;
    return o;
  }
  const auto& res = *r.response;
  auto body = json::parse(res.body, nullptr, false);
  o.detail = channel + " answered " + std::to_string(res.status);
  if (res.status == 200 && !body.is_discarded() && body.is_object()) {
    if (channel == "sms" && body.contains("id")) {
      o.result = SendResult::kSent;
      o.message_id = body["id"].is_string() ? body["id"].get<std::string>() : body["id"].dump();
      return o;
    }
    if (channel == "telegram" && body.value("ok", false)) {
      o.result = SendResult::kSent;
      o.message_id = body.contains("result") ? body["result"].value("message_id", json()).dump() : "";
      return o;
    }
    if (channel == "push" && body.contains("name")) {
      o.result = SendResult::kSent;
      o.message_id = body["name"].is_string() ? body["name"].get<std::string>() : body["name"].dump();
      return o;
    }
  }
  if (!body.is_discarded() && body.is_object()) {
    if (body.contains("description") && body["description"].is_string()) o.detail += ": " + body["description"].get<std::string>();
    else if (body.contains("error")) o.detail += ": " + (body["error"].is_string() ? body["error"].get<std::string>() : body["error"].dump());
  }
  // 401, and 403 from sms/push, mean the provider refused Herald's own credentials (a
  // missing, wrong or revoked HERALD_<CHANNEL>_TOKEN): a misconfiguration, not the
  // recipient's fault. Rejecting would move every recipient to their next channel (or mark
  // them failed) until someone noticed; retrying keeps the notifications in the retry tiers,
  // then in the DLQ to replay once the token is fixed. Telegram's 403 stays a rejection: it
  // is "bot was blocked by the user", about that one chat (a bad bot token answers 401).
  const bool credentials_refused = res.status == 401 || (res.status == 403 && channel != "telegram");
  if (credentials_refused) {
    o.result = SendResult::kRetryLater;
    o.detail += " (the provider refused Herald's credentials: check HERALD_" +
                std::string(channel == "sms" ? "SMS" : channel == "push" ? "PUSH" : "TELEGRAM") + "_TOKEN)";
    return o;
  }
  if (res.status == 429 || res.status >= 500 || res.status == 200 || res.status == 408) {
    // 200 with an unusable body is a provider glitch: try again rather than give up.
    o.result = SendResult::kRetryLater;
    o.throttled = res.status == 429;
    o.retry_after = res.RetryAfter();
    if (!o.retry_after && !body.is_discarded() && body.is_object() && body.contains("parameters")) {
      auto ra = body["parameters"].value("retry_after", json());
      if (ra.is_number_integer()) o.retry_after = std::chrono::seconds(ra.get<long>());
    }
    return o;
  }
  // 400 invalid number / bad chat, 403 bot blocked, 404 unregistered token, other 4xx:
  // this address will not work; the notification falls back to the next channel.
  o.result = SendResult::kRejected;
  return o;
}

std::vector<ProviderOutcome> HttpProvider::SendMany(const std::vector<OutMessage>& messages) {
  std::vector<http::Request> reqs;
  reqs.reserve(messages.size());
  for (const auto& m : messages) reqs.push_back(Build(m));
  auto results = client_.Execute(reqs);
  std::vector<ProviderOutcome> out;
  out.reserve(results.size());
  for (const auto& r : results) out.push_back(Classify(options_.channel, r));
  return out;
}

}  // namespace herald::consumers::deliver
