// Template validation against the event type (no database): what a save accepts and rejects.

#include <catch2/catch.hpp>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"
#include "herald/template/store.hpp"

using namespace herald::templates;

namespace {

const herald::schema::Registry& Reg() {
  static auto registry = herald::schema::Registry::Load();
  return *registry;
}

const herald::schema::EventTypeInfo& Type(const std::string& name) {
  const auto* t = Reg().Find(name);
  REQUIRE(t);
  return *t;
}

Template Promo(std::string text) {
  return {"promo.new_releases", "telegram", "en", "", std::move(text), "", 1};
}

std::string Problems(const Template& t) {
  std::string out;
  for (const auto& e : CheckTemplate(t, Reg())) out += e.field + ": " + e.message + "\n";
  return out;
}

}  // namespace

TEST_CASE("every compiled-in default template passes validation", "[template][store]") {
  REQUIRE(herald::embedded::Templates().size() > 0);
  for (const auto& f : herald::embedded::Templates()) {
    INFO(f.path);
    auto t = TemplateFromJson(nlohmann::json::parse(f.content));
    CHECK(Problems(t).empty());
    CHECK_NOTHROW(CheckVariables(t, Type(t.event_type)));
    CHECK_NOTHROW(ValidateTemplate(t, Reg()));
  }
}

TEST_CASE("the schemas declare each type's enrichment variables", "[template][store][schema]") {
  CHECK(Type("episode.released").variables ==
        std::vector<std::string>{"episode", "release_date", "season", "series_title", "url"});
  CHECK(Type("stats.monthly").variables ==
        std::vector<std::string>{"minutes_watched", "month", "titles_watched", "top_genre", "top_genres"});
  CHECK(Type("user.password_reset").data_fields ==
        std::vector<std::string>{"expires_in_minutes", "reset_url"});
  CHECK(Type("user.registered").variables.empty());
  auto allowed = AllowedVariables(Type("comment.liked"));
  for (const char* v :
       {"first_name", "unsubscribe_url", "event_id", "liked_by", "comment_excerpt", "comment_id"}) {
    CHECK(std::find(allowed.begin(), allowed.end(), v) != allowed.end());
  }
  CHECK(std::find(allowed.begin(), allowed.end(), "series_title") == allowed.end());
}

TEST_CASE("an unknown variable is rejected with a message naming it and the template and what is allowed",
          "[template][store]") {
  auto t = Promo("{{first_name}}, {{discount_code}} and {{release_count}}");
  t.subject = "";
  CHECK(UnknownVariables(t, Type(t.event_type)) == std::vector<std::string>{"discount_code"});
  CHECK_THROWS_AS(CheckVariables(t, Type(t.event_type)), herald::InvalidInput);
  CHECK_THROWS_WITH(
      CheckVariables(t, Type(t.event_type)),
      Catch::Contains("template promo.new_releases/telegram/en") &&
          Catch::Contains("unknown variable {{discount_code}} in text") &&
          Catch::Contains("allowed for promo.new_releases: email, event_id, event_type, first_name") &&
          Catch::Contains("release_count, releases"));
  try {
    ValidateTemplate(t, Reg());
    FAIL("accepted an unknown variable");
  } catch (const herald::InvalidInput& e) {
    CHECK(e.Field() == "/text");
    CHECK(std::string(e.what()).find("{{discount_code}}") != std::string::npos);
  }
}

TEST_CASE("every unknown variable is listed with the parts it is in", "[template][store]") {
  Template t{"user.registered", "email", "en", "Hi {{nick}}", "{{nick}} {{promo}} {{profile.city}}",
             "<p>{{nick}}</p>", 1};
  CHECK(UnknownVariables(t, Type(t.event_type)) == std::vector<std::string>{"nick", "profile", "promo"});
  CHECK_THROWS_WITH(
      ValidateTemplate(t, Reg()),
      Catch::Contains("unknown variables {{nick}} in subject and text and html, {{profile}} in text, "
                      "{{promo}} in text"));
}

