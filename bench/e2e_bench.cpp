// End-to-end benchmark: the whole pipeline on the embedded stack (broker, PostgreSQL, Redis,
// SMTP sink, fake upstreams and providers, every stage as a process) sends a low-priority
// campaign to every synthetic user while a steady stream of high-priority password resets
// flows. Prints recipients completed per second, CPU seconds per 1,000 recipients and peak
// RSS of every process, and high-priority latency (event created → provider answered) idle
// and under the campaign. Then, on the same broker, a raw librdkafka consume→produce relay
// moves the same number of records over the same hops with the same record sizes, and
// Herald's throughput is reported as a share of it.
//
//   build/bench/herald_bench_e2e [--recipients 1000000] [--high-rate 20] [--herald PATH]

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/common/time.hpp"
#include "herald/dev/stack.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/consumer.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/model/records.hpp"
#include "herald/topics/catalog.hpp"
#include "bench_stack.hpp"

using namespace herald;
using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

namespace {

double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// --- processes: CPU time of a process and its descendants, peak RSS -------------------

struct ProcStat {
  pid_t ppid = 0;
  double cpu_s = 0;  // utime + stime
};

std::map<pid_t, ProcStat> ReadProcs() {
  std::map<pid_t, ProcStat> out;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    std::string skip;
    for (int i = 0; i < 9; ++i) rest >> skip;  // pgrp .. cmajflt
    unsigned long utime = 0, stime = 0;
    rest >> utime >> stime;
    out[static_cast<pid_t>(std::stol(name))] = {static_cast<pid_t>(ppid), static_cast<double>(utime + stime) / tick};
  }
  return out;
}

double TreeCpu(const std::map<pid_t, ProcStat>& procs, pid_t root) {
  if (root <= 0) return 0;
  double total = 0;
  std::vector<pid_t> unvisited{root};
  while (!unvisited.empty()) {
    pid_t p = unvisited.back();
    unvisited.pop_back();
    if (auto it = procs.find(p); it != procs.end()) total += it->second.cpu_s;
    for (const auto& [pid, st] : procs) {
      if (st.ppid == p) unvisited.push_back(pid);
    }
  }
  return total;
}

// This process alone (the stack's processes are its children).
double SelfCpu() {
  auto procs = ReadProcs();
  auto it = procs.find(::getpid());
  return it == procs.end() ? 0 : it->second.cpu_s;
}

double PeakRssMiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// --- what the status topic tells ------------------------------------------------------

struct Progress {
  std::mutex mu;
  std::string campaign_id;
  std::vector<std::uint8_t> state;  // per user index: 0 open, 1 done, 2 failed (a fallback may follow)
  std::size_t done = 0;
  std::map<std::string, std::size_t> by_status;
  Steady::time_point last_done{};
  std::vector<std::uint32_t> done_per_second;  // since the launch
  Steady::time_point launched{};
  std::map<std::string, std::vector<double>> high_ms;  // by phase
  std::size_t status_bytes = 0, status_records = 0;
};

void OnStatus(Progress& p, const model::StatusRecord& s, std::size_t bytes) {
  std::lock_guard lock(p.mu);
  p.status_bytes += bytes;
  ++p.status_records;
  if (s.event_id.rfind("bench-high-", 0) == 0) {
    if (s.status == model::Status::kSent) {
      auto phase = s.event_id.substr(11, s.event_id.find('-', 11) - 11);
      p.high_ms[phase].push_back(std::chrono::duration<double, std::milli>(s.at - s.created).count());
    }
    return;
  }
  if (p.campaign_id.empty() || !s.campaign_id || *s.campaign_id != p.campaign_id) return;
  if (s.user_id.rfind("u-", 0) != 0) return;
  std::size_t user = std::stoul(s.user_id.substr(2));
  if (user >= p.state.size()) return;
  auto& st = p.state[user];
  bool was_done = st != 0;
  switch (s.status) {
    case model::Status::kSent:
    case model::Status::kSuppressed:
    case model::Status::kScheduled:
    case model::Status::kExpired:
    case model::Status::kCancelled:
      st = 1;
      break;
    case model::Status::kFailed:
      if (st == 0) st = 2;
      break;
    case model::Status::kFallback:
      if (st == 2) st = 0;  // the failure moved on to the next channel
      break;
    default:
      return;
  }
  ++p.by_status[std::string(model::StatusName(s.status))];
  if (was_done == (st != 0)) return;
  if (st == 0) {
    --p.done;
    return;
  }
  ++p.done;
  auto now = Steady::now();
  p.last_done = now;
  auto second = static_cast<std::size_t>(Seconds(now - p.launched));
  if (p.done_per_second.size() <= second) p.done_per_second.resize(second + 1);
  ++p.done_per_second[second];
}

