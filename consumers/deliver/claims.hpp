#pragma once
// Idempotency claims for (notification_id, channel) in Redis, so a redelivered record is
// never sent twice.
//
//   free ──Claim()──► "pending:<owner>" (expires after the lease) ──MarkDone()──► "done:<outcome>"
//     ▲                         │                                                (kept for the TTL)
//     └───────Release()─────────┘  (send failed transiently: someone may retry)
//
// A crashed owner's pending claim expires after the lease and can then be claimed again. A
// live owner whose batch takes longer than the lease (a slow provider, a rate limit) keeps
// its claims with RenewMany() before each send, and must not send those it no longer holds.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "herald/redis/client.hpp"

namespace herald::consumers::deliver {

enum class ClaimState { kClaimed, kDone, kHeldByOther };

class Claims {
 public:
  Claims(redis::Client& redis, std::string owner, std::chrono::seconds lease, std::chrono::hours ttl);
  /// Tries to claim; kDone when it was already sent or finally failed, with that outcome
  /// ("sent", "failed") in `*outcome` when given.
  ClaimState Claim(const std::string& notification_id, const std::string& channel,
                   std::string* outcome = nullptr);
  void MarkDone(const std::string& notification_id, const std::string& channel, const std::string& outcome);
  void Release(const std::string& notification_id, const std::string& channel);

  /// The same for many notifications in one Redis round trip (two when some are taken).
  /// `ids[i]` is (notification_id, channel); results are in the same order.
  struct Result {
    ClaimState state = ClaimState::kHeldByOther;
    std::string outcome;  // for kDone
  };
  using Id = std::pair<std::string, std::string>;
  std::vector<Result> ClaimMany(const std::vector<Id>& ids);
  void MarkDoneMany(const std::vector<Id>& ids, const std::vector<std::string>& outcomes);
  void ReleaseMany(const std::vector<Id>& ids);
  /// Renews the lease of each claim this owner still holds, in one round trip; false where
  /// it holds the claim no more (the lease ran out and another owner took it, or it is done
  /// or free), which must then not be sent by this owner.
  std::vector<bool> RenewMany(const std::vector<Id>& ids);

  std::chrono::seconds Lease() const { return lease_; }

  static std::string Key(const std::string& notification_id, const std::string& channel);

 private:
  redis::Client& redis_;
  std::string owner_;
  std::chrono::seconds lease_;
  std::chrono::hours ttl_;
};

}  // namespace herald::consumers::deliver
