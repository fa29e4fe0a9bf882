#pragma once
// JSON Schema validation of domain events (valijson) and the registry of event types.
// Event types are data: schemas/events/<type>.json holds the payload schema and, under
// "x-herald", the type's source, default priority, channels, timing defaults and the
// template variables enrichment adds ("variables").
//
// Thread safety: a constructed registry is immutable; Validate() may run concurrently.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace herald::schema {

struct ValidationError {
  std::string field;    // JSON pointer, e.g. "/payload/user/0" ("" = the document)
  std::string message;  // what is wrong there
};

struct EventTypeInfo {
  std::string name;
  std::string title;
  std::string source;              // auth | ugc | content | admin: the topic it belongs to
  std::string default_priority;    // high | normal | low
  bool critical = false;           // ignores quiet hours and marketing opt-out
  bool marketing = false;          // needs marketing opt-in
  std::string category;
  std::vector<std::string> channels;  // channels the type may use, in default order
  // Template variables: what enrichment adds for this type (x-herald.variables) and the
  // top-level fields the schema declares under payload.data (properties.payload.properties
  // .data.properties). Both sorted; see templates::AllowedVariables.
  std::vector<std::string> variables;
  std::vector<std::string> data_fields;
  nlohmann::json meta;             // the whole x-herald object
};

class Registry {
 public:
  /// Builds the registry from the compiled-in schemas plus, when `extra_dir` is not empty,
  /// every events/*.json under it (new types without a rebuild). Throws ConfigError.
  static std::shared_ptr<const Registry> Load(const std::string& extra_dir = {});

  Registry(const nlohmann::json& envelope, const std::vector<nlohmann::json>& types);
  ~Registry();

  /// Validates a parsed event against the envelope and its type's schema. Returns the
  /// errors (empty = valid). An unknown event_type is an error on "/event_type".
  std::vector<ValidationError> Validate(const nlohmann::json& event) const;

  const EventTypeInfo* Find(const std::string& event_type) const;
  std::vector<const EventTypeInfo*> Types() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::schema