// --- raw librdkafka relay ------------------------------------------------------------------

struct RdConf {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  void Set(const char* k, const std::string& v) {
    char err[256];
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(std::string("librdkafka ") + k + ": " + err);
    }
  }
  // The handle takes the configuration over; on failure it is freed here.
  rd_kafka_t* Create(rd_kafka_type_t type) {
    char err[256];
    auto* rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(err);
    }
    return rk;
  }
};

rd_kafka_t* NewProducer(const std::string& brokers) {
  RdConf c;
  c.Set("bootstrap.servers", brokers);
  c.Set("linger.ms", "5");
  c.Set("queue.buffering.max.messages", "1000000");
  return c.Create(RD_KAFKA_PRODUCER);
}

rd_kafka_t* NewConsumer(const std::string& brokers, const std::string& group, const std::string& topic) {
  RdConf c;
  c.Set("bootstrap.servers", brokers);
  c.Set("group.id", group);
  c.Set("auto.offset.reset", "earliest");
  c.Set("fetch.wait.max.ms", "20");
  auto* rk = c.Create(RD_KAFKA_CONSUMER);
  rd_kafka_poll_set_consumer(rk);
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  return rk;
}

void Produce(rd_kafka_t* rk, const std::string& topic, const std::string& key, const std::string& value) {
  while (true) {
    auto err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) throw std::runtime_error(rd_kafka_err2str(err));
    rd_kafka_poll(rk, 10);
  }
}

struct RelayResult {
  double seconds = 0;
  std::size_t records = 0;
  double cpu_s = 0;
};

