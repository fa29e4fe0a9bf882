#pragma once
// A blocking HTTP client over one libcurl easy handle: keep-alive connection reuse across
// calls, connect and total timeouts. Not thread-safe: one client per thread.
// Transport failures (refused, reset, timeout) throw TransientError; any HTTP status is a
// value for the caller to classify.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace herald::http {

struct Response {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  /// Retry-After in seconds, when the server sent one.
  std::optional<std::chrono::seconds> RetryAfter() const;
};

class Client {
 public:
  struct Options {
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds timeout{5000};
    std::string user_agent = "herald/0.1";
    std::string bearer_token;
  };
  Client();
  explicit Client(Options options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  Response Get(const std::string& url);
  Response Post(const std::string& url, const std::string& body,
                const std::string& content_type = "application/json");
  Response Request(const std::string& method, const std::string& url, const std::string& body,
                   const std::string& content_type = "application/json");

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Percent-encodes a URL path segment or query value.
std::string UrlEncode(const std::string& s);

}  // namespace herald::http
