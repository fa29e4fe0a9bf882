#include "herald/redis/client.hpp"

#include <hiredis/hiredis.h>

#include <cctype>
#include <string_view>

#include "herald/common/errors.hpp"
#include "herald/http/client.hpp"

namespace herald::redis {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ContextHandle = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyHandle = std::unique_ptr<redisReply, ReplyDeleter>;

Reply Convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = Reply::Type::kString; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_STATUS: out.type = Reply::Type::kStatus; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = Reply::Type::kError; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_INTEGER: out.type = Reply::Type::kInteger; out.integer = r->integer; break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default: out.type = Reply::Type::kNil;
  }
  return out;
}

}  // namespace

namespace {

constexpr std::string_view kScheme = "redis://";
constexpr std::string_view kTlsScheme = "rediss://";

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 percent-decoding ('+' is a plus, not a space: this is not a form).
std::string PercentDecode(std::string_view text, const char* part, const std::string& url) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    int hi = i + 2 < text.size() ? HexDigit(text[i + 1]) : -1;
    int lo = hi >= 0 ? HexDigit(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      throw ConfigError(std::string("redis URL ") + RedactUrl(url) + ": the " + part +
                        " has a '%' that is not followed by two hex digits; percent-encode it as %25");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}


}  // namespace

std::string RedactUrl(const std::string& url) {
  // The user info ends at the last '@': a password may hold a raw '@' or '/'.
  auto at = url.rfind('@');
  if (at == std::string::npos) return url;
  auto scheme_end = url.find("://");
  std::size_t begin = scheme_end == std::string::npos || scheme_end > at ? 0 : scheme_end + 3;
  std::string_view auth(url.data() + begin, at - begin);
  auto colon = auth.find(':');
  std::string shown = colon == std::string_view::npos ? "***" : std::string(auth.substr(0, colon)) + ":***";
  return url.substr(0, begin) + shown + url.substr(at);
}

Address ParseUrl(const std::string& url) {
  if (url.starts_with(kTlsScheme)) {
    throw ConfigError("redis URL " + RedactUrl(url) +
                      ": rediss:// (TLS to Redis) is not supported, because hiredis 0.14, which Herald "
                      "is built with, has no TLS. Run a TLS-terminating sidecar next to the stage (e.g. "
                      "stunnel in client mode: it listens on 127.0.0.1 without TLS and connects to Redis "
                      "over TLS) and point HERALD_REDIS_URL at it: redis://[user:password@]127.0.0.1:<port>/<db>");
  }
  if (!url.starts_with(kScheme)) {
    throw ConfigError("redis URL must start with redis://: " + RedactUrl(url));
  }
  Address a;
  std::string rest = url.substr(kScheme.size());
  auto at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string_view auth(rest.data(), at);
    auto colon = auth.find(':');
    if (colon == std::string_view::npos) {
      a.password = PercentDecode(auth, "password", url);  // redis://password@host, before ACL users
    } else {
      a.user = PercentDecode(auth.substr(0, colon), "user", url);
      a.password = PercentDecode(auth.substr(colon + 1), "password", url);
    }
    rest = rest.substr(at + 1);
  }
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos && slash + 1 < rest.size()) {
    try {
      a.db = std::stoi(rest.substr(slash + 1));
    } catch (const std::exception&) {
      throw ConfigError("redis URL has a bad database number: " + RedactUrl(url));
    }
  }
  auto colon = hostport.rfind(':');
  a.host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      a.port = std::stoi(hostport.substr(colon + 1));
    } catch (const std::exception&) {
      throw ConfigError("redis URL has a bad port: " + RedactUrl(url));
    }
  }
  if (a.host.empty()) throw ConfigError("redis URL has no host: " + RedactUrl(url));
  return a;
}

std::string FormatUrl(const Address& a) {
  std::string auth;
  if (!a.user.empty() || !a.password.empty()) auth = http::UrlEncode(a.user) + ":" + http::UrlEncode(a.password) + "@";
  return std::string(kScheme) + auth + a.host + ":" + std::to_string(a.port) + "/" + std::to_string(a.db);
}

std::string WithPassword(const std::string& url, const std::string& password) {
  Address a = ParseUrl(url);
  a.password = password;
  return FormatUrl(a);
}

struct Client::Impl {
  Address address;
  std::chrono::milliseconds timeout;
  ContextHandle ctx;

  void Connect() {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ctx.reset(redisConnectWithTimeout(address.host.c_str(), address.port, tv));
    if (!ctx || ctx->err) {
      std::string why = ctx ? ctx->errstr : "out of memory";
      ctx.reset();
      throw TransientError("cannot connect to Redis at " + address.host + ":" +
                           std::to_string(address.port) + ": " + why);
    }
    redisSetTimeout(ctx.get(), tv);
    const std::string where = address.host + ":" + std::to_string(address.port);
    auto check = [&](const Reply& r, const std::string& what, const char* hint) {
      if (r.type == Reply::Type::kError) {
        ctx.reset();
        throw ConfigError("Redis " + what + " at " + where + " failed: " + r.str + " (" + hint + ")");
      }
    };
    // A named user is a Redis 6 ACL user (AUTH user password); a password alone
    // authenticates the default user, which is also what requirepass protects.
    if (!address.user.empty()) {
      check(Run({"AUTH", address.user, address.password}), "AUTH as user '" + address.user + "'",
            "check the user and password in HERALD_REDIS_URL, or HERALD_REDIS_PASSWORD");
    } else if (!address.password.empty()) {
      check(Run({"AUTH", address.password}), "AUTH",
            "check the password in HERALD_REDIS_URL, or HERALD_REDIS_PASSWORD");
    }
    if (address.db != 0) check(Run({"SELECT", std::to_string(address.db)}), "SELECT", "check HERALD_REDIS_URL");
  }

  void Append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx.get(), static_cast<int>(args.size()), argv.data(), lens.data());
  }

  Reply Read() {
    void* raw = nullptr;
    if (redisGetReply(ctx.get(), &raw) != REDIS_OK || !raw) {
      std::string why = ctx->errstr;
      ctx.reset();
      throw TransientError("Redis connection failed: " + why);
    }
    ReplyHandle reply{static_cast<redisReply*>(raw)};
    return Convert(reply.get());
  }

  Reply Run(const std::vector<std::string>& args) {
    Append(args);
    return Read();
  }
};

Client::Client(const std::string& url, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->address = ParseUrl(url);
  impl_->timeout = timeout;
}

Client::~Client() = default;

Reply Client::Command(const std::vector<std::string>& args) {
  return Pipeline({args}).front();
}

std::vector<Reply> Client::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  for (int attempt = 0;; ++attempt) {
    try {
      if (!impl_->ctx) impl_->Connect();
      for (const auto& c : commands) impl_->Append(c);
      std::vector<Reply> out;
      out.reserve(commands.size());
      for (std::size_t i = 0; i < commands.size(); ++i) out.push_back(impl_->Read());
      return out;
    } catch (const TransientError&) {
      impl_->ctx.reset();
      if (attempt >= 1) throw;
    }
  }
}

}  // namespace herald::redis
