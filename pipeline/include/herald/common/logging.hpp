#pragma once
// One spdlog logger per subsystem ("kafka", "plan", "deliver", ...), sharing one sink.

#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace herald {

/// Returns the logger for `subsystem`, creating it on first use. Thread-safe.
std::shared_ptr<spdlog::logger> Logger(const std::string& subsystem);

/// Sets the global level ("trace".."off") and format ("text" or "json").
void ConfigureLogging(const std::string& level, const std::string& format);

}  // namespace herald
