#include <catch2/catch.hpp>

#include <fstream>
#include <functional>

#include "herald/common/errors.hpp"
#include "herald/config/config.hpp"
#include "herald/redis/client.hpp"
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

namespace {

std::string WriteFile(const herald::test::TempDir& dir, const std::string& name, const std::string& content) {
  std::string path = dir.Path() + "/" + name;
  std::ofstream(path) << content;
  return path;
}

}  // namespace

TEST_CASE("raw librdkafka settings can come from mounted files", "[config][kafka]") {
  herald::test::TempDir dir;
  auto password = WriteFile(dir, "kafka-password", "sasl-s3cret\n");
  auto key_password = WriteFile(dir, "key-password", "key-s3cret\r\n");
  auto c = FromEnvironment({{"HERALD_KAFKA_SASL_USERNAME", "herald"},
                            {"HERALD_KAFKA_SASL_PASSWORD_FILE", password},
                            {"HERALD_KAFKA_SSL_KEY_PASSWORD_FILE", key_password}});
  CHECK(c.kafka.at("sasl.username") == "herald");
  CHECK(c.kafka.at("sasl.password") == "sasl-s3cret");  // the file's trailing newline stripped
  CHECK(c.kafka.at("ssl.key.password") == "key-s3cret");
  CHECK(c.kafka.size() == 3);  // no "sasl.password.file" passed on to librdkafka
  // The variable form is unchanged.
  CHECK(FromEnvironment({{"HERALD_KAFKA_SASL_PASSWORD", "plain"}}).kafka.at("sasl.password") == "plain");
  // A missing file stops start-up, naming the variable and the path.
  CHECK_THROWS_AS(FromEnvironment({{"HERALD_KAFKA_SASL_PASSWORD_FILE", dir.Path() + "/missing"}}), herald::ConfigError);
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_KAFKA_SASL_PASSWORD_FILE", dir.Path() + "/missing"}}),
                    Catch::Contains("HERALD_KAFKA_SASL_PASSWORD_FILE") && Catch::Contains(dir.Path() + "/missing"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_KAFKA_SASL_PASSWORD", "x"}, {"HERALD_KAFKA_SASL_PASSWORD_FILE", password}}),
                    Catch::Contains("both"));
  // The flag form is unchanged.
  Config f;
  Apply(f, "kafka", "sasl.password=flag-s3cret");
  CHECK(f.kafka.at("sasl.password") == "flag-s3cret");
  CHECK(Describe().find("`HERALD_KAFKA_<OPTION>_FILE`") != std::string::npos);
}

TEST_CASE("a secret and its _FILE form together are an error", "[config]") {
  herald::test::TempDir dir;
  auto path = WriteFile(dir, "token", "t\n");
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_SMS_TOKEN", "a"}, {"HERALD_SMS_TOKEN_FILE", path}}),
                    Catch::Contains("HERALD_SMS_TOKEN") && Catch::Contains("both"));
}

TEST_CASE("sms and push provider tokens are secrets", "[config][providers]") {
  herald::test::TempDir dir;
  auto sms = WriteFile(dir, "sms-token", "sms-s3cret\n");
  auto c = FromEnvironment({{"HERALD_SMS_TOKEN_FILE", sms}, {"HERALD_PUSH_TOKEN", "push-s3cret"}});
  CHECK(c.sms_token == "sms-s3cret");
  CHECK(c.push_token == "push-s3cret");
  CHECK(FromEnvironment({}).sms_token.empty());
  auto p = WriteFile(dir, "push-token", "from-file\n");
  CHECK(FromEnvironment({{"HERALD_PUSH_TOKEN_FILE", p}}).push_token == "from-file");
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_SMS_TOKEN_FILE", dir.Path() + "/missing"}}), Catch::Contains("HERALD_SMS_TOKEN_FILE"));
  Config f;
  Apply(f, "push-token", "flag");
  CHECK(f.push_token == "flag");
}

