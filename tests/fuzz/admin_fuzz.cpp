// The admin API's untrusted inputs: a campaign create/update body (parsed with the API's
// limits, then validated field by field) and an unsubscribe token from a link. Each is
// accepted or refused with InvalidInput naming the problem; a forged token never verifies.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "admin/campaigns.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/unsubscribe.hpp"
#include "herald/common/untrusted_json.hpp"
#include "herald/schema/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto registry = herald::schema::Registry::Load();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto body = herald::ParseUntrusted(text);
    std::optional<int> version;
    auto campaign = herald::campaigns::FromInput(body, *registry, size % 2 == 1, &version);
    (void)herald::campaigns::ToJson(campaign).dump();
  } catch (const herald::InvalidInput&) {
  }
  std::string why;
  if (herald::VerifyUnsubscribeToken("fuzz-secret", text, std::chrono::system_clock::now(), &why)) __builtin_trap();
  return 0;
}
