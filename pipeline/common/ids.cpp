#include "herald/common/ids.hpp"

#include <array>
#include <random>

#include <openssl/sha.h>

namespace herald {
namespace {

std::string Hex(const unsigned char* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::string FormatUuid(const unsigned char* bytes) {
  std::string hex = Hex(bytes, 16);
  return hex.substr(0, 8) + '-' + hex.substr(8, 4) + '-' + hex.substr(12, 4) + '-' +
         hex.substr(16, 4) + '-' + hex.substr(20, 12);
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof digest);
}

std::string DeterministicId(std::initializer_list<std::string_view> parts) {
  std::string joined;
  for (auto p : parts) {
    joined.append(p);
    joined.push_back('\x1f');
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), digest);
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x80);  // version 8: custom
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return FormatUuid(digest);
}

std::string RandomUuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<unsigned char, 16> b{};
  for (std::size_t i = 0; i < b.size(); i += 8) {
    auto v = rng();
    for (std::size_t k = 0; k < 8; ++k) b[i + k] = static_cast<unsigned char>(v >> (8 * k));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  return FormatUuid(b.data());
}

std::string DeriveEventId(std::string_view topic, std::int32_t partition, std::int64_t offset) {
  return DeterministicId({"event", topic, std::to_string(partition), std::to_string(offset)});
}

std::string RequestId(std::string_view event_id, std::string_view user_id) {
  return DeterministicId({"request", event_id, user_id});
}

std::string NotificationId(std::string_view event_id, std::string_view user_id,
                           std::string_view channel) {
  return DeterministicId({"notification", event_id, user_id, channel});
}

}  // namespace herald
