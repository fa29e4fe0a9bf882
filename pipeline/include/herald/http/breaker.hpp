#pragma once
// A circuit breaker per upstream. Closed: calls flow and outcomes are counted. It opens
// after `consecutive_failures` failures in a row, or when at least `min_calls` of the last
// `window` calls were made and `failure_ratio` of them failed. Open: calls are refused for
// `open_for`, so a failing upstream is not hammered; then one probe is let through
// (half-open): success closes the breaker, failure opens it again.
//
// Thread-safe. Time comes from an injectable clock so tests move time instead of sleeping.

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

namespace herald::http {

class CircuitBreaker {
 public:
  enum class State { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
  struct Options {
    int consecutive_failures = 5;
    std::size_t window = 20;
    std::size_t min_calls = 10;
    double failure_ratio = 0.6;
    std::chrono::milliseconds open_for{5000};
  };
  using ClockFn = std::function<std::chrono::steady_clock::time_point()>;
  /// `on_change` is called (outside the lock) on every state change.
  CircuitBreaker(std::string name, Options options, ClockFn clock = nullptr,
                 std::function<void(State)> on_change = nullptr);

  /// May a call go out now? In half-open state only one probe at a time is allowed.
  bool Allow();
  void RecordSuccess();
  void RecordFailure();
  State Current();
  const std::string& Name() const { return name_; }

 private:
  void Transition(State to, std::unique_lock<std::mutex>& lock);
  std::string name_;
  Options options_;
  ClockFn clock_;
  std::function<void(State)> on_change_;
  std::mutex mu_;
  State state_ = State::kClosed;
  int consecutive_ = 0;
  std::deque<bool> recent_;  // true = failure
  std::chrono::steady_clock::time_point opened_at_{};
  bool probe_in_flight_ = false;
};

std::string_view BreakerStateName(CircuitBreaker::State s);

}  // namespace herald::http
