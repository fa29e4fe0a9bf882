#include "herald/timing/buckets.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <optional>
#include <string_view>
#include <unordered_set>

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/redis/client.hpp"

namespace herald::timing {
namespace {

using redis::Reply;

constexpr std::size_t kMaxShards = 1024;
constexpr std::size_t kMaxTzLength = 64;
// Fields per park call: keeps Lua's unpack() far below its C stack limit (~8000 values).
constexpr std::size_t kFieldsPerParkCall = 256;
// One round trip carries at most this many commands or bytes, so parking a huge batch
// does not build one huge request buffer.
constexpr std::size_t kCommandsPerRoundTrip = 1000;
constexpr std::size_t kBytesPerRoundTrip = 8 << 20;
constexpr std::size_t kIndexPage = 128;
constexpr std::size_t kBacklogPage = 1000;

struct Script {
  const char* name;
  const char* body;
};

// KEYS[1] bucket, KEYS[2] index; ARGV[1] due, ARGV[2] member, ARGV[3..] field, value, ...
// Both writes in one call: a bucket never exists without its index member.
constexpr Script kPark{"park", R"lua(
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
)lua"};

// KEYS[1] lease, KEYS[2] index; ARGV[1] owner, ARGV[2] lease ms, ARGV[3] member.
// -1: the bucket was released meanwhile (no lease taken); 1: ours; 0: another owner's.
// An owner finds its own lease after a pass whose produce failed: it may go on at once.
constexpr Script kAcquire{"acquire", R"lua(
if not redis.call('ZSCORE', KEYS[2], ARGV[3]) then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
)lua"};

// KEYS[1] bucket, KEYS[2] lease; ARGV[1] owner, ARGV[2] lease ms, ARGV[3..] released fields.
// Deletes the released fields even if the lease was lost meanwhile: they were acknowledged,
// deleting them spares the new owner a duplicate. Returns {deleted, still ours (1/0)}.
constexpr Script kDone{"done", R"lua(
local n = 0
for i = 3, #ARGV, 256 do
  n = n + redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 255, #ARGV)))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {n, 1}
end
return {n, 0}
)lua"};

// KEYS[1] bucket, KEYS[2] index, KEYS[3] lease; ARGV[1] owner, ARGV[2] member.
// -1: lease lost; 0: bucket, index member and lease removed; n > 0: n notifications were
// parked into the bucket meanwhile, it stays (scan again).
constexpr Script kFinish{"finish", R"lua(
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local n = redis.call('HLEN', KEYS[1])
if n > 0 then return n end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return 0
)lua"};

void Check(const Reply& r, const std::string& what) {
  if (r.type == Reply::Type::kError) {
    throw TransientError("timezone buckets: Redis " + what + " failed: " + r.str);
  }
}

[[noreturn]] void Unexpected(const std::string& what) {
  throw TransientError("timezone buckets: unexpected Redis reply to " + what);
}

bool IsNoScript(const Reply& r) {
  return r.type == Reply::Type::kError && r.str.rfind("NOSCRIPT", 0) == 0;
}

const std::string& Sha(redis::Client& redis, std::map<std::string, std::string>& shas, const Script& s) {
  auto it = shas.find(s.name);
  if (it != shas.end()) return it->second;
  auto r = redis.Command({"SCRIPT", "LOAD", s.body});
  Check(r, std::string("SCRIPT LOAD ") + s.name);
  if (r.str.empty()) Unexpected(std::string("SCRIPT LOAD ") + s.name);
  return shas[s.name] = r.str;
}

// Runs EVALSHA commands (slot 1 left for the SHA) in one round trip. The script cache
// is empty after a Redis restart or SCRIPT FLUSH: reload and run the refused ones again
// (every script here is safe to repeat).
std::vector<Reply> EvalMany(redis::Client& redis, std::map<std::string, std::string>& shas, const Script& s,
                            std::vector<std::vector<std::string>> commands) {
  for (auto& c : commands) c[1] = Sha(redis, shas, s);
  auto replies = redis.Pipeline(commands);
  std::vector<std::size_t> refused;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (IsNoScript(replies[i])) refused.push_back(i);
  }
  if (!refused.empty()) {
    shas.erase(s.name);
    std::vector<std::vector<std::string>> again;
    for (auto i : refused) {
      again.push_back(std::move(commands[i]));
      again.back()[1] = Sha(redis, shas, s);
    }
    auto more = redis.Pipeline(again);
    for (std::size_t k = 0; k < refused.size(); ++k) replies[refused[k]] = std::move(more[k]);
  }
  for (const auto& r : replies) Check(r, std::string("script ") + s.name);
  return replies;
}

Reply Eval(redis::Client& redis, std::map<std::string, std::string>& shas, const Script& s,
           const std::vector<std::string>& keys, const std::vector<std::string>& args) {
  std::vector<std::string> c{"EVALSHA", "", std::to_string(keys.size())};
  c.reserve(3 + keys.size() + args.size());
  c.insert(c.end(), keys.begin(), keys.end());
  c.insert(c.end(), args.begin(), args.end());
  return std::move(EvalMany(redis, shas, s, {std::move(c)}).front());
}

bool ValidTz(std::string_view tz) {
  if (tz.empty() || tz.size() > kMaxTzLength) return false;
  for (char c : tz) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
              c == '_' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string Encode(const Parked& p) {
  std::string v;
  v.reserve(3 + 2 * 20 + 2 + p.topic.size() + p.key.size() + p.payload.size());
  v += "p1:";
  v += std::to_string(p.topic.size());
  v += ':';
  v += p.topic;
  v += std::to_string(p.key.size());
  v += ':';
  v += p.key;
  v += p.payload;
  return v;
}

// Reads one "<length>:<bytes>" frame off the front of `v`.
bool TakeFrame(std::string_view& v, std::string& out) {
  auto colon = v.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::size_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + colon, n);
  if (ec != std::errc{} || ptr != v.data() + colon || v.size() - colon - 1 < n) return false;
  out.assign(v.substr(colon + 1, n));
  v.remove_prefix(colon + 1 + n);
  return true;
}

bool Decode(std::string_view v, Parked& out) {
  if (v.substr(0, 3) != "p1:") return false;
  v.remove_prefix(3);
  if (!TakeFrame(v, out.topic) || !TakeFrame(v, out.key)) return false;
  out.payload.assign(v);
  return true;
}

struct MemberParts {
  std::int64_t due = 0;
  std::string tz;
};

// "<due>:<tz>:<shard>"; the zone is everything between the first and the last colon.
std::optional<MemberParts> ParseMember(std::string_view m) {
  auto first = m.find(':');
  auto last = m.rfind(':');
  if (first == std::string_view::npos || last == first) return std::nullopt;
  MemberParts p;
  auto [ptr, ec] = std::from_chars(m.data(), m.data() + first, p.due);
  if (ec != std::errc{} || ptr != m.data() + first) return std::nullopt;
  p.tz.assign(m.substr(first + 1, last - first - 1));
  return p;
}

BacklogByMinute ReadBacklog(redis::Client& redis, const std::string& prefix, std::chrono::sys_seconds from,
                            std::chrono::sys_seconds to, std::size_t max_buckets) {
  BacklogByMinute out;
  if (to < from) return out;
  const auto index = prefix + ":due";
  std::size_t offset = 0;
  while (offset < max_buckets) {
    auto page = std::min(kBacklogPage, max_buckets - offset);
    auto r = redis.Command({"ZRANGEBYSCORE", index, std::to_string(from.time_since_epoch().count()),
                            std::to_string(to.time_since_epoch().count()), "LIMIT", std::to_string(offset),
                            std::to_string(page)});
    Check(r, "ZRANGEBYSCORE " + index);
    if (r.type != Reply::Type::kArray) Unexpected("ZRANGEBYSCORE");
    if (r.elements.empty()) break;
    std::vector<std::vector<std::string>> hlen;
    hlen.reserve(r.elements.size());
    for (const auto& m : r.elements) hlen.push_back({"HLEN", prefix + ":b:" + m.str});
    auto counts = redis.Pipeline(hlen);
    for (std::size_t i = 0; i < counts.size(); ++i) {
      Check(counts[i], "HLEN");
      auto parts = ParseMember(r.elements[i].str);
      if (parts && counts[i].integer > 0) out[parts->due] += counts[i].integer;
    }
    offset += r.elements.size();
    if (r.elements.size() < page) break;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------

Buckets::Buckets(redis::Client& redis, BucketOptions options) : redis_(redis), options_(std::move(options)) {
  if (options_.prefix.empty()) throw ConfigError("timezone buckets: the key prefix must not be empty");
  if (options_.shards == 0 || options_.shards > kMaxShards) {
    throw ConfigError("timezone buckets: shards must be 1.." + std::to_string(kMaxShards) + ", got " +
                      std::to_string(options_.shards));
  }
}

std::size_t Buckets::ShardOf(const std::string& notification_id, std::size_t shards) {
  // FNV-1a 64: fixed by its definition, unlike std::hash, so every build agrees.
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : notification_id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h % (shards == 0 ? 1 : shards));
}

std::chrono::sys_seconds Buckets::DueMinute(std::chrono::sys_seconds due) {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::ceil<std::chrono::minutes>(due));
}

std::string Buckets::Member(const Parked& item) const {
  return std::to_string(DueMinute(item.due).time_since_epoch().count()) + ":" + item.tz + ":" +
         std::to_string(ShardOf(item.notification_id, options_.shards));
}

std::string Buckets::BucketKey(const Parked& item) const {
  return options_.prefix + ":b:" + Member(item);
}

void Buckets::Park(const std::vector<Parked>& items) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& p = items[i];
    auto where = "/" + std::to_string(i) + "/";
    if (p.notification_id.empty()) {
      throw InvalidInput("cannot park a notification without a notification_id", where + "notification_id");
    }
    if (!ValidTz(p.tz)) {
      throw InvalidInput("cannot park notification " + p.notification_id + ": time zone '" + p.tz +
                             "' is not an IANA zone name (1-64 characters of A-Z a-z 0-9 / _ + -); "
                             "pass the zone the due time was computed in, e.g. UTC",
                         where + "tz");
    }
    if (p.topic.empty()) {
      throw InvalidInput(
          "cannot park notification " + p.notification_id + " without a topic to release it to",
          where + "topic");
    }
  }

  // Group by bucket so a bucket gets one call (and one ZADD) per slice, not per item.
  std::map<std::string, std::vector<const Parked*>> by_member;
  for (const auto& p : items) by_member[Member(p)].push_back(&p);

  const auto index = IndexKey();
  std::vector<std::vector<std::string>> commands;
  std::size_t bytes = 0;
  auto flush = [&] {
    if (commands.empty()) return;
    EvalMany(redis_, shas_, kPark, std::move(commands));
    commands.clear();
    bytes = 0;
  };
  for (const auto& [member, group] : by_member) {
    const auto due = std::to_string(DueMinute(group.front()->due).time_since_epoch().count());
    for (std::size_t start = 0; start < group.size(); start += kFieldsPerParkCall) {
      auto end = std::min(group.size(), start + kFieldsPerParkCall);
      std::vector<std::string> c{"EVALSHA", "", "2", options_.prefix + ":b:" + member, index, due, member};
      c.reserve(c.size() + 2 * (end - start));
      for (auto k = start; k < end; ++k) {
        c.push_back(group[k]->notification_id);
        c.push_back(Encode(*group[k]));
        bytes += c.back().size() + group[k]->notification_id.size();
      }
      commands.push_back(std::move(c));
      if (commands.size() >= kCommandsPerRoundTrip || bytes >= kBytesPerRoundTrip) flush();
    }
  }
  flush();
}

