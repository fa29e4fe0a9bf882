#pragma once
// Mustache templates (kainjow), one per event type x channel x locale, with locale
// fallback to "en". HTML parts are HTML-escaped; subject and text parts are not, and the
// subject has CR/LF removed so nothing can inject a header. A variable the template uses
// that the data does not have fails the render (InvalidInput) — never a blank.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace herald::templates {

struct Template {
  std::string event_type;
  std::string channel;
  std::string locale;
  std::string subject;  // email only
  std::string text;
  std::string html;     // email only
  int version = 1;
};

struct Rendered {
  std::string subject;
  std::string text;
  std::string html;
};

/// The top-level variable names a template text uses outside sections (dotted names keep
/// their first component), e.g. "Hi {{first_name}}" -> {"first_name"}.
std::vector<std::string> Variables(std::string_view mustache);

/// Renders; throws InvalidInput naming the first missing variable or a template syntax error.
Rendered Render(const Template& t, const nlohmann::json& vars);

/// Templates by (event_type, channel, locale). Thread-safe once built.
class TemplateStore {
 public:
  /// The compiled-in default templates (schemas/templates/*.json).
  static TemplateStore Builtin();
  void Add(Template t);
  /// Exact locale, else "en", else nullptr.
  const Template* Find(const std::string& event_type, const std::string& channel,
                       const std::string& locale) const;
  std::size_t Size() const { return templates_.size(); }

 private:
  std::map<std::string, Template> templates_;
};

Template TemplateFromJson(const nlohmann::json& j);

}  // namespace herald::templates
