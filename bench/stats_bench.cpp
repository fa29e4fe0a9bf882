// The ledger's statistics: how fast ApplyStatuses writes a campaign's statuses (rows, history
// and aggregates, one transaction per batch), and how long the statistics queries take on the
// result, next to counting the same campaign by scanning the ledger.
//
// Starts PostgreSQL from the embedded dev stack (no stages) in a temporary directory.
//
//   build/bench/herald_bench_stats [--rows 1000000] [--batch 500] [--calls 200] [--scans 10]

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "herald/common/logging.hpp"
#include "herald/dev/stack.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/stats/stats.hpp"
#include "bench_stack.hpp"

using namespace herald;
using Ms = std::chrono::duration<double, std::milli>;

namespace {

constexpr const char* kCampaign = "bench-campaign";

struct Channel {
  const char* name;
  int weight;  // percent of recipients
  const char* providers[2];
};
constexpr Channel kChannels[] = {
    {"email", 60, {"smtp", "ses"}}, {"push", 25, {"fcm", "apns"}}, {"sms", 15, {"sms-a", "sms-b"}}};
constexpr const char* kReasons[] = {"550 mailbox unavailable", "provider timeout", "invalid token",
                                    "rate limited", "number not reachable"};

// Recipient i's statuses, in the order the pipeline emits them: accepted, then its outcome.
struct Recipient {
  model::StatusRecord accepted, outcome;
};

Recipient MakeRecipient(std::uint64_t i, std::mt19937_64& rng, TimePoint start) {
  model::StatusRecord s;
  s.event_id = std::string("campaign.") + kCampaign + ".1";
  s.event_type = "promo.new_releases";
  s.campaign_id = kCampaign;
  s.user_id = "u-" + std::to_string(i + 1);
  int roll = static_cast<int>(rng() % 100);
  const Channel* ch = &kChannels[0];
  for (const auto& c : kChannels) {
    ch = &c;
    if ((roll -= c.weight) < 0) break;
  }
  s.channel = ch->name;
  s.notification_id = "n-" + std::to_string(i + 1) + "-" + s.channel;
  s.priority = model::Priority::kLow;
  s.status = model::Status::kAccepted;
  // The fan-out produces about 2,000 recipients a second.
  s.created = start + std::chrono::milliseconds(i / 2);
  s.at = s.created + std::chrono::milliseconds(5 + rng() % 50);

  Recipient r{s, s};
  auto& o = r.outcome;
  o.provider = ch->providers[rng() % 2];
  // Latency spread over four orders of magnitude: most in seconds, a tail in minutes.
  double latency = std::exp(std::normal_distribution<double>(std::log(2500.0), 1.2)(rng));
  o.at = o.created + std::chrono::milliseconds(static_cast<std::int64_t>(latency));
  int outcome = static_cast<int>(rng() % 100);
  if (outcome < 90) {
    o.status = model::Status::kSent;
    o.provider_message_id = "pm-" + std::to_string(i + 1);
  } else if (outcome < 95) {
    o.status = model::Status::kFailed;
    o.reason = kReasons[rng() % std::size(kReasons)];
  } else {
    o.status = model::Status::kSuppressed;
    o.reason = "opted out of marketing";
    o.provider.clear();
  }
  return r;
}

// This process's peak resident set (PostgreSQL and the broker are children, not counted).
std::string PeakRss() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 6));
  }
  return "?";
}

struct Timing {
  double p50, p99, max;
};

