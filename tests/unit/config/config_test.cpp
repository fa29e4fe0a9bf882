#include <catch2/catch.hpp>

#include <fstream>

#include "herald/common/errors.hpp"
#include "herald/config/config.hpp"
#include "support/support.hpp"

using namespace herald::config;

TEST_CASE("defaults are used when nothing is set", "[config]") {
  auto c = FromEnvironment({{"PATH", "/usr/bin"}});
  CHECK(c.brokers == "127.0.0.1:39092");
  CHECK(c.batch_size == 500);
  CHECK(c.http_port == 8080);
  CHECK(c.drain_timeout == std::chrono::seconds(8));
}

TEST_CASE("environment variables set typed values", "[config]") {
  auto c = FromEnvironment({{"HERALD_BROKERS", "k1:9092,k2:9092"},
                            {"HERALD_BATCH_SIZE", "64"},
                            {"HERALD_POLL_TIMEOUT", "250ms"},
                            {"HERALD_DRAIN_TIMEOUT", "5s"},
                            {"HERALD_CLAIM_TTL", "2d"},
                            {"HERALD_HTTP_PORT", "9100"},
                            {"HERALD_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"},
                            {"HERALD_KAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"}});
  CHECK(c.brokers == "k1:9092,k2:9092");
  CHECK(c.batch_size == 64);
  CHECK(c.poll_timeout == std::chrono::milliseconds(250));
  CHECK(c.drain_timeout == std::chrono::seconds(5));
  CHECK(c.claim_ttl == std::chrono::hours(48));
  CHECK(c.http_port == 9100);
  CHECK(c.kafka.at("security.protocol") == "sasl_ssl");
  CHECK(c.kafka.at("sasl.mechanisms") == "SCRAM-SHA-512");
}

TEST_CASE("flags override and pass kafka settings through", "[config]") {
  Config c;
  Apply(c, "brokers", "b:1");
  Apply(c, "kafka", "linger.ms=20");
  Apply(c, "HERALD_LOG_FORMAT", "json");
  CHECK(c.brokers == "b:1");
  CHECK(c.kafka.at("linger.ms") == "20");
  CHECK(c.log_format == "json");
  CHECK_THROWS_WITH(Apply(c, "kafka", "nonsense"), Catch::Contains("key=value"));
  CHECK_THROWS_WITH(Apply(c, "colour", "blue"), Catch::Contains("unknown setting 'colour'"));
}

TEST_CASE("bad values and unknown variables are errors naming them", "[config]") {
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_BROKER", "x"}}), Catch::Contains("HERALD_BROKER"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_HTTP_PORT", "70000"}}), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_BATCH_SIZE", "ten"}}), Catch::Contains("HERALD_BATCH_SIZE"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_BATCH_SIZE", "0"}}), Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_POLL_TIMEOUT", "5 parsecs"}}), Catch::Contains("unit"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_LOG_LEVEL", "loud"}}), Catch::Contains("loud"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_BROKERS_FILE", "/etc/passwd"}}), Catch::Contains("only secrets"));
  // A setting whose own name ends in _FILE is that setting, not a secret file.
  CHECK(FromEnvironment({{"HERALD_SMTP_CA_FILE", "/etc/ssl/ca.pem"}}).smtp_ca_file == "/etc/ssl/ca.pem");
}

TEST_CASE("secrets can come from mounted files", "[config]") {
  herald::test::TempDir dir;
  std::string path = dir.Path() + "/token";
  std::ofstream(path) << "s3cret\n";
  auto c = FromEnvironment({{"HERALD_INGEST_TOKEN_FILE", path}});
  CHECK(c.ingest_token == "s3cret");
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_ADMIN_TOKEN_FILE", dir.Path() + "/missing"}}), Catch::Contains("cannot read"));
}

TEST_CASE("the documentation table lists every setting", "[config]") {
  auto doc = Describe();
  for (const auto& k : Keys()) CHECK(doc.find(k.env) != std::string::npos);
  CHECK(ParseDuration("2m") == std::chrono::minutes(2));
  CHECK(ParseDuration("1500") == std::chrono::milliseconds(1500));
}

TEST_CASE("docs/configuration.md is the generated table", "[config][docs]") {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/docs/configuration.md");
  REQUIRE(in);
  std::string doc((std::istreambuf_iterator<char>(in)), {});
  CHECK(doc.find(Describe()) != std::string::npos);
}