BacklogByMinute Buckets::Backlog(std::chrono::sys_seconds from, std::chrono::sys_seconds to,
                                 std::size_t max_buckets) {
  return ReadBacklog(redis_, options_.prefix, from, to, max_buckets);
}

// ---------------------------------------------------------------------------------------

Releaser::Releaser(redis::Client& redis, Options options) : redis_(redis), options_(std::move(options)) {
  if (options_.owner.empty()) options_.owner = "releaser-" + RandomUuid();
  if (options_.prefix.empty())
    throw ConfigError("timezone bucket releaser: the key prefix must not be empty");
  if (options_.lease <= std::chrono::milliseconds::zero()) {
    throw ConfigError(
        "timezone bucket releaser: the lease must be positive (it should exceed the time to produce one "
        "chunk)");
  }
  if (options_.chunk == 0 || options_.max_buckets_per_pass == 0) {
    throw ConfigError("timezone bucket releaser: chunk and max_buckets_per_pass must be at least 1");
  }
}

BacklogByMinute Releaser::Backlog(std::chrono::sys_seconds from, std::chrono::sys_seconds to,
                                  std::size_t max_buckets) {
  return ReadBacklog(redis_, options_.prefix, from, to, max_buckets);
}

std::size_t Releaser::ReleaseDue(std::chrono::sys_seconds now, const Produce& produce) {
  const auto index = options_.prefix + ":due";
  const auto max = options_.max_buckets_per_pass;
  std::size_t released = 0;
  std::size_t leased = 0;
  // Members still in the index ahead of the next page (held by others, lost): finished
  // members leave the index, so the next page starts after the ones that stay.
  std::size_t offset = 0;
  while (leased < max) {
    auto r = redis_.Command({"ZRANGEBYSCORE", index, "-inf", std::to_string(now.time_since_epoch().count()),
                             "LIMIT", std::to_string(offset), std::to_string(kIndexPage)});
    Check(r, "ZRANGEBYSCORE " + index);
    if (r.type != Reply::Type::kArray) Unexpected("ZRANGEBYSCORE");
    if (r.elements.empty()) break;
    for (const auto& m : r.elements) {
      if (leased >= max) break;
      switch (ReleaseBucket(m.str, produce, released)) {
        case BucketOutcome::kReleased:
          ++leased;
          break;
        case BucketOutcome::kLeaseLost:
          ++leased;
          ++offset;
          break;
        case BucketOutcome::kHeldByOther:
        case BucketOutcome::kSkipped:
          ++offset;
          break;
        case BucketOutcome::kGone:
          break;
      }
    }
  }
  return released;
}

