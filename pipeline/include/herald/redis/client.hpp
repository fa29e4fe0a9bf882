#pragma once
// A Redis client over one hiredis connection. Not thread-safe: one client per thread.
// Reconnects once on a broken connection; connection failures throw TransientError. The
// connection is opened on the first command; a refused AUTH (wrong user or password) or
// SELECT throws ConfigError then, since retrying cannot help.

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
  std::string user;      // Redis 6 ACL user: AUTH <user> <password>; empty: AUTH <password> (default user)
  std::string password;  // empty with no user: no AUTH
};

/// Parses redis://[[user]:password@]host[:port][/db]. User and password are percent-decoded
/// (a password with '@', ':' or '/' is written %40, %3A, %2F); "redis://secret@host" (no
/// colon) is the password alone, as before ACL users. Throws ConfigError for a malformed URL
/// (the message never contains the password) and for rediss://: hiredis 0.14 has no TLS, so
/// TLS to Redis needs a TLS-terminating sidecar (e.g. stunnel) that the URL points at.
Address ParseUrl(const std::string& url);

/// The redis:// URL of `address`, user and password percent-encoded: ParseUrl(FormatUrl(a))
/// gives back `a`.
std::string FormatUrl(const Address& address);

/// `url` with its password replaced by `password` (its user kept), re-encoded; used to apply
/// HERALD_REDIS_PASSWORD over HERALD_REDIS_URL. Throws ConfigError like ParseUrl.
std::string WithPassword(const std::string& url, const std::string& password);

/// `url` without its password ("redis://alice:***@host:6379/0"), for messages and logs.
std::string RedactUrl(const std::string& url);

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
