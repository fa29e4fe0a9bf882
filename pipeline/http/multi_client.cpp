#include "herald/http/multi_client.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <curl/curl.h>

#include "herald/common/errors.hpp"

namespace herald::http {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Longest single wait in curl_multi_poll. libcurl cuts the wait short for its own timers
// (timeouts, connect retries), so this only bounds how long a lost wakeup could stall us.
constexpr int kMaxPollMs = 1000;

void InitCurlOnce() {
  // curl_global_init is reference-counted, so this coexists with Client's own call.
  static const CURLcode kInit = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (kInit != CURLE_OK) {
    throw TransientError(std::string("curl_global_init failed: ") + curl_easy_strerror(kInit));
  }
}

struct MultiDeleter {
  void operator()(CURLM* m) const noexcept { curl_multi_cleanup(m); }
};
struct EasyDeleter {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
struct UrlDeleter {
  void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
struct CurlStringDeleter {
  void operator()(char* s) const noexcept { curl_free(s); }
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  auto& headers = *static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * n);
  // A status line starts each response; clearing here keeps only the final response's
  // headers when an interim one (100 Continue) came first.
  if (line.starts_with("HTTP/")) {
    headers.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    headers[Lower(line.substr(0, colon))] = b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return size * n;
}

// "scheme://host:port", the unit max_per_host counts. Empty when the URL does not parse:
// such requests share one bucket and libcurl fails them with its own message.
std::string HostKey(const std::string& url) {
  std::unique_ptr<CURLU, UrlDeleter> parsed(curl_url());
  if (!parsed || curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* raw = nullptr;
    if (curl_url_get(parsed.get(), which, &raw, flags) != CURLUE_OK) return {};
    std::unique_ptr<char, CurlStringDeleter> owned(raw);
    return owned.get();
  };
  return Lower(part(CURLUPART_SCHEME, 0) + "://" + part(CURLUPART_HOST, 0) + ":" +
               part(CURLUPART_PORT, CURLU_DEFAULT_PORT));
}

void CheckMulti(CURLMcode rc, const char* call) {
  if (rc != CURLM_OK) {
    throw TransientError(std::string("HTTP multi handle: ") + call + " failed: " + curl_multi_strerror(rc) +
                         "; the batch was abandoned, retry it");
  }
}

// One reusable transfer slot. The easy handle is reset and reused rather than created
// per request; connections and the DNS cache belong to the multi handle, so every slot
// can pick up any idle connection to its host.
struct Transfer {
  std::unique_ptr<CURL, EasyDeleter> easy;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  Response response;
  std::array<char, CURL_ERROR_SIZE> error{};
  std::size_t index = 0;
  std::string host;
  SteadyClock::time_point started;
  bool attached = false;
};

}  // namespace

struct MultiClient::Impl {
  Options options;
  std::unique_ptr<CURLM, MultiDeleter> multi;
  // Declared after `multi` so they are destroyed first; Batch detaches them from the
  // multi handle before that can happen.
  std::vector<std::unique_ptr<Transfer>> slots;
  std::size_t connections_opened = 0;
};

namespace {

// One Execute() call: admission (global and per-host caps), the event loop, results.
class Batch {
 public:
  Batch(MultiClient::Impl& impl, const std::vector<Request>& requests)
      : impl_(impl), requests_(requests), results_(requests.size()) {
    const std::size_t wanted = std::min(impl_.options.max_concurrency, requests.size());
    while (impl_.slots.size() < wanted) {
      auto transfer = std::make_unique<Transfer>();
      transfer->easy.reset(curl_easy_init());
      if (!transfer->easy) throw TransientError("curl_easy_init failed (out of memory?)");
      impl_.slots.push_back(std::move(transfer));
    }
    for (std::size_t i = 0; i < wanted; ++i) free_.push_back(impl_.slots[i].get());
  }

  // Only does work when Run() threw: a transfer left attached would keep pointers into
  // this batch's requests and be driven by the next batch.
  ~Batch() {
    for (auto& slot : impl_.slots) {
      if (slot->attached) {
        curl_multi_remove_handle(impl_.multi.get(), slot->easy.get());
        slot->attached = false;
        slot->headers.reset();
      }
    }
  }

  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  std::vector<Result> Run() {
    CURLM* multi = impl_.multi.get();
    Admit();
    while (active_ > 0) {
      int running = 0;
      CheckMulti(curl_multi_perform(multi, &running), "curl_multi_perform");
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        // Copy out: removing the handle invalidates `msg`.
        CURL* easy = msg->easy_handle;
        const CURLcode rc = msg->data.result;
        Finish(easy, rc);
      }
      if (active_ == 0) break;
      // Sleeps until a socket is ready or libcurl's next timer; a freshly added
      // handle has a zero timer, so new transfers start without waiting.
      CheckMulti(curl_multi_poll(multi, nullptr, 0, kMaxPollMs, nullptr), "curl_multi_poll");
    }
    return std::move(results_);
  }

 private:
  struct HostState {
    std::size_t in_flight = 0;
    std::deque<std::size_t> deferred;  // request indices waiting for this host, oldest first
  };

