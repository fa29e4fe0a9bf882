#pragma once
// Signed, expiring unsubscribe tokens for List-Unsubscribe (RFC 8058 one-click) links.
//
// token = base64url(user_id "\x1f" category "\x1f" expires_unix) "." base64url(HMAC-SHA256)
// The MAC covers the whole payload, so neither the user, the category nor the expiry can be
// changed without the secret. Tokens are URL-safe (no padding, no '+' or '/').

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

struct UnsubscribeClaim {
  std::string user_id;
  std::string category;  // the event type's category ("marketing", "content", ...)
  std::chrono::system_clock::time_point expires;
};

std::string MakeUnsubscribeToken(std::string_view secret, const UnsubscribeClaim& claim);

/// The claim of a well-formed, authentic, unexpired token; nullopt otherwise, with the reason
/// ("malformed", "bad signature", "expired") in *why when given.
std::optional<UnsubscribeClaim> VerifyUnsubscribeToken(std::string_view secret, std::string_view token,
                                                       std::chrono::system_clock::time_point now,
                                                       std::string* why = nullptr);

/// `base_url` with "?token=<token>" (or "&token=" when it already has a query).
std::string UnsubscribeUrl(std::string_view base_url, std::string_view token);

}  // namespace herald
