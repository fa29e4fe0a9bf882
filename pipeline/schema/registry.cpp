#include "herald/schema/registry.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"

namespace herald::schema {
namespace {

std::unique_ptr<valijson::Schema> Compile(const nlohmann::json& doc, const std::string& what) {
  auto schema = std::make_unique<valijson::Schema>();
  try {
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    parser.populateSchema(adapter, *schema);
  } catch (const std::exception& e) {
    throw ConfigError("schema " + what + " is invalid: " + e.what());
  }
  return schema;
}

// valijson reports a context like ["<root>", "[payload]", "[user]", "[0]"]; turn it into a
// JSON pointer.
std::string Pointer(const std::vector<std::string>& context) {
  std::string out;
  for (const auto& c : context) {
    if (c == "<root>") continue;
    std::string part = c;
    if (part.size() >= 2 && part.front() == '[' && part.back() == ']') {
      part = part.substr(1, part.size() - 2);
      if (part.size() >= 2 && part.front() == '"' && part.back() == '"') {
        part = part.substr(1, part.size() - 2);
      }
    }
    out += "/" + part;
  }
  return out;
}

// valijson checks `pattern` and `format` with std::regex, which recurses per character and
// exhausts the stack on strings of some ten thousand characters. No string a pattern or format
// accepts is anywhere near kLongString (the schemas bound such fields with maxLength far
// below it, and a date-time is short), and enum values are short too, so validating a copy
// in which every longer string is replaced by kLongString + 1 letters gives the same verdict
// and the same messages (valijson's do not quote values) without the risk.
constexpr std::size_t kLongString = 4096;

bool HasLongString(const nlohmann::json& doc) {
  std::vector<const nlohmann::json*> pending = {&doc};
  while (!pending.empty()) {
    const auto* j = pending.back();
    pending.pop_back();
    if (j->is_string() && j->get_ref<const std::string&>().size() > kLongString) return true;
    if (j->is_structured()) {
      for (const auto& v : *j) pending.push_back(&v);
    }
  }
  return false;
}

void ShortenLongStrings(nlohmann::json& doc) {
  std::vector<nlohmann::json*> pending = {&doc};
  while (!pending.empty()) {
    auto* j = pending.back();
    pending.pop_back();
    if (j->is_string() && j->get_ref<const std::string&>().size() > kLongString) *j = std::string(kLongString + 1, 'x');
    if (j->is_structured()) {
      for (auto& v : *j) pending.push_back(&v);
    }
  }
}

std::vector<ValidationError> Run(const valijson::Schema& schema, const nlohmann::json& doc) {
  valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter adapter(doc);
  std::vector<ValidationError> errors;
  try {
    if (validator.validate(schema, adapter, &results)) return errors;
  } catch (const std::exception& e) {
    // valijson throws where a constraint cannot be applied to a value (FormatChecks do so
    // for objects, which CheckFormats reports first); never let that escape as a crash.
    errors.push_back({"", std::string("the event cannot be checked against its schema: ") + e.what()});
    return errors;
  }
  valijson::ValidationResults::Error e;
  // valijson lists the failing combinators first and the precise leaf failures last;
  // the deepest path is the most useful one to report.
  while (results.popError(e)) errors.push_back({Pointer(e.context), e.description});
  std::stable_sort(errors.begin(), errors.end(), [](const auto& a, const auto& b) {
    return a.field.size() > b.field.size();
  });
  return errors;
}

// The JSON pointers of the instance locations that carry a `format` constraint (through
// properties and combinators), e.g. /created_dt.
void FormatPaths(const nlohmann::json& schema, const std::string& pointer, std::vector<std::string>& out) {
  if (!schema.is_object()) return;
  if (schema.contains("format") && std::find(out.begin(), out.end(), pointer) == out.end()) out.push_back(pointer);
  for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
    if (auto it = schema.find(combinator); it != schema.end() && it->is_array()) {
      for (const auto& sub : *it) FormatPaths(sub, pointer, out);
    }
  }
  if (auto it = schema.find("properties"); it != schema.end() && it->is_object()) {
    for (const auto& [name, sub] : it->items()) FormatPaths(sub, pointer + "/" + name, out);
  }
}

// valijson's format check reads the value as a string and cannot for an object or array: such
// a value is reported here, naming the field, before valijson sees it.
std::vector<ValidationError> CheckFormats(const std::vector<std::string>& paths, const nlohmann::json& doc) {
  for (const auto& p : paths) {
    nlohmann::json::json_pointer ptr(p);
    if (doc.contains(ptr) && doc.at(ptr).is_structured()) {
      return {{p, std::string("must be a date-time string (RFC 3339), not an ") + (doc.at(ptr).is_object() ? "object" : "array")}};
    }
  }
  return {};
}

// The top-level fields declared under properties.payload.properties.data.properties (sorted,
// as nlohmann::json objects iterate in key order).
std::vector<std::string> DataFields(const nlohmann::json& type_schema) {
  std::vector<std::string> out;
  const nlohmann::json* cur = &type_schema;
  for (const char* key : {"properties", "payload", "properties", "data", "properties"}) {
    if (!cur->is_object()) return out;
    auto it = cur->find(key);
    if (it == cur->end()) return out;
    cur = &*it;
  }
  if (cur->is_object()) {
    for (const auto& [name, _] : cur->items()) out.push_back(name);
  }
  return out;
}

}  // namespace

