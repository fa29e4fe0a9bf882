// Enrichment throughput: batched lookups + two-level cache versus one request per record,
// on the same data, against the fake auth/ugc/movies APIs with a per-request latency that
// stands in for a network round trip.
//
//   build/bench/herald_bench_enrich [--records 20000] [--users 5000] [--latency-ms 2] [--redis-url URL]

#include <chrono>
#include <cstdio>
#include <random>

#include <CLI/CLI.hpp>

#include "enrich/enricher.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/http/client.hpp"
#include "herald/redis/client.hpp"

using namespace herald;
using nlohmann::json;

namespace {

std::vector<model::NotificationRequest> MakeRequests(std::size_t n, std::size_t users) {
  std::mt19937_64 rng(7);
  std::vector<model::NotificationRequest> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    model::NotificationRequest r;
    std::string user = "u-" + std::to_string(1 + rng() % users);
    auto roll = rng() % 10;
    r.event_type = roll < 6 ? "user.registered" : roll < 8 ? "episode.released" : roll < 9 ? "promo.new_releases" : "bookmark.reminder";
    if (r.event_type == "episode.released") r.content = {"ep-" + std::to_string(1 + rng() % 20)};
    if (r.event_type == "promo.new_releases") r.content = {"movie-" + std::to_string(1 + rng() % 50), "movie-" + std::to_string(1 + rng() % 50)};
    r.event_id = "bench-" + std::to_string(i);
    r.request_id = RequestId(r.event_id, user);
    r.user_id = user;
    r.created = NowMs();
    out.push_back(std::move(r));
  }
  return out;
}

struct Run {
  const char* name;
  double seconds;
  std::size_t delivered;
  std::size_t other;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Herald enrichment benchmark"};
  std::size_t records = 20000, users = 5000, batch = 500;
  int latency_ms = 2;
  std::string redis_url;
  app.add_option("--records", records)->capture_default_str();
  app.add_option("--users", users, "Distinct users the records are drawn from")->capture_default_str();
  app.add_option("--batch", batch, "Records per poll batch")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "Latency the fake upstreams add to every request")->capture_default_str();
  app.add_option("--redis-url", redis_url, "Use this Redis as the shared cache level (default: in-process only)");
  CLI11_PARSE(app, argc, argv);
  ConfigureLogging("warn", "text");

  dev::FakeServerOptions fo;
  fo.user_count = std::max<std::size_t>(users, 1000);
  fo.threads = 64;
  dev::FakeServer auth(dev::FakeRole::kAuth, fo), ugc(dev::FakeRole::kUgc, fo), movies(dev::FakeRole::kMovies, fo);
  for (auto* s : {&auth, &ugc, &movies}) {
    s->Start();
    if (latency_ms > 0) {
      http::Client c;
      c.Request("PUT", s->BaseUrl() + "/_fake/faults", json{{"path", "/api"}, {"latency_ms", latency_ms}}.dump());
    }
  }
  auto registry = schema::Registry::Load();
  auto requests = MakeRequests(records, users);
  std::unique_ptr<redis::Client> redis;
  if (!redis_url.empty()) {
    redis = std::make_unique<redis::Client>(redis_url);
    redis->Command({"FLUSHDB"});
  }

  auto run = [&](const char* name, bool batching, bool caching, std::size_t per_call) {
    metrics::Registry m;
    consumers::enrich::EnricherOptions o;
    o.auth_url = auth.BaseUrl();
    o.ugc_url = ugc.BaseUrl();
    o.movies_url = movies.BaseUrl();
    o.batching = batching;
    o.caching = caching;
    consumers::enrich::Enricher enricher(o, *registry, caching ? redis.get() : nullptr, m);
    Run r{name, 0, 0, 0};
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < requests.size(); i += per_call) {
      std::vector<model::NotificationRequest> slice(requests.begin() + static_cast<long>(i),
                                                    requests.begin() + static_cast<long>(std::min(requests.size(), i + per_call)));
      for (const auto& out : enricher.Process(slice)) {
        if (out.kind == consumers::enrich::Outcome::Kind::kDeliver) ++r.delivered;
        else ++r.other;
      }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };

  std::vector<Run> runs;
  runs.push_back(run("batched + cache", true, true, batch));
  runs.push_back(run("batched, no cache", true, false, batch));
  runs.push_back(run("one request per record", false, false, 1));
  std::printf("\nenrichment of %zu records (%zu distinct users, %d ms upstream latency, batches of %zu)\n\n", records,
              users, latency_ms, batch);
  std::printf("%-26s %10s %12s %10s %8s\n", "mode", "seconds", "records/s", "delivered", "other");
  for (const auto& r : runs) {
    std::printf("%-26s %10.2f %12.0f %10zu %8zu\n", r.name, r.seconds, static_cast<double>(records) / r.seconds,
                r.delivered, r.other);
  }
  std::printf("\nspeed-up of batched + cache over one request per record: %.1fx\n",
              runs[2].seconds / runs[0].seconds);
  bool consistent = runs[0].delivered == runs[2].delivered && runs[1].delivered == runs[2].delivered;
  if (!consistent) std::printf("ERROR: the modes disagree on what was delivered\n");
  return consistent ? 0 : 1;
}
