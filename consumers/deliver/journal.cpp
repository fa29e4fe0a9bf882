#include "deliver/journal.hpp"

#include "herald/common/errors.hpp"

namespace herald::consumers::deliver {
namespace {

void Check(const std::vector<redis::Reply>& replies, const char* what) {
  for (const auto& r : replies) {
    if (r.type == redis::Reply::Type::kError) throw TransientError(std::string("Redis ") + what + ": " + r.str);
  }
}

}  // namespace

SendJournal::SendJournal(redis::Client& redis, std::string owner, std::chrono::hours ttl)
    : redis_(redis), owner_(std::move(owner)), ttl_(ttl) {}

std::string SendJournal::Key(const JournalKey& key) {
  return "herald:sending:" + key.notification_id + ":" + key.channel;
}

void SendJournal::Begin(const std::vector<JournalKey>& keys) {
  if (keys.empty()) return;
  const auto ttl_ms = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ttl_).count());
  std::vector<std::vector<std::string>> commands;
  commands.reserve(keys.size());
  for (const auto& k : keys) commands.push_back({"SET", Key(k), owner_, "PX", ttl_ms});
  Check(redis_.Pipeline(commands), "SET (send journal)");
}

void SendJournal::End(const std::vector<JournalKey>& keys) {
  if (keys.empty()) return;
  std::vector<std::string> del = {"DEL"};
  for (const auto& k : keys) del.push_back(Key(k));
  Check({redis_.Command(del)}, "DEL (send journal)");
}

std::vector<std::string> SendJournal::InFlight(const std::vector<JournalKey>& keys) {
  if (keys.empty()) return {};
  std::vector<std::string> mget = {"MGET"};
  for (const auto& k : keys) mget.push_back(Key(k));
  auto r = redis_.Command(mget);
  Check({r}, "MGET (send journal)");
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const bool set = i < r.elements.size() && r.elements[i].type == redis::Reply::Type::kString;
    out.push_back(set ? r.elements[i].str : std::string());
  }
  return out;
}

}  // namespace herald::consumers::deliver
