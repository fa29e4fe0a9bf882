// MultiClient against the fake auth server over real loopback HTTP: ordering,
// real concurrency and its caps, keep-alive reuse, timeouts, resets, POST bodies.
//
// Concurrency caps are checked from the server's request log: the fake logs each arrival
// (millisecond `at`) and then sleeps `latency_ms` before answering, so requests that
// arrive less than latency_ms apart were in flight at the same time. Counting arrivals
// inside any 45 ms window is therefore a lower bound on the server-side concurrency
// and can never exceed the client's cap, whatever the machine's load.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "herald/common/errors.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/http/client.hpp"
#include "herald/http/multi_client.hpp"

namespace {

using herald::dev::FakeRole;
using herald::dev::FakeServer;
using herald::dev::FakeServerOptions;
using herald::http::MultiClient;
using herald::http::Request;
using herald::http::Result;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::int64_t kWindowMs = 45;  // < the 50 ms latency faults used below

// A started fake auth server with a control client; the destructor stops it.
struct Running {
  explicit Running(FakeRole role = FakeRole::kAuth) : server(role, FakeServerOptions{}) { server.Start(); }

  std::string Url(const std::string& path) const { return server.BaseUrl() + path; }

  void PutFault(const Json& fault) {
    const auto res = control.Request("PUT", Url("/_fake/faults"), fault.dump());
    INFO(res.body);
    REQUIRE(res.status == 200);
  }

  void ClearFaults() { REQUIRE(control.Request("DELETE", Url("/_fake/faults"), "").status == 200); }

  Json Log(const std::string& prefix) {
    const auto res = control.Get(Url("/_fake/requests?path=" + herald::http::UrlEncode(prefix)));
    REQUIRE(res.status == 200);
    return Json::parse(res.body)["requests"];
  }

  FakeServer server;
  herald::http::Client control;
};

MultiClient::Options Options(std::size_t max_concurrency, std::size_t max_per_host = 8,
                             milliseconds timeout = milliseconds(5000)) {
  MultiClient::Options options;
  options.max_concurrency = max_concurrency;
  options.max_per_host = max_per_host;
  options.timeout = timeout;
  // The fake listens with httplib's backlog of 5: when a batch opens 8 connections at
  // once on a busy machine, the kernel drops a SYN and the client resends it after 1 s,
  // the initial RTO. A connect timeout above that keeps such a stall from failing a test.
  options.connect_timeout = milliseconds(5000);
  return options;
}

std::vector<Request> UserGets(const Running& fake, int first, int count) {
  std::vector<Request> requests;
  for (int i = first; i < first + count; ++i) {
    Request request;
    request.url = fake.Url("/api/v1/users/u-" + std::to_string(i));
    requests.push_back(std::move(request));
  }
  return requests;
}

// Every result answered with `status`; shows the first failure otherwise.
void RequireAllStatus(const std::vector<Result>& results, long status) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    INFO("request " << i << ": " << results[i].error);
    REQUIRE(results[i].response);
    REQUIRE(results[i].response->status == status);
  }
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "2024-03-01T12:34:56.789Z" -> Unix epoch milliseconds.
std::int64_t ParseAtMs(const std::string& at) {
  REQUIRE(at.size() == 24);
  const auto num = [&](std::size_t pos, std::size_t len) { return std::stoi(at.substr(pos, len)); };
  using namespace std::chrono;
  const sys_days date = year{num(0, 4)} / month{static_cast<unsigned>(num(5, 2))} /
                        std::chrono::day{static_cast<unsigned>(num(8, 2))};
  const auto tp =
      date + hours{num(11, 2)} + minutes{num(14, 2)} + seconds{num(17, 2)} + milliseconds{num(20, 3)};
  return duration_cast<milliseconds>(tp.time_since_epoch()).count();
}

std::vector<std::int64_t> ArrivalsMs(const Json& log) {
  std::vector<std::int64_t> arrivals;
  for (const auto& entry : log) arrivals.push_back(ParseAtMs(entry["at"].get<std::string>()));
  std::sort(arrivals.begin(), arrivals.end());
  return arrivals;
}

