#pragma once
// Herald's error hierarchy. Exceptions are for failures; expected outcomes are values.
// Catch them at a poll-loop or request boundary only.

#include <stdexcept>
#include <string>

namespace herald {

/// Base of every Herald failure. IsRetryable() tells a poll loop whether trying the same
/// work again later may succeed.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  virtual bool IsRetryable() const noexcept { return false; }
};

/// A dependency is unavailable or overloaded (broker, database, upstream API): retry later.
class TransientError : public Error {
 public:
  using Error::Error;
  bool IsRetryable() const noexcept override { return true; }
};

/// The work can never succeed as it is (unknown user, rejected address): do not retry.
class PermanentError : public Error {
 public:
  using Error::Error;
};

/// Input that does not satisfy a contract (bad JSON, schema violation, bad flag).
/// `field` names the offending field as a JSON pointer when known.
class InvalidInput : public Error {
 public:
  InvalidInput(std::string message, std::string field = {})
      : Error(std::move(message)), field_(std::move(field)) {}
  const std::string& Field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// Configuration that cannot be used: an unknown key, a malformed value.
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace herald
