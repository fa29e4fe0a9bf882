#include "herald/stage/stage.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <unistd.h>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/topics/catalog.hpp"

namespace herald::stage {
namespace {

std::atomic<Stage*> g_stage{nullptr};

}  // namespace

void BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

kafka::Producer::Options ProducerOptions(const config::Config& config, const std::string& client_id) {
  kafka::Producer::Options o;
  o.brokers = config.brokers;
  o.settings = config.kafka;
  o.client_id = client_id;
  o.flush_timeout = config.drain_timeout;
  // A record not delivered within the drain timeout has failed for good (and is reported),
  // so a batch never gives up waiting while librdkafka may still deliver its output later:
  // that would make a retried batch produce everything twice.
  o.delivery_timeout = config.drain_timeout;
  return o;
}

Stage::Stage(const config::Config& config, StageSpec spec)
    : config_(config), spec_(std::move(spec)) {
  auto& m = metrics::Default();
  metrics::Labels l = {{"stage", spec_.name}};
  consumed_ = &m.GetCounter("herald_records_consumed_total", "Records consumed", l);
  dead_letters_ = &m.GetCounter("herald_dead_letters_total", "Records sent to the dead-letter topic", l);
  batch_seconds_ = &m.GetHistogram("herald_batch_processing_seconds",
                                   "Time to process one batch, including waiting for acks", l);
  processing_seconds_ = &m.GetHistogram(
      "herald_processing_seconds",
      "Per record: from its batch being handed to the stage until its output is acknowledged and its offset stored", l);
  produced_ = &m.GetCounter("herald_records_produced_total", "Records produced", l);
  failed_ = &m.GetCounter("herald_records_failed_total", "Records whose processing failed", l);
  retried_ = &m.GetCounter("herald_retries_total", "Records sent to a retry tier", l);
  retry_tiers_ = topics::Catalog().Family("retry");
  std::sort(retry_tiers_.begin(), retry_tiers_.end(), [](const auto* a, const auto* b) { return a->delay < b->delay; });
  producer_ = std::make_unique<kafka::Producer>(ProducerOptions(config_, "herald-" + spec_.name));
  if (!spec_.topics.empty() || !spec_.lanes.empty()) {
    kafka::ConsumerLoop::Options o;
    o.brokers = config_.brokers;
    o.group_id = config_.group_id.empty() ? "herald-" + spec_.name : config_.group_id;
    o.group_instance_id = config_.group_instance_id;
    o.topics = spec_.topics;
    o.lanes = spec_.lanes;
    o.settings = config_.kafka;
    o.batch_size = config_.batch_size;
    o.poll_timeout = config_.poll_timeout;
    o.ack_timeout = config_.drain_timeout + std::chrono::seconds(2);
    consumer_ = std::make_unique<kafka::ConsumerLoop>(o, *producer_);
  }
}

Stage::~Stage() {
  RequestStop();
  if (signal_thread_.joinable()) {
    // Wake the sigwait() thread so it can exit.
    pthread_kill(signal_thread_.native_handle(), SIGTERM);
    signal_thread_.join();
  }
  g_stage.store(nullptr);
}

void Stage::RequestStop() noexcept {
  stop_.store(true);
  if (consumer_) consumer_->Stop();
}

void Stage::Produce(kafka::BatchContext& ctx, const kafka::OutRecord& record) {
  ctx.Produce(record);
  produced_->Inc();
}

void Stage::DeadLetter(kafka::BatchContext& ctx, const kafka::Message& m,
                       const std::string& error_class, const std::string& reason) {
  model::DeadLetter d;
  d.stage = spec_.name;
  d.error_class = error_class;
  d.reason = reason;
  d.origin = {std::string(m.Topic()), m.Partition(), m.Offset()};
  if (auto k = m.Key()) d.key = std::string(*k);
  d.original = std::string(m.Value());
  d.at = NowMs();
  kafka::OutRecord rec;
  rec.topic = topics::Catalog().Dlq();
  rec.key = d.key.value_or("");
  rec.value = model::Dump(model::ToJson(d));
  rec.headers = {{"herald-error-class", error_class},
                 {"herald-origin", d.origin.topic + "/" + std::to_string(d.origin.partition) + "/" +
                                       std::to_string(d.origin.offset)}};
  Produce(ctx, rec);
  dead_letters_->Inc();
  failed_->Inc();
  Logger(spec_.name)->warn("dead-lettered {} [{}] @{}: {}: {}", m.Topic(), m.Partition(), m.Offset(),
                           error_class, reason);
}

int Stage::Attempt(const kafka::Message& m) {
  auto a = m.HeaderValue("herald-attempt");
  if (!a) return 0;
  try {
    return std::max(0, std::stoi(std::string(*a)));
  } catch (const std::exception&) {
    return 0;
  }
}

bool Stage::Retry(kafka::BatchContext& ctx, const kafka::Message& m, const std::string& reason,
                  bool consume_attempt) {
  const auto& tiers = retry_tiers_;
  int attempt = Attempt(m);
  int next = consume_attempt ? attempt + 1 : std::max(attempt, 1);
  if (next > static_cast<int>(tiers.size())) {
    DeadLetter(ctx, m, "exhausted", "gave up after " + std::to_string(attempt) + " attempts: " + reason);
    return false;
  }
  auto delay = next - 1 < static_cast<int>(config_.retry_delays.size())
                   ? config_.retry_delays[static_cast<std::size_t>(next - 1)]
                   : std::chrono::duration_cast<std::chrono::milliseconds>(tiers[static_cast<std::size_t>(next - 1)]->delay);
  kafka::OutRecord rec;
  rec.topic = tiers[static_cast<std::size_t>(next - 1)]->name;
  if (auto k = m.Key()) rec.key = std::string(*k);
  rec.value = std::string(m.Value());
  for (auto& h : m.Headers()) {
    if (h.key.rfind("herald-retry-", 0) == 0 || h.key == "herald-attempt" || h.key == "herald-origin-topic") continue;
    rec.headers.push_back(std::move(h));
  }
  auto origin = m.HeaderValue("herald-origin-topic");
  rec.headers.push_back({"herald-origin-topic", origin ? std::string(*origin) : std::string(m.Topic())});
  rec.headers.push_back({"herald-attempt", std::to_string(consume_attempt ? next : attempt)});
  rec.headers.push_back({"herald-retry-not-before", std::to_string((NowMs() + delay).time_since_epoch().count())});
  rec.headers.push_back({"herald-retry-reason", reason.substr(0, 500)});
  rec.headers.push_back({"herald-retry-stage", spec_.name});
  Produce(ctx, rec);
  retried_->Inc();
  return true;
}

void Stage::EmitStatus(kafka::BatchContext& ctx, const model::StatusRecord& status) {
  kafka::OutRecord rec;
  rec.topic = topics::Catalog().Status();
  rec.key = status.notification_id;
  rec.value = model::Dump(model::ToJson(status));
  Produce(ctx, rec);
}

void Stage::StartSignalWatcher() {
  g_stage.store(this);
  signal_thread_ = std::thread([this] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    if (stop_.load()) return;  // woken by the destructor
    Logger(spec_.name)->info("signal {}: draining in-flight work, committing and leaving", sig);
    RequestStop();
    // A stage that cannot drain in time exits anyway: uncommitted work is reprocessed by
    // the next owner, so exiting is safe; hanging past the grace period is not.
    auto deadline = std::chrono::steady_clock::now() + config_.drain_timeout +
                    std::chrono::seconds(1);
    while (std::chrono::steady_clock::now() < deadline) {
      if (g_stage.load() == nullptr) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Logger(spec_.name)->error("drain timed out; exiting");
    std::_Exit(2);
  });
}

int Stage::Run(const kafka::ConsumerLoop::BatchHandler& handler) {
  auto& log = *Logger(spec_.name);
  http::AddOpsRoutes(
      http_, metrics::Default(),
      [this]() -> std::string {
        if (auto fatal = kafka::FatalError(); !fatal.empty()) return "fatal Kafka error: " + fatal;
        auto last = consumer_->LastPollMs();
        auto now = NowMs().time_since_epoch().count();
        if (last != 0 && now - last > 60'000) {
          return "poll loop has made no progress for " + std::to_string((now - last) / 1000) + " s";
        }
        return {};
      },
      [this]() -> std::string {
        return consumer_->Ready() ? "" : "not yet assigned partitions by the group coordinator";
      });
  http_.Start(config_.http_host, config_.http_port);
  log.info("{} consuming {} topic(s) as group {}; ops on {}:{}", spec_.name, spec_.topics.size(),
           config_.group_id.empty() ? "herald-" + spec_.name : config_.group_id, config_.http_host,
           http_.Port());
  StartSignalWatcher();
  consumer_->SetCommitHook([this](std::span<const kafka::Message> batch) {
    processing_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_started_).count(), batch.size());
  });
  consumer_->Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    if (auto fatal = kafka::FatalError(); !fatal.empty()) {
      // Nothing produced from now on could be acknowledged: stop, leave the group, and let
      // the supervisor restart the process with a fresh producer.
      RequestStop();
      throw TransientError("fatal Kafka error, stopping: " + fatal);
    }
    auto t0 = std::chrono::steady_clock::now();
    batch_started_ = t0;
    consumed_->Inc(batch.size());
    handler(batch, ctx);
    batch_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  });
  producer_->Flush(config_.drain_timeout);
  http_.Stop();
  g_stage.store(nullptr);
  if (auto fatal = kafka::FatalError(); !fatal.empty()) {
    log.critical("{} stopped after a fatal Kafka error: {}", spec_.name, fatal);
    return 3;
  }
  log.info("{} stopped cleanly", spec_.name);
  return 0;
}

