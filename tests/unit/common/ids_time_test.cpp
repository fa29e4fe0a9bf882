#include <catch2/catch.hpp>

#include <cctype>
#include <regex>

#include "herald/common/ids.hpp"
#include "herald/common/time.hpp"
#include "herald/common/unsubscribe.hpp"

TEST_CASE("notification ids are deterministic per event, user and channel", "[ids]") {
  auto a = herald::NotificationId("e-1", "u-1", "email");
  CHECK(a == herald::NotificationId("e-1", "u-1", "email"));
  CHECK(a != herald::NotificationId("e-1", "u-1", "sms"));
  CHECK(a != herald::NotificationId("e-1", "u-2", "email"));
  // Joining cannot make two different tuples collide.
  CHECK(herald::DeterministicId({"ab", "c"}) != herald::DeterministicId({"a", "bc"}));
  CHECK(std::regex_match(a, std::regex("^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")));
  CHECK(herald::RandomUuid() != herald::RandomUuid());
}

TEST_CASE("RFC 3339 parsing", "[time]") {
  using herald::ParseRfc3339;
  auto z = ParseRfc3339("2026-11-21T10:00:00Z");
  REQUIRE(z);
  CHECK(ParseRfc3339("2026-11-21T13:00:00+03:00") == z);
  CHECK(ParseRfc3339("2026-11-21T06:30:00-03:30") == z);
  CHECK(ParseRfc3339("2026-11-21T10:00:00.250Z")->time_since_epoch().count() - z->time_since_epoch().count() == 250);
  CHECK(herald::FormatRfc3339(*z) == "2026-11-21T10:00:00.000Z");
  for (const char* bad : {"", "2026-11-21", "2026-11-21T10:00:00", "2026-02-30T10:00:00Z", "2026-11-21T24:00:00Z",
                          "2026-11-21T10:00:00+3:00", "2026-11-21T10:00:00Zjunk", "tomorrow"}) {
    INFO(bad);
    CHECK_FALSE(ParseRfc3339(bad));
  }
}

TEST_CASE("unsubscribe tokens round-trip and refuse forgery, tampering and expiry", "[unsubscribe]") {
  using namespace std::chrono;
  auto now = system_clock::time_point(seconds(1'800'000'000));
  herald::UnsubscribeClaim claim{"u-42", "marketing", now + hours(24)};
  auto token = herald::MakeUnsubscribeToken("secret-1", claim);
  for (char c : token) CHECK((std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'));
  auto ok = herald::VerifyUnsubscribeToken("secret-1", token, now);
  REQUIRE(ok);
  CHECK(ok->user_id == "u-42");
  CHECK(ok->category == "marketing");
  CHECK(ok->expires == claim.expires);

  std::string why;
  CHECK_FALSE(herald::VerifyUnsubscribeToken("other-secret", token, now, &why));
  CHECK(why == "bad signature");
  // Another user's id with the original signature.
  auto forged = herald::MakeUnsubscribeToken("attacker", {"u-43", "marketing", claim.expires});
  std::string tampered = forged.substr(0, forged.find('.')) + token.substr(token.find('.'));
  CHECK_FALSE(herald::VerifyUnsubscribeToken("secret-1", tampered, now, &why));
  CHECK(why == "bad signature");
  CHECK_FALSE(herald::VerifyUnsubscribeToken("secret-1", token, now + hours(25), &why));
  CHECK(why == "expired");
  for (const std::string& bad : std::vector<std::string>{"", ".", "abc", "a.b.c", "!!!.###", std::string(2000, 'a') + ".b"}) {
    CHECK_FALSE(herald::VerifyUnsubscribeToken("secret-1", bad, now, &why));
  }
  CHECK(herald::UnsubscribeUrl("https://c.example/u", "t") == "https://c.example/u?token=t");
  CHECK(herald::UnsubscribeUrl("https://c.example/u?lang=en", "t") == "https://c.example/u?lang=en&token=t");
}
