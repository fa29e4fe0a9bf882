#include "herald/common/unsubscribe.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>

namespace herald {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string B64Url(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(in[k])); };
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (in.size() - i == 1) {
    unsigned v = byte(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (in.size() - i == 2) {
    unsigned v = byte(i) << 16 | byte(i + 1) << 8;
    for (int s = 18; s >= 6; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  return out;
}

std::optional<std::string> UnB64Url(std::string_view in) {
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = std::char_traits<char>::find(kAlphabet, 64, c);
    if (!p) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(p - kAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (bits >= 6) return std::nullopt;  // a dangling character cannot come from the encoder
  // The encoder leaves the unused low bits of the last character zero; a token that sets them
  // decodes to the same bytes but was never issued.
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string Mac(std::string_view secret, std::string_view payload) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

}  // namespace

std::string MakeUnsubscribeToken(std::string_view secret, const UnsubscribeClaim& claim) {
  auto exp = std::chrono::duration_cast<std::chrono::seconds>(claim.expires.time_since_epoch()).count();
  std::string payload = claim.user_id + '\x1f' + claim.category + '\x1f' + std::to_string(exp);
  return B64Url(payload) + "." + B64Url(Mac(secret, payload));
}

std::optional<UnsubscribeClaim> VerifyUnsubscribeToken(std::string_view secret, std::string_view token,
                                                       std::chrono::system_clock::time_point now,
                                                       std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<UnsubscribeClaim> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (token.size() > 1024) return fail("malformed");
  auto dot = token.find('.');
  if (dot == std::string_view::npos) return fail("malformed");
  auto payload = UnB64Url(token.substr(0, dot));
  auto mac = UnB64Url(token.substr(dot + 1));
  if (!payload || !mac) return fail("malformed");
  std::string expected = Mac(secret, *payload);
  if (mac->size() != expected.size() || CRYPTO_memcmp(mac->data(), expected.data(), expected.size()) != 0) {
    return fail("bad signature");
  }
  auto a = payload->find('\x1f');
  auto b = a == std::string::npos ? a : payload->find('\x1f', a + 1);
  if (b == std::string::npos) return fail("malformed");
  std::int64_t exp = 0;
  auto tail = std::string_view(*payload).substr(b + 1);
  auto [p, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), exp);
  if (ec != std::errc() || p != tail.data() + tail.size()) return fail("malformed");
  UnsubscribeClaim c{payload->substr(0, a), payload->substr(a + 1, b - a - 1),
                     std::chrono::system_clock::time_point(std::chrono::seconds(exp))};
  if (c.expires <= now) return fail("expired");
  return c;
}

std::string UnsubscribeUrl(std::string_view base_url, std::string_view token) {
  std::string url(base_url);
  url += base_url.find('?') == std::string_view::npos ? "?token=" : "&token=";
  url += token;
  return url;
}

}  // namespace herald
