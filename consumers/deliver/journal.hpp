#pragma once
// The send journal: which notifications a sender has handed to its provider without having
// recorded the outcome yet. A claim's lease expires when its owner dies, and the next owner
// would send again; the journal tells it that the previous attempt died with the send in
// flight, when the provider may or may not have delivered it. Without an idempotency key at
// the provider, sending again could make the user receive it twice.
//
//   herald:sending:<notification_id>:<channel> = <owner>
//       set before the send (kept for the claim TTL), deleted once the outcome is recorded:
//       after the claim is marked done, or before it is released when the provider refused.
//
// Thread safety: as the redis::Client it uses (one thread). Every call is one round trip and
// throws TransientError when Redis does not answer.

#include <chrono>
#include <string>
#include <vector>

#include "herald/redis/client.hpp"

namespace herald::consumers::deliver {

struct JournalKey {
  std::string notification_id;
  std::string channel;
};

class SendJournal {
 public:
  SendJournal(redis::Client& redis, std::string owner, std::chrono::hours ttl);
  /// Records that these sends are about to start.
  void Begin(const std::vector<JournalKey>& keys);
  /// Records that their outcomes are known and recorded.
  void End(const std::vector<JournalKey>& keys);
  /// For each key, the owner of a send that began and never ended ("" when there is none).
  std::vector<std::string> InFlight(const std::vector<JournalKey>& keys);

  static std::string Key(const JournalKey& key);

 private:
  redis::Client& redis_;
  std::string owner_;
  std::chrono::hours ttl_;
};

}  // namespace herald::consumers::deliver
