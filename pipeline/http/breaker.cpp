#include "herald/http/breaker.hpp"

#include <algorithm>

namespace herald::http {

std::string_view BreakerStateName(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed: return "closed";
    case CircuitBreaker::State::kOpen: return "open";
    case CircuitBreaker::State::kHalfOpen: return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(std::string name, Options options, ClockFn clock,
                               std::function<void(State)> on_change)
    : name_(std::move(name)),
      options_(options),
      clock_(clock ? std::move(clock) : [] { return std::chrono::steady_clock::now(); }),
      on_change_(std::move(on_change)) {}

void CircuitBreaker::Transition(State to, std::unique_lock<std::mutex>& lock) {
  if (state_ == to) return;
  state_ = to;
  if (to == State::kOpen) opened_at_ = clock_();
  if (to != State::kHalfOpen) probe_in_flight_ = false;
  if (to == State::kClosed) {
    consecutive_ = 0;
    recent_.clear();
  }
  if (on_change_) {
    lock.unlock();
    on_change_(to);
    lock.lock();
  }
}

bool CircuitBreaker::Allow() {
  std::unique_lock lock(mu_);
  if (state_ == State::kOpen && clock_() - opened_at_ >= options_.open_for) {
    Transition(State::kHalfOpen, lock);
  }
  if (state_ == State::kClosed) return true;
  if (state_ == State::kHalfOpen && !probe_in_flight_) {
    probe_in_flight_ = true;
    return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  std::unique_lock lock(mu_);
  if (state_ == State::kHalfOpen) {
    Transition(State::kClosed, lock);
    return;
  }
  consecutive_ = 0;
  recent_.push_back(false);
  if (recent_.size() > options_.window) recent_.pop_front();
}

void CircuitBreaker::RecordFailure() {
  std::unique_lock lock(mu_);
  if (state_ == State::kHalfOpen) {
    Transition(State::kOpen, lock);
    return;
  }
  if (state_ == State::kOpen) return;
  ++consecutive_;
  recent_.push_back(true);
  if (recent_.size() > options_.window) recent_.pop_front();
  auto failures = static_cast<std::size_t>(std::count(recent_.begin(), recent_.end(), true));
  bool ratio_exceeded = recent_.size() >= options_.min_calls &&
                        static_cast<double>(failures) >= options_.failure_ratio * static_cast<double>(recent_.size());
  if (consecutive_ >= options_.consecutive_failures || ratio_exceeded) Transition(State::kOpen, lock);
}

CircuitBreaker::State CircuitBreaker::Current() {
  std::unique_lock lock(mu_);
  if (state_ == State::kOpen && clock_() - opened_at_ >= options_.open_for) {
    Transition(State::kHalfOpen, lock);
  }
  return state_;
}

}  // namespace herald::http
