#include <catch2/catch.hpp>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"
#include "herald/topics/catalog.hpp"

using herald::topics::Catalog;
using herald::topics::TopicCatalog;

TEST_CASE("every topic of the architecture is declared", "[topics]") {
  std::set<std::string> expected = {"events.auth.v1", "events.ugc.v1", "events.content.v1", "events.admin.v1",
                                    "notify.requests.v1", "notify.requests.high.v1", "notify.retry.30s", "notify.retry.5m", "notify.retry.1h",
                                    "notify.status.v1", "notify.dlq.v1"};
  for (const char* c : {"email", "sms", "telegram", "push"}) {
    for (const char* p : {"high", "normal", "low"}) expected.insert(std::string("notify.deliver.") + c + "." + p);
  }
  std::set<std::string> declared;
  for (const auto& t : Catalog().All()) declared.insert(t.name);
  CHECK(declared == expected);
}

TEST_CASE("role lookups answer from the declarations", "[topics]") {
  CHECK(Catalog().Requests() == "notify.requests.v1");
  CHECK(Catalog().Requests("high") == "notify.requests.high.v1");
  CHECK(Catalog().Requests("normal") == "notify.requests.v1");
  CHECK(Catalog().Requests("low") == "notify.requests.v1");
  CHECK(Catalog().ConsumerGroups().at("herald-enrich") ==
        std::vector<std::string>{"notify.requests.v1", "notify.requests.high.v1"});
  CHECK(Catalog().Deliver("telegram", "low") == "notify.deliver.telegram.low");
  CHECK(Catalog().Events("ugc") == "events.ugc.v1");
  CHECK(Catalog().Status() == "notify.status.v1");
  CHECK(Catalog().Dlq() == "notify.dlq.v1");
  CHECK(Catalog().Family("retry").size() == 3);
  CHECK(Catalog().Find("notify.retry.5m")->delay == std::chrono::seconds(300));
  CHECK_THROWS_AS(Catalog().Deliver("pigeon", "high"), herald::ConfigError);
}

TEST_CASE("without a high-priority requests topic, every request goes to the one requests topic", "[topics]") {
  auto doc = nlohmann::json::parse(R"({"topics": [
    {"name": "r", "family": "requests", "partitions": 1, "replication": 1, "retention_ms": 1, "cleanup": "delete", "key": "user_id"}]})");
  TopicCatalog c(doc);
  CHECK(c.Requests() == "r");
  CHECK(c.Requests("high") == "r");
}

TEST_CASE("declarations carry retention, key and partitions", "[topics]") {
  const auto* status = Catalog().Find("notify.status.v1");
  REQUIRE(status);
  CHECK(status->key == "notification_id");
  CHECK(status->retention_ms == 30LL * 24 * 3600 * 1000);
  CHECK(Catalog().Find("events.auth.v1")->retention_ms == 14LL * 24 * 3600 * 1000);
  for (const auto& t : Catalog().All()) {
    INFO(t.name);
    CHECK(t.partitions >= 1);
    CHECK(t.replication >= 1);
    CHECK_FALSE(t.key.empty());
  }
}

TEST_CASE("the compiled-in catalog is the file in topics/", "[topics]") {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/topics/topics.json");
  REQUIRE(in);
  TopicCatalog from_file(nlohmann::json::parse(in));
  REQUIRE(from_file.All().size() == Catalog().All().size());
  for (std::size_t i = 0; i < from_file.All().size(); ++i) CHECK(from_file.All()[i].name == Catalog().All()[i].name);
}

TEST_CASE("bad declarations are rejected with the entry named", "[topics]") {
  auto doc = nlohmann::json::parse(R"({"topics":[{"name":"a","family":"events","partitions":1,"replication":1,"retention_ms":1,"cleanup":"delete","key":"k"},
                                                 {"name":"a","family":"events","partitions":1,"replication":1,"retention_ms":1,"cleanup":"delete","key":"k"}]})");
  CHECK_THROWS_WITH(TopicCatalog(doc), Catch::Contains("declared twice"));
  doc["topics"][1]["name"] = "b";
  doc["topics"][1]["partitions"] = 0;
  CHECK_THROWS_WITH(TopicCatalog(doc), Catch::Contains("b: partitions"));
  doc["topics"][1]["partitions"] = 1;
  doc["topics"][1]["family"] = "misc";
  CHECK_THROWS_WITH(TopicCatalog(doc), Catch::Contains("unknown family"));
  CHECK_THROWS_AS(TopicCatalog(nlohmann::json::object()), herald::ConfigError);
}