TEST_CASE("redis URLs: ACL users, percent-encoding, redaction", "[config][redis]") {
  using herald::redis::ParseUrl;
  auto a = ParseUrl("redis://alice:s3cret@redis.db:6380/2");
  CHECK(a.user == "alice");
  CHECK(a.password == "s3cret");
  CHECK(a.host == "redis.db");
  CHECK(a.port == 6380);
  CHECK(a.db == 2);
  auto legacy = ParseUrl("redis://:pw@h:1/0");
  CHECK(legacy.user.empty());
  CHECK(legacy.password == "pw");
  CHECK(ParseUrl("redis://pw@h:1/0").password == "pw");  // no colon: the password alone, as before
  auto encoded = ParseUrl("redis://al%69ce:p%40ss%3Aw%2Fo%25rd+@h:1/0");
  CHECK(encoded.user == "alice");
  CHECK(encoded.password == "p@ss:w/o%rd+");
  CHECK(ParseUrl("redis://:p@ss@h:1/0").password == "p@ss");  // a raw '@' still works
  CHECK_THROWS_WITH(ParseUrl("redis://:bad%zz@h:1/0"), Catch::Contains("%25") && !Catch::Contains("bad%zz"));
  CHECK_THROWS_WITH(ParseUrl("redis://:s3cret@h:port/0"), Catch::Contains("***") && !Catch::Contains("s3cret"));

  herald::redis::Address odd{"h", 1, 3, "us er", "p@ss:w/o%rd é"};
  auto url = herald::redis::FormatUrl(odd);
  CHECK(url.find(' ') == std::string::npos);
  auto back = ParseUrl(url);
  CHECK(back.user == odd.user);
  CHECK(back.password == odd.password);
  CHECK(back.db == 3);
  CHECK(herald::redis::RedactUrl("redis://alice:s3cret@h:1/0") == "redis://alice:***@h:1/0");
  CHECK(herald::redis::RedactUrl("redis://h:1/0") == "redis://h:1/0");
}

TEST_CASE("HERALD_REDIS_PASSWORD overrides the password of HERALD_REDIS_URL", "[config][redis]") {
  using herald::redis::ParseUrl;
  auto c = FromEnvironment({{"HERALD_REDIS_URL", "redis://alice:old@redis.db:6379/1"}, {"HERALD_REDIS_PASSWORD", "n:w@p/ss%"}});
  auto a = ParseUrl(c.redis_url);
  CHECK(a.user == "alice");  // the URL's user is kept
  CHECK(a.password == "n:w@p/ss%");
  CHECK(a.host == "redis.db");
  CHECK(a.db == 1);
  CHECK(c.redis_url.find("n:w@p") == std::string::npos);  // percent-encoded in the URL

  // Without a password in the URL, and with the default URL.
  CHECK(ParseUrl(FromEnvironment({{"HERALD_REDIS_URL", "redis://r:6379/0"}, {"HERALD_REDIS_PASSWORD", "pw"}}).redis_url).password == "pw");
  auto d = ParseUrl(FromEnvironment({{"HERALD_REDIS_PASSWORD", "pw"}}).redis_url);
  CHECK(d.password == "pw");
  CHECK(d.host == "127.0.0.1");
  CHECK(d.user.empty());

  // From a mounted file, and in either order with flags.
  herald::test::TempDir dir;
  auto path = WriteFile(dir, "redis-password", "file-pw\n");
  auto f = FromEnvironment({{"HERALD_REDIS_PASSWORD_FILE", path}});
  CHECK(f.redis_password == "file-pw");
  CHECK(ParseUrl(f.redis_url).password == "file-pw");
  Apply(f, "redis-url", "redis://bob:url-pw@other:6390/0");  // a later --redis-url keeps the override
  CHECK(ParseUrl(f.redis_url).user == "bob");
  CHECK(ParseUrl(f.redis_url).password == "file-pw");
  CHECK(ParseUrl(f.redis_url).port == 6390);
  Apply(f, "redis-password", "flag-pw");
  CHECK(ParseUrl(f.redis_url).password == "flag-pw");

  // Unset or empty: the URL is used as given.
  CHECK(FromEnvironment({{"HERALD_REDIS_URL", "redis://:url-pw@r:6379/0"}}).redis_url == "redis://:url-pw@r:6379/0");
  CHECK(FromEnvironment({{"HERALD_REDIS_URL", "redis://:url-pw@r:6379/0"}, {"HERALD_REDIS_PASSWORD", ""}}).redis_url ==
        "redis://:url-pw@r:6379/0");
}

TEST_CASE("rediss:// is refused with the TLS sidecar explanation", "[config][redis]") {
  auto check_refused = [](const std::function<void()>& load) {
    try {
      load();
      FAIL("rediss:// was accepted");
    } catch (const herald::ConfigError& e) {
      std::string message = e.what();
      INFO(message);
      CHECK(message.find("HERALD_REDIS_URL") != std::string::npos);
      CHECK(message.find("TLS") != std::string::npos);
      CHECK(message.find("sidecar") != std::string::npos);
      CHECK(message.find("stunnel") != std::string::npos);
      CHECK(message.find("s3cret") == std::string::npos);  // never the password
    }
  };
  check_refused([] { FromEnvironment({{"HERALD_REDIS_URL", "rediss://:s3cret@redis.db:6380/0"}}); });
  check_refused([] {
    Config c;
    Apply(c, "redis-url", "rediss://alice:s3cret@redis.db:6380/0");
  });
  // The client refuses it too (URLs that do not come from the configuration).
  CHECK_THROWS_WITH(herald::redis::Client("rediss://redis.db:6380/0"), Catch::Contains("stunnel"));
  CHECK_THROWS_WITH(FromEnvironment({{"HERALD_REDIS_URL", "http://redis:6379"}}), Catch::Contains("redis://"));
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
