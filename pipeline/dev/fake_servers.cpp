// Fake upstream and provider HTTP servers: routing, control API, faults, request log.
//
// Connection handling is ours, not httplib's: FakeHttpServer overrides
// httplib::Server::process_and_close_socket (a virtual hook, as SSLServer uses) and
// runs httplib's request parser/dispatcher (process_request) over our own Stream.
// Owning the socket is what makes the faults real:
//   - "reset" marks the connection aborted: the stream refuses the response bytes and
//     the socket is closed with SO_LINGER 0, so the client gets a TCP RST and no
//     response. httplib 0.11 gives handlers no socket, and an exception handler always
//     makes it write a response, so there is no other way to drop a connection.
//   - "hang" parks the handler on a condition variable that Stop() signals, checking
//     every 50 ms whether the client gave up, so hung requests neither outlive Stop()
//     nor pin a worker thread for a minute after the client timed out.
//   - The keep-alive wait and every socket read/write poll in 50 ms slices and give up
//     once Stop() begins, so Stop() never waits for idle keep-alive connections
//     (httplib's own loop would hold them for the 5 s keep-alive timeout).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include "herald/common/logging.hpp"
#include "herald/http/server.hpp"

#include "herald/dev/fake_servers.hpp"

namespace herald::dev {
namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollSlice{50};
constexpr std::chrono::seconds kMaxHang{60};
constexpr std::chrono::seconds kKeepAliveIdle{5};
constexpr std::chrono::seconds kReadTimeout{5};
constexpr std::chrono::seconds kWriteTimeout{5};
constexpr std::size_t kMaxRequestsPerConnection = 1000;
constexpr std::size_t kMaxPayloadBytes = 16 * 1024 * 1024;
constexpr std::size_t kMaxBatchIds = 500;
constexpr std::size_t kDefaultPageLimit = 100;
constexpr std::size_t kMaxPageLimit = 1000;
constexpr std::int64_t kMsPerDay = 86'400'000;
constexpr std::int64_t kDefaultHistoryRangeMs = 30 * kMsPerDay;
constexpr std::int64_t kMaxHistoryRangeMs = 400 * kMsPerDay;
constexpr std::int64_t kMaxLatencyMs = 600'000;
constexpr std::int64_t kMaxRetryAfterS = 86'400;
constexpr std::string_view kCursorPrefix = "idx-";
constexpr std::string_view kControlPrefix = "/_fake/";

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = herald::Logger("fake");
  return *logger;
}

// --- time --------------------------------------------------------------------------

std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string FormatUtcMillis(std::int64_t epoch_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds{epoch_ms}};
  const auto day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss hms{tp - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

std::optional<int> Digits(std::string_view text, std::size_t pos, std::size_t count) {
  if (pos + count > text.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

// RFC 3339 date-time -> Unix epoch milliseconds (fraction truncated to ms).
std::optional<std::int64_t> ParseRfc3339Ms(std::string_view text) {
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[13] != ':' || text[16] != ':') return std::nullopt;
  if (text[10] != 'T' && text[10] != 't' && text[10] != ' ') return std::nullopt;
  const auto year = Digits(text, 0, 4);
  const auto month = Digits(text, 5, 2);
  const auto day = Digits(text, 8, 2);
  const auto hour = Digits(text, 11, 2);
  const auto minute = Digits(text, 14, 2);
  const auto second = Digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  if (*hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{*year}, std::chrono::month{static_cast<unsigned>(*month)},
                                        std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok()) return std::nullopt;

  std::size_t pos = 19;
  std::int64_t fraction_ms = 0;
  if (text[pos] == '.') {
    const auto start = ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
    if (pos == start) return std::nullopt;
    for (std::size_t i = 0; i < 3; ++i) {
      fraction_ms = fraction_ms * 10 + (start + i < pos ? text[start + i] - '0' : 0);
    }
  }
  std::int64_t offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const auto offset_hours = Digits(text, pos + 1, 2);
    const auto offset_mins = Digits(text, pos + 4, 2);
    if (!offset_hours || !offset_mins || text[pos + 3] != ':' || *offset_hours > 23 || *offset_mins > 59) {
      return std::nullopt;
    }
    offset_minutes = (*offset_hours * 60 + *offset_mins) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;

  const auto days_since_epoch = std::chrono::sys_days{ymd}.time_since_epoch().count();
  const std::int64_t seconds = static_cast<std::int64_t>(days_since_epoch) * 86'400 + *hour * 3600 + *minute * 60 +
                               *second - offset_minutes * 60;
  return seconds * 1000 + fraction_ms;
}

// --- small helpers -------------------------------------------------------------------

std::string Dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 500 ? "Client Error" : "Server Error";
  }
}

// FCM-style error status names for the push fake.
std::string_view PushStatus(int status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "THIRD_PARTY_AUTH_ERROR";
    case 403: return "SENDER_ID_MISMATCH";
    case 404: return "UNREGISTERED";
    case 429: return "QUOTA_EXCEEDED";
    case 503: return "UNAVAILABLE";
    default: return status < 500 ? "INVALID_ARGUMENT" : "INTERNAL";
  }
}

bool IsGet(const httplib::Request& req) { return req.method == "GET" || req.method == "HEAD"; }

// `herald dev fakes` has no flag for the providers' tokens: the dev stack passes them in the
// environment of the fakes process.
FakeServerOptions WithProviderToken(FakeRole role, FakeServerOptions options) {
  if (options.bearer_token.empty() && (role == FakeRole::kSms || role == FakeRole::kPush)) {
    if (const char* token = std::getenv(role == FakeRole::kSms ? kFakeSmsTokenEnv : kFakePushTokenEnv)) {
      options.bearer_token = token;
    }
  }
  return options;
}

// Path segments without the leading '/'; empty segments are kept so "/a//b" is not "/a/b".
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> segments;
  if (path.starts_with('/')) path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

