// The bad-input corpus (tests/corpus/bad_events.json) against the two ways an event enters:
// the ingest API's request handling and an events topic's record parsing. Each case must be
// refused with its expected error; a good event in the same batch changes nothing (a batch
// is accepted whole or not at all), and a good event alone is accepted.

#include <catch2/catch.hpp>

#include "herald/common/errors.hpp"
#include "herald/model/event.hpp"
#include "producers.hpp"
#include "support/support.hpp"

namespace {

const std::string kGood =
    R"({"event_type": "user.registered", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-1"]}})";

}  // namespace

TEST_CASE("every case of the bad-input corpus is refused with its error, by the ingest API and from Kafka", "[ingest][corpus]") {
  auto registry = herald::schema::Registry::Load();
  auto cases = herald::test::LoadBadInputs();
  REQUIRE(cases.size() >= 15);
  for (const auto& c : cases) {
    INFO(c.name);
    auto out = herald::producers::ParseIngest(c.body, *registry, "");
    REQUIRE_FALSE(out.error.is_null());
    CHECK(out.routed.empty());
    auto error = out.error["error"].get<std::string>();
    INFO(error.substr(0, 300));
    CHECK(error.find(c.error) != std::string::npos);
    CHECK(error.size() < 1000);  // a huge input is not echoed back
    if (!c.field.empty()) CHECK(out.error["field"] == c.field);

    std::string reason;
    try {
      herald::model::ParseEvent(c.body, *registry, herald::model::Origin{"events.auth.v1", 0, 1});
    } catch (const herald::InvalidInput& e) {
      reason = e.what();
    }
    INFO(reason.substr(0, 300));
    CHECK(reason.find(c.error) != std::string::npos);
    CHECK(reason.size() < 1000);

    // In a batch with a good event, the batch is refused and names the bad one's index.
    if (c.body.empty() || c.body.front() != '{') continue;
    auto batch = herald::producers::ParseIngest("[" + kGood + "," + c.body + "]", *registry, "");
    REQUIRE_FALSE(batch.error.is_null());
    CHECK(batch.routed.empty());
    if (!c.field.empty()) CHECK(batch.error["field"] == "/events/1" + c.field);
  }
  auto good = herald::producers::ParseIngest(kGood, *registry, "");
  CHECK(good.error.is_null());
  REQUIRE(good.routed.size() == 1);
  CHECK(good.routed[0].topic == "events.auth.v1");
}
