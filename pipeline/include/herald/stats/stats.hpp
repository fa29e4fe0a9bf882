#pragma once
// The delivery ledger and its pre-aggregated statistics (migration 0004).
//
// ApplyStatuses() moves ledger rows forward (one row per notification_id + channel; a status
// replaces the row's only if it ranks higher, or equal at a later attempt) and, in the same
// transaction, keeps the aggregates equal to the rows: counts by (campaign, channel,
// provider, status), a latency histogram of sent rows, transitions per minute and failure
// reasons. A replayed status moves nothing and counts nothing.
//
// The query functions read only the aggregates (and the small campaign tables), never scan
// the ledger, so they answer in milliseconds whatever the ledger's size.
//
// Latency objects ("latency_ms") are {"count", "p50", "p90", "p99", "max"} in milliseconds,
// estimated from the histogram (interpolated within a bucket, so within its ~10 % width);
// "max" is the upper bound of the highest non-empty bucket. With count 0 the others are null.
//
// Nothing here is thread-safe beyond what a pqxx transaction is: one call at a time per
// transaction. Database errors surface as pqxx exceptions.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "herald/common/time.hpp"
#include "herald/model/records.hpp"

namespace herald::stats {

struct ApplyResult {
  std::size_t moved = 0;    // statuses that moved a row (or created one)
  std::size_t ignored = 0;  // replays and statuses ranked below the row's current one
};

/// Applies statuses (in order) to deliveries, delivery_events and the aggregates, in a few
/// multi-row statements whatever the batch size. The batch's rows stay locked until `tx` ends;
/// commit it (or let it roll back on an exception) promptly.
///
/// A row entering a status adds one to the timeline minute of the status's `at`; entering
/// `sent` adds its latency (first sent time minus the event's created_dt) to the histogram;
/// delivery_failures counts the rows that are `failed` now, by the first 200 characters of the
/// reason. A later attempt within the same status moves the row (reason, provider) and the
/// counts but is not a new arrival for the timeline or the histogram.
///
/// Throws TransientError when another transaction created one of the batch's new rows
/// meanwhile (two ledger consumers during a rebalance); the caller retries the whole batch.
ApplyResult ApplyStatuses(pqxx::work& tx, const std::vector<model::StatusRecord>& statuses);

/// Latency histogram buckets (milliseconds): bucket b covers [LatencyBucketLow(b),
/// LatencyBucketLow(b + 1)); 1 ms wide up to 20 ms, then 10 % wider each, and the last one is
/// open-ended from about a day. The bounds are stored data: never change them.
int LatencyBucket(std::int64_t ms);
/// Throws std::out_of_range outside [0, LatencyBucketCount()).
std::int64_t LatencyBucketLow(int bucket);
int LatencyBucketCount();

/// {"by_status": {status: n}, "by_channel": {channel: {status: n}}, "by_provider":
///  {provider: {status: n}}, "latency_ms": {...}} over every notification (campaign or not).
/// by_provider leaves out rows no provider has handled yet (accepted, scheduled, ...).
nlohmann::json OverallStats(pqxx::transaction_base& tx);

/// One campaign: by_status, by_channel, by_provider, latency_ms, and "progress":
/// {planned, fanned_out, fanout_complete, sent, failed, suppressed, expired, cancelled, pending}.
/// planned = recipients (fan-out count, or ledger rows other than fallback if larger);
/// pending = planned minus the final ones; for a cancelled campaign the pending remainder is
/// reported as cancelled. fanout_complete is true when every run finished its fan-out (false
/// before the first run). Returns null when the campaign does not exist.
nlohmann::json CampaignStats(pqxx::transaction_base& tx, const std::string& campaign_id);

/// Per channel and provider: {"channels": [{channel, provider, by_status, latency_ms}]},
/// ordered by channel then provider; provider "" holds rows no provider has handled yet. The
/// histogram is kept per channel, not per provider: latency_ms is the channel's.
nlohmann::json ChannelStats(pqxx::transaction_base& tx);

/// Transitions per interval: {"step_s", "points": [{"at", "channel", "status", "n"}]},
/// campaign_id empty = all. Minutes in [from, to) are summed into intervals of `step`
/// (rounded up to whole minutes, at least one) aligned on the Unix epoch; "at" is an
/// interval's start (RFC 3339), points are ordered by at, channel, status.
nlohmann::json Timeline(pqxx::transaction_base& tx, const std::string& campaign_id, TimePoint from,
                        TimePoint to, std::chrono::seconds step);

/// The most frequent failure reasons of rows that are failed now: {"reasons": [{channel,
/// reason, n}]}, most frequent first, at most `limit` (1..1000); campaign_id empty = all.
nlohmann::json TopFailures(pqxx::transaction_base& tx, const std::string& campaign_id, int limit);

}  // namespace herald::stats
