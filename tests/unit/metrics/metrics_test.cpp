#include <catch2/catch.hpp>

#include "herald/metrics/registry.hpp"

using namespace herald::metrics;

TEST_CASE("metrics render in the Prometheus text format", "[metrics]") {
  Registry r;
  r.GetCounter("herald_x_total", "X things", {{"stage", "plan"}}).Inc(3);
  r.GetCounter("herald_x_total", "X things", {{"stage", "plan"}}).Inc();  // same series
  r.GetGauge("herald_lag", "Lag", {{"topic", "a\"b"}}).Set(7);
  auto& h = r.GetHistogram("herald_seconds", "Latency", {}, {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  auto text = r.Render();
  CHECK(text.find("# TYPE herald_x_total counter\nherald_x_total{stage=\"plan\"} 4\n") != std::string::npos);
  CHECK(text.find("herald_lag{topic=\"a\\\"b\"} 7\n") != std::string::npos);
  CHECK(text.find("herald_seconds_bucket{le=\"0.1\"} 1\n") != std::string::npos);
  CHECK(text.find("herald_seconds_bucket{le=\"1\"} 2\n") != std::string::npos);
  CHECK(text.find("herald_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("herald_seconds_count 3\n") != std::string::npos);
  CHECK_THROWS(r.GetGauge("herald_x_total", "clash"));
}

TEST_CASE("a histogram takes a batch's records at once, and a gauge series can be removed", "[metrics]") {
  Registry r;
  auto& h = r.GetHistogram("herald_processing_seconds", "Per record", {{"stage", "enrich"}}, {0.01, 0.1});
  h.Observe(0.05, 500);
  h.Observe(0.2, 0);  // an empty batch changes nothing
  auto s = h.Take();
  CHECK(s.count == 500);
  CHECK(s.cumulative == std::vector<std::uint64_t>{0, 500, 500});
  CHECK(s.sum == Approx(25.0));

  r.GetGauge("herald_consumer_lag", "Lag", {{"partition", "0"}}).Set(3);
  r.GetGauge("herald_consumer_lag", "Lag", {{"partition", "1"}}).Set(4);
  r.RemoveGauge("herald_consumer_lag", {{"partition", "0"}});
  r.RemoveGauge("herald_nothing", {});  // unknown: no effect
  auto text = r.Render();
  CHECK(text.find("herald_consumer_lag{partition=\"0\"}") == std::string::npos);
  CHECK(text.find("herald_consumer_lag{partition=\"1\"} 4\n") != std::string::npos);
}
