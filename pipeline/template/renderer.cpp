#include "herald/template/renderer.hpp"

#include <set>

#include <kainjow/mustache.hpp>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"

namespace herald::templates {
namespace {

namespace mstch = kainjow::mustache;

mstch::data ToData(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object: {
      mstch::data d{mstch::data::type::object};
      for (const auto& [k, v] : j.items()) d.set(k, ToData(v));
      return d;
    }
    case nlohmann::json::value_t::array: {
      mstch::data d{mstch::data::type::list};
      for (const auto& v : j) d.push_back(ToData(v));
      return d;
    }
    case nlohmann::json::value_t::string: return mstch::data{j.get<std::string>()};
    case nlohmann::json::value_t::boolean:
      return j.get<bool>() ? mstch::data{mstch::data::type::bool_true}
                           : mstch::data{mstch::data::type::bool_false};
    case nlohmann::json::value_t::null: return mstch::data{mstch::data::type::bool_false};
    default: return mstch::data{j.dump()};
  }
}

std::string RenderPart(const std::string& text, const mstch::data& data, bool html,
                       const char* part) {
  mstch::mustache tmpl{text};
  if (!tmpl.is_valid()) {
    throw InvalidInput(std::string("template ") + part + " is invalid: " + tmpl.error_message());
  }
  if (!html) tmpl.set_custom_escape([](const std::string& s) { return s; });
  return tmpl.render(data);
}

bool Has(const nlohmann::json& vars, const std::string& dotted) {
  const nlohmann::json* cur = &vars;
  std::size_t start = 0;
  while (true) {
    auto dot = dotted.find('.', start);
    std::string part = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return false;
    auto it = cur->find(part);
    if (it == cur->end() || it->is_null()) return false;
    cur = &*it;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

// Walks mustache tags: calls fn(kind, name, depth) for every tag outside comments.
template <typename Fn>
void ScanTags(std::string_view s, Fn&& fn) {
  int depth = 0;
  std::size_t pos = 0;
  while ((pos = s.find("{{", pos)) != std::string_view::npos) {
    bool triple = s.substr(pos, 3) == "{{{";
    std::size_t start = pos + (triple ? 3 : 2);
    auto end = s.find(triple ? "}}}" : "}}", start);
    if (end == std::string_view::npos) return;
    std::string tag(s.substr(start, end - start));
    pos = end + (triple ? 3 : 2);
    auto b = tag.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    char kind = tag[b];
    if (kind == '#' || kind == '^' || kind == '/' || kind == '&' || kind == '!' || kind == '>' ||
        kind == '=') {
      ++b;
    } else {
      kind = 'v';
    }
    auto name_start = tag.find_first_not_of(" \t", b);
    auto name_end = tag.find_last_not_of(" \t");
    std::string name = name_start == std::string::npos ? "" : tag.substr(name_start, name_end - name_start + 1);
    if (kind == '/') --depth;
    fn(kind, name, depth);
    if (kind == '#' || kind == '^') ++depth;
  }
}

}  // namespace

std::vector<std::string> Variables(std::string_view mustache) {
  std::set<std::string> names;
  ScanTags(mustache, [&](char kind, const std::string& name, int depth) {
    if (depth > 0 || name.empty() || name == ".") return;
    if (kind == 'v' || kind == '&' || kind == '#' || kind == '^') names.insert(name);
  });
  return {names.begin(), names.end()};
}

Rendered Render(const Template& t, const nlohmann::json& vars) {
  for (const std::string* part : {&t.subject, &t.text, &t.html}) {
    ScanTags(*part, [&](char kind, const std::string& name, int depth) {
      // Section tags may legitimately name absent data (a falsy section); plain variables
      // must exist.
      if (depth > 0 || name.empty() || name == "." || !(kind == 'v' || kind == '&')) return;
      if (!Has(vars, name)) {
        throw InvalidInput("template " + t.event_type + "/" + t.channel + "/" + t.locale +
                               " uses {{" + name + "}} but the notification has no such value",
                           name);
      }
    });
  }
  auto data = ToData(vars);
  Rendered r;
  r.subject = RenderPart(t.subject, data, false, "subject");
  std::erase_if(r.subject, [](char c) { return c == '\r' || c == '\n'; });
  r.text = RenderPart(t.text, data, false, "text");
  r.html = RenderPart(t.html, data, true, "html");
  return r;
}

Template TemplateFromJson(const nlohmann::json& j) {
  try {
    Template t;
    t.event_type = j.at("event_type").get<std::string>();
    t.channel = j.at("channel").get<std::string>();
    t.locale = j.at("locale").get<std::string>();
    t.subject = j.value("subject", "");
    t.text = j.at("text").get<std::string>();
    t.html = j.value("html", "");
    t.version = j.value("version", 1);
    return t;
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(std::string("malformed template: ") + e.what());
  }
}

TemplateStore TemplateStore::Builtin() {
  TemplateStore store;
  for (const auto& f : embedded::Templates()) {
    store.Add(TemplateFromJson(nlohmann::json::parse(f.content)));
  }
  return store;
}

void TemplateStore::Add(Template t) {
  std::string key = t.event_type + "\x1f" + t.channel + "\x1f" + t.locale;
  templates_[key] = std::move(t);
}

const Template* TemplateStore::Find(const std::string& event_type, const std::string& channel,
                                    const std::string& locale) const {
  for (const auto& loc : {locale, std::string("en")}) {
    auto it = templates_.find(event_type + "\x1f" + channel + "\x1f" + loc);
    if (it != templates_.end()) return &it->second;
  }
  return nullptr;
}

}  // namespace herald::templates
