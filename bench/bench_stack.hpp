#pragma once
// The dev stack a benchmark runs on: its state in a fresh /tmp directory (removed by the
// benchmark when it is done), the broker on a free port, the processes' output kept quiet.

#include <stdlib.h>

#include <stdexcept>
#include <string>

#include "herald/dev/stack.hpp"

namespace herald::bench {

inline dev::StackOptions StackIn(const std::string& name, const std::string& herald_binary) {
  std::string pattern = "/tmp/herald-bench-" + name + "-XXXXXX";
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("cannot create a directory from " + pattern);
  dev::StackOptions so;
  so.state_dir = pattern;
  so.herald_binary = herald_binary;
  so.broker_port = 0;
  so.quiet = true;
  return so;
}

}  // namespace herald::bench