int Stage::RunLoop(const std::function<bool()>& tick, std::chrono::milliseconds idle) {
  auto& log = *Logger(spec_.name);
  std::atomic<std::int64_t> last_tick{NowMs().time_since_epoch().count()};
  std::atomic<bool> ready{false};
  http::AddOpsRoutes(
      http_, metrics::Default(),
      [&]() -> std::string {
        if (auto fatal = kafka::FatalError(); !fatal.empty()) return "fatal Kafka error: " + fatal;
        auto age = NowMs().time_since_epoch().count() - last_tick.load();
        if (age > 60'000) return "the loop has made no progress for " + std::to_string(age / 1000) + " s";
        return {};
      },
      [&]() -> std::string { return ready.load() ? "" : "first pass not completed yet"; });
  http_.Start(config_.http_host, config_.http_port);
  log.info("{} running; ops on {}:{}", spec_.name, config_.http_host, http_.Port());
  StartSignalWatcher();
  auto backoff = std::chrono::milliseconds(100);
  auto pause = [&](std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(d, std::chrono::milliseconds(20)));
    }
  };
  while (!stop_.load()) {
    if (auto fatal = kafka::FatalError(); !fatal.empty()) {
      log.critical("{} stopping after a fatal Kafka error: {}", spec_.name, fatal);
      break;
    }
    bool busy = false;
    try {
      busy = tick();
      backoff = std::chrono::milliseconds(100);
      ready.store(true);
    } catch (const std::exception& e) {
      log.error("{}: pass failed, retrying in {} ms: {}", spec_.name, backoff.count(), e.what());
      pause(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      continue;
    }
    last_tick.store(NowMs().time_since_epoch().count());
    if (!busy) pause(idle);
  }
  producer_->Flush(config_.drain_timeout);
  http_.Stop();
  g_stage.store(nullptr);
  if (auto fatal = kafka::FatalError(); !fatal.empty()) return 3;
  log.info("{} stopped cleanly", spec_.name);
  return 0;
}

int Stage::ServeUntilSignal() {
  http_.Start(config_.http_host, config_.http_port);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  Logger(spec_.name)->info("signal {}: stopping", sig);
  stop_.store(true);
  http_.Stop();
  producer_->Flush(config_.drain_timeout);
  return 0;
}

}  // namespace herald::stage