  // Starts requests in order while slots are free. A request whose host is at
  // max_per_host waits in that host's queue instead of in libcurl, so its timeout does
  // not run while it waits. Invariant: a host has deferred requests only while full.
  void Admit() {
    while (!free_.empty() && next_ < requests_.size()) {
      const std::size_t index = next_++;
      std::string host = HostKey(requests_[index].url);
      HostState& state = hosts_[host];
      if (state.in_flight >= impl_.options.max_per_host) {
        state.deferred.push_back(index);
      } else {
        Start(index, std::move(host), state);
      }
    }
  }

  void Start(std::size_t index, std::string host, HostState& state) {
    Transfer& t = *free_.back();
    const Request& request = requests_[index];
    const MultiClient::Options& options = impl_.options;
    CURL* c = t.easy.get();
    curl_easy_reset(c);  // forgets options only: connections stay in the multi handle's cache
    t.index = index;
    t.host = std::move(host);
    t.response = Response{};
    t.error[0] = '\0';
    t.headers.reset();
    auto add_header = [&](const std::string& h) {
      t.headers.reset(curl_slist_append(t.headers.release(), h.c_str()));
    };

    curl_easy_setopt(c, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t.error.data());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    curl_easy_setopt(c, CURLOPT_USERAGENT, options.user_agent.c_str());
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t.response.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t.response.headers);
    if (!options.bearer_token.empty()) add_header("Authorization: Bearer " + options.bearer_token);
    if (request.method == "GET") {
      curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (request.method == "HEAD") {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);  // a custom "HEAD" would wait for a body
    } else {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      // Not copied: the request outlives the transfer (Execute's contract).
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
      add_header("Content-Type: " + request.content_type);
    }
    for (const auto& [name, value] : request.headers) add_header(name + ": " + value);
    // No "Expect: 100-continue" on larger bodies: it costs a round trip, and a full second
    // against servers that ignore it.
    add_header("Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t.headers.get());

    CheckMulti(curl_multi_add_handle(impl_.multi.get(), c), "curl_multi_add_handle");
    free_.pop_back();
    t.attached = true;
    t.started = SteadyClock::now();
    ++state.in_flight;
    ++active_;
  }

  void Finish(CURL* easy, CURLcode rc) {
    void* raw_private = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &raw_private);
    Transfer& t = *static_cast<Transfer*>(raw_private);
    curl_multi_remove_handle(impl_.multi.get(), easy);  // returns the connection to the cache
    t.attached = false;
    t.headers.reset();

    long connects = 0;
    if (curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0) {
      impl_.connections_opened += static_cast<std::size_t>(connects);
    }
    Result& result = results_[t.index];
    result.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t.started);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t.response.status);
      result.response = std::move(t.response);
    } else {
      const Request& request = requests_[t.index];
      result.error = request.method + " " + request.url + ": " + curl_easy_strerror(rc);
      if (t.error[0] != '\0') result.error += std::string(" (") + t.error.data() + ")";
    }

    free_.push_back(&t);
    --active_;
    HostState& state = hosts_[t.host];
    --state.in_flight;
    // Deferred requests are older than anything not yet admitted, so they go first.
    if (!state.deferred.empty()) {
      const std::size_t index = state.deferred.front();
      state.deferred.pop_front();
      Start(index, t.host, state);
    }
    Admit();
  }

  MultiClient::Impl& impl_;
  const std::vector<Request>& requests_;
  std::vector<Result> results_;
  std::vector<Transfer*> free_;
  std::unordered_map<std::string, HostState> hosts_;
  std::size_t next_ = 0;    // first request not yet admitted or deferred
  std::size_t active_ = 0;  // transfers attached to the multi handle
};

}  // namespace

MultiClient::MultiClient(Options options) : impl_(std::make_unique<Impl>()) {
  if (options.max_concurrency == 0)
    throw ConfigError("http multi client: max_concurrency must be at least 1");
  if (options.max_per_host == 0) throw ConfigError("http multi client: max_per_host must be at least 1");
  InitCurlOnce();
  impl_->options = std::move(options);
  impl_->multi.reset(curl_multi_init());
  if (!impl_->multi) throw TransientError("curl_multi_init failed (out of memory?)");
  CURLM* multi = impl_->multi.get();
  // Keep one idle connection per slot so the next batch starts on warm connections
  // (libcurl's default shrinks with the number of attached handles).
  CheckMulti(
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(impl_->options.max_concurrency)),
      "CURLMOPT_MAXCONNECTS");
  // A backstop: Batch already admits at most max_per_host per host.
  CheckMulti(
      curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(impl_->options.max_per_host)),
      "CURLMOPT_MAX_HOST_CONNECTIONS");
}

MultiClient::~MultiClient() = default;
MultiClient::MultiClient(MultiClient&&) noexcept = default;
MultiClient& MultiClient::operator=(MultiClient&&) noexcept = default;

std::vector<Result> MultiClient::Execute(const std::vector<Request>& requests) {
  if (requests.empty()) return {};
  Batch batch(*impl_, requests);
  return batch.Run();
}

std::size_t MultiClient::ConnectionsOpened() const {
  return impl_->connections_opened;
}

}  // namespace herald::http
