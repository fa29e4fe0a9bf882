#include "deliver/claims.hpp"

#include "herald/common/errors.hpp"

namespace herald::consumers::deliver {
namespace {

// Deletes the claim only if this owner still holds it.
constexpr const char* kReleaseScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

void Check(const redis::Reply& r, const char* what) {
  if (r.type == redis::Reply::Type::kError) throw TransientError(std::string("Redis ") + what + ": " + r.str);
}

}  // namespace

Claims::Claims(redis::Client& redis, std::string owner, std::chrono::seconds lease, std::chrono::hours ttl)
    : redis_(redis), owner_("pending:" + std::move(owner)), lease_(lease), ttl_(ttl) {}

std::string Claims::Key(const std::string& notification_id, const std::string& channel) {
  return "herald:claim:" + notification_id + ":" + channel;
}

ClaimState Claims::Claim(const std::string& notification_id, const std::string& channel,
                         std::string* outcome) {
  auto key = Key(notification_id, channel);
  auto r = redis_.Command({"SET", key, owner_, "NX", "PX", std::to_string(lease_.count() * 1000)});
  Check(r, "SET NX");
  if (r.type == redis::Reply::Type::kStatus) return ClaimState::kClaimed;
  auto cur = redis_.Command({"GET", key});
  Check(cur, "GET");
  if (cur.IsNil()) return Claim(notification_id, channel, outcome);  // expired in between
  if (cur.str == owner_) return ClaimState::kClaimed;        // ours (a retried command)
  if (cur.str.rfind("done:", 0) == 0) {
    if (outcome) *outcome = cur.str.substr(5);
    return ClaimState::kDone;
  }
  return ClaimState::kHeldByOther;
}

void Claims::MarkDone(const std::string& notification_id, const std::string& channel,
                      const std::string& outcome) {
  auto r = redis_.Command({"SET", Key(notification_id, channel), "done:" + outcome, "PX",
                           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ttl_).count())});
  Check(r, "SET");
}

void Claims::Release(const std::string& notification_id, const std::string& channel) {
  auto r = redis_.Command({"EVAL", kReleaseScript, "1", Key(notification_id, channel), owner_});
  Check(r, "EVAL release");
}

}  // namespace herald::consumers::deliver
