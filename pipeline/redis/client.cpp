#include "herald/redis/client.hpp"

#include <hiredis/hiredis.h>

#include "herald/common/errors.hpp"

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

Address ParseUrl(const std::string& url) {
  Address a;
  std::string rest = url;
  if (rest.rfind("redis://", 0) != 0) throw ConfigError("redis URL must start with redis://: " + url);
  rest = rest.substr(8);
  auto at = rest.find('@');
  if (at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    auto colon = auth.find(':');
    a.password = colon == std::string::npos ? auth : auth.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos && slash + 1 < rest.size()) {
    try {
      a.db = std::stoi(rest.substr(slash + 1));
    } catch (const std::exception&) {
      throw ConfigError("redis URL has a bad database number: " + url);
    }
  }
  auto colon = hostport.rfind(':');
  a.host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      a.port = std::stoi(hostport.substr(colon + 1));
    } catch (const std::exception&) {
      throw ConfigError("redis URL has a bad port: " + url);
    }
  }
  if (a.host.empty()) throw ConfigError("redis URL has no host: " + url);
  return a;
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
    auto check = [&](const Reply& r, const char* what) {
      if (r.type == Reply::Type::kError) {
        ctx.reset();
        throw ConfigError(std::string("Redis ") + what + " failed: " + r.str + " (check HERALD_REDIS_URL)");
      }
    };
    if (!address.password.empty()) check(Run({"AUTH", address.password}), "AUTH");
    if (address.db != 0) check(Run({"SELECT", std::to_string(address.db)}), "SELECT");
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
