#pragma once
// A concurrent HTTP client over one libcurl multi handle: runs a batch of requests at
// once (bounded overall and per host) on the calling thread, and keeps connections alive
// across batches.
//
// Thread safety: none. One MultiClient per thread; Execute() blocks that thread until the
// whole batch is done (every request answered, failed, or past its timeout). A moved-from
// client may only be destroyed or assigned to.
//
// Errors: per-request outcomes are values. Any HTTP status is a Response for the caller
// to classify; a transport failure (refused, reset, timeout, bad URL) is Result::error.
// Execute() throws herald::TransientError only if the multi handle itself fails (out of
// memory, broken poll); the batch is then abandoned and its handles released.
// The constructor throws herald::ConfigError for unusable Options and
// herald::TransientError if libcurl cannot create its handles.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herald/http/client.hpp"

namespace herald::http {

struct Request {
  std::string method = "GET";  // GET and HEAD send no body; any other method sends `body`
  std::string url;
  std::string body;
  std::string content_type = "application/json";             // sent with every method but GET/HEAD
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, name and value
};

struct Result {
  std::optional<Response> response;      // set when a whole response arrived, whatever its status
  std::string error;                     // "<METHOD> <url>: <reason>" when !response
  std::chrono::microseconds elapsed{0};  // from the start of the transfer to its end
};

class MultiClient {
 public:
  struct Options {
    /// Requests in flight at once, across all hosts; also the number of idle
    /// connections kept for the next batch. Must be >= 1.
    std::size_t max_concurrency = 16;
    /// Requests in flight at once to one scheme://host:port (the rest wait in the
    /// batch, so their timeout does not run while they wait). Must be >= 1.
    std::size_t max_per_host = 8;
    /// Linux resends a dropped SYN after 1 s, so at 1000 ms one lost SYN (a full listen
    /// backlog on the server) fails the connect instead of delaying it.
    std::chrono::milliseconds connect_timeout{1000};
    /// Total per request, connect included, counted from when it starts (not from when
    /// the batch starts).
    std::chrono::milliseconds timeout{5000};
    std::string user_agent = "herald/0.1";
    std::string bearer_token;  // sent as "Authorization: Bearer <token>" when not empty
  };

  explicit MultiClient(Options options);
  ~MultiClient();
  MultiClient(MultiClient&&) noexcept;
  MultiClient& operator=(MultiClient&&) noexcept;
  MultiClient(const MultiClient&) = delete;
  MultiClient& operator=(const MultiClient&) = delete;

  /// Runs all requests concurrently (at most max_concurrency at a time, at most
  /// max_per_host per host, earlier requests first) and returns one Result per request,
  /// in request order. Never throws for per-request failures; throws TransientError
  /// only if the multi handle fails.
  std::vector<Result> Execute(const std::vector<Request>& requests);

  /// New connections opened so far, summed over all transfers (for tests and metrics:
  /// stays flat while keep-alive connections are reused).
  std::size_t ConnectionsOpened() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::http
