#pragma once
// HTTP serving (cpp-httplib): a server running on its own thread pool, the operational
// routes every long-running stage serves, and JSON error helpers.

#include <functional>
#include <memory>
#include <string>
#include <atomic>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "herald/metrics/registry.hpp"

namespace herald::http {

/// The listening socket of an httplib server, set up the way Herald needs it: SO_REUSEADDR
/// without httplib's SO_REUSEPORT (which would let a second process share a taken port
/// silently), and a backlog of 1024 instead of httplib's fixed 5 (which drops connection
/// bursts; the client then waits a second for SYN retransmission).
/// Install() before binding, Widen() after.
class ListenSocket {
 public:
  void Install(httplib::Server& server);
  void Widen() const;

 private:
  std::shared_ptr<std::atomic<int>> fd_ = std::make_shared<std::atomic<int>>(-1);
};

class Server {
 public:
  Server();
  ~Server();  // Stop()
  httplib::Server& Raw() { return server_; }
  /// Binds (port 0 = any free port) and serves on a background thread. Throws ConfigError
  /// if it cannot bind. Returns once listening.
  void Start(const std::string& host, int port);
  void Stop() noexcept;
  int Port() const { return port_; }

 private:
  httplib::Server server_;
  ListenSocket socket_;
  int port_ = 0;
  std::thread thread_;
};

/// Liveness: returns an error message when the stage is stuck, empty when healthy.
using Probe = std::function<std::string()>;

/// Adds GET /metrics, /healthz and /readyz, and a JSON 404 / 500 for everything else.
void AddOpsRoutes(Server& server, metrics::Registry& registry, Probe liveness, Probe readiness);

/// Writes {"error": message, "field": field?} with the given status.
void JsonError(httplib::Response& res, int status, const std::string& message,
               const std::string& field = {});
void Json(httplib::Response& res, int status, const nlohmann::json& body);

}  // namespace herald::http
