#pragma once
// What the stages need to know of campaigns: their state, and where the notifications of a
// paused campaign wait.
//
// State. PostgreSQL (campaigns.state) is the truth. The admin API and the scheduler mirror
// every change into Redis (herald:campaign:<id> = "<version>:<state>", never replacing a newer
// version) after it committed, having deleted the key before the change: while a change is in progress the key is absent and readers
// fall back to PostgreSQL, so a reader never sees a state older than the committed one for
// longer than its local memo (below). Stages read the mirror once per batch (one MGET).
//
// Holds. The delivery stage does not send notifications of a paused campaign: it parks them in
// the campaign's hold (herald:hold:<id>, the timezone-bucket layout of timing/buckets.hpp, so
// release is the same crash-safe lease → produce → ack → delete) and adds the campaign to the
// set herald:holds. The scheduler releases the holds of every campaign that is no longer
// paused back to their delivery topics; a cancelled campaign's then meet the delivery stage's
// cancelled check and are recorded as cancelled.

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "herald/timing/buckets.hpp"

namespace herald::redis {
class Client;
}

namespace herald::campaign {

/// "draft" | "scheduled" | "running" | "paused" | "completed" | "cancelled"; "unknown" for a
/// campaign id that does not exist (deleted, or never created).
using State = std::string;

std::string StateKey(const std::string& campaign_id);

/// Reads campaign states for the stages. Not thread-safe: one per stage thread.
class States {
 public:
  /// `pg_url` is used only when the Redis mirror has no entry; connected on first use.
  States(redis::Client& redis, std::string pg_url,
         std::chrono::milliseconds memo = std::chrono::milliseconds(100));
  ~States();

  /// The states of `ids`. Values come from a per-process memo younger than `memo`, else the
  /// Redis mirror, else PostgreSQL (memoised, not written back: only writers of the state
  /// write the mirror). Throws TransientError when neither Redis nor PostgreSQL answers.
  std::map<std::string, State> Get(const std::set<std::string>& ids);
  State Get(const std::string& id) { return Get(std::set<std::string>{id}).at(id); }

 private:
  redis::Client& redis_;
  std::string pg_url_;
  std::chrono::milliseconds memo_;
  std::unique_ptr<pqxx::connection> pg_;
  struct Memo {
    State state;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Memo> memos_;
};

/// Before a state change: removes the mirror entry (readers fall back to PostgreSQL).
void InvalidateMirror(redis::Client& redis, const std::string& campaign_id);
/// After the change committed: writes the mirror entry "<version>:<state>", unless the entry
/// already holds a newer version (a slower writer of an older change must not win).
void WriteMirror(redis::Client& redis, const std::string& campaign_id, const State& state, int version);

/// The hold of one campaign (see above).
timing::BucketOptions HoldOptions(const std::string& campaign_id);
inline constexpr const char* kHoldsKey = "herald:holds";

/// Parks notifications of paused campaigns: items grouped by campaign id. Idempotent.
void Hold(redis::Client& redis, const std::map<std::string, std::vector<timing::Parked>>& by_campaign);

/// Campaign ids that have held notifications (or had, until the next release pass).
std::vector<std::string> CampaignsWithHolds(redis::Client& redis);

/// Releases everything held for `campaign_id` through `produce` (which returns once the
/// broker acknowledged the chunk) and, when the hold is empty, drops it from the set.
/// Returns the number released.
std::size_t ReleaseHold(redis::Client& redis, const std::string& campaign_id,
                        const timing::Releaser::Produce& produce, const std::string& owner);

/// Notifications held for `campaign_id`.
std::int64_t HeldCount(redis::Client& redis, const std::string& campaign_id);

}  // namespace herald::campaign
