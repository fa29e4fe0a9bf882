// Template rendering: arbitrary mustache text against arbitrary JSON variables. The input is
// "<template>\0<variables JSON>". Rendering succeeds or names the missing variable or the
// syntax error; the subject never keeps a line break.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"
#include "herald/template/renderer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto nul = input.find('\0');
  std::string text = input.substr(0, nul);
  auto vars = nul == std::string::npos ? nlohmann::json::object()
                                       : nlohmann::json::parse(input.substr(nul + 1), nullptr, false);
  if (vars.is_discarded()) vars = nlohmann::json::object();
  (void)herald::templates::Variables(text);
  herald::templates::Template t;
  t.event_type = "user.registered";
  t.channel = "email";
  t.locale = "en";
  t.subject = text;
  t.text = text;
  t.html = text;
  try {
    auto r = herald::templates::Render(t, vars);
    if (r.subject.find_first_of("\r\n") != std::string::npos) __builtin_trap();
  } catch (const herald::InvalidInput&) {
  }
  return 0;
}
