#include "herald/http/client.hpp"

#include <algorithm>
#include <cctype>

#include <curl/curl.h>

#include "herald/common/errors.hpp"

namespace herald::http {
namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

struct EasyDeleter {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    value = b == std::string::npos ? "" : value.substr(b, e - b + 1);
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * n;
}

}  // namespace

std::optional<std::chrono::seconds> Response::RetryAfter() const {
  auto it = headers.find("retry-after");
  if (it == headers.end()) return std::nullopt;
  try {
    return std::chrono::seconds(std::stol(it->second));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct Client::Impl {
  Options options;
  std::unique_ptr<CURL, EasyDeleter> easy;
};

Client::Client() : Client(Options{}) {}

Client::Client(Options options) : impl_(std::make_unique<Impl>()) {
  static CurlGlobal global;
  impl_->options = std::move(options);
  impl_->easy.reset(curl_easy_init());
  if (!impl_->easy) throw TransientError("curl_easy_init failed");
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Response Client::Get(const std::string& url) { return Request("GET", url, {}); }

Response Client::Post(const std::string& url, const std::string& body,
                      const std::string& content_type) {
  return Request("POST", url, body, content_type);
}

Response Client::Request(const std::string& method, const std::string& url,
                         const std::string& body, const std::string& content_type) {
  CURL* c = impl_->easy.get();
  curl_easy_reset(c);  // keeps the connection cache: the next request reuses the socket
  Response res;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const std::string& h) {
    headers.reset(curl_slist_append(headers.release(), h.c_str()));
  };
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(impl_->options.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(impl_->options.timeout.count()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, impl_->options.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &res.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &res.headers);
  if (!impl_->options.bearer_token.empty()) {
    add_header("Authorization: Bearer " + impl_->options.bearer_token);
  }
  if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    add_header("Content-Type: " + content_type);
  }
  add_header("Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    throw TransientError(method + " " + url + ": " + curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res.status);
  return res;
}

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace herald::http
