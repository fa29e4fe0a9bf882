#include "deliver/claims.hpp"

#include "herald/common/errors.hpp"

namespace herald::consumers::deliver {
namespace {

// Deletes the claim only if this owner still holds it.
constexpr const char* kReleaseScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

// Extends the lease only if this owner still holds the claim.
constexpr const char* kRenewScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

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
  if (cur.str == owner_) {
    // Ours (a retried command): its lease starts again, unless it ran out just now, when it
    // is claimed from the start.
    if (RenewMany({{notification_id, channel}}).front()) return ClaimState::kClaimed;
    return Claim(notification_id, channel, outcome);
  }
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

std::vector<Claims::Result> Claims::ClaimMany(const std::vector<Id>& ids) {
  std::vector<Result> out(ids.size());
  if (ids.empty()) return out;
  const auto lease_ms = std::to_string(lease_.count() * 1000);
  std::vector<std::vector<std::string>> sets;
  sets.reserve(ids.size());
  for (const auto& [id, channel] : ids) sets.push_back({"SET", Key(id, channel), owner_, "NX", "PX", lease_ms});
  auto replies = redis_.Pipeline(sets);
  std::vector<std::size_t> taken;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Check(replies[i], "SET NX");
    if (replies[i].type == redis::Reply::Type::kStatus) {
      out[i].state = ClaimState::kClaimed;
    } else {
      taken.push_back(i);
    }
  }
  if (taken.empty()) return out;
  std::vector<std::vector<std::string>> gets;
  for (auto i : taken) gets.push_back({"GET", Key(ids[i].first, ids[i].second)});
  auto current = redis_.Pipeline(gets);
  std::vector<std::size_t> ours;  // indexes into ids
  for (std::size_t k = 0; k < taken.size(); ++k) {
    auto& r = out[taken[k]];
    const auto& cur = current[k];
    Check(cur, "GET");
    if (cur.IsNil()) {  // expired in between: claim it on its own
      r.state = Claim(ids[taken[k]].first, ids[taken[k]].second, &r.outcome);
    } else if (cur.str == owner_) {
      r.state = ClaimState::kClaimed;  // ours (a retried batch): its lease starts again below
      ours.push_back(taken[k]);
    } else if (cur.str.rfind("done:", 0) == 0) {
      r.state = ClaimState::kDone;
      r.outcome = cur.str.substr(5);
    } else {
      r.state = ClaimState::kHeldByOther;
    }
  }
  if (!ours.empty()) {
    std::vector<Id> renew;
    for (auto i : ours) renew.push_back(ids[i]);
    auto held = RenewMany(renew);
    for (std::size_t k = 0; k < ours.size(); ++k) {
      // Ran out between the GET and the renewal: claimed from the start, on its own.
      if (!held[k]) out[ours[k]].state = Claim(ids[ours[k]].first, ids[ours[k]].second, &out[ours[k]].outcome);
    }
  }
  return out;
}

std::vector<bool> Claims::RenewMany(const std::vector<Id>& ids) {
  std::vector<bool> held(ids.size(), false);
  if (ids.empty()) return held;
  const auto lease_ms = std::to_string(lease_.count() * 1000);
  std::vector<std::vector<std::string>> evals;
  evals.reserve(ids.size());
  for (const auto& [id, channel] : ids) evals.push_back({"EVAL", kRenewScript, "1", Key(id, channel), owner_, lease_ms});
  auto replies = redis_.Pipeline(evals);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Check(replies[i], "EVAL renew");
    held[i] = replies[i].type == redis::Reply::Type::kInteger && replies[i].integer == 1;
  }
  return held;
}

void Claims::MarkDoneMany(const std::vector<Id>& ids, const std::vector<std::string>& outcomes) {
  if (ids.empty()) return;
  const auto ttl_ms = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ttl_).count());
  std::vector<std::vector<std::string>> sets;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    sets.push_back({"SET", Key(ids[i].first, ids[i].second), "done:" + outcomes[i], "PX", ttl_ms});
  }
  for (const auto& r : redis_.Pipeline(sets)) Check(r, "SET");
}

void Claims::ReleaseMany(const std::vector<Id>& ids) {
  if (ids.empty()) return;
  std::vector<std::vector<std::string>> evals;
  for (const auto& [id, channel] : ids) evals.push_back({"EVAL", kReleaseScript, "1", Key(id, channel), owner_});
  for (const auto& r : redis_.Pipeline(evals)) Check(r, "EVAL release");
}

void Claims::Release(const std::string& notification_id, const std::string& channel) {
  auto r = redis_.Command({"EVAL", kReleaseScript, "1", Key(notification_id, channel), owner_});
  Check(r, "EVAL release");
}

}  // namespace herald::consumers::deliver