Timing Measure(int calls, const std::function<void()>& f) {
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(Ms(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))];
  };
  return {at(0.5), at(0.99), ms.back()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Herald ledger statistics benchmark"};
  std::uint64_t rows = 1'000'000;
  std::size_t batch = 500;  // the ledger stage's default poll batch
  int calls = 200, scans = 10;
  std::string binary = HERALD_BINARY;
  app.add_option("--rows", rows, "Recipients of the campaign (ledger rows)")->capture_default_str();
  app.add_option("--batch", batch, "Statuses per ApplyStatuses transaction")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--calls", calls, "Calls of each statistics query")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  app.add_option("--scans", scans, "Runs of the COUNT(*) scan")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  app.add_option("--herald", binary, "herald executable the dev stack runs")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  ConfigureLogging("warn", "text");

  auto so = bench::StackIn("stats", binary);
  const std::string state = so.state_dir;
  int rc = 0;
  {
    so.with_stages = false;
    dev::DevStack stack(so);
    stack.Up();
    auto conn = pg::Connect(stack.Env().at("HERALD_PG_URL"));
    {
      pqxx::work tx(*conn);
      tx.exec_params(
          "INSERT INTO campaigns (id, name, event_type, state) VALUES ($1, $1, 'promo.new_releases', "
          "'running')",
          std::string(kCampaign));
      tx.exec_params(
          "INSERT INTO campaign_runs (campaign_id, run, event_id, event, started_at, fanned_out, "
          "fanout_complete)"
          " VALUES ($1, 1, 'campaign.' || $1 || '.1', '{}', now(), $2, true)",
          std::string(kCampaign), static_cast<long long>(rows));
      tx.commit();
    }

    // The ledger: recipients in groups of a batch, each group's accepted statuses then its
    // outcomes, as the ledger sees them a little behind the fan-out.
    std::mt19937_64 rng(42);
    const auto start = NowMs() - std::chrono::hours(2);
    const std::uint64_t group = batch;
    std::size_t statuses = 0, moved = 0;
    double apply_s = 0;
    std::vector<Recipient> recipients;
    std::printf("building a ledger of %llu rows ...\n", static_cast<unsigned long long>(rows));
    std::fflush(stdout);
    for (std::uint64_t i = 0; i < rows; i += group) {
      recipients.clear();
      for (std::uint64_t j = i; j < std::min(rows, i + group); ++j)
        recipients.push_back(MakeRecipient(j, rng, start));
      std::vector<model::StatusRecord> accepted, outcomes;
      for (auto& r : recipients) {
        accepted.push_back(std::move(r.accepted));
        outcomes.push_back(std::move(r.outcome));
      }
      auto t0 = std::chrono::steady_clock::now();
      for (const auto* b : {&accepted, &outcomes}) {
        pqxx::work tx(*conn);
        moved += stats::ApplyStatuses(tx, *b).moved;
        tx.commit();
        statuses += b->size();
      }
      apply_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // The scan gets the same help a production table would have: statistics and a visibility map.
    {
      pqxx::nontransaction tx(*conn);
      tx.exec("VACUUM ANALYZE deliveries");
      tx.exec("VACUUM ANALYZE delivery_counts");
      tx.exec("VACUUM ANALYZE delivery_latency");
    }

    nlohmann::json campaign;
    auto t_campaign = Measure(calls, [&] {
      pqxx::read_transaction tx(*conn);
      campaign = stats::CampaignStats(tx, kCampaign);
    });
    auto t_overall = Measure(calls, [&] {
      pqxx::read_transaction tx(*conn);
      (void)stats::OverallStats(tx);
    });
    auto t_channels = Measure(calls, [&] {
      pqxx::read_transaction tx(*conn);
      (void)stats::ChannelStats(tx);
    });
    nlohmann::json scanned = nlohmann::json::object();
    auto t_scan = Measure(scans, [&] {
      pqxx::read_transaction tx(*conn);
      scanned = nlohmann::json::object();
      for (const auto& r :
           tx.exec_params("SELECT status, count(*) FROM deliveries WHERE campaign_id = $1 GROUP BY status",
                          std::string(kCampaign))) {
        scanned[r[0].as<std::string>()] = r[1].as<long long>();
      }
    });
    long long aggregate_rows = 0;
    std::string db_size;
    {
      pqxx::read_transaction tx(*conn);
      aggregate_rows =
          tx.exec1(
                "SELECT (SELECT count(*) FROM delivery_counts) + (SELECT count(*) FROM delivery_latency)"
                " + (SELECT count(*) FROM delivery_timeline) + (SELECT count(*) FROM delivery_failures)")[0]
              .as<long long>();
      db_size = tx.exec1("SELECT pg_size_pretty(pg_total_relation_size('deliveries'))")[0].as<std::string>();
    }

    std::printf(
        "\nledger of %llu rows (%zu statuses in transactions of %zu; deliveries %s, %lld aggregate rows)\n\n",
        static_cast<unsigned long long>(rows), statuses, batch, db_size.c_str(), aggregate_rows);
    std::printf("ApplyStatuses: %.1f s, %.0f statuses/s\n\n", apply_s,
                static_cast<double>(statuses) / apply_s);
    std::printf("%-40s %7s %9s %9s %9s\n", "query", "calls", "p50 ms", "p99 ms", "max ms");
    auto line = [](const char* name, int n, const Timing& t) {
      std::printf("%-40s %7d %9.2f %9.2f %9.2f\n", name, n, t.p50, t.p99, t.max);
    };
    line("CampaignStats (aggregates)", calls, t_campaign);
    line("OverallStats (aggregates)", calls, t_overall);
    line("ChannelStats (aggregates)", calls, t_channels);
    line("campaign COUNT(*) GROUP BY status (scan)", scans, t_scan);
    std::printf("\nCampaignStats is %.0fx faster than the scan at p50\n", t_scan.p50 / t_campaign.p50);
    std::printf("progress: %s\nlatency_ms: %s\npeak RSS of the benchmark: %s\n",
                campaign["progress"].dump().c_str(), campaign["latency_ms"].dump().c_str(),
                PeakRss().c_str());

    if (campaign["by_status"] != scanned || moved != statuses || campaign["progress"]["pending"] != 0) {
      std::printf("ERROR: the aggregates disagree with the ledger: %s vs scan %s (moved %zu of %zu)\n",
                  campaign["by_status"].dump().c_str(), scanned.dump().c_str(), moved, statuses);
      rc = 1;
    }
  }
  std::filesystem::remove_all(state);
  return rc;
}
