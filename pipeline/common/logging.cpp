#include "herald/common/logging.hpp"

#include <cstdio>
#include <mutex>
#include <unordered_map>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace herald {
namespace {

// %j: the message escaped for a JSON string, so the JSON format stays valid whatever is logged.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

std::unique_ptr<spdlog::formatter> MakeFormatter(const std::string& pattern) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<JsonEscapedMessage>('j').set_pattern(pattern);
  return f;
}

struct LoggingState {
  std::mutex mu;
  spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  spdlog::level::level_enum level = spdlog::level::info;
  std::string pattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v";
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

LoggingState& State() {
  static LoggingState state;
  return state;
}

}  // namespace

std::shared_ptr<spdlog::logger> Logger(const std::string& subsystem) {
  auto& st = State();
  std::lock_guard lock(st.mu);
  auto it = st.loggers.find(subsystem);
  if (it != st.loggers.end()) return it->second;
  auto logger = std::make_shared<spdlog::logger>(subsystem, st.sink);
  logger->set_level(st.level);
  logger->set_formatter(MakeFormatter(st.pattern));
  st.loggers.emplace(subsystem, logger);
  return logger;
}

void ConfigureLogging(const std::string& level, const std::string& format) {
  auto& st = State();
  std::lock_guard lock(st.mu);
  st.level = spdlog::level::from_str(level);
  if (format == "json") {
    st.pattern =
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n","pid":%P,"msg":"%j"})";
  }
  for (auto& [name, logger] : st.loggers) {
    logger->set_level(st.level);
    logger->set_formatter(MakeFormatter(st.pattern));
  }
}

}  // namespace herald
