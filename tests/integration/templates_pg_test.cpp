// Templates in a real PostgreSQL: the defaults loader, versioned saves, validation on save,
// concurrent saves, deletes, the delivery stages' cache and `herald migrate` / `herald templates`.
// The test cases share one database and run in file order; each uses its own template keys.

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"
#include "herald/dev/stack.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/template/store.hpp"
#include "support/stack.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;
using namespace herald::templates;

namespace {

// PostgreSQL (with the rest of the dev services, no stages), migrated and with the defaults
// loaded.
herald::test::ServicesStack& Db() {
  static herald::test::ServicesStack services;
  return services;
}

const herald::schema::Registry& Reg() {
  static auto registry = herald::schema::Registry::Load();
  return *registry;
}

std::unique_ptr<pqxx::connection> Connect() {
  return herald::pg::Connect(Db().pg_url);
}

long long Count(pqxx::connection& conn, const std::string& where = "true") {
  pqxx::work tx(conn);
  return tx.exec1("SELECT count(*) FROM templates WHERE " + where)[0].as<long long>();
}

std::vector<Template> Defaults() {
  std::vector<Template> out;
  for (const auto& f : herald::embedded::Templates())
    out.push_back(TemplateFromJson(nlohmann::json::parse(f.content)));
  return out;
}

Template Default(const std::string& type, const std::string& channel, const std::string& locale) {
  for (auto& t : Defaults()) {
    if (t.event_type == type && t.channel == channel && t.locale == locale) return t;
  }
  FAIL("no default template " << type << "/" << channel << "/" << locale);
  return {};
}

bool Contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("migrate loads every default template as version 1", "[pg][templates]") {
  auto conn = Connect();
  auto defaults = Defaults();
  REQUIRE(!defaults.empty());
  CHECK(Count(*conn) == static_cast<long long>(defaults.size()));
  for (const auto& d : defaults) {
    INFO(d.event_type << "/" << d.channel << "/" << d.locale);
    auto s = GetTemplate(*conn, d.event_type, d.channel, d.locale);
    REQUIRE(s);
    CHECK(s->tmpl.version == 1);
    CHECK(s->created_by == kDefaultsAuthor);
    CHECK_FALSE(s->deleted);
    CHECK(s->tmpl.subject == d.subject);
    CHECK(s->tmpl.text == d.text);
    CHECK(s->tmpl.html == d.html);
    CHECK(s->created_at.size() == 24);  // 2026-11-21T10:00:00.000Z
  }
  CHECK(ListTemplates(*conn).size() == defaults.size());
  CHECK(LoadTemplates(*conn).Size() == defaults.size());
}

TEST_CASE("rerunning the defaults loader writes nothing", "[pg][templates]") {
  auto conn = Connect();
  auto before = Count(*conn);
  CHECK(LoadDefaultTemplates(*conn, Reg()).empty());
  CHECK(LoadDefaultTemplates(*conn, Reg()).empty());
  CHECK(Count(*conn) == before);
}

TEST_CASE("a save makes the next version which LoadTemplates serves", "[pg][templates]") {
  auto conn = Connect();
  auto t = Default("user.registered", "email", "en");
  t.subject = "Welcome aboard, {{first_name}}!";
  CHECK(SaveTemplate(*conn, Reg(), t, "alice") == 2);
  auto store = LoadTemplates(*conn);
  const auto* served = store.Find("user.registered", "email", "en");
  REQUIRE(served);
  CHECK(served->version == 2);
  CHECK(served->subject == "Welcome aboard, {{first_name}}!");
  CHECK(Render(*served, {{"first_name", "Ann"}}).subject == "Welcome aboard, Ann!");

  auto history = TemplateHistory(*conn, "user.registered", "email", "en");
  REQUIRE(history.size() == 2);
  CHECK(history[0].tmpl.version == 2);
  CHECK(history[0].created_by == "alice");
  CHECK(history[1].tmpl.version == 1);
  CHECK(history[1].created_by == kDefaultsAuthor);
  auto v1 = GetTemplate(*conn, "user.registered", "email", "en", 1);
  REQUIRE(v1);
  CHECK(v1->tmpl.subject == Default("user.registered", "email", "en").subject);
  CHECK_FALSE(GetTemplate(*conn, "user.registered", "email", "en", 7));
  // Every save is a version, even an identical one.
  CHECK(SaveTemplate(*conn, Reg(), t, "alice") == 3);
}

TEST_CASE("an invalid save is rejected and stores nothing", "[pg][templates]") {
  auto conn = Connect();
  auto before = Count(*conn);
  auto t = Default("comment.liked", "telegram", "en");
  t.text += " Use code {{promo_code}}.";
  CHECK_THROWS_WITH(SaveTemplate(*conn, Reg(), t, "alice"),
                    Catch::Contains("comment.liked/telegram/en") && Catch::Contains("{{promo_code}}") &&
                        Catch::Contains("allowed for comment.liked:"));
  Template wrong_channel{"user.password_reset", "telegram", "en", "", "{{reset_url}}", "", 1};
  CHECK_THROWS_AS(SaveTemplate(*conn, Reg(), wrong_channel, "alice"), herald::InvalidInput);
  Template unknown_type{"user.deleted", "email", "en", "Bye", "Bye", "", 1};
  CHECK_THROWS_AS(SaveTemplate(*conn, Reg(), unknown_type, "alice"), herald::InvalidInput);
  // The loader's author name is reserved.
  CHECK_THROWS_AS(SaveTemplate(*conn, Reg(), Default("comment.liked", "telegram", "en"), kDefaultsAuthor),
                  herald::InvalidInput);
  CHECK(Count(*conn) == before);
  CHECK(GetTemplate(*conn, "comment.liked", "telegram", "en")->tmpl.version == 1);
}

TEST_CASE("the defaults loader never overwrites a manager's edit but updates its own", "[pg][templates]") {
  auto conn = Connect();
  auto edited = Default("comment.liked", "push", "ru");
  edited.subject = "Лайк от {{liked_by}}";
  REQUIRE(SaveTemplate(*conn, Reg(), edited, "bob") == 2);
  auto lines = LoadDefaultTemplates(*conn, Reg());
  CHECK(Contains(lines, "kept comment.liked/push/ru v2 (edited by bob"));
  auto latest = GetTemplate(*conn, "comment.liked", "push", "ru");
  REQUIRE(latest);
  CHECK(latest->tmpl.version == 2);
  CHECK(latest->tmpl.subject == "Лайк от {{liked_by}}");

  // A default that changed in a new release replaces the loader's own older version: simulate
  // an older default by writing one as the loader.
  {
    pqxx::work tx(*conn);
    tx.exec_params(
        "INSERT INTO templates (event_type, channel, locale, version, subject, text_body, created_by)"
        " VALUES ('bookmark.reminder', 'push', 'en', 2, 'old', 'old text', $1)",
        std::string(kDefaultsAuthor));
    tx.commit();
  }
  lines = LoadDefaultTemplates(*conn, Reg());
  CHECK(Contains(lines, "updated bookmark.reminder/push/en to v3"));
  latest = GetTemplate(*conn, "bookmark.reminder", "push", "en");
  REQUIRE(latest);
  CHECK(latest->tmpl.version == 3);
  CHECK(latest->tmpl.text == Default("bookmark.reminder", "push", "en").text);
  CHECK_FALSE(Contains(LoadDefaultTemplates(*conn, Reg()), "bookmark.reminder/push/en"));
}

TEST_CASE("concurrent saves of one key get distinct versions", "[pg][templates]") {
  constexpr int kThreads = 4, kSaves = 10;
  // The stack must start on this thread: its children die with the thread that started them.
  auto conn = Connect();
  auto base = Default("episode.released", "sms", "en");
  std::vector<std::vector<int>> versions(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto conn = Connect();
        for (int n = 0; n < kSaves; ++n) {
          auto t = base;
          t.text =
              "Writer " + std::to_string(i) + " save " + std::to_string(n) + ": {{series_title}} {{url}}";
          versions[i].push_back(SaveTemplate(*conn, Reg(), t, "writer-" + std::to_string(i)));
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int> all;
  for (int i = 0; i < kThreads; ++i) {
    INFO("thread " << i << ": " << errors[i]);
    CHECK(errors[i].empty());
    CHECK(versions[i].size() == kSaves);
    CHECK(std::is_sorted(versions[i].begin(), versions[i].end()));
    all.insert(versions[i].begin(), versions[i].end());
  }
  CHECK(all.size() == kThreads * kSaves);
  CHECK(*all.begin() == 2);
  CHECK(*all.rbegin() == 1 + kThreads * kSaves);
  CHECK(GetTemplate(*conn, "episode.released", "sms", "en")->tmpl.version == 1 + kThreads * kSaves);
}

TEST_CASE("a delete hides the key and keeps its history and survives the loader", "[pg][templates]") {
  auto conn = Connect();
  REQUIRE(LoadTemplates(*conn).Find("stats.monthly", "email", "ru")->locale == "ru");
  auto tombstone = DeleteTemplate(*conn, "stats.monthly", "email", "ru", "carol");
  REQUIRE(tombstone);
  CHECK(*tombstone == 2);
  CHECK_FALSE(DeleteTemplate(*conn, "stats.monthly", "email", "ru", "carol"));  // already deleted
  CHECK_FALSE(DeleteTemplate(*conn, "stats.monthly", "push", "ru", "carol"));   // never existed

  auto store = LoadTemplates(*conn);
  const auto* served = store.Find("stats.monthly", "email", "ru");
  REQUIRE(served);
  CHECK(served->locale == "en");  // the usual locale fallback
  CHECK_FALSE(GetTemplate(*conn, "stats.monthly", "email", "ru"));
  auto old = GetTemplate(*conn, "stats.monthly", "email", "ru", 2);
  REQUIRE(old);
  CHECK(old->deleted);
  CHECK(old->created_by == "carol");
  auto listed = [&](bool include_deleted) {
    for (const auto& s : ListTemplates(*conn, include_deleted)) {
      if (s.tmpl.event_type == "stats.monthly" && s.tmpl.channel == "email" && s.tmpl.locale == "ru")
        return true;
    }
    return false;
  };
  CHECK_FALSE(listed(false));
  CHECK(listed(true));

  CHECK(Contains(LoadDefaultTemplates(*conn, Reg()), "kept stats.monthly/email/ru v2 (deleted by carol"));
  CHECK_FALSE(GetTemplate(*conn, "stats.monthly", "email", "ru"));

  // Saving again brings the key back with the next version.
  CHECK(SaveTemplate(*conn, Reg(), Default("stats.monthly", "email", "ru"), "carol") == 3);
  CHECK(LoadTemplates(*conn).Find("stats.monthly", "email", "ru")->version == 3);
}

TEST_CASE("herald migrate loads the defaults into a fresh database and is idempotent",
          "[pg][templates][cli]") {
  std::string url = Db().pg_url.substr(0, Db().pg_url.rfind('/')) + "/herald_cli";
  {
    auto admin = Connect();
    pqxx::nontransaction tx(*admin);
    tx.exec("CREATE DATABASE herald_cli");
  }
  std::string herald = std::string("HERALD_PG_URL='") + url + "' " + HERALD_BINARY;
  std::string out;
  REQUIRE(herald::test::Run(herald + " migrate 2>&1", &out) == 0);
  INFO(out);
  CHECK(out.find("applied 0002_templates.sql") != std::string::npos);
  CHECK(out.find("default template: added user.registered/email/ru v1") != std::string::npos);
  auto conn = herald::pg::Connect(url);
  auto n = Count(*conn);
  CHECK(n == static_cast<long long>(Defaults().size()));
  CHECK(Count(*conn, "version = 1 AND created_by = 'herald migrate'") == n);

  std::string again;
  REQUIRE(herald::test::Run(herald + " migrate 2>&1", &again) == 0);
  CHECK(again == "database is up to date\n");
  CHECK(Count(*conn) == n);

  // `herald templates`: save (valid and invalid), show, list.
  herald::test::TempDir dir;
  auto t = Default("promo.new_releases", "push", "en");
  nlohmann::json good = {{"event_type", t.event_type},
                         {"channel", t.channel},
                         {"locale", t.locale},
                         {"subject", "Fresh this week"},
                         {"text", t.text}};
  std::ofstream(dir.Path() + "/good.json") << good.dump();
  nlohmann::json bad = good;
  bad["text"] = "{{first_name}}, use {{coupon}}";
  std::ofstream(dir.Path() + "/bad.json") << bad.dump();

  std::string saved;
  CHECK(herald::test::Run(herald + " templates save " + dir.Path() + "/good.json --author dave 2>&1",
                          &saved) == 0);
  CHECK(saved == "saved promo.new_releases/push/en as version 2\n");
  std::string rejected;
  CHECK(herald::test::Run(herald + " templates save " + dir.Path() + "/bad.json 2>&1 >/dev/null",
                          &rejected) == 2);
  CHECK(rejected.find("unknown variable {{coupon}} in text") != std::string::npos);
  CHECK(Count(*conn) == n + 1);

  std::string shown;
  REQUIRE(herald::test::Run(herald + " templates show promo.new_releases push en", &shown) == 0);
  auto j = nlohmann::json::parse(shown);
  CHECK(j["version"] == 2);
  CHECK(j["subject"] == "Fresh this week");
  CHECK(j["created_by"] == "dave");
  shown.clear();
  REQUIRE(herald::test::Run(herald + " templates show promo.new_releases push en --version 1", &shown) == 0);
  CHECK(nlohmann::json::parse(shown)["subject"] == t.subject);
  CHECK(herald::test::Run(herald + " templates show promo.new_releases sms en 2>/dev/null") == 1);

  std::string listed;
  REQUIRE(herald::test::Run(herald + " templates list", &listed) == 0);
  CHECK(listed.find("promo.new_releases") != std::string::npos);
  CHECK(listed.find("dave") != std::string::npos);
  CHECK(static_cast<std::size_t>(std::count(listed.begin(), listed.end(), '\n')) == Defaults().size() + 1);
}

// Last: it stops and restarts PostgreSQL.
TEST_CASE("the template cache follows changes and survives a PostgreSQL outage", "[pg][templates][cache]") {
  CHECK_THROWS_AS(TemplateCache({"postgresql://postgres@127.0.0.1:1/herald", 10ms}), herald::TransientError);

  TemplateCache cache({Db().pg_url, 50ms});
  auto first = cache.Current();
  REQUIRE(first);
  const auto* welcome = first->Find("user.registered", "email", "en");
  REQUIRE(welcome);
  int before = welcome->version;
  CHECK_FALSE(cache.Refresh());  // nothing changed

  auto conn = Connect();
  auto t = Default("user.registered", "email", "en");
  t.subject = "Hello from the cache test, {{first_name}}";
  int saved = SaveTemplate(*conn, Reg(), t, "erin");
  REQUIRE(herald::test::WaitUntil([&] { return cache.RefreshIfDue(); }, 5s, 10ms));
  CHECK(cache.Current()->Find("user.registered", "email", "en")->version == saved);
  CHECK(first->Find("user.registered", "email", "en")->version == before);  // an old snapshot stays valid

  Db().stack->Kill("postgres", SIGINT);
  REQUIRE(herald::test::WaitUntil([&] { return !Db().stack->IsRunning("postgres"); }, 30s, 50ms));
  std::this_thread::sleep_for(60ms);
  CHECK_FALSE(cache.RefreshIfDue());  // logs a warning, keeps serving
  CHECK(cache.Current()->Find("user.registered", "email", "en")->version == saved);
  CHECK_THROWS_AS(cache.Refresh(), herald::TransientError);

  Db().stack->Start("postgres");
  std::unique_ptr<pqxx::connection> again;
  REQUIRE(herald::test::WaitUntil(
      [&] {
        try {
          again = Connect();
          return true;
        } catch (const herald::TransientError&) {
          return false;
        }
      },
      30s, 100ms));
  t.subject = "Back again, {{first_name}}";
  int after = SaveTemplate(*again, Reg(), t, "erin");
  REQUIRE(herald::test::WaitUntil([&] { return cache.RefreshIfDue(); }, 10s, 20ms));
  CHECK(cache.Current()->Find("user.registered", "email", "en")->version == after);
}
