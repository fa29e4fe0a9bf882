#include "herald/campaign/state.hpp"

#include <pqxx/pqxx>

#include "herald/common/errors.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/redis/client.hpp"

namespace herald::campaign {
namespace {

// Every held notification of a campaign goes into the same "minute" (the hold is released
// whole, when the campaign is no longer paused), spread over the shards.
constexpr std::chrono::sys_seconds kHoldDue{std::chrono::seconds(60)};
constexpr std::chrono::sys_seconds kReleaseAll{std::chrono::seconds(4'102'444'800)};  // 2100-01-01

void Check(const redis::Reply& r, const char* what) {
  if (r.type == redis::Reply::Type::kError) throw TransientError(std::string("Redis ") + what + ": " + r.str);
}

}  // namespace

std::string StateKey(const std::string& campaign_id) { return "herald:campaign:" + campaign_id; }

States::States(redis::Client& redis, std::string pg_url, std::chrono::milliseconds memo)
    : redis_(redis), pg_url_(std::move(pg_url)), memo_(memo) {}

States::~States() = default;

std::map<std::string, State> States::Get(const std::set<std::string>& ids) {
  std::map<std::string, State> out;
  auto now = std::chrono::steady_clock::now();
  std::vector<std::string> ask;
  for (const auto& id : ids) {
    auto it = memos_.find(id);
    if (it != memos_.end() && now - it->second.at < memo_) out[id] = it->second.state;
    else ask.push_back(id);
  }
  if (ask.empty()) return out;
  std::vector<std::string> cmd = {"MGET"};
  for (const auto& id : ask) cmd.push_back(StateKey(id));
  std::vector<std::string> missing;
  try {
    auto r = redis_.Command(cmd);
    Check(r, "MGET");
    for (std::size_t i = 0; i < ask.size(); ++i) {
      if (r.type == redis::Reply::Type::kArray && i < r.elements.size() && !r.elements[i].IsNil()) {
        const auto& v = r.elements[i].str;  // "<version>:<state>"
        out[ask[i]] = v.substr(v.find(':') + 1);
      } else {
        missing.push_back(ask[i]);
      }
    }
  } catch (const TransientError&) {
    missing = ask;  // Redis away: PostgreSQL has the truth
  }
  if (!missing.empty()) {
    try {
      if (!pg_ || !pg_->is_open()) pg_ = pg::Connect(pg_url_);
      pqxx::work tx(*pg_);
      for (const auto& id : missing) {
        auto rows = tx.exec_params("SELECT state FROM campaigns WHERE id = $1", id);
        out[id] = rows.empty() ? "unknown" : rows[0][0].as<std::string>();
      }
      tx.commit();
    } catch (const pqxx::failure& e) {
      pg_.reset();
      throw TransientError(std::string("campaign state unavailable: ") + e.what());
    }
  }
  for (const auto& id : ask) memos_[id] = {out[id], now};
  if (memos_.size() > 10'000) memos_.clear();
  return out;
}

void InvalidateMirror(redis::Client& redis, const std::string& campaign_id) {
  Check(redis.Command({"DEL", StateKey(campaign_id)}), "DEL");
}

void WriteMirror(redis::Client& redis, const std::string& campaign_id, const State& state, int version) {
  static const char* kSetIfNewer =
      "local cur = redis.call('GET', KEYS[1]) "
      "if cur then local v = tonumber(string.match(cur, '^(%d+):')) "
      "  if v and v >= tonumber(ARGV[1]) then return 0 end end "
      "redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2]) return 1";
  Check(redis.Command({"EVAL", kSetIfNewer, "1", StateKey(campaign_id), std::to_string(version), state}), "EVAL");
}

timing::BucketOptions HoldOptions(const std::string& campaign_id) {
  return {"herald:hold:" + campaign_id, 16};
}

void Hold(redis::Client& redis, const std::map<std::string, std::vector<timing::Parked>>& by_campaign) {
  for (const auto& [id, items] : by_campaign) {
    std::vector<timing::Parked> parked = items;
    for (auto& p : parked) {
      p.due = kHoldDue;
      p.tz = "UTC";
    }
    timing::Buckets(redis, HoldOptions(id)).Park(parked);
    // After the park: a release pass that finds the hold empty and drops the campaign from
    // the set either ran before (then this SADD puts it back) or sees these items.
    Check(redis.Command({"SADD", kHoldsKey, id}), "SADD");
  }
}

std::vector<std::string> CampaignsWithHolds(redis::Client& redis) {
  auto r = redis.Command({"SMEMBERS", kHoldsKey});
  Check(r, "SMEMBERS");
  std::vector<std::string> out;
  for (const auto& e : r.elements) out.push_back(e.str);
  return out;
}

std::size_t ReleaseHold(redis::Client& redis, const std::string& campaign_id,
                        const timing::Releaser::Produce& produce, const std::string& owner) {
  auto options = HoldOptions(campaign_id);
  timing::Releaser releaser(redis, {owner, std::chrono::seconds(30), 500, 1000, options.prefix});
  std::size_t n = releaser.ReleaseDue(kReleaseAll, produce);
  // Drop the campaign from the set only while its index is empty, atomically.
  static const char* kDropIfEmpty =
      "if redis.call('ZCARD', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end return 0";
  Check(redis.Command({"EVAL", kDropIfEmpty, "2", options.prefix + ":due", kHoldsKey, campaign_id}), "EVAL");
  return n;
}

std::int64_t HeldCount(redis::Client& redis, const std::string& campaign_id) {
  timing::Buckets buckets(redis, HoldOptions(campaign_id));
  std::int64_t n = 0;
  for (const auto& [minute, count] : buckets.Backlog(std::chrono::sys_seconds{}, kReleaseAll, 100'000)) n += count;
  return n;
}

}  // namespace herald::campaign