struct Registry::Impl {
  std::unique_ptr<valijson::Schema> envelope;
  std::vector<std::string> envelope_formats;
  struct Type {
    EventTypeInfo info;
    std::unique_ptr<valijson::Schema> schema;
    std::vector<std::string> formats;
  };
  std::map<std::string, Type> types;
};

Registry::Registry(const nlohmann::json& envelope, const std::vector<nlohmann::json>& types)
    : impl_(std::make_unique<Impl>()) {
  impl_->envelope = Compile(envelope, "envelope.json");
  FormatPaths(envelope, "", impl_->envelope_formats);
  for (const auto& t : types) {
    std::string id = t.value("$id", "");
    auto slash = id.rfind('/');
    std::string name = id.substr(slash == std::string::npos ? 0 : slash + 1);
    if (name.size() > 5 && name.ends_with(".json")) name.resize(name.size() - 5);
    if (name.empty() || !t.contains("x-herald")) {
      throw ConfigError("event schema " + id + " needs an $id ending in <type>.json and x-herald");
    }
    const auto& m = t["x-herald"];
    Impl::Type type;
    type.info.name = name;
    type.info.title = t.value("title", name);
    type.info.source = m.value("source", "");
    type.info.default_priority = m.value("priority", "normal");
    type.info.critical = m.value("critical", false);
    type.info.marketing = m.value("marketing", false);
    type.info.category = m.value("category", "");
    type.info.channels = m.value("channels", std::vector<std::string>{});
    type.info.meta = m;
    if (type.info.source.empty() || type.info.channels.empty()) {
      throw ConfigError("event schema " + name + ": x-herald needs source and channels");
    }
    try {
      type.info.variables = m.value("variables", std::vector<std::string>{});
    } catch (const nlohmann::json::exception&) {
      throw ConfigError("event schema " + name + ": x-herald.variables must be an array of names");
    }
    type.info.data_fields = DataFields(t);
    std::sort(type.info.variables.begin(), type.info.variables.end());
    type.schema = Compile(t, name);
    FormatPaths(t, "", type.formats);
    impl_->types[name] = std::move(type);
  }
}

Registry::~Registry() = default;

std::shared_ptr<const Registry> Registry::Load(const std::string& extra_dir) {
  nlohmann::json envelope;
  std::vector<nlohmann::json> types;
  for (const auto& f : embedded::Schemas()) {
    auto doc = nlohmann::json::parse(f.content);
    if (f.path == "envelope.json") envelope = std::move(doc);
    else if (f.path.starts_with("events/")) types.push_back(std::move(doc));
  }
  if (!extra_dir.empty()) {
    std::filesystem::path dir = std::filesystem::path(extra_dir) / "events";
    if (!std::filesystem::is_directory(dir)) {
      throw ConfigError("schema dir " + dir.string() + " does not exist");
    }
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".json") continue;
      std::ifstream in(entry.path());
      try {
        types.push_back(nlohmann::json::parse(in));
      } catch (const nlohmann::json::exception& e) {
        throw ConfigError(entry.path().string() + ": " + e.what());
      }
    }
  }
  if (envelope.is_null()) throw ConfigError("envelope.json is not compiled in");
  return std::make_shared<const Registry>(envelope, types);
}

std::vector<ValidationError> Registry::Validate(const nlohmann::json& original) const {
  // Checked once for both schemas: the copy is made only when a long string is present.
  nlohmann::json shortened;
  if (HasLongString(original)) {
    shortened = original;
    ShortenLongStrings(shortened);
  }
  const nlohmann::json& event = shortened.is_null() ? original : shortened;
  if (auto bad = CheckFormats(impl_->envelope_formats, event); !bad.empty()) return bad;
  auto errors = Run(*impl_->envelope, event);
  if (!errors.empty()) return errors;
  const auto& type_name = event["event_type"].get_ref<const std::string&>();
  auto it = impl_->types.find(type_name);
  if (it == impl_->types.end()) {
    return {{"/event_type", "unknown event type '" + type_name + "'"}};
  }
  if (auto bad = CheckFormats(it->second.formats, event); !bad.empty()) return bad;
  return Run(*it->second.schema, event);
}

const EventTypeInfo* Registry::Find(const std::string& event_type) const {
  auto it = impl_->types.find(event_type);
  return it == impl_->types.end() ? nullptr : &it->second.info;
}

std::vector<const EventTypeInfo*> Registry::Types() const {
  std::vector<const EventTypeInfo*> out;
  for (const auto& [name, t] : impl_->types) out.push_back(&t.info);
  return out;
}

}  // namespace herald::schema