// Most arrivals within any kWindowMs window (see the file comment).
std::size_t MaxArrivalsInWindow(const std::vector<std::int64_t>& sorted_ms) {
  std::size_t best = 0;
  std::size_t lo = 0;
  for (std::size_t hi = 0; hi < sorted_ms.size(); ++hi) {
    while (sorted_ms[hi] - sorted_ms[lo] > kWindowMs) ++lo;
    best = std::max(best, hi - lo + 1);
  }
  return best;
}

double MsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

}  // namespace

TEST_CASE("MultiClient returns results in request order", "[http][multi]") {
  Running fake;
  // The first request is the slowest, so completion order differs from request order.
  fake.PutFault({{"path", "/api/v1/users/u-1"}, {"latency_ms", 150}});
  MultiClient client(Options(8));

  auto requests = UserGets(fake, 1, 30);
  Request missing;
  missing.url = fake.Url("/api/v1/users/u-0");
  requests.push_back(missing);

  const auto results = client.Execute(requests);
  REQUIRE(results.size() == 31);
  for (int i = 0; i < 30; ++i) {
    INFO("request " << i << ": " << results[i].error);
    REQUIRE(results[i].response);
    CHECK(results[i].response->status == 200);
    CHECK(Json::parse(results[i].response->body)["user_id"] == "u-" + std::to_string(i + 1));
    CHECK(results[i].response->headers.count("content-type") == 1);  // lower-case names
    CHECK(results[i].error.empty());
  }
  REQUIRE(results[30].response);
  CHECK(results[30].response->status == 404);  // an HTTP status is a value, not an error
  CHECK(results[0].elapsed >= milliseconds(150));
}

TEST_CASE("MultiClient surfaces status faults and Retry-After", "[http][multi]") {
  Running fake;
  fake.PutFault({{"path", "/api/v1/users/u-2"}, {"error", 429}, {"retry_after_s", 7}});
  MultiClient client(Options(4));
  const auto results = client.Execute(UserGets(fake, 1, 3));
  REQUIRE(results.size() == 3);
  REQUIRE(results[1].response);
  CHECK(results[1].response->status == 429);
  CHECK(results[1].response->RetryAfter() == std::chrono::seconds(7));
  REQUIRE(results[0].response);
  CHECK(results[0].response->status == 200);
  CHECK_FALSE(results[0].response->RetryAfter());
  REQUIRE(results[2].response);
  CHECK(results[2].response->status == 200);
}

TEST_CASE("MultiClient runs requests concurrently up to max_concurrency", "[http][multi][slow]") {
  Running fake;
  constexpr int kRequests = 200;
  constexpr int kLatencyMs = 50;
  constexpr std::size_t kConcurrency = 8;
  fake.PutFault({{"path", "/api/v1/users/"}, {"latency_ms", kLatencyMs}});
  MultiClient client(Options(kConcurrency));

  const auto start = SteadyClock::now();
  const auto results = client.Execute(UserGets(fake, 1, kRequests));
  const double elapsed_ms = MsSince(start);
  RequireAllStatus(results, 200);

  const double serial_ms = kRequests * kLatencyMs;
  const double floor_ms = kRequests / static_cast<double>(kConcurrency) * kLatencyMs;
  const auto arrivals = ArrivalsMs(fake.Log("/api/v1/users/"));
  const auto max_in_window = MaxArrivalsInWindow(arrivals);
  INFO("200 x 50 ms at concurrency 8: "
       << elapsed_ms << " ms (serial " << serial_ms << " ms, floor " << floor_ms << " ms), max arrivals in "
       << kWindowMs << " ms: " << max_in_window << ", connections opened: " << client.ConnectionsOpened());
  CHECK(elapsed_ms < 0.5 * serial_ms);
  CHECK(elapsed_ms >= floor_ms);  // the server sleeps 50 ms per request: at most 8 at a time
  REQUIRE(arrivals.size() == kRequests);
  CHECK(max_in_window <= kConcurrency);
  CHECK(max_in_window >= 2);  // concurrency seen by the server, not only by timing
  CHECK(client.ConnectionsOpened() <= kConcurrency);
}