std::optional<std::uint64_t> ParseUnsigned(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

bool IsE164(std::string_view number) {
  if (number.size() < 9 || number.size() > 16 || number[0] != '+' || number[1] < '1' || number[1] > '9') return false;
  return std::all_of(number.begin() + 1, number.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Cursor(std::uint64_t next_index) { return fmt::format("{}{}", kCursorPrefix, next_index); }

std::uint64_t MixBits(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// --- connection handling ------------------------------------------------------------

// httplib::Stream over an accepted socket: buffered reads, poll-based timeouts that
// end early when the server stops, and an abort switch that swallows the response.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(socket_t fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  bool is_readable() const override { return buffer_pos_ < buffer_end_ || WaitFor(POLLIN, kReadTimeout); }
  bool is_writable() const override { return !aborted_ && WaitFor(POLLOUT, kWriteTimeout); }

  ssize_t read(char* ptr, size_t size) override {
    if (aborted_) return -1;
    if (buffer_pos_ == buffer_end_) {
      if (!WaitFor(POLLIN, kReadTimeout)) return -1;
      ssize_t received = 0;
      do {
        received = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
      } while (received < 0 && errno == EINTR);
      if (received <= 0) return received;
      QuickAck();
      buffer_pos_ = 0;
      buffer_end_ = static_cast<std::size_t>(received);
    }
    const auto count = std::min(size, buffer_end_ - buffer_pos_);
    std::memcpy(ptr, buffer_.data() + buffer_pos_, count);
    buffer_pos_ += count;
    return static_cast<ssize_t>(count);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (aborted_ || !WaitFor(POLLOUT, kWriteTimeout)) return -1;
    ssize_t sent = 0;
    do {
      sent = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { Address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { Address(false, ip, port); }
  socket_t socket() const override { return fd_; }

  // Keep-alive: true once the next request starts arriving (or the peer closed, which
  // the request parser then reports), false on idle timeout or Stop().
  bool WaitForRequest() const { return buffer_pos_ < buffer_end_ || WaitFor(POLLIN, kKeepAliveIdle); }

  // True once the client closed or reset its side; pipelined data does not count.
  bool PeerClosed() const {
    if (buffer_pos_ < buffer_end_) return false;
    pollfd entry{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
    if (::poll(&entry, 1, 0) <= 0) return false;
    if (entry.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char byte = 0;
    return ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

  void Abort() { aborted_ = true; }
  bool Aborted() const { return aborted_; }

  // Clients without TCP_NODELAY send a POST as two segments (headers, body) and hold
  // the body until the headers are ACKed; with delayed ACKs on a kept-alive connection
  // that costs ~40 ms per request. Quick-ack mode is not sticky, so re-arm it per read.
  void QuickAck() const {
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }

 private:
  bool WaitFor(short events, milliseconds timeout) const {
    const auto deadline = SteadyClock::now() + timeout;
    while (!stopping_.load()) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) return false;
      pollfd entry{fd_, events, 0};
      const int ready = ::poll(&entry, 1, static_cast<int>(std::min(left, kPollSlice).count()));
      // POLLHUP/POLLERR count as ready: the following recv/send reports the error.
      if (ready > 0) return true;
      if (ready < 0 && errno != EINTR) return false;
    }
    return false;
  }

  void Address(bool peer, std::string& ip, int& port) const {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    auto* raw = reinterpret_cast<sockaddr*>(&address);
    if ((peer ? ::getpeername(fd_, raw, &length) : ::getsockname(fd_, raw, &length)) != 0) return;
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (address.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
      ::inet_ntop(AF_INET, &in->sin_addr, text.data(), text.size());
      port = ntohs(in->sin_port);
    } else if (address.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text.data(), text.size());
      port = ntohs(in6->sin6_port);
    }
    ip = text.data();
  }

  socket_t fd_;
  const std::atomic<bool>& stopping_;
  bool aborted_ = false;
  std::array<char, 16 * 1024> buffer_{};
  std::size_t buffer_pos_ = 0;
  std::size_t buffer_end_ = 0;
};

// The connection the current worker thread is serving; handlers use it to abort the
// connection or to notice that a hung client went away. Each worker serves one
// connection at a time, start to finish.
thread_local ConnectionStream* t_connection = nullptr;

class FakeHttpServer final : public httplib::Server {
 public:
  explicit FakeHttpServer(const std::atomic<bool>& stopping) : stopping_(stopping) {}

 private:
  bool process_and_close_socket(socket_t sock) override {
    const int one = 1;
    // The response goes out in two writes (headers, body); without NODELAY, Nagle plus
    // delayed ACKs add ~40 ms to every keep-alive request.
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bool ok = false;
    bool aborted = false;
    {
      ConnectionStream stream(sock, stopping_);
      stream.QuickAck();
      t_connection = &stream;
      try {
        for (std::size_t served = 0; served < kMaxRequestsPerConnection && !stopping_.load(); ++served) {
          if (!stream.WaitForRequest()) break;
          bool connection_closed = false;
          const bool close_connection = served + 1 == kMaxRequestsPerConnection;
          ok = process_request(stream, close_connection, connection_closed, nullptr);
          if (!ok || connection_closed || stream.Aborted()) break;
        }
      } catch (const std::exception& e) {
        // Handlers catch their own errors; this guards the worker thread against
        // anything thrown by the request parser itself (it would terminate the process).
        Log().error("fake server connection failed: {}", e.what());
        stream.Abort();
        ok = false;
      }
      t_connection = nullptr;
      aborted = stream.Aborted();
    }
    if (aborted) {
      // Linger 0: close() discards unsent data and sends RST instead of FIN.
      const linger reset{1, 0};
      ::setsockopt(sock, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    } else {
      ::shutdown(sock, SHUT_RDWR);
    }
    ::close(sock);
    return ok;
  }

  const std::atomic<bool>& stopping_;
};

// --- faults and the request log ---------------------------------------------------------

enum class FaultKind { kNone, kStatus, kHang, kReset, kMalformed };

struct Fault {
  std::string path;
  std::int64_t latency_ms = 0;
  double error_rate = 1.0;
  FaultKind kind = FaultKind::kNone;
  int status = 0;
  std::optional<std::int64_t> retry_after_s;

  Json ToJson() const {
    Json error = nullptr;
    switch (kind) {
      case FaultKind::kNone: break;
      case FaultKind::kStatus: error = status; break;
      case FaultKind::kHang: error = "hang"; break;
      case FaultKind::kReset: error = "reset"; break;
      case FaultKind::kMalformed: error = "malformed"; break;
    }
    return {{"path", path},
            {"latency_ms", latency_ms},
            {"error_rate", error_rate},
            {"error", error},
            {"retry_after_s", retry_after_s ? Json(*retry_after_s) : Json(nullptr)}};
  }
};

// Validates a PUT /_fake/faults body; on failure returns the message for a 400.
std::pair<std::optional<Fault>, std::string> ParseFault(const Json& body) {
  using Result = std::pair<std::optional<Fault>, std::string>;
  const auto fail = [](std::string message) { return Result{std::nullopt, std::move(message)}; };
  static constexpr std::array<std::string_view, 5> kKeys{"path", "latency_ms", "error_rate", "error", "retry_after_s"};
  for (const auto& [key, value] : body.items()) {
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      return fail(fmt::format("unknown fault field '{}' (expected path, latency_ms, error_rate, error, retry_after_s)", key));
    }
  }
  Fault fault;
  if (!body.contains("path") || !body["path"].is_string() || !body["path"].get<std::string>().starts_with('/')) {
    return fail("fault 'path' must be a string starting with '/'");
  }
  fault.path = body["path"].get<std::string>();
  if (fault.path.starts_with(kControlPrefix)) return fail("faults cannot target the /_fake/ control API");
  if (body.contains("latency_ms")) {
    const auto& latency = body["latency_ms"];
    if (!latency.is_number_integer() || latency.get<std::int64_t>() < 0 || latency.get<std::int64_t>() > kMaxLatencyMs) {
      return fail(fmt::format("'latency_ms' must be an integer in 0..{}", kMaxLatencyMs));
    }
    fault.latency_ms = latency.get<std::int64_t>();
  }
  if (body.contains("error_rate")) {
    const auto& rate = body["error_rate"];
    if (!rate.is_number() || rate.get<double>() < 0.0 || rate.get<double>() > 1.0) {
      return fail("'error_rate' must be a number in 0..1");
    }
    fault.error_rate = rate.get<double>();
  }
  if (body.contains("error") && !body["error"].is_null()) {
    const auto& error = body["error"];
    std::optional<std::uint64_t> status;
    if (error.is_number_integer()) {
      status = error.get<std::int64_t>() < 0 ? std::nullopt : std::optional<std::uint64_t>(error.get<std::uint64_t>());
    } else if (error.is_string()) {
      const auto text = error.get<std::string>();
      if (text == "hang") {
        fault.kind = FaultKind::kHang;
      } else if (text == "reset") {
        fault.kind = FaultKind::kReset;
      } else if (text == "malformed") {
        fault.kind = FaultKind::kMalformed;
      } else {
        status = ParseUnsigned(text);
        if (!status) return fail(fmt::format("'error' must be an HTTP status 400..599 or hang|reset|malformed, got '{}'", text));
      }
    } else {
      return fail("'error' must be an HTTP status 400..599 or one of \"hang\", \"reset\", \"malformed\"");
    }
    if (fault.kind == FaultKind::kNone) {
      if (!status || *status < 400 || *status > 599) return fail("'error' status must be in 400..599");
      fault.kind = FaultKind::kStatus;
      fault.status = static_cast<int>(*status);
    }
  }
  if (body.contains("retry_after_s") && !body["retry_after_s"].is_null()) {
    const auto& retry = body["retry_after_s"];
    if (!retry.is_number_integer() || retry.get<std::int64_t>() < 0 || retry.get<std::int64_t>() > kMaxRetryAfterS) {
      return fail(fmt::format("'retry_after_s' must be an integer in 0..{}", kMaxRetryAfterS));
    }
    fault.retry_after_s = retry.get<std::int64_t>();
  }
  if (fault.kind == FaultKind::kNone && fault.latency_ms == 0) {
    return fail("fault does nothing: set 'error' and/or a positive 'latency_ms'");
  }
  return {fault, {}};
}

struct LogEntry {
  std::uint64_t seq;
  std::string method;
  std::string path;  // target as received, query string included
  std::string body;
  std::int64_t at_ms;
  int status;  // 0 until answered; stays 0 for hang/reset
};

}  // namespace

// ---------------------------------------------------------------------------------------

class FakeServer::Impl {
 public:
  Impl(FakeRole role, FakeServerOptions options)
      : role_(role),
        options_(WithProviderToken(role, std::move(options))),
        random_(options_.seed),
        port_(options_.port),
        server_(stopping_) {
    const auto threads = std::max<std::size_t>(options_.threads, 1);
    // httplib takes ownership of the returned queue (it wraps it in a unique_ptr).
    server_.new_task_queue = [threads] { return std::make_unique<httplib::ThreadPool>(threads).release(); };
    server_.set_payload_max_length(kMaxPayloadBytes);
    listen_socket_.Install(server_);
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); };
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    server_.Put(".*", handler);
    server_.Delete(".*", handler);
    server_.Patch(".*", handler);
    server_.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
        // Not a std::exception: keep the generic message.
      }
      SendError(res, 500, fmt::format("fake {} failed: {}", FakeRoleName(role_), what));
    });
  }

  ~Impl() { Stop(); }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void Start() {
    std::lock_guard lifecycle(lifecycle_mutex_);
    if (started_) throw std::logic_error("FakeServer::Start() called twice");
    started_ = true;
    int port = options_.port;
    if (port == 0) {
      port = server_.bind_to_any_port(options_.host);
      if (port <= 0) throw std::runtime_error(fmt::format("fake {}: cannot bind {} on any port", FakeRoleName(role_), options_.host));
    } else if (!server_.bind_to_port(options_.host, port)) {
      throw std::runtime_error(fmt::format("fake {}: cannot bind {}:{} (port in use or host not local?)",
                                           FakeRoleName(role_), options_.host, port));
    }
    port_ = port;
    listen_socket_.Widen();
    thread_ = std::thread([this] {
      if (!server_.listen_after_bind() && !stopping_.load()) {
        Log().error("fake {} on port {}: accept loop failed", FakeRoleName(role_), port_.load());
      }
      listen_returned_ = true;
    });
    // The socket already listens (bind_* calls listen()); wait for the accept loop so
    // that a Stop() right after Start() reaches it (httplib's stop() is a no-op before).
    while (!server_.is_running() && !listen_returned_.load()) std::this_thread::sleep_for(milliseconds(1));
    if (!server_.is_running()) {
      thread_.join();
      throw std::runtime_error(fmt::format("fake {}: accept loop on port {} exited at once", FakeRoleName(role_), port));
    }
    Log().info("fake {} listening on {}", FakeRoleName(role_), BaseUrl());
  }

  void Stop() noexcept {
    try {
      std::lock_guard lifecycle(lifecycle_mutex_);
      if (!started_ || stopped_) return;
      stopped_ = true;
      {
        std::lock_guard wake(wake_mutex_);
        stopping_ = true;
      }
      wake_cv_.notify_all();
      server_.stop();
      if (thread_.joinable()) thread_.join();
      Log().info("fake {} on port {} stopped", FakeRoleName(role_), port_.load());
    } catch (const std::exception& e) {
      Log().error("fake {}: error while stopping: {}", FakeRoleName(role_), e.what());
    }
  }

  int Port() const { return port_.load(); }

  std::string BaseUrl() const {
    std::string_view host = options_.host;
    if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
    if (host == "::") host = "::1";
    if (host.find(':') != std::string_view::npos) return fmt::format("http://[{}]:{}", host, Port());
    return fmt::format("http://{}:{}", host, Port());
  }

  FakeRole Role() const { return role_; }

  std::uint64_t DeliveredCount() const {
    std::lock_guard lock(state_mutex_);
    return delivered_;
  }

 private:
  // --- dispatch -------------------------------------------------------------------

  void Handle(const httplib::Request& req, httplib::Response& res) {
    if (req.path.starts_with(kControlPrefix)) {
      HandleControl(req, res);
      return;
    }
    const auto seq = LogArrival(req);
    int status = 0;
    try {
      status = Serve(req, res);
    } catch (const std::exception& e) {
      Log().error("fake {}: {} {} failed: {}", FakeRoleName(role_), req.method, req.path, e.what());
      SendError(res, 500, fmt::format("fake {} failed: {}", FakeRoleName(role_), e.what()));
      status = 500;
    }
    LogStatus(seq, status);
  }

  // Applies the matching fault, if any, then routes. Returns the status to log.
  int Serve(const httplib::Request& req, httplib::Response& res) {
    const auto fault = FindFault(req.path);
    if (fault) {
      if (fault->latency_ms > 0) SleepFor(milliseconds(fault->latency_ms));
      if (fault->kind != FaultKind::kNone && Roll(fault->error_rate)) {
        Log().debug("fake {}: injecting fault on {} {}", FakeRoleName(role_), req.method, req.path);
        switch (fault->kind) {
          case FaultKind::kStatus:
            SendInjectedError(res, fault->status, fault->retry_after_s);
            return fault->status;
          case FaultKind::kHang:
            Hang();
            AbortConnection(res);
            return 0;
          case FaultKind::kReset:
            AbortConnection(res);
            return 0;
          case FaultKind::kMalformed: {
            Route(req, res);
            // Any proper prefix of a JSON object is invalid JSON.
            const auto body = res.body.substr(0, std::max<std::size_t>(1, res.body.size() / 2));
            res.set_content(body, "application/json");
            res.status = 200;
            return 200;
          }
          case FaultKind::kNone: break;
        }
      }
    }
    Route(req, res);
    return res.status;
  }

  void Route(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    const auto segments = Segments(req.path);
    switch (role_) {
      case FakeRole::kAuth: RouteAuth(req, res, segments); break;
      case FakeRole::kUgc: RouteUgc(req, res, segments); break;
      case FakeRole::kMovies: RouteMovies(req, res, segments); break;
      case FakeRole::kSms: RouteSms(req, res, segments); break;
      case FakeRole::kTelegram: RouteTelegram(req, res, segments); break;
      case FakeRole::kPush: RoutePush(req, res, segments); break;
    }
  }

  // Providers given a bearer token answer 401 without it, in their own error shape.
  bool Authorized(const httplib::Request& req, httplib::Response& res) const {
    if (options_.bearer_token.empty() || (role_ != FakeRole::kSms && role_ != FakeRole::kPush)) return true;
    const auto header = req.get_header_value("Authorization");
    if (header == "Bearer " + options_.bearer_token) return true;
    const auto message = header.empty() ? std::string("missing Authorization: Bearer <token>") : std::string("invalid bearer token");
    res.set_header("WWW-Authenticate", "Bearer");
    if (role_ == FakeRole::kPush) {
      SendJson(res, 401, {{"error", {{"code", 401}, {"status", "UNAUTHENTICATED"}, {"message", message}}}});
    } else {
      SendJson(res, 401, {{"error", message}, {"code", "unauthorized"}});
    }
    return false;
  }

  // --- responses -------------------------------------------------------------------

  void SendError(httplib::Response& res, int status, const std::string& message) const {
    Json body{{"error", message}};
    if (role_ == FakeRole::kTelegram) {
      body["ok"] = false;
      body["error_code"] = status;
      body["description"] = fmt::format("{}: {}", ReasonPhrase(status), message);
    }
    SendJson(res, status, body);
  }

  void NotFound(const httplib::Request& req, httplib::Response& res) const {
    SendError(res, 404, fmt::format("no route for {} {} on the fake {} service", req.method, req.path, FakeRoleName(role_)));
  }

  void MethodNotAllowed(const httplib::Request& req, httplib::Response& res) const {
    SendError(res, 405, fmt::format("method {} not allowed on {}", req.method, req.path));
  }

  void SendInjectedError(httplib::Response& res, int status, std::optional<std::int64_t> retry_after_s) const {
    // 429 always tells the client when to retry; other statuses only when configured.
    if (status == 429 && !retry_after_s) retry_after_s = 1;
    Json body;
    switch (role_) {
      case FakeRole::kTelegram:
        body = {{"ok", false},
                {"error_code", status},
                {"description", status == 429 ? fmt::format("Too Many Requests: retry after {}", *retry_after_s)
                                              : fmt::format("{}: injected fault", ReasonPhrase(status))}};
        if (retry_after_s) body["parameters"] = {{"retry_after", *retry_after_s}};
        break;
      case FakeRole::kPush:
        body = {{"error", {{"code", status}, {"status", PushStatus(status)}, {"message", "injected fault"}}}};
        break;
      default:
        body = {{"error", fmt::format("injected fault: HTTP {} {}", status, ReasonPhrase(status))}};
        break;
    }
    if (retry_after_s) res.set_header("Retry-After", std::to_string(*retry_after_s));
    SendJson(res, status, body);
  }

  void AbortConnection(httplib::Response& res) const {
    res.status = 500;  // never sent: the aborted stream refuses every byte
    if (t_connection != nullptr) {
      t_connection->Abort();
    } else {
      Log().warn("fake {}: no connection to reset on this thread; answering 500", FakeRoleName(role_));
    }
  }

  // Parses the body as a JSON object, answering 400 (and returning nullopt) otherwise.
  std::optional<Json> JsonBody(const httplib::Request& req, httplib::Response& res) const {
    Json body;
    try {
      body = Json::parse(req.body);
    } catch (const Json::parse_error& e) {
      SendError(res, 400, fmt::format("invalid JSON body: {}", e.what()));
      return std::nullopt;
    }
    if (!body.is_object()) {
      SendError(res, 400, fmt::format("JSON body must be an object, got {}", body.type_name()));
      return std::nullopt;
    }
    return body;
  }

  // Required string field; answers 400 when missing or not a string.
  std::optional<std::string> StringField(const Json& body, const char* name, httplib::Response& res) const {
    const auto it = body.find(name);
    if (it == body.end() || !it->is_string()) {
      SendError(res, 400, fmt::format("'{}' is required and must be a string", name));
      return std::nullopt;
    }
    return it->get<std::string>();
  }

  // {"ids": [...]} with at most kMaxBatchIds strings; answers 400 otherwise.
  std::optional<std::vector<std::string>> BatchIds(const httplib::Request& req, httplib::Response& res) const {
    const auto body = JsonBody(req, res);
    if (!body) return std::nullopt;
    const auto it = body->find("ids");
    if (it == body->end() || !it->is_array()) {
      SendError(res, 400, "'ids' is required and must be an array of strings");
      return std::nullopt;
    }
    if (it->size() > kMaxBatchIds) {
      SendError(res, 400, fmt::format("'ids' holds {} ids; at most {} per request", it->size(), kMaxBatchIds));
      return std::nullopt;
    }
    std::vector<std::string> ids;
    std::unordered_set<std::string> seen;
    for (const auto& id : *it) {
      if (!id.is_string()) {
        SendError(res, 400, fmt::format("'ids' must hold strings only, found {}", id.type_name()));
        return std::nullopt;
      }
      if (seen.insert(id.get<std::string>()).second) ids.push_back(id.get<std::string>());
    }
    return ids;
  }

  std::optional<std::size_t> PageLimit(const httplib::Request& req, httplib::Response& res) const {
    if (!req.has_param("limit")) return kDefaultPageLimit;
    const auto text = req.get_param_value("limit");
    const auto limit = ParseUnsigned(text);
    if (!limit || *limit == 0 || *limit > kMaxPageLimit) {
      SendError(res, 400, fmt::format("'limit' must be an integer in 1..{}, got '{}'", kMaxPageLimit, text));
      return std::nullopt;
    }
    return static_cast<std::size_t>(*limit);
  }

  // The first index to scan; answers 400 for a cursor this server did not issue.
  std::optional<std::uint64_t> PageStart(const httplib::Request& req, httplib::Response& res) const {
    const auto text = req.get_param_value("cursor");
    if (text.empty()) return 1;
    const std::string_view view(text);
    const auto index = view.starts_with(kCursorPrefix) ? ParseUnsigned(view.substr(kCursorPrefix.size())) : std::nullopt;
    if (!index || *index == 0) {
      SendError(res, 400, fmt::format("invalid cursor '{}': pass back next_cursor from the previous page", text));
      return std::nullopt;
    }
    return index;
  }

  std::optional<std::uint64_t> ExistingUser(std::string_view user_id, httplib::Response& res) const {
    const auto index = ParseUserIndex(user_id, options_.user_count);
    if (!index) SendError(res, 404, fmt::format("user '{}' not found", user_id));
    return index;
  }

  // --- auth --------------------------------------------------------------------------

  void RouteAuth(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() >= 3 && seg[0] == "api" && seg[1] == "v1") {
      if (seg.size() == 3 && seg[2] == "users") return IsGet(req) ? ListUsers(req, res) : MethodNotAllowed(req, res);
      if (seg.size() == 3 && seg[2] == "users:batchGet") {
        return req.method == "POST" ? BatchGetUsers(req, res) : MethodNotAllowed(req, res);
      }
      if (seg.size() == 4 && seg[2] == "users") {
        if (!IsGet(req)) return MethodNotAllowed(req, res);
        const auto index = ExistingUser(seg[3], res);
        if (index) SendJson(res, 200, SyntheticUser(options_.seed, *index));
        return;
      }
    }
    NotFound(req, res);
  }

  void BatchGetUsers(const httplib::Request& req, httplib::Response& res) const {
    const auto ids = BatchIds(req, res);
    if (!ids) return;
    auto users = Json::array();
    auto missing = Json::array();
    for (const auto& id : *ids) {
      const auto index = ParseUserIndex(id, options_.user_count);
      if (index) {
        users.push_back(SyntheticUser(options_.seed, *index));
      } else {
        missing.push_back(id);
      }
    }
    SendJson(res, 200, {{"users", std::move(users)}, {"missing", std::move(missing)}});
  }

  void ListUsers(const httplib::Request& req, httplib::Response& res) const {
    const auto limit = PageLimit(req, res);
    if (!limit) return;
    const auto start = PageStart(req, res);
    if (!start) return;
    const UserFilter filter{req.get_param_value("tag"), req.get_param_value("timezone"), req.get_param_value("locale")};
    const auto page = SyntheticUserPage(options_.seed, filter, *start, *limit, options_.user_count);
    auto users = Json::array();
    for (const auto index : page.indices) users.push_back(SyntheticUser(options_.seed, index));
    SendJson(res, 200, {{"users", std::move(users)}, {"next_cursor", page.next_index ? Json(Cursor(*page.next_index)) : Json(nullptr)}});
  }

  // --- ugc ---------------------------------------------------------------------------

  void RouteUgc(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() == 5 && seg[0] == "api" && seg[1] == "v1") {
      if (seg[2] == "users" && seg[4] == "watch-history") return IsGet(req) ? WatchHistory(req, res, seg[3]) : MethodNotAllowed(req, res);
      if (seg[2] == "users" && seg[4] == "bookmarks") {
        if (!IsGet(req)) return MethodNotAllowed(req, res);
        const auto index = ExistingUser(seg[3], res);
        if (index) SendJson(res, 200, {{"items", SyntheticBookmarks(options_.seed, *index)}});
        return;
      }
      if (seg[2] == "content" && seg[4] == "followers" && !seg[3].empty()) {
        return IsGet(req) ? Followers(req, res, seg[3]) : MethodNotAllowed(req, res);
      }
    }
    NotFound(req, res);
  }

  // Query values are form-decoded, so an unencoded "+03:00" offset arrives as " 03:00".
  std::optional<std::int64_t> TimeParam(const httplib::Request& req, httplib::Response& res, const char* name) const {
    auto text = req.get_param_value(name);
    for (std::size_t i = 19; i < text.size(); ++i) {
      if (text[i] == ' ') text[i] = '+';
    }
    const auto value = ParseRfc3339Ms(text);
    if (!value) SendError(res, 400, fmt::format("'{}' must be an RFC 3339 date-time, got '{}'", name, text));
    return value;
  }

  void WatchHistory(const httplib::Request& req, httplib::Response& res, std::string_view user_id) const {
    const auto index = ExistingUser(user_id, res);
    if (!index) return;
    std::int64_t to_ms = NowMs();
    if (req.has_param("to")) {
      const auto value = TimeParam(req, res, "to");
      if (!value) return;
      to_ms = *value;
    }
    std::int64_t from_ms = to_ms - kDefaultHistoryRangeMs;
    if (req.has_param("from")) {
      const auto value = TimeParam(req, res, "from");
      if (!value) return;
      from_ms = *value;
    }
    if (from_ms >= to_ms) return SendError(res, 400, "'from' must be before 'to'");
    if (to_ms - from_ms > kMaxHistoryRangeMs) {
      return SendError(res, 400, fmt::format("range too large: at most {} days per request", kMaxHistoryRangeMs / kMsPerDay));
    }
    SendJson(res, 200, {{"items", SyntheticWatchHistory(options_.seed, *index, from_ms, to_ms)}});
  }

  void Followers(const httplib::Request& req, httplib::Response& res, std::string_view content_id) const {
    const auto limit = PageLimit(req, res);
    if (!limit) return;
    const auto start = PageStart(req, res);
    if (!start) return;
    const auto page = SyntheticFollowerPage(options_.seed, content_id, *start, *limit, options_.user_count);
    auto user_ids = Json::array();
    for (const auto index : page.indices) user_ids.push_back(UserIdFromIndex(index));
    SendJson(res, 200, {{"user_ids", std::move(user_ids)}, {"next_cursor", page.next_index ? Json(Cursor(*page.next_index)) : Json(nullptr)}});
  }

  // --- movies ------------------------------------------------------------------------

  void RouteMovies(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() >= 3 && seg[0] == "api" && seg[1] == "v1") {
      if (seg.size() == 3 && seg[2] == "movies:batchGet") {
        return req.method == "POST" ? BatchGetMovies(req, res) : MethodNotAllowed(req, res);
      }
      if (seg.size() == 4 && seg[2] == "movies") {
        if (!IsGet(req)) return MethodNotAllowed(req, res);
        auto movie = SyntheticMovie(options_.seed, seg[3]);
        if (movie.is_null()) return SendError(res, 404, fmt::format("movie '{}' not found", seg[3]));
        return SendJson(res, 200, movie);
      }
    }
    NotFound(req, res);
  }

  void BatchGetMovies(const httplib::Request& req, httplib::Response& res) const {
    const auto ids = BatchIds(req, res);
    if (!ids) return;
    auto movies = Json::array();
    auto missing = Json::array();
    for (const auto& id : *ids) {
      auto movie = SyntheticMovie(options_.seed, id);
      if (movie.is_null()) {
        missing.push_back(id);
      } else {
        movies.push_back(std::move(movie));
      }
    }
    SendJson(res, 200, {{"movies", std::move(movies)}, {"missing", std::move(missing)}});
  }

  // --- providers ---------------------------------------------------------------------

  void RouteSms(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "messages") {
      return req.method == "POST" ? SendSms(req, res) : MethodNotAllowed(req, res);
    }
    NotFound(req, res);
  }

  void SendSms(const httplib::Request& req, httplib::Response& res) {
    const auto body = JsonBody(req, res);
    if (!body) return;
    const auto to = StringField(*body, "to", res);
    if (!to) return;
    const auto text = StringField(*body, "body", res);
    if (!text) return;
    std::string key;
    if (const auto it = body->find("idempotency_key"); it != body->end() && !it->is_null()) {
      if (!it->is_string()) return SendError(res, 400, "'idempotency_key' must be a string");
      key = it->get<std::string>();
    }
    if (!IsE164(*to)) {
      SendJson(res, 400, {{"error", fmt::format("invalid phone number '{}': 'to' must be E.164, e.g. +79161234567", *to)},
                          {"code", "invalid_number"}});
      return;
    }
    std::string id;
    {
      std::lock_guard lock(state_mutex_);
      if (const auto it = sms_ids_.find(key); !key.empty() && it != sms_ids_.end()) {
        id = it->second;
      } else {
        id = fmt::format("sms-{}", ++next_message_id_);
        ++delivered_;
        if (!key.empty()) RememberSmsKey(key, id);
      }
    }
    SendJson(res, 200, {{"id", id}});
  }

  // Idempotency keys are kept as long as request-log entries would be (bounded memory).
  void RememberSmsKey(const std::string& key, const std::string& id) {
    sms_ids_.emplace(key, id);
    sms_key_order_.push_back(key);
    while (sms_key_order_.size() > std::max<std::size_t>(options_.request_log_limit, 1)) {
      sms_ids_.erase(sms_key_order_.front());
      sms_key_order_.pop_front();
    }
  }

  void RouteTelegram(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() == 2 && seg[0].starts_with("bot") && seg[0].size() > 3 && seg[1] == "sendMessage") {
      return req.method == "POST" ? SendTelegram(req, res) : MethodNotAllowed(req, res);
    }
    NotFound(req, res);
  }

  void SendTelegram(const httplib::Request& req, httplib::Response& res) {
    const auto body = JsonBody(req, res);
    if (!body) return;
    std::optional<std::int64_t> chat_id;
    if (const auto it = body->find("chat_id"); it != body->end()) {
      if (it->is_number_integer()) {
        chat_id = it->get<std::int64_t>();
      } else if (it->is_string()) {
        std::int64_t value = 0;
        const auto text = it->get<std::string>();
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (!text.empty() && error == std::errc{} && end == text.data() + text.size()) chat_id = value;
      }
    }
    if (!chat_id) return SendError(res, 400, "chat not found: 'chat_id' must be an integer");
    const auto text_it = body->find("text");
    if (text_it == body->end() || !text_it->is_string() || text_it->get<std::string>().empty()) {
      return SendError(res, 400, "message text is empty");
    }
    if (const auto it = body->find("parse_mode"); it != body->end() && !it->is_null()) {
      const auto mode = it->is_string() ? it->get<std::string>() : std::string();
      if (mode != "HTML" && mode != "MarkdownV2" && mode != "Markdown") {
        return SendError(res, 400, fmt::format("unsupported parse_mode '{}'", it->dump()));
      }
    }
    // Chats ending in 13 have blocked the bot: a permanent failure to exercise.
    if ((*chat_id < 0 ? -*chat_id : *chat_id) % 100 == 13) {
      SendJson(res, 403, {{"ok", false}, {"error_code", 403}, {"description", "Forbidden: bot was blocked by the user"}});
      return;
    }
    std::uint64_t message_id = 0;
    {
      std::lock_guard lock(state_mutex_);
      message_id = ++next_message_id_;
      ++delivered_;
    }
    SendJson(res, 200,
             {{"ok", true},
              {"result",
               {{"message_id", message_id},
                {"chat", {{"id", *chat_id}}},
                {"date", NowMs() / 1000},
                {"text", text_it->get<std::string>()}}}});
  }

  void RoutePush(const httplib::Request& req, httplib::Response& res, const std::vector<std::string_view>& seg) {
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "send") {
      return req.method == "POST" ? SendPush(req, res) : MethodNotAllowed(req, res);
    }
    NotFound(req, res);
  }

  void SendPush(const httplib::Request& req, httplib::Response& res) {
    const auto body = JsonBody(req, res);
    if (!body) return;
    const auto token = StringField(*body, "token", res);
    if (!token) return;
    if (token->empty()) return SendError(res, 400, "'token' must not be empty");
    for (const char* field : {"title", "body"}) {
      if (const auto it = body->find(field); it != body->end() && !it->is_null() && !it->is_string()) {
        return SendError(res, 400, fmt::format("'{}' must be a string", field));
      }
    }
    if (const auto it = body->find("data"); it != body->end() && !it->is_null()) {
      const bool strings_only = it->is_object() && std::all_of(it->begin(), it->end(), [](const Json& v) { return v.is_string(); });
      if (!strings_only) return SendError(res, 400, "'data' must be an object with string values");
    }
    if (token->starts_with("dead-")) {
      SendJson(res, 404, {{"error", {{"code", 404}, {"status", "UNREGISTERED"}, {"message", "Requested entity was not found."}}}});
      return;
    }
    std::uint64_t message_id = 0;
    {
      std::lock_guard lock(state_mutex_);
      message_id = ++next_message_id_;
      ++delivered_;
    }
    SendJson(res, 200, {{"name", fmt::format("projects/fake/messages/{}", message_id)}});
  }

  // --- control API -------------------------------------------------------------------

  void HandleControl(const httplib::Request& req, httplib::Response& res) {
    const auto& path = req.path;
    if (path == "/_fake/health") {
      if (!IsGet(req)) return MethodNotAllowed(req, res);
      return SendJson(res, 200, {{"status", "ok"}, {"role", FakeRoleName(role_)}});
    }
    if (path == "/_fake/requests") {
      if (IsGet(req)) return SendJson(res, 200, RequestLog(req.get_param_value("path")));
      if (req.method == "DELETE") {
        std::lock_guard lock(state_mutex_);
        log_.clear();
        return SendJson(res, 200, {{"cleared", true}});
      }
      return MethodNotAllowed(req, res);
    }
    if (path == "/_fake/faults") {
      if (IsGet(req)) return SendJson(res, 200, FaultList());
      if (req.method == "PUT") return PutFault(req, res);
      if (req.method == "DELETE") {
        {
          std::lock_guard lock(state_mutex_);
          faults_.clear();
        }
        return SendJson(res, 200, FaultList());
      }
      return MethodNotAllowed(req, res);
    }
    if (path == "/_fake/stats") {
      if (!IsGet(req)) return MethodNotAllowed(req, res);
      std::lock_guard lock(state_mutex_);
      return SendJson(res, 200, {{"delivered", delivered_}, {"logged", log_.size()}, {"dropped", dropped_}});
    }
    NotFound(req, res);
  }

  void PutFault(const httplib::Request& req, httplib::Response& res) {
    const auto body = JsonBody(req, res);
    if (!body) return;
    auto [fault, error] = ParseFault(*body);
    if (!fault) return SendError(res, 400, error);
    {
      std::lock_guard lock(state_mutex_);
      const auto it = std::find_if(faults_.begin(), faults_.end(), [&path = fault->path](const Fault& f) { return f.path == path; });
      if (it != faults_.end()) {
        *it = std::move(*fault);
      } else {
        faults_.push_back(std::move(*fault));
      }
    }
    SendJson(res, 200, FaultList());
  }

  Json FaultList() const {
    std::lock_guard lock(state_mutex_);
    auto faults = Json::array();
    for (const auto& fault : faults_) faults.push_back(fault.ToJson());
    return {{"faults", std::move(faults)}};
  }

  std::optional<Fault> FindFault(const std::string& path) const {
    std::lock_guard lock(state_mutex_);
    const Fault* best = nullptr;
    for (const auto& fault : faults_) {
      if (path.starts_with(fault.path) && (best == nullptr || fault.path.size() > best->path.size())) best = &fault;
    }
    return best == nullptr ? std::nullopt : std::optional<Fault>(*best);
  }

  bool Roll(double rate) {
    if (rate >= 1.0) return true;
    if (rate <= 0.0) return false;
    std::lock_guard lock(state_mutex_);
    // 53 random bits -> [0, 1); deterministic for a given seed and request order.
    return static_cast<double>(MixBits(random_()) >> 11) * 0x1.0p-53 < rate;
  }

  std::uint64_t LogArrival(const httplib::Request& req) {
    std::lock_guard lock(state_mutex_);
    const auto seq = next_seq_++;
    log_.push_back(LogEntry{seq, req.method, req.target, req.body, NowMs(), 0});
    while (log_.size() > options_.request_log_limit) {
      log_.pop_front();
      ++dropped_;
    }
    return seq;
  }

  void LogStatus(std::uint64_t seq, int status) {
    std::lock_guard lock(state_mutex_);
    // Entries are in seq order; the one we want may have been dropped or cleared.
    if (log_.empty() || seq < log_.front().seq) return;
    const auto offset = seq - log_.front().seq;
    if (offset < log_.size() && log_[offset].seq == seq) log_[offset].status = status;
  }

  Json RequestLog(const std::string& prefix) const {
    std::lock_guard lock(state_mutex_);
    auto requests = Json::array();
    for (const auto& entry : log_) {
      if (!entry.path.starts_with(prefix)) continue;
      requests.push_back({{"method", entry.method},
                          {"path", entry.path},
                          {"body", entry.body},
                          {"at", FormatUtcMillis(entry.at_ms)},
                          {"status", entry.status}});
    }
    return {{"requests", std::move(requests)}, {"dropped", dropped_}};
  }

  // --- waiting ------------------------------------------------------------------------

  void SleepFor(milliseconds duration) {
    std::unique_lock lock(wake_mutex_);
    wake_cv_.wait_for(lock, duration, [this] { return stopping_.load(); });
  }

  // Holds the request without answering until Stop(), the client going away, or kMaxHang.
  void Hang() {
    const auto deadline = SteadyClock::now() + kMaxHang;
    std::unique_lock lock(wake_mutex_);
    while (!stopping_.load() && SteadyClock::now() < deadline) {
      wake_cv_.wait_for(lock, kPollSlice);
      if (t_connection != nullptr && t_connection->PeerClosed()) break;
    }
  }

  const FakeRole role_;
  const FakeServerOptions options_;

  std::atomic<bool> stopping_{false};
  std::mutex wake_mutex_;  // guards the stopping_ transition for wake_cv_
  std::condition_variable wake_cv_;

  mutable std::mutex state_mutex_;
  std::deque<LogEntry> log_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t dropped_ = 0;
  std::vector<Fault> faults_;
  std::mt19937_64 random_;
  std::unordered_map<std::string, std::string> sms_ids_;
  std::deque<std::string> sms_key_order_;
  std::uint64_t next_message_id_ = 0;
  std::uint64_t delivered_ = 0;

  std::mutex lifecycle_mutex_;
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<int> port_;
  std::atomic<bool> listen_returned_{false};
  http::ListenSocket listen_socket_;

  // Last: the server and its accept thread use everything above.
  FakeHttpServer server_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------

