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
