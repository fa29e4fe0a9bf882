// Priority isolation of the delivery stage: high-priority latency (record produced → the
// provider answered "sent") when the stage is idle, and while it drains a large low-priority
// backlog on the same channel. Runs the embedded stack (broker, Redis, PostgreSQL, fake push
// provider, every stage as a process) and writes delivery records straight to the channel's
// topics, so the figures are the delivery stage's own.
//
//   build/bench/herald_bench_priority [--low 200000] [--high 300] [--rate 50] [--herald PATH]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>

#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/time.hpp"
#include "herald/dev/stack.hpp"
#include "herald/kafka/consumer.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/model/records.hpp"
#include "herald/topics/catalog.hpp"
#include "bench_stack.hpp"

using namespace herald;
using namespace std::chrono_literals;

namespace {

std::string Record(const std::string& event_id, int user, model::Priority priority) {
  model::Delivery d;
  d.request.event_id = event_id;
  d.request.event_type = "comment.liked";
  d.request.source = "ugc";
  d.request.user_id = "u-" + std::to_string(user);
  d.request.request_id = RequestId(event_id, d.request.user_id);
  d.request.priority = priority;
  d.request.created = NowMs();
  d.channel = "push";
  d.notification_id = NotificationId(event_id, d.request.user_id, "push");
  d.address = "fcm-bench-" + std::to_string(user);
  d.locale = "en";
  d.timezone = "UTC";
  d.vars = {{"first_name", "Bench"}, {"liked_by", "Ann"}, {"comment_excerpt", "Nice"}};
  return model::Dump(model::ToJson(d));
}

struct Latencies {
  std::mutex mu;
  std::vector<double> high_ms;
  std::atomic<std::size_t> low_sent{0};
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Herald delivery priority benchmark"};
  std::size_t low = 200'000, high = 300;
  double rate = 50;
  std::string binary = HERALD_BINARY;
  app.add_option("--low", low, "Low-priority backlog size")->capture_default_str();
  app.add_option("--high", high, "High-priority records per phase")->capture_default_str();
  app.add_option("--rate", rate, "High-priority records per second")->capture_default_str();
  app.add_option("--herald", binary, "herald executable that runs the stages")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  ConfigureLogging("warn", "text");

  auto so = bench::StackIn("priority", binary);
  const std::string state = so.state_dir;
  // The provider's rate limit is not what is measured here.
  so.stage_env = {{"HERALD_PROVIDER_RATE", "1000000"}, {"HERALD_PROVIDER_BURST", "100000"}};
  dev::DevStack stack(so);
  stack.Up();
  const auto brokers = stack.Env().at("HERALD_BROKERS");
  const auto& catalog = topics::Catalog();

  kafka::Producer::Options po;
  po.brokers = brokers;
  kafka::Producer producer(po);

  Latencies lat;
  kafka::ConsumerLoop::Options co;
  co.brokers = brokers;
  co.group_id = "bench-status-" + RandomUuid().substr(0, 8);
  co.topics = {catalog.Status()};
  kafka::ConsumerLoop statuses(co, producer);
  std::thread reader([&] {
    statuses.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext&) {
      for (const auto& m : batch) {
        auto s = model::StatusFromJson(nlohmann::json::parse(m.Value()));
        if (s.status != model::Status::kSent) continue;
        if (s.event_id.rfind("bench-high-", 0) == 0) {
          std::lock_guard lock(lat.mu);
          lat.high_ms.push_back(std::chrono::duration<double, std::milli>(s.at - s.created).count());
        } else if (s.event_id.rfind("bench-low-", 0) == 0) {
          ++lat.low_sent;
        }
      }
    });
  });

  auto high_phase = [&](const std::string& tag) {
    {
      std::lock_guard lock(lat.mu);
      lat.high_ms.clear();
    }
    auto interval = std::chrono::duration<double>(1.0 / rate);
    auto next = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < high; ++i) {
      std::this_thread::sleep_until(next);  // pacing of the offered load
      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
      producer.Produce({catalog.Deliver("push", "high"), "u-" + std::to_string(i),
                        Record("bench-high-" + tag + "-" + std::to_string(i), static_cast<int>(i), model::Priority::kHigh), {}},
                       nullptr);
    }
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(lat.mu);
        if (lat.high_ms.size() >= high) break;
      }
      std::this_thread::sleep_for(50ms);
    }
    std::lock_guard lock(lat.mu);
    return lat.high_ms;
  };

  std::printf("Herald priority isolation (deliver-push, fake provider on loopback)\n");
  // Warm-up: connections, group join, claims.
  high_phase("warm");
  auto idle = high_phase("idle");

  auto t0 = std::chrono::steady_clock::now();
  kafka::AckGroup acks;
  for (std::size_t i = 0; i < low; ++i) {
    producer.Produce({catalog.Deliver("push", "low"), "u-" + std::to_string(i),
                      Record("bench-low-" + std::to_string(i), static_cast<int>(i), model::Priority::kLow), {}},
                     acks.Track());
  }
  auto failed = acks.Wait(120s);
  double produce_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::size_t low_at_start = lat.low_sent.load();
  auto busy = high_phase("busy");
  std::size_t low_during = lat.low_sent.load() - low_at_start;
  bool backlog_left = lat.low_sent.load() < low;
  auto deadline = std::chrono::steady_clock::now() + 600s;
  while (lat.low_sent.load() < low && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  double drain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("\nlow backlog: %zu records produced in %.1f s (%zu failed); all sent after %.1f s (%.0f/s)\n", low,
              produce_s, failed.size(), drain_s, static_cast<double>(lat.low_sent.load()) / drain_s);
  std::printf("low records sent while the busy phase's high records flowed: %zu%s\n\n", low_during,
              backlog_left ? " (backlog still draining when the phase ended)" : " (backlog drained before the phase ended)");
  std::printf("%-28s %8s %10s %10s %10s\n", "high priority, ms", "count", "p50", "p99", "max");
  std::printf("%-28s %8zu %10.1f %10.1f %10.1f\n", "idle", idle.size(), Pct(idle, 0.5), Pct(idle, 0.99),
              idle.empty() ? 0.0 : *std::max_element(idle.begin(), idle.end()));
  std::printf("%-28s %8zu %10.1f %10.1f %10.1f\n", ("with " + std::to_string(low) + " low backlog").c_str(), busy.size(),
              Pct(busy, 0.5), Pct(busy, 0.99), busy.empty() ? 0.0 : *std::max_element(busy.begin(), busy.end()));
  statuses.Stop();
  reader.join();
  stack.Down();
  std::error_code ec;
  std::filesystem::remove_all(state, ec);
  return idle.size() >= high && busy.size() >= high ? 0 : 1;
}