// Source → hop 1 → ... → sink, one consumer and one producer per hop, each on its own thread.
// sizes[0] is the source's record size, sizes[i] what hop i writes.
RelayResult Relay(const std::string& brokers, std::size_t records, const std::vector<std::size_t>& sizes,
                  std::size_t window) {
  const std::string run = RandomUuid().substr(0, 8);
  std::vector<std::string> topics;
  for (std::size_t i = 0; i < sizes.size(); ++i) topics.push_back("bench.relay." + run + "." + std::to_string(i));
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> sunk{0};
  std::atomic<std::size_t> ready{0};  // consumers with their partitions assigned
  // Polls until the group has given this consumer its partitions (the clock starts after).
  auto join = [&](rd_kafka_t* consumer) {
    while (!stop) {
      if (auto* m = rd_kafka_consumer_poll(consumer, 50)) rd_kafka_message_destroy(m);
      rd_kafka_topic_partition_list_t* assigned = nullptr;
      bool any = rd_kafka_assignment(consumer, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR && assigned->cnt > 0;
      if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
      if (any) break;
    }
    ++ready;
  };
  // The source's metadata requests create the topics (the broker creates topics on demand).
  auto* producer = NewProducer(brokers);
  for (const auto& t : topics) {
    const rd_kafka_metadata_t* md = nullptr;
    auto* topic = rd_kafka_topic_new(producer, t.c_str(), nullptr);
    rd_kafka_metadata(producer, 0, topic, &md, 5000);
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(topic);
  }
  std::vector<std::thread> threads;
  for (std::size_t hop = 1; hop < sizes.size(); ++hop) {
    threads.emplace_back([&, hop] {
      auto* consumer = NewConsumer(brokers, "bench-relay-" + run + "-" + std::to_string(hop), topics[hop - 1]);
      auto* producer = NewProducer(brokers);
      std::string value(sizes[hop], 'x');
      join(consumer);
      while (!stop) {
        auto* m = rd_kafka_consumer_poll(consumer, 100);
        if (!m) continue;
        if (!m->err) {
          std::string key(static_cast<const char*>(m->key), m->key_len);
          Produce(producer, topics[hop], key, value);
        }
        rd_kafka_message_destroy(m);
        rd_kafka_poll(producer, 0);
      }
      rd_kafka_flush(producer, 5000);
      rd_kafka_destroy(producer);
      rd_kafka_consumer_close(consumer);
      rd_kafka_destroy(consumer);
    });
  }
  threads.emplace_back([&] {
    auto* consumer = NewConsumer(brokers, "bench-relay-" + run + "-sink", topics.back());
    join(consumer);
    while (!stop) {
      auto* m = rd_kafka_consumer_poll(consumer, 100);
      if (!m) continue;
      if (!m->err) ++sunk;
      rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
  });
  // Every hop has joined its group and the source's connection is up before the clock starts.
  while (ready.load() < sizes.size()) std::this_thread::sleep_for(10ms);
  const double cpu0 = SelfCpu();
  auto t0 = Steady::now();
  {
    std::string value(sizes[0], 'x');
    for (std::size_t i = 0; i < records; ++i) {
      // At most `window` records between the source and the sink, as the plan stage paces a
      // fan-out by downstream lag: the embedded broker keeps a bounded log per partition.
      while (i >= sunk.load() + window) {
        rd_kafka_poll(producer, 1);
      }
      Produce(producer, topics[0], "u-" + std::to_string(i), value);
      if (i % 1000 == 0) rd_kafka_poll(producer, 0);
    }
    rd_kafka_flush(producer, 60000);
    rd_kafka_destroy(producer);
  }
  auto deadline = Steady::now() + 30min;
  auto last = sunk.load();
  auto last_change = Steady::now();
  while (sunk.load() < records && Steady::now() < deadline && Steady::now() - last_change < 60s) {
    std::this_thread::sleep_for(20ms);
    if (sunk.load() != last) {
      last = sunk.load();
      last_change = Steady::now();
    }
  }
  RelayResult r;
  r.seconds = Seconds(Steady::now() - t0);
  r.records = sunk.load();
  stop = true;
  for (auto& t : threads) t.join();
  r.cpu_s = SelfCpu() - cpu0;
  return r;
}

// Mean record size of the first `n` records of a topic (0 when empty).
std::size_t MeanSize(const std::string& brokers, const std::string& topic, std::size_t n) {
  auto* consumer = NewConsumer(brokers, "bench-size-" + RandomUuid().substr(0, 8), topic);
  std::size_t seen = 0, bytes = 0;
  auto deadline = Steady::now() + 15s;
  while (seen < n && Steady::now() < deadline) {
    auto* m = rd_kafka_consumer_poll(consumer, 100);
    if (!m) continue;
    if (!m->err) {
      ++seen;
      bytes += m->len + m->key_len;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return seen == 0 ? 0 : bytes / seen;
}

// The sum of a stage's herald_consumer_lag series (its own partitions), from its /metrics.
double ConsumerLag(http::Client& client, int port) {
  double total = 0;
  try {
    auto r = client.Get("http://127.0.0.1:" + std::to_string(port) + "/metrics");
    std::istringstream in(r.body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("herald_consumer_lag{", 0) != 0) continue;
      total += std::stod(line.substr(line.rfind(' ') + 1));
    }
  } catch (const std::exception&) {
  }
  return total;
}

std::string PasswordReset(const std::string& event_id, std::size_t user) {
  nlohmann::json e = {{"event_id", event_id},
                      {"event_type", "user.password_reset"},
                      {"created_dt", FormatRfc3339(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()))},
                      {"payload",
                       {{"user", {"u-" + std::to_string(user)}},
                        {"data", {{"reset_url", "https://cinema.example/r/" + event_id}}}}}};
  return e.dump();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Herald end-to-end benchmark"};
  std::size_t recipients = 1'000'000, idle_high = 200;
  double rate = 20;
  std::string binary = HERALD_BINARY;
  int stall_s = 180;
  bool skip_relay = false;
  app.add_option("--recipients", recipients, "Campaign recipients (synthetic users u-1..u-N)")->capture_default_str();
  app.add_option("--high-rate", rate, "High-priority events per second, idle and during the campaign")->capture_default_str();
  app.add_option("--idle-high", idle_high, "High-priority events measured before the campaign")->capture_default_str();
  app.add_option("--stall", stall_s, "Give up after this many seconds without progress")->capture_default_str();
  app.add_flag("--skip-relay", skip_relay, "Do not run the raw relay baseline");
  app.add_option("--herald", binary, "herald executable that runs the stages")->capture_default_str();
  std::vector<std::string> extra_env;
  app.add_option("--env", extra_env, "Extra stage setting NAME=VALUE (repeatable), e.g. HERALD_SMTP_CONNECTIONS=1");
  CLI11_PARSE(app, argc, argv);
  ConfigureLogging("warn", "text");

  auto so = bench::StackIn("e2e", binary);
  const std::string state = so.state_dir;
  so.fake_users = recipients;
  // Providers' rate limits are not what is measured.
  so.stage_env = {{"HERALD_PROVIDER_RATE", "10000000"}, {"HERALD_PROVIDER_BURST", "1000000"}, {"HERALD_SMTP_RATE", "10000000"}};
  for (const auto& kv : extra_env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "--env %s: expected NAME=VALUE\n", kv.c_str());
      return 2;
    }
    so.stage_env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  dev::DevStack stack(so);
  stack.Up();
  const auto& env = stack.Env();
  const auto brokers = env.at("HERALD_BROKERS");
  const auto& catalog = topics::Catalog();
  std::fprintf(stderr, "stack up in %s\n", state.c_str());

  Progress progress;
  progress.state.assign(recipients + 1, 0);
  kafka::Producer::Options po;
  po.brokers = brokers;
  kafka::Producer producer(po);
  kafka::ConsumerLoop::Options co;
  co.brokers = brokers;
  co.group_id = "bench-status-" + RandomUuid().substr(0, 8);
  co.topics = {catalog.Status()};
  co.settings = {{"fetch.wait.max.ms", "20"}};
  kafka::ConsumerLoop statuses(co, producer);
  std::thread reader([&] {
    statuses.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext&) {
      for (const auto& m : batch) {
        try {
          OnStatus(progress, model::StatusFromJson(nlohmann::json::parse(m.Value())), m.Value().size());
        } catch (const std::exception&) {
        }
      }
    });
  });

  // High-priority password resets at `rate` per second, tagged with their phase.
  std::atomic<bool> high_running{false};
  std::atomic<std::size_t> high_sent{0};
  std::string phase;
  std::mutex phase_mu;
  auto high_stream = [&](std::size_t count, const std::string& tag) {
    auto interval = std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(1.0 / rate));
    auto next = Steady::now();
    for (std::size_t i = 0; count == 0 ? high_running.load() : i < count; ++i) {
      std::this_thread::sleep_until(next);  // pacing of the offered load
      next += interval;
      auto id = "bench-high-" + tag + "-" + std::to_string(i);
      std::size_t user = 1 + (i * 7919) % recipients;
      producer.Produce({catalog.Events("auth"), id, PasswordReset(id, user), {}}, nullptr);
      ++high_sent;
    }
  };
  auto wait_high = [&](const std::string& tag, std::size_t count, std::chrono::seconds timeout) {
    auto deadline = Steady::now() + timeout;
    while (Steady::now() < deadline) {
      {
        std::lock_guard lock(progress.mu);
        if (progress.high_ms[tag].size() >= count) return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };

  // Warm-up (connections, group joins, template caches), then the idle measurement. Not every
  // user can be reached for a password reset, so the phase waits for most of them.
  high_stream(20, "warm");
  wait_high("warm", 10, 120s);
  high_stream(idle_high, "idle");
  wait_high("idle", idle_high * 6 / 10, 60s);
  std::this_thread::sleep_for(2s);  // stragglers of the idle phase (retries) are not counted in the next

  // The campaign.
  std::vector<std::string> names = stack.Names();
  auto procs0 = ReadProcs();
  std::map<std::string, double> cpu0;
  for (const auto& n : names) cpu0[n] = TreeCpu(procs0, stack.Pid(n));
  const double bench_cpu0 = procs0[::getpid()].cpu_s;

  auto admin_spec = env.at("HERALD_ADMIN_TOKEN");
  auto w = admin_spec.find("write:");
  http::Client::Options ho;
  ho.bearer_token = admin_spec.substr(w + 6, admin_spec.find(',', w) - w - 6);
  ho.timeout = 30s;
  http::Client admin(ho);
  nlohmann::json campaign = {{"name", "Benchmark: new releases for everyone"},
                             {"event_type", "promo.new_releases"},
                             {"segment", nlohmann::json::object()},
                             {"content", {"movie-1", "movie-2", "movie-3"}},
                             {"deliver_window", {{"from", "00:00"}, {"to", "00:00"}}}};
  auto created = admin.Post(env.at("HERALD_ADMIN_URL") + "/v1/campaigns", campaign.dump());
  if (created.status != 201) {
    std::fprintf(stderr, "campaign create: %ld %s\n", created.status, created.body.c_str());
    return 1;
  }
  const std::string campaign_id = nlohmann::json::parse(created.body)["id"];
  {
    std::lock_guard lock(progress.mu);
    progress.campaign_id = campaign_id;
    progress.launched = Steady::now();
  }
  auto launched = admin.Post(env.at("HERALD_ADMIN_URL") + "/v1/campaigns/" + campaign_id + "/launch", "{}");
  if (launched.status / 100 != 2) {
    std::fprintf(stderr, "campaign launch: %ld %s\n", launched.status, launched.body.c_str());
    return 1;
  }
  const auto t0 = Steady::now();
  high_running = true;
  std::thread high([&] { high_stream(0, "load"); });

  http::Client metrics_client;
  std::size_t last_done = 0;
  auto last_change = Steady::now();
  auto last_print = Steady::now();
  std::map<std::string, double> peak_rss;
  while (true) {
    std::this_thread::sleep_for(200ms);
    std::size_t done;
    {
      std::lock_guard lock(progress.mu);
      done = progress.done;
    }
    if (done != last_done) {
      last_done = done;
      last_change = Steady::now();
    }
    for (const auto& n : names) {
      if (auto pid = stack.Pid(n); pid > 0) peak_rss[n] = std::max(peak_rss[n], PeakRssMiB(pid));
    }
    if (Steady::now() - last_print >= 10s) {
      last_print = Steady::now();
      std::string lags;
      for (const char* stage : {"plan", "enrich", "deliver-email", "deliver-push", "deliver-telegram", "deliver-sms", "ledger"}) {
        lags += fmt::format(" {} {:.0f}", stage, ConsumerLag(metrics_client, stack.Port(stage)));
      }
      std::fprintf(stderr, "%6.0f s: %zu of %zu recipients done; consumer lag:%s\n", Seconds(Steady::now() - t0), done,
                   recipients, lags.c_str());
    }
    if (done >= recipients) break;
    if (Steady::now() - last_change > std::chrono::seconds(stall_s)) {
      std::fprintf(stderr, "no progress for %d s; stopping\n", stall_s);
      break;
    }
  }
  high_running = false;
  high.join();
  auto procs1 = ReadProcs();
  wait_high("load", 1, 10s);

  std::size_t done;
  double elapsed;
  std::map<std::string, std::size_t> by_status;
  std::vector<double> idle_ms, load_ms;
  std::vector<std::uint32_t> per_second;
  double mean_status = 0;
  {
    std::lock_guard lock(progress.mu);
    done = progress.done;
    elapsed = Seconds(progress.last_done - t0);
    by_status = progress.by_status;
    idle_ms = progress.high_ms["idle"];
    load_ms = progress.high_ms["load"];
    per_second = progress.done_per_second;
    mean_status = progress.status_records ? static_cast<double>(progress.status_bytes) / progress.status_records : 0;
  }
  // The steadiest 60 s: the best sliding window's rate.
  double best_window = 0;
  const std::size_t window = std::min<std::size_t>(60, per_second.size());
  for (std::size_t i = 0; window > 0 && i + window <= per_second.size(); ++i) {
    double sum = 0;
    for (std::size_t k = i; k < i + window; ++k) sum += per_second[k];
    best_window = std::max(best_window, sum / static_cast<double>(window));
  }

  std::printf("Herald end to end: a %zu-recipient low-priority campaign with %.0f high-priority events/s\n\n", recipients, rate);
  std::printf("recipients completed: %zu of %zu in %.1f s: %.0f/s (best %zu s: %.0f/s)\n", done, recipients, elapsed,
              elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0, window, best_window);
  std::printf("statuses:");
  for (const auto& [s, n] : by_status) std::printf(" %s %zu", s.c_str(), n);
  std::printf("\n\n%-18s %10s %14s %14s\n", "process", "CPU s", "CPU s per 1k", "peak RSS MiB");
  double total_cpu = 0;
  for (const auto& n : names) {
    double cpu = TreeCpu(procs1, stack.Pid(n)) - cpu0[n];
    total_cpu += cpu;
    std::printf("%-18s %10.1f %14.3f %14.1f\n", n.c_str(), cpu, done ? cpu * 1000.0 / static_cast<double>(done) : 0.0,
                peak_rss[n]);
  }
  double bench_cpu = procs1.at(::getpid()).cpu_s - bench_cpu0;
  std::printf("%-18s %10.1f %14.3f %14s\n", "(this benchmark)", bench_cpu,
              done ? bench_cpu * 1000.0 / static_cast<double>(done) : 0.0, "");
  std::printf("%-18s %10.1f %14.3f\n", "all", total_cpu + bench_cpu,
              done ? (total_cpu + bench_cpu) * 1000.0 / static_cast<double>(done) : 0.0);

  std::printf("\n%-34s %8s %10s %10s %10s\n", "high priority, event -> sent, ms", "count", "p50", "p99", "max");
  auto row = [](const char* what, const std::vector<double>& v) {
    std::printf("%-34s %8zu %10.1f %10.1f %10.1f\n", what, v.size(), Pct(v, 0.5), Pct(v, 0.99),
                v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()));
  };
  row("idle", idle_ms);
  row("during the campaign", load_ms);

  int rc = done >= recipients && !idle_ms.empty() && !load_ms.empty() ? 0 : 1;
  // Stop the stages, then measure the raw relay on the same broker.
  for (const auto& n : names) {
    if (n != "broker" && n != "postgres" && n != "redis" && n != "smtp" && n != "fakes") stack.Kill(n, SIGTERM);
  }
  statuses.Stop();
  reader.join();
  if (!skip_relay && done > 0) {
    std::size_t req = MeanSize(brokers, catalog.Requests(), 2000);
    std::size_t del = MeanSize(brokers, catalog.Deliver("email", "low"), 2000);
    std::size_t stat = static_cast<std::size_t>(mean_status);
    std::fprintf(stderr, "relay: record sizes %zu → %zu → %zu bytes\n", req, del, stat);
    const auto broker_pid = stack.Pid("broker");
    const double broker_cpu0 = TreeCpu(ReadProcs(), broker_pid);
    auto relay = Relay(brokers, done, {req, del, stat}, 10'000);
    const double broker_cpu = TreeCpu(ReadProcs(), broker_pid) - broker_cpu0;
    double relay_rate = relay.seconds > 0 ? static_cast<double>(relay.records) / relay.seconds : 0;
    double herald_rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    std::printf("\nraw librdkafka relay, same broker: %zu records, source -> 2 relay hops -> sink, %zu/%zu/%zu bytes\n",
                relay.records, req, del, stat);
    std::printf("  %.1f s: %.0f records/s; CPU s per 1k: relay %.3f, broker %.3f\n", relay.seconds, relay_rate,
                relay.records ? relay.cpu_s * 1000.0 / static_cast<double>(relay.records) : 0.0,
                relay.records ? broker_cpu * 1000.0 / static_cast<double>(relay.records) : 0.0);
    std::printf("  Herald end to end = %.1f%% of the relay\n", relay_rate > 0 ? 100.0 * herald_rate / relay_rate : 0.0);
    if (relay.records < done) rc = 1;
  }
  stack.Down();
  std::error_code ec;
  std::filesystem::remove_all(state, ec);
  return rc;
}
