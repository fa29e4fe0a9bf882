#pragma once
// JSON from outside (HTTP bodies, Kafka records) parsed with limits, so hostile input costs
// a clear error and nothing else: invalid JSON (ill-formed UTF-8 included), nesting deeper
// than a bound (later recursive code — schema validation, dump — must not exhaust the
// stack), and NUL characters in strings or keys (PostgreSQL text cannot hold them and C
// strings would cut them short) are InvalidInput naming the problem.

#include <string_view>

#include <nlohmann/json.hpp>

namespace herald {

constexpr int kMaxJsonDepth = 32;

/// Parses `text`; throws InvalidInput ("body is not valid JSON: ...", "... nested deeper than
/// N levels", "a string must not contain a NUL character" with its JSON pointer). Without
/// `reject_nul` the caller checks the parts it uses itself (CheckUntrusted), so it can name
/// them in its own terms.
nlohmann::json ParseUntrusted(std::string_view text, int max_depth = kMaxJsonDepth, bool reject_nul = true);

/// The depth and NUL checks on a document parsed elsewhere. Iterative.
void CheckUntrusted(const nlohmann::json& doc, int max_depth = kMaxJsonDepth);

}  // namespace herald
