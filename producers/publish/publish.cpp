#include <fstream>
#include <iostream>
#include <sstream>

#include "herald/common/errors.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/stage/stage.hpp"
#include "producers.hpp"

namespace herald::producers {

int RunPublish(const config::Config& config, const PublishOptions& options, std::ostream& out) {
  std::string text;
  if (options.file.empty() || options.file == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(options.file);
    if (!in) throw InvalidInput("cannot read " + options.file);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  // One document (object or array), or JSON lines.
  std::vector<nlohmann::json> events;
  try {
    auto doc = nlohmann::json::parse(text);
    if (doc.is_array()) events.assign(doc.begin(), doc.end());
    else events.push_back(doc);
  } catch (const nlohmann::json::parse_error&) {
    std::istringstream lines(text);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        events.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::parse_error& e) {
        throw InvalidInput("line " + std::to_string(n) + " is not valid JSON: " + e.what());
      }
    }
  }
  auto registry = schema::Registry::Load(config.schema_dir);
  kafka::Producer producer(stage::ProducerOptions(config, "herald-publish"));
  kafka::AckGroup acks;
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < events.size(); ++i) {
    Routed r;
    if (options.validate) {
      try {
        r = RouteEvent(events[i], *registry, "");
      } catch (const InvalidInput& e) {
        throw InvalidInput("event " + std::to_string(i + 1) + ": " + e.what(), e.Field());
      }
    } else {
      r.event = events[i];
      r.key = events[i].value("event_id", "");
      r.event_id = r.key;
    }
    if (!options.topic.empty()) r.topic = options.topic;
    if (r.topic.empty()) throw InvalidInput("--topic is required with --no-validate");
    producer.Produce({r.topic, r.key, r.event.dump(), {}}, acks.Track());
    ids.push_back(r.event_id);
  }
  auto failures = acks.Wait(std::chrono::seconds(30));
  if (!failures.empty()) {
    throw TransientError("publish failed: " + failures.front().topic + ": " + failures.front().error);
  }
  for (const auto& id : ids) out << id << "\n";
  return 0;
}

}  // namespace herald::producers