TEST_CASE("MultiClient caps requests per host without blocking other hosts", "[http][multi]") {
  Running a;
  Running b;
  constexpr int kLatencyMs = 50;
  a.PutFault({{"path", "/api/v1/users/"}, {"latency_ms", kLatencyMs}});
  b.PutFault({{"path", "/api/v1/users/"}, {"latency_ms", kLatencyMs}});
  MultiClient client(Options(8, 2));

  // All of a's requests first: a deferred-per-host queue must not hold b's back.
  auto requests = UserGets(a, 1, 20);
  const auto to_b = UserGets(b, 1, 20);
  requests.insert(requests.end(), to_b.begin(), to_b.end());

  const auto start = SteadyClock::now();
  const auto results = client.Execute(requests);
  const double elapsed_ms = MsSince(start);
  RequireAllStatus(results, 200);

  const auto arrivals_a = ArrivalsMs(a.Log("/api/v1/users/"));
  const auto arrivals_b = ArrivalsMs(b.Log("/api/v1/users/"));
  REQUIRE(arrivals_a.size() == 20);
  REQUIRE(arrivals_b.size() == 20);
  INFO("2 hosts x 20 x 50 ms, 2 per host: " << elapsed_ms << " ms");
  CHECK(MaxArrivalsInWindow(arrivals_a) <= 2);
  CHECK(MaxArrivalsInWindow(arrivals_b) <= 2);
  CHECK(elapsed_ms >= 20.0 / 2 * kLatencyMs);     // 10 rounds of 50 ms per host at most 2 wide
  CHECK(arrivals_b.front() < arrivals_a.back());  // the hosts ran side by side
  for (std::size_t i = 0; i < results.size(); ++i) {
    CHECK(Json::parse(results[i].response->body)["user_id"] == "u-" + std::to_string(i % 20 + 1));
  }
}

TEST_CASE("MultiClient reuses connections across batches", "[http][multi]") {
  Running fake;
  constexpr std::size_t kConcurrency = 4;
  MultiClient client(Options(kConcurrency));

  RequireAllStatus(client.Execute(UserGets(fake, 1, 20)), 200);
  const auto after_first = client.ConnectionsOpened();
  RequireAllStatus(client.Execute(UserGets(fake, 21, 20)), 200);
  const auto after_second = client.ConnectionsOpened();
  INFO("connections opened for 2 x 20 requests at concurrency 4: " << after_first << " then "
                                                                   << after_second);

  CHECK(after_first >= 1);
  CHECK(after_first <= kConcurrency);
  CHECK(after_second == after_first);  // the second batch ran on the cached connections
}

TEST_CASE("MultiClient times out a hung request and completes the rest", "[http][multi]") {
  Running fake;
  fake.PutFault({{"path", "/api/v1/users/u-3"}, {"error", "hang"}});
  constexpr milliseconds kTimeout{500};
  MultiClient client(Options(8, 8, kTimeout));

  const auto start = SteadyClock::now();
  const auto results = client.Execute(UserGets(fake, 1, 5));
  const double elapsed_ms = MsSince(start);
  REQUIRE(results.size() == 5);
  for (std::size_t i = 0; i < results.size(); ++i) {
    INFO("request " << i << ": " << results[i].error);
    if (i == 2) {
      CHECK_FALSE(results[i].response);
      CHECK(Lower(results[i].error).find("timeout") != std::string::npos);
      CHECK(results[i].error.find("/api/v1/users/u-3") != std::string::npos);
      CHECK(results[i].elapsed >= kTimeout - milliseconds(50));
    } else {
      REQUIRE(results[i].response);
      CHECK(results[i].response->status == 200);
      CHECK(results[i].elapsed < kTimeout);
    }
  }
  INFO("batch with one hung request: " << elapsed_ms << " ms; error: " << results[2].error);
  CHECK(elapsed_ms < 5 * kTimeout.count());

  // The timed-out connection was dropped; the client carries on.
  fake.ClearFaults();
  RequireAllStatus(client.Execute(UserGets(fake, 1, 5)), 200);
}

