#pragma once
// A Redis client over one hiredis connection. Not thread-safe: one client per thread.
// Reconnects once on a broken connection; connection failures throw TransientError.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace herald::redis {

struct Reply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus, kError };
  Type type = Type::kNil;
  std::string str;        // string, status or error text
  long long integer = 0;
  std::vector<Reply> elements;
  bool IsNil() const { return type == Type::kNil; }
};

struct Address {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;
};
/// Parses redis://[:password@]host[:port][/db]; throws ConfigError.
Address ParseUrl(const std::string& url);

class Client {
 public:
  explicit Client(const std::string& url,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Runs one command (binary-safe arguments). A Redis error reply is returned as kError.
  Reply Command(const std::vector<std::string>& args);
  /// Sends several commands in one round trip and returns their replies in order.
  std::vector<Reply> Pipeline(const std::vector<std::vector<std::string>>& commands);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::redis
