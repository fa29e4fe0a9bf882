// The ingest API's request handling on arbitrary bodies: every body is accepted (all events
// routed) or answered with a 400 body naming the problem; it never throws or crashes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "producers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto registry = herald::schema::Registry::Load();
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto out = herald::producers::ParseIngest(body, *registry, size % 2 ? "auth" : "");
  if (out.error.is_null() == out.routed.empty()) __builtin_trap();  // exactly one of the two
  if (!out.error.is_null()) {
    if (!out.error["error"].is_string() || !out.error["errors"].is_array() || out.error["errors"].empty()) __builtin_trap();
    // The answer must serialise as the server sends it (ill-formed UTF-8 from the body, quoted
    // in a parse error, is replaced).
    (void)out.error.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  for (const auto& r : out.routed) {
    if (r.topic.empty() || r.event_id.empty()) __builtin_trap();
    (void)r.event.dump();  // accepted events are valid UTF-8: published as they are
  }
  return 0;
}
