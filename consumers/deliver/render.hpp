#pragma once
// Rendering a delivery exactly as the delivery stage sends it: the template of its type,
// channel and locale (falling back to "en"), with the signed one-click unsubscribe link as
// the `unsubscribe_url` variable. Shared by delivery and `herald replay --dry-run`.

#include <string>

#include "herald/model/records.hpp"
#include "herald/schema/registry.hpp"
#include "herald/template/renderer.hpp"

namespace herald::consumers::deliver {

/// Account and security mail (welcome, password reset) is transactional: no unsubscribe.
bool Unsubscribable(const schema::EventTypeInfo* type);

struct Prepared {
  templates::Rendered rendered;
  std::string list_unsubscribe;  // email: the one-click unsubscribe URL, empty for transactional types
};

/// Adds `unsubscribe_url` to d.vars and renders. Throws InvalidInput when there is no
/// template or a variable is missing (named in the message).
Prepared Render(model::Delivery& d, const schema::EventTypeInfo* type, const templates::TemplateStore& store,
                const std::string& unsubscribe_url, const std::string& unsubscribe_secret);

}  // namespace herald::consumers::deliver
