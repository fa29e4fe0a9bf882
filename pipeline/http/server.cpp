#include "herald/http/server.hpp"

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"

namespace herald::http {

Server::Server() {
  server_.new_task_queue = [] { return new httplib::ThreadPool(8); };
  server_.set_keep_alive_max_count(1000);
  socket_.Install(server_);
  // Any error response without a body gets a JSON one (e.g. httplib's own 413 and 400).
  server_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "HTTP error " + std::to_string(res.status);
    if (res.status == 400) message = "malformed HTTP request";
    if (res.status == 400 && (req.method == "POST" || req.method == "PUT") && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      message = "a " + req.method + " request needs a Content-Length header (0 when it has no body)";
    }
    if (res.status == 404) message = "no such endpoint";
    if (res.status == 405) message = "method not allowed";
    if (res.status == 413) message = "request body too large";
    if (res.status == 414) message = "request URI too long";
    JsonError(res, res.status, message);
  });
  server_.set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                   std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    // The detail (which may quote SQL or internals) goes to the log, not to the client.
    Logger("http")->error("{} {}: {}", req.method, req.path, what);
    JsonError(res, 500, "internal error (logged)");
  });
}

void ListenSocket::Install(httplib::Server& server) {
  server.set_socket_options([fd = fd_](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    fd->store(sock);
  });
}

void ListenSocket::Widen() const {
  int fd = fd_->load();
  if (fd >= 0) ::listen(fd, 1024);  // a second listen() on Linux only updates the backlog
}

Server::~Server() { Stop(); }

void Server::Start(const std::string& host, int port) {
  if (port == 0) {
    port_ = server_.bind_to_any_port(host);
  } else {
    port_ = server_.bind_to_port(host, port) ? port : -1;
  }
  if (port_ <= 0) {
    throw ConfigError("cannot listen on " + host + ":" + std::to_string(port) +
                      " (is the port in use? set HERALD_HTTP_PORT)");
  }
  socket_.Widen();
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  // The socket already accepts connections (they queue); wait for the loop so Stop() works.
  while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::Stop() noexcept {
  if (thread_.joinable()) {
    server_.stop();
    thread_.join();
  }
}

void JsonError(httplib::Response& res, int status, const std::string& message,
               const std::string& field) {
  nlohmann::json body = {{"error", message}};
  if (!field.empty()) body["field"] = field;
  Json(res, status, body);
}

void Json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

void AddOpsRoutes(Server& server, metrics::Registry& registry, Probe liveness, Probe readiness) {
  auto& raw = server.Raw();
  raw.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.Render(), "text/plain; version=0.0.4");
  });
  raw.Get("/healthz", [liveness](const httplib::Request&, httplib::Response& res) {
    auto problem = liveness ? liveness() : std::string();
    if (problem.empty()) Json(res, 200, {{"status", "ok"}});
    else JsonError(res, 503, problem);
  });
  raw.Get("/readyz", [readiness](const httplib::Request&, httplib::Response& res) {
    auto problem = readiness ? readiness() : std::string();
    if (problem.empty()) Json(res, 200, {{"status", "ready"}});
    else JsonError(res, 503, problem);
  });
}

}  // namespace herald::http
