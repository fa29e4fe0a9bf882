#pragma once
// Redis timezone buckets: where notifications that must wait (start time, local-time window,
// quiet hours) are parked until they are due, and their crash-safe release.
//
// Key layout (one Redis instance or primary; the scripts touch a bucket and the index
// together, so this is not Redis Cluster-safe without hash tags):
//
//   <prefix>:due                          sorted set, the index. Member "<due>:<tz>:<shard>",
//                                         score <due>.
//   <prefix>:b:<due>:<tz>:<shard>         hash, one bucket. Field notification_id, value the
//                                         parked record (encoding below).
//   <prefix>:lease:<due>:<tz>:<shard>     string, the owner id of the releaser working on the
//                                         bucket; expires after the lease (PX).
//   <prefix>:corrupt                      hash, values that could not be decoded, moved out of
//                                         their bucket on release (field "<member>|<id>").
//                                         Only exists if something else wrote into our keys.
//
//   <due>    the due instant rounded UP to the minute, as decimal Unix seconds ("1795341600").
//   <tz>     the IANA zone name as given ("America/Argentina/Buenos_Aires"): 1..64 characters
//            of [A-Za-z0-9/_+-]. Only a label — the due instant is absolute.
//   <shard>  FNV-1a 64 of notification_id, modulo `shards`, in decimal. One (minute, zone) with
//            a million notifications is `shards` keys, not one. `shards` must stay the same
//            while notifications are parked: a re-park of the same notification under another
//            shard count lands in another key and would be released twice.
//
// Hash value encoding, version 1 (binary-safe, no escaping):
//   "p1:" <decimal byte length of topic> ":" <topic> <decimal byte length of key> ":" <key> <payload>
//   e.g. "p1:14:deliver.email3:u-1{...}". notification_id, tz and due come from the field
//   and the key, so they are not repeated in the value.
//
// Invariant: a bucket never exists without its index member. Park writes both in one Lua
// call; a bucket's index member is removed (in Lua) only while the bucket is empty, so a
// notification parked into a bucket that is being released is released too, never orphaned.
//
// Release is at-least-once: a chunk is deleted only after `produce` returned (the broker
// acknowledged it). A releaser that crashes between produce and delete, or whose lease
// expires during produce, causes at most that chunk to be produced again by the next owner;
// consumers dedupe on notification_id (the delivery claim).
//
// Thread safety: none. Buckets and Releaser use the given Client, which is one connection;
// give each thread its own Client and objects. Any number of processes/threads may park and
// release against the same prefix concurrently. Time always comes from the caller.
//
// Errors: Redis failures and error replies throw TransientError; invalid input to Park
// throws InvalidInput (nothing of that call is written); exceptions from `produce` propagate.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace herald::redis {
class Client;
}

namespace herald::timing {

/// One parked notification.
struct Parked {
  std::string notification_id;   // hash field; parking the same id twice stores it once
  std::string tz;                // IANA zone name (bucket label)
  std::chrono::sys_seconds due;  // when to release; stored rounded up to the minute, and
                                 // returned rounded on release
  std::string payload;           // the record value to produce
  std::string key;               // the Kafka key
  std::string topic;             // the topic to produce to
};

struct BucketOptions {
  std::string prefix = "herald:tzb";  // key prefix (see layout above)
  std::size_t shards = 16;            // keys per (due minute, zone); 1..1024
};

/// Due-minute → parked notifications (buckets' HLEN summed), read from the index range
/// [from, to] (inclusive, by due). At most `max_buckets` buckets are read (the earliest due
/// first), so with more buckets in range the later minutes are missing or undercounted.
/// Keys are Unix seconds of the (rounded-up) due minute; minutes with nothing parked are absent.
using BacklogByMinute = std::map<std::int64_t, std::int64_t>;

/// Writes parked notifications. Cheap to construct.
class Buckets {
 public:
  /// Throws ConfigError for an empty prefix or shards outside 1..1024.
  Buckets(redis::Client& redis, BucketOptions options = {});

