#pragma once
// Prometheus metrics: counters, gauges and histograms with labels, rendered as the
// Prometheus text format. Thread-safe; returned references stay valid for the registry's
// lifetime, so hot paths look a metric up once and keep the reference.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace herald::metrics {

using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  void Inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v) { Observe(v, 1); }
  /// `n` observations of the same value (a batch's records share its processing time).
  void Observe(double v, std::uint64_t n);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<std::uint64_t> count_{0};
};

/// Latency buckets in seconds, 1 ms .. 60 s.
std::vector<double> LatencyBuckets();

class Registry {
 public:
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels = {}, std::vector<double> bounds = LatencyBuckets());
  /// Removes one gauge series (a partition no longer assigned, ...). References to it
  /// must not be kept: callers of this look the gauge up each time they set it.
  void RemoveGauge(const std::string& name, const Labels& labels);
  /// The Prometheus text exposition of every metric.
  std::string Render() const;

 private:
  struct Family {
    std::string help;
    std::string type;
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Gauge>> gauges;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
  };
  Family& GetFamily(const std::string& name, const std::string& help, const std::string& type);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

/// The process-wide registry every stage reports into.
Registry& Default();

}  // namespace herald::metrics