TEST_CASE("MultiClient reports a reset connection as an error", "[http][multi]") {
  Running fake;
  fake.PutFault({{"path", "/api/v1/users/u-2"}, {"error", "reset"}});
  MultiClient client(Options(4));

  const auto results = client.Execute(UserGets(fake, 1, 4));
  REQUIRE(results.size() == 4);
  CHECK_FALSE(results[1].response);
  CHECK_FALSE(results[1].error.empty());
  CHECK(results[1].error.find("GET " + fake.Url("/api/v1/users/u-2")) == 0);
  INFO("reset: " << results[1].error);
  for (std::size_t i : {0u, 2u, 3u}) {
    INFO("request " << i << ": " << results[i].error);
    REQUIRE(results[i].response);
    CHECK(results[i].response->status == 200);
  }

  fake.ClearFaults();
  RequireAllStatus(client.Execute(UserGets(fake, 1, 4)), 200);
}

TEST_CASE("MultiClient sends POST bodies intact", "[http][multi]") {
  Running fake;
  MultiClient client(Options(4));

  std::vector<Request> requests;
  std::multiset<std::string> sent;
  for (int i = 1; i <= 12; ++i) {
    Json body{{"ids", {"u-" + std::to_string(i)}}};
    // One large body: several TCP segments, and past libcurl's Expect: 100-continue threshold.
    if (i == 12) body["padding"] = std::string(256 * 1024, 'x');
    Request request;
    request.method = "POST";
    request.url = fake.Url("/api/v1/users:batchGet");
    request.body = body.dump();
    request.headers.emplace_back("X-Request-Id", "req-" + std::to_string(i));
    sent.insert(request.body);
    requests.push_back(std::move(request));
  }

  const auto results = client.Execute(requests);
  RequireAllStatus(results, 200);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto users = Json::parse(results[i].response->body)["users"];
    REQUIRE(users.size() == 1);
    CHECK(users[0]["user_id"] == "u-" + std::to_string(i + 1));
  }

  std::multiset<std::string> received;
  for (const auto& entry : fake.Log("/api/v1/users:batchGet")) {
    CHECK(entry["method"] == "POST");
    received.insert(entry["body"].get<std::string>());
  }
  CHECK(received == sent);
}

TEST_CASE("MultiClient turns transport failures into per-request errors", "[http][multi]") {
  Running fake;
  int closed_port = 0;
  {
    FakeServer gone(FakeRole::kAuth, FakeServerOptions{});
    gone.Start();
    closed_port = gone.Port();
  }  // stopped: nothing listens there any more
  MultiClient client(Options(4));

  std::vector<Request> requests(3);
  requests[0].url = "http://127.0.0.1:" + std::to_string(closed_port) + "/api/v1/users/u-1";
  requests[1].url = "not a url";
  requests[2].url = fake.Url("/api/v1/users/u-1");
  const auto results = client.Execute(requests);
  REQUIRE(results.size() == 3);
  CHECK_FALSE(results[0].response);
  CHECK(results[0].error.find(requests[0].url) != std::string::npos);
  CHECK_FALSE(results[1].response);
  CHECK_FALSE(results[1].error.empty());
  REQUIRE(results[2].response);
  CHECK(results[2].response->status == 200);
  INFO("refused: " << results[0].error << "\nbad url: " << results[1].error);

  CHECK(client.Execute({}).empty());
}

TEST_CASE("MultiClient rejects unusable options", "[http][multi]") {
  CHECK_THROWS_AS(MultiClient(Options(0)), herald::ConfigError);
  CHECK_THROWS_AS(MultiClient(Options(4, 0)), herald::ConfigError);
}
