#include "deliver/render.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/unsubscribe.hpp"

namespace herald::consumers::deliver {
namespace {

// How long an unsubscribe link stays valid.
constexpr auto kUnsubscribeValidity = std::chrono::hours(24 * 60);

}  // namespace

bool Unsubscribable(const schema::EventTypeInfo* type) {
  return type && !type->critical && type->category != "account" && type->category != "security";
}

Prepared Render(model::Delivery& d, const schema::EventTypeInfo* type, const templates::TemplateStore& store,
                const std::string& unsubscribe_url, const std::string& unsubscribe_secret) {
  const auto* tmpl = store.Find(d.request.event_type, d.channel, d.locale);
  if (!tmpl) throw InvalidInput("no template for " + d.request.event_type + "/" + d.channel + "/" + d.locale);
  std::string unsubscribe = UnsubscribeUrl(
      unsubscribe_url, MakeUnsubscribeToken(unsubscribe_secret, {d.request.user_id, type ? type->category : d.request.event_type,
                                                                 std::chrono::system_clock::now() + kUnsubscribeValidity}));
  d.vars["unsubscribe_url"] = unsubscribe;
  return {templates::Render(*tmpl, d.vars), Unsubscribable(type) ? unsubscribe : ""};
}

}  // namespace herald::consumers::deliver