  /// Parks `items`, pipelined: one Lua call (EVALSHA) per bucket and up to 256 items, up to
  /// 1000 calls or 8 MiB per round trip. Each call's HSET and index ZADD are atomic. Idempotent: an id parked
  /// again into the same (due minute, zone) is stored once (the last payload wins). Validates every item
  /// first and throws InvalidInput (field "/<index>/<name>") without writing anything if one is invalid. On
  /// TransientError some items may be written: parking them again is safe.
  void Park(const std::vector<Parked>& items);

  /// See BacklogByMinute. Pipelined HLEN over the index range.
  BacklogByMinute Backlog(std::chrono::sys_seconds from, std::chrono::sys_seconds to,
                          std::size_t max_buckets);

  /// The shard of a notification id for `shards` shards (stable across builds and hosts).
  static std::size_t ShardOf(const std::string& notification_id, std::size_t shards);
  /// `due` rounded up to the minute.
  static std::chrono::sys_seconds DueMinute(std::chrono::sys_seconds due);
  /// The index member and bucket key of one notification.
  std::string Member(const Parked& item) const;
  std::string BucketKey(const Parked& item) const;
  std::string IndexKey() const { return options_.prefix + ":due"; }

 private:
  redis::Client& redis_;
  BucketOptions options_;
  std::map<std::string, std::string> shas_;  // script name → SHA1, loaded lazily
};

/// Releases due buckets to a `produce` callback. Several releasers (threads, replicas) may
/// run against the same prefix: each bucket is worked on by one lease holder at a time.
class Releaser {
 public:
  struct Options {
    std::string owner;                        // unique per Releaser instance; empty: random
    std::chrono::milliseconds lease{30'000};  // > the time to produce one chunk
    std::size_t chunk = 500;                  // notifications per produce call (max)
    std::size_t max_buckets_per_pass = 1000;  // buckets leased per ReleaseDue call
    std::string prefix = "herald:tzb";        // same as the Buckets that park
  };

  /// Receives one chunk (all in one bucket). Must return only once the broker acknowledged
  /// every record of the chunk, and throw otherwise.
  using Produce = std::function<void(const std::vector<Parked>&)>;

  /// Throws ConfigError for a zero lease, chunk or max_buckets_per_pass, or an empty prefix.
  Releaser(redis::Client& redis, Options options);

  /// Releases buckets whose due <= now, earliest first, up to max_buckets_per_pass of them:
  /// for each, takes the lease (SET NX PX, or renews it if this owner still holds it from a
  /// failed pass), then per chunk HSCANs up to `chunk` notifications, calls produce(chunk),
  /// HDELs exactly those and renews the lease if still ours (else stops on that bucket).
  /// When the bucket is empty, removes its index member and the lease in one Lua call (only
  /// if still empty: a concurrent park restarts the scan). Buckets leased by other owners
  /// are skipped. Returns the number of notifications passed to produce and acknowledged.
  /// If produce throws, the exception propagates (the pass ends, its count is lost) and the
  /// bucket stays as it is: its unacknowledged chunk and the rest stay parked, the lease
  /// stays until it expires; this owner's next pass, or another owner after expiry, retries.
  std::size_t ReleaseDue(std::chrono::sys_seconds now, const Produce& produce);

  /// See BacklogByMinute.
  BacklogByMinute Backlog(std::chrono::sys_seconds from, std::chrono::sys_seconds to,
                          std::size_t max_buckets);

  const std::string& Owner() const { return options_.owner; }

 private:
  enum class BucketOutcome { kReleased, kHeldByOther, kGone, kLeaseLost, kSkipped };
  BucketOutcome ReleaseBucket(const std::string& member, const Produce& produce, std::size_t& released);

  redis::Client& redis_;
  Options options_;
  std::map<std::string, std::string> shas_;  // script name → SHA1, loaded lazily
};

}  // namespace herald::timing
