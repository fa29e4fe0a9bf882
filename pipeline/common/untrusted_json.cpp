#include "herald/common/untrusted_json.hpp"

#include <string>
#include <utility>
#include <vector>

#include "herald/common/errors.hpp"

namespace herald {
namespace {

std::string TooDeep(int max_depth) {
  return "the body is nested deeper than " + std::to_string(max_depth) + " levels";
}

// Walks the document without recursion; `depth_checked` when the parser bounded it already.
void Walk(const nlohmann::json& root, int max_depth, bool depth_checked) {
  struct Item {
    const nlohmann::json* j;
    std::string pointer;
    int depth;
  };
  std::vector<Item> pending = {{&root, "", 0}};
  while (!pending.empty()) {
    auto [j, pointer, depth] = std::move(pending.back());
    pending.pop_back();
    if (!depth_checked && depth > max_depth) throw InvalidInput(TooDeep(max_depth), pointer);
    if (j->is_string() && j->get_ref<const std::string&>().find('\0') != std::string::npos) {
      throw InvalidInput("a string must not contain a NUL character (\\u0000)", pointer);
    }
    if (j->is_object()) {
      for (const auto& [k, v] : j->items()) {
        if (k.find('\0') != std::string::npos) throw InvalidInput("a key must not contain a NUL character", pointer);
        pending.push_back({&v, pointer + "/" + k, depth + 1});
      }
    } else if (j->is_array()) {
      for (std::size_t i = 0; i < j->size(); ++i) pending.push_back({&(*j)[i], pointer + "/" + std::to_string(i), depth + 1});
    }
  }
}

}  // namespace

nlohmann::json ParseUntrusted(std::string_view text, int max_depth, bool reject_nul) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text, [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > max_depth) throw InvalidInput(TooDeep(max_depth));
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(std::string("body is not valid JSON: ") + e.what(), "");
  }
  if (reject_nul) Walk(doc, max_depth, true);
  return doc;
}

void CheckUntrusted(const nlohmann::json& doc, int max_depth) { Walk(doc, max_depth, false); }

}  // namespace herald
