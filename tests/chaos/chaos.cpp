// The chaos suite: a full dev stack receives a seeded workload of events while a seeded loop
// injects faults — SIGKILL of random stages, the broker's brokers down and up, Redis and
// PostgreSQL restarts, provider error storms and latency spikes. Afterwards every
// notification the workload implies is accounted for from independent sources: the SMTP
// sink's mails and the fake providers' request logs (what was really sent), the ledger in
// PostgreSQL (failed, suppressed or expired, with a reason) and the dead-letter topic.
//
// Exit code: 0 when nothing was lost, nothing was sent twice and every outcome that is not a
// delivery carries a reason; 1 otherwise (the offending notifications are printed); 2 when
// the run itself could not be carried out (bad options, the stack did not start).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/time.hpp"
#include "herald/dev/mail.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/lag.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/topics/catalog.hpp"
#include "support/stack.hpp"

namespace {

using nlohmann::json;
using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

const std::vector<std::string> kChannels = {"email", "sms", "telegram", "push"};
const std::vector<std::string> kProviders = {"sms", "telegram", "push"};
const std::vector<std::string> kStages = {"ingest",  "admin",         "plan",        "enrich",           "deliver-email",
                                          "deliver-sms", "deliver-telegram", "deliver-push", "scheduler", "ledger",
                                          "retry"};
const std::vector<std::string> kFaultKinds = {"kill", "broker", "redis", "postgres", "provider"};

struct Options {
  int events = 300;
  double duration_s = 60;
  std::uint64_t seed = 1;
  std::string faults = "kill,broker,redis,postgres,provider";
  double settle_s = 300;
};

// ---- output -------------------------------------------------------------------------------

class RunClock {
 public:
  RunClock() : start_(Steady::now()) {}
  double Elapsed() const { return std::chrono::duration<double>(Steady::now() - start_).count(); }
  /// "[+  12.3 s 10:15:02.123Z]": since the start and wall time.
  std::string Stamp() const {
    auto wall = herald::FormatRfc3339(herald::NowMs());
    return fmt::format("[+{:6.1f} s {}]", Elapsed(), wall.substr(11));
  }

 private:
  Steady::time_point start_;
};

std::mutex g_out_mu;
void Say(const RunClock& clock, const std::string& line) {
  std::lock_guard lock(g_out_mu);
  std::cout << clock.Stamp() << " " << line << "\n" << std::flush;
}

// ---- the workload -------------------------------------------------------------------------

struct PlannedEvent {
  std::string event_id;
  std::string type;
  json body;
  std::vector<std::string> users;
  bool via_ingest = false;
};

struct InvalidEvent {
  std::string marker;  // appears in the record's bytes, so its dead letter can be found
  std::string body;
};

struct Workload {
  std::string id_prefix;
  std::vector<PlannedEvent> events;
  std::vector<InvalidEvent> invalid;
  std::map<std::string, std::string> event_of_user;  // each recipient is in one event only
  std::map<std::string, std::string> user_of_chat;   // telegram chat id -> recipient
  // Every (event, recipient) and the notification ids its channels would use.
  std::map<std::string, std::pair<std::string, std::string>> key_of_notification;  // id -> (event, user)
  std::size_t Notifications() const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.users.size();
    return n;
  }
};

std::string Key(const std::string& event_id, const std::string& user) { return event_id + "/" + user; }

