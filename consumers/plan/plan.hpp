#pragma once
// Plan stage logic: validate domain events and fan them out to one request per recipient.
//
// Small events (explicit `payload.user` only) are fanned out inline. Events that name a
// segment or followers are fanned out page by page as a resumable job: after each page's
// records are acknowledged, the job's cursor is checkpointed in Redis; the event's offset is
// committed only when the job is done. A crash resumes from the last checkpoint; pages after
// it may be produced again, with the same deterministic request ids, so no recipient ever
// gets two different ids. The job yields the partition every couple of seconds and waits
// while downstream consumers lag by more than HERALD_FANOUT_MAX_LAG records.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "herald/http/client.hpp"
#include "herald/model/records.hpp"
#include "herald/redis/client.hpp"

namespace herald::consumers::plan {

/// The request for one recipient of an event (pure; deterministic ids).
model::NotificationRequest MakeRequest(const model::Event& event, const std::string& user_id);

/// Where a fan-out job stands: the phase (users → segment → followers → done) and the
/// upstream cursor within it.
struct JobState {
  std::string phase;   // "users" | "segment" | "followers" | "done"
  std::string cursor;  // upstream pagination cursor within the phase ("" = from the start)
  std::int64_t emitted = 0;
};

/// The first phase of a job for this event.
JobState InitialState(const model::Event& event);

struct Page {
  std::vector<std::string> user_ids;
  JobState next;  // the state after this page
};

/// Fetches the recipients of one page of the job. Throws TransientError (retry later) or
/// PermanentError (the listing refuses the query).
class RecipientPager {
 public:
  RecipientPager(std::string auth_url, std::string ugc_url, std::size_t page_size = 1000);
  Page Fetch(const model::Event& event, const JobState& state);

 private:
  std::string auth_url_;
  std::string ugc_url_;
  std::size_t page_size_;
  http::Client client_;  // one kept-alive connection for every page
};

/// Fan-out checkpoints in Redis (herald:fanout:<event_id>), kept for 14 days.
class Checkpoints {
 public:
  explicit Checkpoints(redis::Client& redis) : redis_(redis) {}
  std::optional<JobState> Load(const std::string& event_id);
  void Save(const std::string& event_id, const JobState& state);

 private:
  redis::Client& redis_;
};

}  // namespace herald::consumers::plan
