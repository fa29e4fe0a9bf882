#include <catch2/catch.hpp>

#include <vector>

#include "herald/http/breaker.hpp"

using herald::http::CircuitBreaker;
using State = CircuitBreaker::State;
using namespace std::chrono_literals;

namespace {

struct FakeClock {
  std::chrono::steady_clock::time_point now{};
  CircuitBreaker::ClockFn Fn() {
    return [this] { return now; };
  }
};

CircuitBreaker::Options Opts() {
  CircuitBreaker::Options o;
  o.consecutive_failures = 3;
  o.window = 10;
  o.min_calls = 6;
  o.failure_ratio = 0.5;
  o.open_for = 5s;
  return o;
}

}  // namespace

TEST_CASE("the breaker opens after consecutive failures and refuses calls", "[breaker]") {
  FakeClock clock;
  std::vector<State> changes;
  CircuitBreaker b("auth", Opts(), clock.Fn(), [&](State s) { changes.push_back(s); });
  CHECK(b.Allow());
  b.RecordFailure();
  b.RecordFailure();
  CHECK(b.Current() == State::kClosed);
  b.RecordFailure();
  CHECK(b.Current() == State::kOpen);
  CHECK_FALSE(b.Allow());
  clock.now += 4s;
  CHECK_FALSE(b.Allow());
  CHECK(changes == std::vector<State>{State::kOpen});
}

TEST_CASE("after the open period one probe goes out; success closes, failure reopens", "[breaker]") {
  FakeClock clock;
  std::vector<State> changes;
  CircuitBreaker b("auth", Opts(), clock.Fn(), [&](State s) { changes.push_back(s); });
  for (int i = 0; i < 3; ++i) b.RecordFailure();
  clock.now += 5s;
  CHECK(b.Allow());        // the probe
  CHECK_FALSE(b.Allow());  // only one at a time
  b.RecordFailure();
  CHECK(b.Current() == State::kOpen);
  CHECK_FALSE(b.Allow());
  clock.now += 5s;
  CHECK(b.Allow());
  b.RecordSuccess();
  CHECK(b.Current() == State::kClosed);
  CHECK(b.Allow());
  CHECK(b.Allow());
  CHECK(changes == std::vector<State>{State::kOpen, State::kHalfOpen, State::kOpen, State::kHalfOpen, State::kClosed});
}

TEST_CASE("a high failure ratio opens the breaker even without a long run of failures", "[breaker]") {
  FakeClock clock;
  CircuitBreaker b("ugc", Opts(), clock.Fn());
  // fail, ok, fail, ok, fail, fail? no: never three in a row, but 3 of 6 fail (>= 50 %).
  for (bool fail : {true, false, true, false, true}) fail ? b.RecordFailure() : b.RecordSuccess();
  CHECK(b.Current() == State::kClosed);  // 5 calls < min_calls
  b.RecordSuccess();
  CHECK(b.Current() == State::kClosed);  // 3/6 failures but the last call succeeded
  b.RecordFailure();                     // 4/7 >= 50 %
  CHECK(b.Current() == State::kOpen);
}

TEST_CASE("successes keep a flaky upstream's breaker closed", "[breaker]") {
  FakeClock clock;
  CircuitBreaker b("movies", Opts(), clock.Fn());
  for (int i = 0; i < 100; ++i) (i % 4 == 0) ? b.RecordFailure() : b.RecordSuccess();  // 25 % errors
  CHECK(b.Current() == State::kClosed);
}