std::string_view FakeRoleName(FakeRole role) {
  switch (role) {
    case FakeRole::kAuth: return "auth";
    case FakeRole::kUgc: return "ugc";
    case FakeRole::kMovies: return "movies";
    case FakeRole::kSms: return "sms";
    case FakeRole::kTelegram: return "telegram";
    case FakeRole::kPush: return "push";
  }
  return "unknown";
}

std::optional<FakeRole> ParseFakeRole(std::string_view name) {
  for (const auto role : {FakeRole::kAuth, FakeRole::kUgc, FakeRole::kMovies, FakeRole::kSms, FakeRole::kTelegram,
                          FakeRole::kPush}) {
    if (FakeRoleName(role) == name) return role;
  }
  return std::nullopt;
}

FakeServer::FakeServer(FakeRole role, FakeServerOptions options)
    : impl_(std::make_unique<Impl>(role, std::move(options))) {}

FakeServer::~FakeServer() { Stop(); }

void FakeServer::Start() { impl_->Start(); }

void FakeServer::Stop() noexcept { impl_->Stop(); }

int FakeServer::Port() const { return impl_->Port(); }

std::string FakeServer::BaseUrl() const { return impl_->BaseUrl(); }

FakeRole FakeServer::Role() const { return impl_->Role(); }

std::uint64_t FakeServer::DeliveredCount() const { return impl_->DeliveredCount(); }

}  // namespace herald::dev