int Uniform(std::mt19937_64& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
double UniformReal(std::mt19937_64& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

// Recipients u-<first>.. with distinct Telegram chats, so a message to a chat names one
// notification; followers of "series-big-N" are u-1..u-N (the fake ugc API's contract), far
// below the explicit recipients.
Workload MakeWorkload(const Options& o, std::uint64_t fake_users, const std::vector<std::string>& followers,
                      const std::string& followers_of) {
  std::mt19937_64 rng(o.seed);
  Workload w;
  w.id_prefix = fmt::format("chaos-{}-", o.seed);
  int next_user = 100'000;
  std::uint64_t next_unknown = fake_users + 1;
  auto take_user_where = [&](const std::function<bool(const json&)>& pred) {
    for (;;) {
      auto id = "u-" + std::to_string(next_user);
      auto u = herald::test::SyntheticUser(next_user++);
      if (!pred(u)) continue;
      if (!u["telegram_chat_id"].is_null()) {
        auto chat = std::to_string(u["telegram_chat_id"].get<std::int64_t>());
        if (w.user_of_chat.count(chat)) continue;
        w.user_of_chat[chat] = id;
      }
      return id;
    }
  };
  auto take_user = [&]() { return take_user_where([](const json&) { return true; }); };
  for (const auto& f : followers) {
    auto u = herald::test::SyntheticUser(std::stoi(f.substr(2)));
    if (!u["telegram_chat_id"].is_null()) w.user_of_chat[std::to_string(u["telegram_chat_id"].get<std::int64_t>())] = f;
  }
  struct TypeMix {
    const char* type;
    int weight;
  };
  const std::vector<TypeMix> mix = {{"episode.released", 30}, {"comment.liked", 25}, {"user.registered", 15},
                                    {"promo.new_releases", 15}, {"user.password_reset", 15}};
  int total_weight = 0;
  for (const auto& m : mix) total_weight += m.weight;
  for (int k = 0; k < o.events; ++k) {
    PlannedEvent e;
    e.event_id = w.id_prefix + std::to_string(k);
    json payload = json::object();
    bool restricted = false;
    if (k == 0 && !followers.empty()) {
      // Fan-out through the ugc followers API.
      e.type = "episode.released";
      e.users = followers;
      payload["followers_of"] = followers_of;
      payload["content"] = {"ep-7"};
    } else {
      int pick = Uniform(rng, 0, total_weight - 1);
      for (const auto& m : mix) {
        if (pick < m.weight) {
          e.type = m.type;
          break;
        }
        pick -= m.weight;
      }
      int recipients = e.type == "user.password_reset" ? 1 : Uniform(rng, 2, 6);
      // Now and then a comment.liked limited to Telegram and push (an event may narrow its
      // type's channels), with someone whose chat blocked the bot and who has no working push
      // token: rejected on both, so it fails with the provider's reason.
      if (e.type == "comment.liked" && Uniform(rng, 0, 4) == 0) {
        restricted = true;
        e.users.push_back(take_user_where([](const json& u) {
          const auto& tokens = u["push_tokens"];
          bool no_push = tokens.empty() || tokens[0].get<std::string>().rfind("dead-", 0) == 0;
          return u["telegram_chat_id"].is_number_integer() && u["telegram_chat_id"].get<std::int64_t>() % 100 == 13 && no_push;
        }));
        --recipients;
      }
      for (int i = 0; i < recipients; ++i) e.users.push_back(take_user());
      // Now and then someone the auth service does not know: suppressed with a reason.
      if (e.type != "user.password_reset" && Uniform(rng, 0, 14) == 0) e.users.push_back("u-" + std::to_string(next_unknown++));
      payload["user"] = e.users;
      if (e.type == "episode.released") payload["content"] = {"ep-" + std::to_string(1 + k % 400)};
      if (e.type == "promo.new_releases") payload["content"] = {"movie-" + std::to_string(1 + k % 90)};
      if (e.type == "comment.liked") payload["data"] = {{"liked_by", "Chaos " + std::to_string(k)}, {"comment_excerpt", "event " + e.event_id}};
      if (e.type == "user.password_reset") payload["data"] = {{"reset_url", "https://cinema.example/reset/" + e.event_id}};
    }
    e.body = {{"event_id", e.event_id}, {"event_type", e.type}, {"created_dt", "2026-11-21T10:00:00Z"}, {"payload", payload}};
    if (restricted) e.body["channels"] = {"telegram", "push"};
    // A few are already stale when they arrive (the stages' clock reads 10:00:05): each of
    // their recipients is recorded as expired, with the instant it expired.
    if (Uniform(rng, 0, 19) == 0) e.body["expires_dt"] = "2026-11-21T10:00:01Z";
    // Most go out at once (high priority, the whole day as the window); the others keep
    // their type's priority and window, so some wait in the Redis timezone buckets for the
    // users' local time and quiet hours until the clock is moved on after the faults.
    if (Uniform(rng, 0, 3) != 0) {
      e.body["priority"] = "high";
      e.body["deliver_window"] = {{"from", "00:00"}, {"to", "00:00"}};
    }
    e.via_ingest = Uniform(rng, 0, 4) == 0;
    for (const auto& u : e.users) {
      w.event_of_user[u] = e.event_id;
      for (const auto& c : kChannels) w.key_of_notification[herald::NotificationId(e.event_id, u, c)] = {e.event_id, u};
    }
    w.events.push_back(std::move(e));
  }
  // Events the plan stage must refuse: each lands in the dead-letter topic with its reason.
  int invalid = std::max(3, o.events / 50);
  for (int i = 0; i < invalid; ++i) {
    InvalidEvent bad;
    bad.marker = fmt::format("{}invalid-{}", w.id_prefix, i);
    std::string nobody = "u-" + std::to_string(next_unknown++);
    switch (i % 4) {
      case 0: bad.body = "this is not JSON {" + bad.marker; break;
      case 1:
        bad.body = json{{"event_type", "user.teleported"}, {"created_dt", "2026-11-21T10:00:00Z"},
                        {"payload", {{"user", {nobody}}, {"data", {{"marker", bad.marker}}}}}}.dump();
        break;
      case 2: bad.body = json{{"event_type", "user.registered"}, {"payload", {{"user", {nobody}}}}, {"note", bad.marker}}.dump(); break;
      default:
        bad.body = json{{"event_type", "user.registered"}, {"created_dt", "2026-11-21T10:00:00Z"}, {"priority", 9},
                        {"payload", {{"user", {nobody}}, {"data", {{"marker", bad.marker}}}}}}.dump();
        break;
    }
    w.invalid.push_back(std::move(bad));
  }
  return w;
}

// Publishes the workload at an even pace over `span`, retrying each event until the broker
// (or the ingest API) accepts it: faults make publishing slow, never lossy. Event ids are
// fixed, so a publication repeated after an unclear failure is the same event.
class Publisher {
 public:
  Publisher(const Workload& w, herald::test::TestStack& stack, const RunClock& clock, std::chrono::milliseconds span)
      : w_(w), brokers_(stack.Env("HERALD_BROKERS")), ingest_url_(stack.Env("HERALD_INGEST_URL") + "/v1/events"),
        ingest_token_(stack.Env("HERALD_INGEST_TOKEN")), clock_(clock), span_(span) {}

  ~Publisher() {
    stop_ = true;
    Join();
  }
  void Start() { thread_ = std::thread([this] { Run(); }); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::size_t Published() const { return published_.load(); }
  std::size_t Repeats() const { return repeats_.load(); }
  const std::vector<std::string>& Failures() const { return failures_; }

 private:
  void Run() {
    herald::kafka::Producer::Options po;
    po.brokers = brokers_;
    po.client_id = "herald-chaos";
    herald::kafka::Producer producer(po);
    herald::http::Client ingest({1s, 10s, "herald-chaos", ingest_token_});
    // Invalid events spread among the valid ones, in a fixed order.
    std::vector<std::pair<const PlannedEvent*, const InvalidEvent*>> order;
    std::size_t every = std::max<std::size_t>(1, w_.events.size() / std::max<std::size_t>(1, w_.invalid.size()));
    std::size_t next_invalid = 0;
    for (std::size_t i = 0; i < w_.events.size(); ++i) {
      order.push_back({&w_.events[i], nullptr});
      if ((i + 1) % every == 0 && next_invalid < w_.invalid.size()) order.push_back({nullptr, &w_.invalid[next_invalid++]});
    }
    for (; next_invalid < w_.invalid.size(); ++next_invalid) order.push_back({nullptr, &w_.invalid[next_invalid]});
    auto start = Steady::now();
    auto step = span_ / std::max<std::size_t>(1, order.size());
    for (std::size_t i = 0; i < order.size() && !stop_; ++i) {
      std::this_thread::sleep_until(start + step * static_cast<long>(i));  // the workload's pace
      const auto& [event, bad] = order[i];
      std::string what = event ? event->event_id : bad->marker;
      auto deadline = Steady::now() + 180s;
      bool done = false;
      int attempts = 0;
      std::string last_error;
      while (!done && !stop_ && Steady::now() < deadline) {
        if (attempts++ > 0) {
          ++repeats_;
          std::this_thread::sleep_for(300ms);  // back-off between attempts
        }
        try {
          if (event && event->via_ingest) {
            auto r = ingest.Post(ingest_url_, event->body.dump());
            done = r.status == 202;
            if (!done) last_error = "ingest answered " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
          } else if (event) {
            auto topic = herald::topics::Catalog().Events(SourceOf(event->type));
            producer.ProduceSync({topic, event->event_id, event->body.dump(), {}}, 60s);
            done = true;
          } else {
            producer.ProduceSync({herald::topics::Catalog().Events("auth"), bad->marker, bad->body, {}}, 60s);
            done = true;
          }
        } catch (const std::exception& e) {
          last_error = e.what();
        }
      }
      if (!done) {
        failures_.push_back(what + ": " + last_error);
        Say(clock_, "could not publish " + what + " within 180 s: " + last_error);
        continue;
      }
      ++published_;
    }
    producer.Flush(30s);
  }

  static std::string SourceOf(const std::string& type) {
    if (type.rfind("user.", 0) == 0) return "auth";
    if (type == "comment.liked") return "ugc";
    if (type == "episode.released") return "content";
    return "admin";
  }

  const Workload& w_;
  std::string brokers_, ingest_url_, ingest_token_;
  const RunClock& clock_;
  std::chrono::milliseconds span_;
  std::atomic<std::size_t> published_{0}, repeats_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::string> failures_;
  std::thread thread_;
};

// ---- faults -------------------------------------------------------------------------------

// Injects faults from a seeded random stream until told to stop. Runs on the thread that
// started the stack (children's parent-death signal is tied to it). Every fault has an undo
// (start the process again, bring the brokers up, clear the provider's fault) that runs when
// due; an undo that fails (a stage exiting during start-up because PostgreSQL is restarting
// at that moment) is tried again with a growing back-off, as an orchestrator would, without
// holding up the other undos.
class FaultInjector {
 public:
  FaultInjector(herald::test::TestStack& stack, const RunClock& clock, std::uint64_t seed, std::set<std::string> kinds)
      : s_(stack), clock_(clock), rng_(seed ^ 0x9e3779b97f4a7c15ULL), kinds_(std::move(kinds)) {}

  void RunFor(std::chrono::milliseconds duration) {
    auto end = Steady::now() + duration;
    auto next = Steady::now() + Gap();
    while (Steady::now() < end) {
      UndoDue(false);
      Supervise();
      if (Steady::now() >= next && !kinds_.empty()) {
        try {
          Inject();
        } catch (const std::exception& e) {
          Say(clock_, std::string("  injecting a fault failed: ") + e.what());
        }
        next = Steady::now() + Gap();
      }
      std::this_thread::sleep_for(50ms);  // the loop's tick
    }
  }

  /// Undoes every fault now and starts whatever is not running; throws when something
  /// cannot be started within two minutes.
  void Heal() {
    auto deadline = Steady::now() + 120s;
    for (const auto& role : kProviders) s_.ClearFaults(role);
    for (;;) {
      UndoDue(true);
      for (const auto& name : s_.Dev().Names()) {
        if (!active_.count(name) && !s_.Dev().IsRunning(name)) Restart(name, "not running at the end of the faults");
      }
      if (active_.empty()) return;
      if (Steady::now() > deadline) throw std::runtime_error("could not bring every process back within 2 minutes");
      std::this_thread::sleep_for(100ms);  // between restart attempts
    }
  }

  /// A stage that exited on its own is started again, as an orchestrator would.
  void Supervise() {
    for (const auto& name : kStages) {
      if (active_.count(name) || s_.Dev().IsRunning(name)) continue;
      ++exited_on_own_;
      Say(clock_, "  " + name + " exited on its own (see its log); starting it again");
      Restart(name, "exited");
      UndoDue(false);
    }
  }

  std::string Summary() const {
    std::string out;
    for (const auto& [kind, n] : counts_) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", kind, n);
    std::string kills;
    for (const auto& [stage, n] : kills_) kills += fmt::format("{}{} {}", kills.empty() ? "" : ", ", stage, n);
    if (!kills.empty()) out += " (SIGKILL: " + kills + ")";
    return out.empty() ? "none" : out;
  }
  int ExitedOnTheirOwn() const { return exited_on_own_; }

 private:
  struct Active {
    Steady::time_point until;
    std::function<void()> undo;  // throws when it has to be tried again
    int rank = 1;                // services (0) come back before stages (1)
    std::chrono::milliseconds backoff{250};
    int attempts = 0;
  };

  std::chrono::milliseconds Gap() { return std::chrono::milliseconds(Uniform(rng_, 400, 2500)); }
  std::chrono::milliseconds Between(double lo_s, double hi_s) {
    return std::chrono::milliseconds(static_cast<long>(UniformReal(rng_, lo_s, hi_s) * 1000));
  }

  void Restart(const std::string& name, const std::string& why) {
    bool service = name == "redis" || name == "postgres" || name == "broker";
    active_[name] = {Steady::now(), [this, name, why] {
                       s_.Dev().Start(name);
                       Say(clock_, "  " + name + " running again (" + why + ")");
                     },
                     service ? 0 : 1};
  }

  void UndoDue(bool all) {
    for (int rank = 0; rank <= 1; ++rank) {
      for (auto it = active_.begin(); it != active_.end();) {
        auto& a = it->second;
        if (a.rank != rank || (!all && Steady::now() < a.until) || (all && a.attempts > 0 && Steady::now() < a.until)) {
          ++it;
          continue;
        }
        try {
          a.undo();
          it = active_.erase(it);
        } catch (const std::exception& e) {
          ++a.attempts;
          Say(clock_, fmt::format("  undoing the fault on {} failed (attempt {}, again in {:.1f} s): {}", it->first, a.attempts,
                                  a.backoff.count() / 1000.0, e.what()));
          a.until = Steady::now() + a.backoff;
          a.backoff = std::min<std::chrono::milliseconds>(a.backoff * 2, 4s);
          ++it;
        }
      }
    }
  }

  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(Uniform(rng_, 0, static_cast<int>(v.size()) - 1))];
  }

  void Inject() {
    std::vector<std::string> kinds(kinds_.begin(), kinds_.end());
    auto kind = Pick(kinds);
    if (kind == "kill") {
      std::vector<std::string> up;
      for (const auto& st : kStages) {
        if (!active_.count(st)) up.push_back(st);
      }
      if (up.empty()) return;
      auto stage = Pick(up);
      auto pause = Between(0.2, 2.0);
      s_.Dev().Kill(stage, SIGKILL);
      ++counts_["kill"];
      ++kills_[stage];
      Say(clock_, fmt::format("fault: SIGKILL {} (started again in {:.1f} s)", stage, pause.count() / 1000.0));
      Restart(stage, "after SIGKILL");
      active_[stage].until = Steady::now() + pause;
    } else if (kind == "broker") {
      if (active_.count("broker")) return;
      auto down_for = Between(1.0, 5.0);
      s_.Dev().Kill("broker", SIGUSR1);
      ++counts_["broker"];
      Say(clock_, fmt::format("fault: broker's brokers down for {:.1f} s (SIGUSR1)", down_for.count() / 1000.0));
      active_["broker"] = {Steady::now() + down_for, [this] {
                             s_.Dev().Kill("broker", SIGUSR2);
                             Say(clock_, "  broker's brokers up (SIGUSR2)");
                           },
                           0};
    } else if (kind == "redis" || kind == "postgres") {
      if (active_.count(kind)) return;
      auto pause = Between(0.2, 1.5);
      s_.Dev().Kill(kind, SIGTERM);
      ++counts_[kind];
      Say(clock_, fmt::format("fault: {} restart (SIGTERM, started again after {:.1f} s)", kind, pause.count() / 1000.0));
      Restart(kind, "restart");
      active_[kind].until = Steady::now() + pause;
    } else if (kind == "provider") {
      std::vector<std::string> free;
      for (const auto& r : kProviders) {
        if (!active_.count("provider-" + r)) free.push_back(r);
      }
      if (free.empty()) return;
      auto role = Pick(free);
      auto lasting = Between(2.0, 5.0);
      json fault = {{"path", "/"}};
      std::string what;
      if (Uniform(rng_, 0, 1) == 0) {
        static const std::vector<int> kErrors = {500, 503, 429};
        int error = Pick(kErrors);
        double rate = std::round(UniformReal(rng_, 0.3, 1.0) * 100) / 100;
        fault["error"] = error;
        fault["error_rate"] = rate;
        if (error == 429) fault["retry_after_s"] = 1;
        what = fmt::format("error storm on {}: HTTP {} at rate {:.2f}", role, error, rate);
        ++counts_["provider-errors"];
      } else {
        // Well below the delivery client's timeout (HERALD_HTTP_TIMEOUT, 5 s): a slow answer
        // is still an answer, never an ambiguous send.
        int latency = Uniform(rng_, 200, 1500);
        fault["latency_ms"] = latency;
        what = fmt::format("latency spike on {}: {} ms", role, latency);
        ++counts_["provider-latency"];
      }
      s_.SetFault(role, fault);
      Say(clock_, fmt::format("fault: {} for {:.1f} s", what, lasting.count() / 1000.0));
      active_["provider-" + role] = {Steady::now() + lasting, [this, role] {
                                       s_.ClearFaults(role);
                                       Say(clock_, "  " + role + " provider healthy again");
                                     },
                                     0};
    }
  }

  herald::test::TestStack& s_;
  const RunClock& clock_;
  std::mt19937_64 rng_;
  std::set<std::string> kinds_;
  std::map<std::string, Active> active_;  // target -> how to undo its fault
  std::map<std::string, int> counts_;
  std::map<std::string, int> kills_;
  int exited_on_own_ = 0;
};

// ---- accounting ---------------------------------------------------------------------------

struct Accounting {
  std::size_t expected = 0;
  std::size_t delivered_once = 0;
  std::size_t duplicates = 0;
  std::size_t failed_with_reason = 0;
  std::size_t dead_lettered = 0;
  std::size_t invalid_dead_lettered = 0;
  std::size_t lost = 0;
  std::size_t pending = 0;  // part of `lost`: still on its way (non-final ledger status)
  std::size_t without_reason = 0;
  std::size_t unexpected_sends = 0;
  std::size_t sms_collapsed = 0;
  std::size_t ledger_disagrees = 0;  // delivered once, but the ledger does not say sent
  std::vector<std::string> offenders;
  std::map<std::string, std::size_t> reasons;

  bool Clean() const { return lost == 0 && duplicates == 0 && without_reason == 0 && unexpected_sends == 0; }
};

// A string field of a JSON object from outside (a provider's log, a dead letter), or
// `fallback` when it is missing or not a string.
std::string Str(const json& object, const char* key, const std::string& fallback = "") {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// "failed: retries exhausted: sms answered 503: ..." -> "failed: retries exhausted".
std::string ReasonClass(const std::string& head, const std::string& reason) {
  auto cut = reason.find(": ");
  auto r = reason.substr(0, cut == std::string::npos ? std::min<std::size_t>(reason.size(), 60) : cut);
  return head + ": " + r;
}

class Auditor {
 public:
  Auditor(const Workload& w, herald::test::TestStack& s) : w_(w), s_(s) {}

  Accounting Count() {
    Accounting a;
    auto offend = [&](const std::string& what) {
      if (a.offenders.size() < 200) a.offenders.push_back(what);
    };
    std::map<std::string, int> sends;  // notification id -> successful sends seen by a provider
    auto note_send = [&](const std::string& id) {
      if (!w_.key_of_notification.count(id)) {
        ++a.unexpected_sends;
        offend("unexpected send " + id);
      }
      ++sends[id];
    };
    // A request body as the provider received it (null when it is not a JSON object).
    auto body_of = [](const json& request) {
      auto b = json::parse(Str(request, "body"), nullptr, false);
      return b.is_object() ? b : json();
    };
    auto answered_2xx = [](const json& request) { return request.contains("status") && request["status"].is_number_integer() && request["status"].get<int>() / 100 == 2; };
    for (const auto& m : herald::dev::ReadMailDir(s_.Env("HERALD_SMTP_DIR"))) {
      auto at = m.message_id.find('@');
      note_send(at != std::string::npos && m.message_id.size() > 2 ? m.message_id.substr(1, at - 1) : "mail " + m.file);
    }
    std::map<std::string, int> sms_keys;
    for (const auto& r : s_.FakeRequests("sms", "/v1/messages")) {
      if (!answered_2xx(r)) continue;
      auto b = body_of(r);
      ++sms_keys[Str(b, "idempotency_key", "sms without an idempotency key")];
    }
    // The SMS provider deduplicates on the idempotency key: a repeated request is answered
    // with the first message's id and not sent again.
    for (const auto& [key, n] : sms_keys) {
      a.sms_collapsed += static_cast<std::size_t>(n - 1);
      note_send(key);
    }
    for (const auto& r : s_.FakeRequests("telegram", "/bot")) {
      if (!answered_2xx(r)) continue;
      auto b = body_of(r);
      auto chat = b.is_object() ? b.value("chat_id", json()) : json();
      auto text = chat.is_string() ? chat.get<std::string>() : chat.dump();
      auto user = w_.user_of_chat.find(text);
      note_send(user == w_.user_of_chat.end()
                    ? "telegram chat " + text
                    : herald::NotificationId(w_.event_of_user.at(user->second), user->second, "telegram"));
    }
    for (const auto& r : s_.FakeRequests("push", "/v1/send")) {
      if (!answered_2xx(r)) continue;
      auto b = body_of(r);
      auto data = b.is_object() ? b.value("data", json::object()) : json::object();
      note_send(Str(data, "notification_id", "push without a notification id"));
    }

    // The ledger: one row per (notification, channel).
    struct Row {
      std::string channel, status, reason;
    };
    std::map<std::string, std::vector<Row>> rows;  // Key(event, user) -> rows
    {
      pqxx::connection conn(s_.Env("HERALD_PG_URL"));
      pqxx::work tx(conn);
      for (const auto& r : tx.exec_params(
               "SELECT event_id, user_id, channel, status, coalesce(reason, '') FROM deliveries WHERE event_id LIKE $1",
               w_.id_prefix + "%")) {
        rows[Key(r[0].as<std::string>(), r[1].as<std::string>())].push_back(
            {r[2].as<std::string>(), r[3].as<std::string>(), r[4].as<std::string>()});
      }
    }

    // The dead-letter topic: from plan (the event), enrich (a request) or delivery (a delivery).
    struct DeadLetter {
      std::string where;  // "stage/error_class"
      std::string reason;
    };
    std::map<std::string, DeadLetter> dead;  // Key(event, user) or an invalid event's marker
    for (const auto& r : herald::test::ReadTopicToEnd(s_.Env("HERALD_BROKERS"), herald::topics::Catalog().Dlq(), 60s)) {
      auto d = json::parse(r.value, nullptr, false);
      if (!d.is_object()) continue;
      const DeadLetter letter{Str(d, "stage", "?") + "/" + Str(d, "error_class", "?"), Str(d, "reason")};
      auto original = Str(d, "original");
      for (const auto& bad : w_.invalid) {
        if (original.find(bad.marker) != std::string::npos) dead[bad.marker] = letter;
      }
      auto o = json::parse(original, nullptr, false);
      if (!o.is_object()) continue;
      const json& req = o.contains("request") && o["request"].is_object() ? o["request"] : o;
      auto event_id = Str(req, "event_id");
      if (event_id.rfind(w_.id_prefix, 0) != 0) continue;
      if (req.contains("user_id") && req["user_id"].is_string()) {
        dead[Key(event_id, req["user_id"].get<std::string>())] = letter;
      } else {
        for (const auto& e : w_.events) {
          if (e.event_id != event_id) continue;
          for (const auto& u : e.users) dead[Key(event_id, u)] = letter;
        }
      }
    }

    for (const auto& e : w_.events) {
      for (const auto& u : e.users) {
        ++a.expected;
        int n = 0;
        std::string ids;
        for (const auto& c : kChannels) {
          auto id = herald::NotificationId(e.event_id, u, c);
          if (auto it = sends.find(id); it != sends.end()) {
            n += it->second;
            ids += fmt::format(" {}x{} {}", c, it->second, id);
          }
        }
        const auto key = Key(e.event_id, u);
        const auto& rs = rows[key];
        if (n == 1) {
          ++a.delivered_once;
          bool ledger_sent = std::any_of(rs.begin(), rs.end(), [](const Row& r) { return r.status == "sent"; });
          if (!ledger_sent) ++a.ledger_disagrees;
          continue;
        }
        if (n > 1) {
          ++a.duplicates;
          offend("duplicate " + key + ":" + ids);
          continue;
        }
        if (auto it = dead.find(key); it != dead.end()) {
          if (it->second.reason.empty()) {
            ++a.without_reason;
            offend("dead-lettered without a reason " + key);
          } else {
            ++a.dead_lettered;
            ++a.reasons[ReasonClass("dead letter " + it->second.where, it->second.reason)];
          }
          continue;
        }
        bool pending = false, sent = false;
        const Row* failure = nullptr;
        for (const auto& r : rs) {
          if (r.status == "accepted" || r.status == "scheduled" || r.status == "retried") pending = true;
          if (r.status == "sent") sent = true;
          if (r.status == "failed" || r.status == "suppressed" || r.status == "expired" || r.status == "cancelled") failure = &r;
        }
        if (failure && !pending && !sent) {
          if (failure->reason.empty()) {
            ++a.without_reason;
            offend(failure->status + " without a reason " + key);
          } else {
            ++a.failed_with_reason;
            ++a.reasons[ReasonClass(failure->status, failure->reason)];
          }
          continue;
        }
        ++a.lost;
        if (pending) ++a.pending;
        std::string states;
        for (const auto& r : rs) states += " " + r.channel + "=" + r.status;
        offend("lost " + key + (states.empty() ? " (no ledger row)" : " (ledger:" + states + ")"));
      }
    }
    for (const auto& bad : w_.invalid) {
      ++a.expected;
      auto it = dead.find(bad.marker);
      if (it == dead.end()) {
        ++a.lost;
        offend("lost invalid event " + bad.marker);
      } else if (it->second.reason.empty()) {
        ++a.without_reason;
        offend("invalid event dead-lettered without a reason " + bad.marker);
      } else {
        ++a.dead_lettered;
        ++a.invalid_dead_lettered;
        ++a.reasons[ReasonClass("dead letter " + it->second.where, "invalid event")];
      }
    }
    return a;
  }

 private:
  const Workload& w_;
  herald::test::TestStack& s_;
};

// True when every consumer group has committed everything its topics hold: nothing is in
// flight between stages (records parked in Redis are not; the ledger tells about those).
class Quiet {
 public:
  explicit Quiet(const std::string& brokers) {
    for (const auto& [group, topics] : herald::topics::Catalog().ConsumerGroups()) {
      groups_.push_back({group, topics, std::make_unique<herald::kafka::LagMonitor>(brokers, herald::kafka::Settings{}, group)});
    }
  }
  /// Total lag, with the groups that have some in `*detail`.
  std::int64_t Lag(std::string* detail = nullptr) {
    std::int64_t total = 0;
    for (auto& g : groups_) {
      std::int64_t lag = 0;
      for (const auto& t : g.topics) lag += g.monitor->Lag(t);
      if (lag > 0 && detail) *detail += fmt::format(" {}={}", g.name, lag);
      total += lag;
    }
    return total;
  }

 private:
  struct Group {
    std::string name;
    std::vector<std::string> topics;
    std::unique_ptr<herald::kafka::LagMonitor> monitor;
  };
  std::vector<Group> groups_;
};

void PrintTable(const Options& o, const Accounting& a, const FaultInjector& faults, const Workload& w,
                double fault_s, double settle_s, double total_s, std::size_t publish_repeats) {
  auto row = [](const std::string& label, std::size_t n, const std::string& note = "") {
    std::cout << fmt::format("  {:<42} {:>7}{}\n", label, n, note.empty() ? "" : "   " + note);
  };
  std::cout << "\n== Chaos accounting: seed " << o.seed << ", " << o.events << " events, " << o.duration_s
            << " s of faults (" << o.faults << ") ==\n";
  row("expected", a.expected,
      fmt::format("{} notifications of {} events + {} invalid events", w.Notifications(), w.events.size(), w.invalid.size()));
  row("delivered exactly once", a.delivered_once);
  row("delivered more than once (duplicates)", a.duplicates);
  row("failed or suppressed with a reason", a.failed_with_reason);
  row("dead-lettered with a reason", a.dead_lettered, fmt::format("{} of them the invalid events", a.invalid_dead_lettered));
  row("lost (no outcome at all)", a.lost, a.pending ? fmt::format("{} still pending in the ledger", a.pending) : "");
  row("outcome without a reason", a.without_reason);
  row("sends to no expected notification", a.unexpected_sends);
  std::cout << "  faults injected: " << faults.Summary() << "\n";
  std::cout << "  stages that exited on their own: " << faults.ExitedOnTheirOwn() << "\n";
  std::cout << "  SMS requests repeated and collapsed by the provider's idempotency key: " << a.sms_collapsed << "\n";
  std::cout << "  delivered once but not 'sent' in the ledger: " << a.ledger_disagrees << "\n";
  std::cout << "  event publications repeated after a failed attempt: " << publish_repeats << "\n";
  if (!a.reasons.empty()) {
    std::cout << "  outcomes other than a delivery, by reason:\n";
    std::vector<std::pair<std::size_t, std::string>> by_count;
    for (const auto& [r, n] : a.reasons) by_count.push_back({n, r});
    std::sort(by_count.rbegin(), by_count.rend());
    for (const auto& [n, r] : by_count) std::cout << fmt::format("    {:>6}  {}\n", n, r);
  }
  std::cout << fmt::format("  wall time: faults {:.1f} s, settling {:.1f} s, total {:.1f} s\n", fault_s, settle_s, total_s);
  std::cout << (a.Clean() ? "RESULT: PASS (nothing lost, nothing duplicated, every outcome has a reason)\n"
                          : "RESULT: FAIL\n");
  if (!a.Clean()) {
    std::cout << "  offending notifications (first 20):\n";
    for (std::size_t i = 0; i < a.offenders.size() && i < 20; ++i) std::cout << "    " << a.offenders[i] << "\n";
  }
  std::cout << std::flush;
}

int Main(const Options& o) {
  std::set<std::string> kinds;
  {
    std::stringstream in(o.faults);
    std::string k;
    while (std::getline(in, k, ',')) {
      if (k.empty()) continue;
      if (std::find(kFaultKinds.begin(), kFaultKinds.end(), k) == kFaultKinds.end()) {
        std::cerr << "herald_chaos: unknown fault kind '" << k << "' (kill, broker, redis, postgres, provider)\n";
        return 2;
      }
      kinds.insert(k);
    }
  }
  RunClock clock;
  Say(clock, fmt::format("starting the dev stack (seed {}, {} events, {} s of faults: {})", o.seed, o.events, o.duration_s,
                         kinds.empty() ? "none" : o.faults));
  const std::uint64_t fake_users = 1'000'000;
  // Provider rates high enough that the run is bounded by the pipeline, not by rate limits.
  herald::test::TestStack stack(fake_users, {{"HERALD_SMTP_RATE", "5000"},
                                             {"HERALD_PROVIDER_RATE", "5000"},
                                             {"HERALD_PROVIDER_BURST", "500"}});
  // Followers of one series from the fake ugc API, for one fan-out event.
  const std::string followers_of = fmt::format("series-big-{}", std::clamp(o.events / 20, 3, 40));
  std::vector<std::string> followers;
  {
    herald::http::Client ugc;
    auto r = ugc.Get(stack.Env("HERALD_UGC_URL") + "/api/v1/content/" + followers_of + "/followers?limit=1000");
    // Parsed into a named document first: a range-for over a member of the temporary would
    // outlive it.
    const auto page = json::parse(r.body);
    for (const auto& id : page.at("user_ids")) followers.push_back(id.get<std::string>());
  }
  auto workload = MakeWorkload(o, fake_users, followers, followers_of);
  Say(clock, fmt::format("stack up; publishing {} events ({} notifications) and {} invalid events over {:.0f} s",
                         workload.events.size(), workload.Notifications(), workload.invalid.size(), o.duration_s * 0.7));

  const auto fault_span = std::chrono::milliseconds(static_cast<long>(o.duration_s * 1000));
  Publisher publisher(workload, stack, clock, std::chrono::milliseconds(static_cast<long>(o.duration_s * 700)));
  FaultInjector faults(stack, clock, o.seed, kinds);
  auto fault_start = Steady::now();
  publisher.Start();
  faults.RunFor(fault_span);
  faults.Heal();
  double fault_s = std::chrono::duration<double>(Steady::now() - fault_start).count();
  Say(clock, "fault phase over: faults cleared, every process running; waiting for the last events to be published");
  publisher.Join();
  if (!publisher.Failures().empty()) {
    std::cerr << "herald_chaos: " << publisher.Failures().size() << " event(s) could not be published; first: "
              << publisher.Failures().front() << "\n";
    return 2;
  }

  // Settle: wait until nothing is in flight, move the stages' clock past every local-time
  // window and quiet hours so the parked notifications are released, then wait until every
  // notification has an outcome and nothing is in flight again.
  auto settle_start = Steady::now();
  auto settle_deadline = settle_start + std::chrono::milliseconds(static_cast<long>(o.settle_s * 1000));
  Quiet quiet(stack.Env("HERALD_BROKERS"));
  Auditor auditor(workload, stack);
  auto lag_now = [&](std::string* detail) -> std::int64_t {
    try {
      return quiet.Lag(detail);
    } catch (const std::exception& e) {
      if (detail) *detail = e.what();
      return -1;
    }
  };
  auto last_report = Steady::now();
  auto wait_quiet = [&](const std::function<bool()>& also, const char* what) {
    return herald::test::WaitUntil(
        [&] {
          faults.Supervise();
          std::string detail;
          auto lag = lag_now(&detail);
          bool done = lag == 0 && also();
          if (!done && Steady::now() - last_report > 10s) {
            last_report = Steady::now();
            Say(clock, fmt::format("  waiting until {}: lag {}{}", what, lag, detail));
          }
          return done;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(std::max(settle_deadline - Steady::now(), Steady::duration(0))),
        1s);
  };
  bool first_quiet = wait_quiet([] { return true; }, "nothing is in flight");
  Say(clock, first_quiet ? "nothing in flight; moving the stages' clock on by 20 h to release parked notifications"
                         : "still busy at the settling deadline; moving the clock on anyway");
  stack.AdvanceClock(std::chrono::hours(20));
  std::optional<Accounting> result;
  bool settled = wait_quiet(
      [&] {
        try {
          result = auditor.Count();
        } catch (const std::exception& e) {
          Say(clock, std::string("  accounting failed, trying again: ") + e.what());
          return false;
        }
        return result->lost == 0;
      },
      "every notification has an outcome");
  // One more count after the pipeline went quiet, so late arrivals are in.
  result = auditor.Count();
  double settle_s = std::chrono::duration<double>(Steady::now() - settle_start).count();
  if (!settled) Say(clock, "the pipeline did not settle within --settle; counting what is there");
  PrintTable(o, *result, faults, workload, fault_s, settle_s, clock.Elapsed(), publisher.Repeats());
  return result->Clean() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Chaos run: a workload through the dev stack under faults, then an exact accounting of every notification"};
  Options o;
  app.add_option("--events", o.events, "Events to publish (each fans out to several recipients)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--duration", o.duration_s, "Seconds of fault injection (events are published over the first 70 %)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86'400.0));
  app.add_option("--seed", o.seed, "Seed of the workload and of the faults")->capture_default_str();
  app.add_option("--faults", o.faults, "Fault kinds, comma-separated: kill,broker,redis,postgres,provider (empty: none)")
      ->capture_default_str();
  app.add_option("--settle", o.settle_s, "Seconds to wait for every outcome after the faults")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86'400.0));
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  // The run's own Kafka clients complain loudly while the brokers are down; only the
  // program's report goes to the output (the stages' logs are in the stack's state dir).
  herald::ConfigureLogging("critical", "text");
  try {
    return Main(o);
  } catch (const std::exception& e) {
    std::cerr << "herald_chaos: " << e.what() << "\n";
    return 2;
  }
}