TEST_CASE("data fields declared in the type's schema are allowed and other types' are not",
          "[template][store]") {
  Template reset{"user.password_reset", "sms", "en", "", "{{reset_url}} ({{expires_in_minutes}} min)", "", 1};
  CHECK(Problems(reset).empty());
  Template welcome{"user.registered", "email", "en", "Hi", "{{confirm_url}} {{reset_url}}", "", 1};
  CHECK(UnknownVariables(welcome, Type(welcome.event_type)) == std::vector<std::string>{"reset_url"});
}

TEST_CASE("names inside a section belong to its items and are not checked", "[template][store]") {
  auto t = Promo("{{#releases}}{{title}} {{whatever}}{{/releases}}{{^releases}}none{{/releases}}");
  CHECK(Problems(t).empty());
  auto unknown_section = Promo("{{#coupons}}{{code}}{{/coupons}}");
  CHECK(UnknownVariables(unknown_section, Type("promo.new_releases")) == std::vector<std::string>{"coupons"});
}

TEST_CASE("a channel the type does not use is rejected", "[template][store]") {
  Template t{"user.registered", "sms", "en", "", "Welcome {{first_name}}", "", 1};
  auto problems = CheckTemplate(t, Reg());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].field == "/channel");
  CHECK(problems[0].message == "user.registered is not delivered by sms (its channels: email)");
  t.channel = "pigeon";
  CHECK_THROWS_WITH(ValidateTemplate(t, Reg()), Catch::Contains("unknown channel 'pigeon'"));
}

TEST_CASE("invalid mustache and partials and delimiter changes are rejected", "[template][store]") {
  auto open = Promo("{{#releases}}{{title}}");
  CHECK_THROWS_WITH(ValidateTemplate(open, Reg()), Catch::Contains("text: invalid mustache"));
  auto partial = Promo("{{> footer}}");
  CHECK_THROWS_WITH(ValidateTemplate(partial, Reg()), Catch::Contains("partials"));
  auto delimiters = Promo("{{=<% %>=}}<% secret %>");
  CHECK_THROWS_WITH(ValidateTemplate(delimiters, Reg()), Catch::Contains("delimiters"));
  CHECK(Problems(Promo("{{{first_name}}} {{! a comment }}")).empty());
}

TEST_CASE("an unknown event type is rejected", "[template][store]") {
  Template t{"user.deleted", "email", "en", "Bye", "Bye {{first_name}}", "", 1};
  auto problems = CheckTemplate(t, Reg());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].field == "/event_type");
  CHECK(problems[0].message.find("unknown event type 'user.deleted' (known: bookmark.reminder,") == 0);
}

TEST_CASE("an email template needs a subject and a text; html is for email only", "[template][store]") {
  Template t{"user.registered", "email", "en", " ", "", "<p>Hi {{first_name}}</p>", 1};
  auto p = Problems(t);
  CHECK(p.find("/subject: an email template needs a subject") != std::string::npos);
  CHECK(p.find("/text: an email template needs a text part") != std::string::npos);
  Template sms{"user.password_reset", "sms", "en", "", "{{reset_url}}", "<b>{{reset_url}}</b>", 1};
  CHECK(Problems(sms).find("/html: only email templates have an html part") != std::string::npos);
  sms.html.clear();
  sms.text = "";
  CHECK(Problems(sms).find("/text: the template needs a text") != std::string::npos);
}

TEST_CASE("the locale is a 2-letter code optionally with a region", "[template][store]") {
  for (const char* ok : {"en", "ru", "pt-BR"}) {
    Template t{"user.registered", "email", ok, "Hi", "Hi {{first_name}}", "", 1};
    CHECK(Problems(t).empty());
  }
  for (const char* bad : {"", "EN", "eng", "en_US", "en-us", "english", "e1"}) {
    INFO(bad);
    Template t{"user.registered", "email", bad, "Hi", "Hi {{first_name}}", "", 1};
    auto problems = CheckTemplate(t, Reg());
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].field == "/locale");
  }
}

TEST_CASE("every problem is reported at once", "[template][store]") {
  Template t{"comment.liked", "sms", "english", "", "{{#x}}", "", 1};
  auto problems = CheckTemplate(t, Reg());
  std::vector<std::string> fields;
  for (const auto& p : problems) fields.push_back(p.field);
  CHECK(fields == std::vector<std::string>{"/channel", "/locale", "/text"});
}
