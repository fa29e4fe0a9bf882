// Event parsing and schema validation on arbitrary bytes (a record on an events topic):
// any input is an event or an InvalidInput naming the problem, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "herald/common/errors.hpp"
#include "herald/model/event.hpp"
#include "herald/schema/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto registry = herald::schema::Registry::Load();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto event = herald::model::ParseEvent(bytes, *registry, herald::model::Origin{"events.auth.v1", 0, 7});
    // A valid event serialises and parses back to the same id and type.
    auto again = herald::model::ParseEventDocument(herald::model::ToJson(event), *registry, std::nullopt);
    if (again.event_id != event.event_id || again.event_type != event.event_type) __builtin_trap();
  } catch (const herald::InvalidInput&) {
  }
  return 0;
}