Releaser::BucketOutcome Releaser::ReleaseBucket(const std::string& member, const Produce& produce,
                                                std::size_t& released) {
  auto log = Logger("timing");
  auto parts = ParseMember(member);
  const auto index = options_.prefix + ":due";
  if (!parts) {
    log->error("timezone buckets: index {} has a member that is not <due>:<tz>:<shard>: '{}'; skipping it",
               index, member);
    return BucketOutcome::kSkipped;
  }
  const auto bucket = options_.prefix + ":b:" + member;
  const auto lease = options_.prefix + ":lease:" + member;
  const auto lease_ms = std::to_string(options_.lease.count());
  const std::chrono::sys_seconds due{std::chrono::seconds(parts->due)};

  auto a = Eval(redis_, shas_, kAcquire, {lease, index}, {options_.owner, lease_ms, member});
  if (a.type != Reply::Type::kInteger) Unexpected("the acquire script");
  if (a.integer < 0) return BucketOutcome::kGone;
  if (a.integer == 0) return BucketOutcome::kHeldByOther;

  std::string cursor = "0";
  for (;;) {
    auto s = redis_.Command({"HSCAN", bucket, cursor, "COUNT", std::to_string(options_.chunk)});
    Check(s, "HSCAN " + bucket);
    if (s.type != Reply::Type::kArray || s.elements.size() != 2 ||
        s.elements[1].type != Reply::Type::kArray) {
      Unexpected("HSCAN");
    }
    cursor = s.elements[0].str;
    auto& kv = s.elements[1].elements;

    std::vector<Parked> items;
    items.reserve(kv.size() / 2);
    std::vector<std::string> corrupt;
    // A field that stays in the hash may come back in a later HSCAN reply; every field
    // returned is deleted (or we stop), so only a reply itself needs deduplicating.
    std::unordered_set<std::string_view> seen;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) {
      if (!seen.insert(kv[i].str).second) continue;
      Parked p;
      p.notification_id = kv[i].str;  // a copy: `seen` views the reply's string
      p.tz = parts->tz;
      p.due = due;
      if (Decode(kv[i + 1].str, p)) {
        items.push_back(std::move(p));
      } else {
        log->error("timezone buckets: notification {} in {} has an undecodable value; moved to {}:corrupt",
                   p.notification_id, bucket, options_.prefix);
        corrupt.push_back(std::move(p.notification_id));
        corrupt.push_back(std::move(kv[i + 1].str));
      }
    }
    if (!corrupt.empty()) {
      std::vector<std::vector<std::string>> q;
      for (std::size_t i = 0; i < corrupt.size(); i += 2) {
        q.push_back({"HSET", options_.prefix + ":corrupt", member + "|" + corrupt[i], corrupt[i + 1]});
        q.push_back({"HDEL", bucket, corrupt[i]});
      }
      for (const auto& r : redis_.Pipeline(q)) Check(r, "quarantine");
    }

    // HSCAN's COUNT is a hint (a small hash comes back whole): produce at most `chunk` at once.
    for (std::size_t start = 0; start < items.size(); start += options_.chunk) {
      auto end = std::min(items.size(), start + options_.chunk);
      std::vector<Parked> slice(std::make_move_iterator(items.begin() + static_cast<std::ptrdiff_t>(start)),
                                std::make_move_iterator(items.begin() + static_cast<std::ptrdiff_t>(end)));
      produce(slice);  // throws: leave the bucket and the lease as they are
      released += slice.size();
      std::vector<std::string> args{options_.owner, lease_ms};
      args.reserve(2 + slice.size());
      for (auto& p : slice) args.push_back(std::move(p.notification_id));
      auto d = Eval(redis_, shas_, kDone, {bucket, lease}, args);
      if (d.type != Reply::Type::kArray || d.elements.size() != 2) Unexpected("the done script");
      if (d.elements[1].integer == 0) {
        log->warn(
            "timezone buckets: lost the lease on {} to another releaser (a pass slower than the lease {} "
            "ms?); "
            "leaving the bucket to it",
            bucket, options_.lease.count());
        return BucketOutcome::kLeaseLost;
      }
    }

    if (cursor == "0") {
      auto f = Eval(redis_, shas_, kFinish, {bucket, index, lease}, {options_.owner, member});
      if (f.type != Reply::Type::kInteger) Unexpected("the finish script");
      if (f.integer == 0) {
        log->debug("timezone buckets: released {}", bucket);
        return BucketOutcome::kReleased;
      }
      if (f.integer < 0) {
        log->warn("timezone buckets: lost the lease on {} before removing it; leaving it to the new owner",
                  bucket);
        return BucketOutcome::kLeaseLost;
      }
      // Parked into meanwhile: another full scan picks those up.
    }
  }
}

}  // namespace herald::timing
