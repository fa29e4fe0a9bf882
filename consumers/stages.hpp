#pragma once
// Entry points of the stages, wired by the `herald` CLI. Each blocks until SIGTERM/SIGINT
// and returns the process exit code.

#include <string>

#include "herald/config/config.hpp"

namespace herald::consumers {

int RunPlan(const config::Config& config);
int RunEnrich(const config::Config& config);
int RunDeliver(const config::Config& config, const std::string& channel);
int RunLedger(const config::Config& config);
int RunRetry(const config::Config& config);
int RunScheduler(const config::Config& config);

}  // namespace herald::consumers
