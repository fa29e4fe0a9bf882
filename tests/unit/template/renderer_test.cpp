#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "herald/template/renderer.hpp"

using namespace herald::templates;

TEST_CASE("welcome templates render in the user's language", "[template]") {
  auto store = TemplateStore::Builtin();
  const auto* ru = store.Find("user.registered", "email", "ru");
  const auto* en = store.Find("user.registered", "email", "en");
  REQUIRE(ru);
  REQUIRE(en);
  auto r = Render(*ru, {{"first_name", "Ольга"}});
  CHECK(r.subject == "Добро пожаловать в Herald Cinema, Ольга!");
  CHECK(r.text.find("Здравствуйте, Ольга!") != std::string::npos);
  CHECK(Render(*en, {{"first_name", "Ann"}}).subject == "Welcome to Herald Cinema, Ann!");
}

TEST_CASE("an unknown locale falls back to en", "[template]") {
  auto store = TemplateStore::Builtin();
  const auto* t = store.Find("user.registered", "email", "de");
  REQUIRE(t);
  CHECK(t->locale == "en");
  CHECK(store.Find("user.registered", "pigeon", "en") == nullptr);
}

TEST_CASE("a missing variable fails the render instead of leaving a blank", "[template]") {
  Template t{"x", "email", "en", "Hi {{first_name}}", "Hello {{ first_name }} {{profile.city}}", "", 1};
  CHECK_THROWS_WITH(Render(t, {{"first_name", "A"}}), Catch::Contains("{{profile.city}}"));
  CHECK_THROWS_AS(Render(t, nlohmann::json::object()), herald::InvalidInput);
  CHECK(Render(t, {{"first_name", "A"}, {"profile", {{"city", "Omsk"}}}}).text == "Hello A Omsk");
  // A section over absent data is simply empty, not an error.
  Template s{"x", "email", "en", "", "{{#titles}}- {{.}}\n{{/titles}}{{^titles}}none{{/titles}}", "", 1};
  CHECK(Render(s, nlohmann::json::object()).text == "none");
  CHECK(Render(s, {{"titles", {"A", "B"}}}).text == "- A\n- B\n");
}

TEST_CASE("HTML is escaped, text is not, and subjects cannot carry new lines", "[template]") {
  Template t{"x", "email", "en", "Hi {{name}}", "Hi {{name}}", "<p>Hi {{name}}</p>", 1};
  auto r = Render(t, {{"name", "<script>\r\nBcc: x@evil.test"}});
  CHECK(r.html.find("<script>") == std::string::npos);
  CHECK(r.html.find("&lt;script&gt;") != std::string::npos);
  CHECK(r.text.find("<script>") != std::string::npos);
  CHECK(r.subject.find('\n') == std::string::npos);
  CHECK(r.subject.find('\r') == std::string::npos);
}

TEST_CASE("Variables lists the top-level names a template uses", "[template]") {
  CHECK(Variables("Hi {{first_name}}, {{{raw}}} {{#list}}{{inner}}{{/list}} {{! comment }}") ==
        std::vector<std::string>{"first_name", "list", "raw"});
}

TEST_CASE("a template with broken syntax is reported", "[template]") {
  Template t{"x", "email", "en", "", "Hi {{#open}}", "", 1};
  CHECK_THROWS_AS(Render(t, {{"open", true}}), herald::InvalidInput);
}
