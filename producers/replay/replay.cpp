#include "replay/replay.hpp"

#include <fstream>
#include <iostream>

#include "deliver/render.hpp"
#include "enrich/enrich.hpp"
#include "enrich/enricher.hpp"
#include "enrich/timing.hpp"
#include "herald/common/errors.hpp"
#include "herald/kafka/producer.hpp"
#include "herald/metrics/registry.hpp"
#include "herald/schema/registry.hpp"
#include "herald/template/store.hpp"
#include "herald/topics/catalog.hpp"
#include "plan/plan.hpp"

namespace herald::producers::replay {
namespace {

using nlohmann::json;

// Thrown by a sink to end the scan early (--limit reached).
struct LimitReached {};

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const json* Lookup(const json& doc, const std::string& dotted) {
  const json* cur = &doc;
  std::size_t start = 0;
  while (start <= dotted.size()) {
    auto dot = dotted.find('.', start);
    std::string part = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(part);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

bool ValueMatches(const json& v, const std::string& want) {
  if (v.is_string()) return v.get_ref<const std::string&>() == want;
  if (v.is_number() || v.is_boolean()) return v.dump() == want;
  if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_array() && ValueMatches(e, want)) return true;
    }
  }
  return false;
}

// Rows written by the replay: JSON Lines, or CSV with a fixed column list.
class RowWriter {
 public:
  RowWriter(std::ostream& out, bool csv, std::vector<std::string> columns)
      : out_(out), csv_(csv), columns_(std::move(columns)) {
    if (!csv_) return;
    for (std::size_t i = 0; i < columns_.size(); ++i) out_ << (i ? "," : "") << columns_[i];
    out_ << "\r\n";
  }
  void Write(const json& row) {
    ++rows_;
    if (!csv_) {
      out_ << row.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
      return;
    }
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i) out_ << ',';
      auto it = row.find(columns_[i]);
      if (it == row.end() || it->is_null()) continue;
      out_ << CsvField(it->is_string() ? it->get<std::string>() : it->dump(-1, ' ', false, json::error_handler_t::replace));
    }
    out_ << "\r\n";
  }
  std::size_t Rows() const { return rows_; }

 private:
  std::ostream& out_;
  bool csv_;
  std::vector<std::string> columns_;
  std::size_t rows_ = 0;
};

const std::vector<std::string> kRecordColumns = {"topic", "partition", "offset", "timestamp", "key", "headers", "value"};
const std::vector<std::string> kDryRunColumns = {"source", "event_id", "event_type", "notification_id", "user_id",
                                                 "channel", "priority", "address", "locale", "outcome", "due",
                                                 "reason", "subject", "text", "html"};

// Plan, enrich and render for replayed records, writing what would happen to each
// notification instead of doing it.
class DryRun {
 public:
  DryRun(const config::Config& config, RowWriter& writer)
      : config_(config),
        writer_(writer),
        registry_(schema::Registry::Load(config.schema_dir)),
        pager_(config.auth_url, config.ugc_url),
        enricher_(Options(config), *registry_, nullptr, metrics_),
        templates_({config.pg_url}),
        clock_(TimeSource::FromSpec(config.clock)) {}

  void Feed(const kafka::StoredRecord& r, const json& value) {
    json source = {{"topic", r.topic}, {"partition", r.partition}, {"offset", r.offset}};
    if (value.is_object() && value.contains("notification_id") && value.contains("request")) {
      model::Delivery d;
      try {
        d = model::DeliveryFromJson(value);
      } catch (const std::exception& e) {
        Row(source, {{"outcome", "invalid"}, {"reason", e.what()}});
        return;
      }
      const auto* type = registry_->Find(d.request.event_type);
      auto expires = type ? consumers::enrich::ExpiresAt(d.request, *type) : std::nullopt;
      if (expires && clock_->Now() >= *expires) {
        Row(source, DeliveryRow(d, "expired", "not delivered by " + FormatRfc3339(*expires)));
        return;
      }
      Render(source, d, "send", "");
      return;
    }
    if (value.is_object() && value.contains("request_id")) {
      try {
        Add(source, model::RequestFromJson(value));
      } catch (const std::exception& e) {
        Row(source, {{"outcome", "invalid"}, {"reason", e.what()}});
      }
      return;
    }
    model::Event event;
    try {
      event = model::ParseEvent(r.value, *registry_, model::Origin{r.topic, r.partition, r.offset});
    } catch (const InvalidInput& e) {
      json row = {{"outcome", "invalid"}, {"reason", std::string("plan would dead-letter it: ") + e.what()}};
      for (const char* field : {"event_id", "event_type"}) {
        if (value.is_object() && value.contains(field) && value[field].is_string()) row[field] = value[field];
      }
      Row(source, std::move(row));
      return;
    }
    if (event.schedule) {
      Row(source, {{"event_id", event.event_id}, {"event_type", event.event_type}, {"outcome", "schedule"},
                   {"reason", "a recurring event: plan would store it as a schedule (" + *event.schedule + ")"}});
      return;
    }
    auto state = consumers::plan::InitialState(event);
    while (state.phase != "done") {
      consumers::plan::Page page;
      try {
        page = pager_.Fetch(event, state);
      } catch (const std::exception& e) {
        Row(source, {{"event_id", event.event_id}, {"event_type", event.event_type}, {"outcome", "fanout_error"},
                     {"reason", e.what()}});
        return;
      }
      for (const auto& user : page.user_ids) Add(source, consumers::plan::MakeRequest(event, user));
      state = page.next;
    }
  }

  void Finish() { Flush(); }

 private:
  static consumers::enrich::EnricherOptions Options(const config::Config& config) {
    auto o = consumers::enrich::OptionsFromConfig(config);
    o.caching = false;  // a dry run writes nothing, not even a cache entry
    return o;
  }

  void Add(const json& source, model::NotificationRequest request) {
    pending_.push_back(std::move(request));
    sources_.push_back(source);
    if (pending_.size() >= 500) Flush();
  }

  void Flush() {
    if (pending_.empty()) return;
    std::vector<consumers::enrich::Outcome> outcomes;
    try {
      outcomes = enricher_.Process(pending_);
    } catch (const std::exception& e) {
      for (std::size_t i = 0; i < pending_.size(); ++i) Row(sources_[i], RequestRow(pending_[i], "upstream_error", e.what()));
      pending_.clear();
      sources_.clear();
      return;
    }
    auto now = clock_->Now();
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      auto& o = outcomes[i];
      using Kind = consumers::enrich::Outcome::Kind;
      switch (o.kind) {
        case Kind::kDeliver: {
          const auto* type = registry_->Find(o.delivery.request.event_type);
          auto timing = type ? consumers::enrich::DecideTiming(o.delivery, *type, now) : consumers::enrich::TimingDecision{};
          if (timing.kind == consumers::enrich::TimingDecision::Kind::kExpire) {
            Row(sources_[i], DeliveryRow(o.delivery, "expired", timing.reason));
          } else if (timing.kind == consumers::enrich::TimingDecision::Kind::kPark) {
            auto row_due = FormatRfc3339(timing.due);
            Render(sources_[i], o.delivery, "park", timing.reason, row_due);
          } else {
            Render(sources_[i], o.delivery, "send", "");
          }
          break;
        }
        case Kind::kStatus:
          Row(sources_[i], RequestRow(pending_[i], std::string(model::StatusName(o.status.status)), o.status.reason,
                                      o.status.channel));
          break;
        case Kind::kRetry:
        case Kind::kPark:
          Row(sources_[i], RequestRow(pending_[i], "upstream_error", "enrich would retry later: " + o.reason));
          break;
        case Kind::kInvalid:
          Row(sources_[i], RequestRow(pending_[i], "invalid", o.reason));
          break;
      }
    }
    pending_.clear();
    sources_.clear();
  }

  void Render(const json& source, model::Delivery& d, const std::string& outcome, const std::string& reason,
              const std::string& due = "") {
    auto row = DeliveryRow(d, outcome, reason);
    if (!due.empty()) row["due"] = due;
    try {
      auto prepared = consumers::deliver::Render(d, registry_->Find(d.request.event_type), *templates_.Current(),
                                                 config_.unsubscribe_url, config_.unsubscribe_secret);
      row["subject"] = prepared.rendered.subject;
      row["text"] = prepared.rendered.text;
      row["html"] = prepared.rendered.html;
    } catch (const InvalidInput& e) {
      row["outcome"] = "render_failed";
      row["reason"] = std::string("delivery would record it as failed: ") + e.what();
    }
    Row(source, std::move(row));
  }

  static json RequestRow(const model::NotificationRequest& r, const std::string& outcome, const std::string& reason,
                         const std::string& channel = "") {
    json row = {{"event_id", r.event_id}, {"event_type", r.event_type}, {"user_id", r.user_id},
                {"priority", model::PriorityName(r.priority)}, {"outcome", outcome}, {"reason", reason}};
    if (!channel.empty()) row["channel"] = channel;
    return row;
  }

  static json DeliveryRow(const model::Delivery& d, const std::string& outcome, const std::string& reason) {
    auto row = RequestRow(d.request, outcome, reason, d.channel);
    row["notification_id"] = d.notification_id;
    row["address"] = d.address;
    row["locale"] = d.locale;
    return row;
  }

  void Row(const json& source, json row) {
    row["source"] = source;
    writer_.Write(row);
  }

  const config::Config& config_;
  RowWriter& writer_;
  metrics::Registry metrics_;  // the enricher's counters; a dry run exports nothing
  std::shared_ptr<const schema::Registry> registry_;
  consumers::plan::RecipientPager pager_;
  consumers::enrich::Enricher enricher_;
  templates::TemplateCache templates_;
  std::shared_ptr<const TimeSource> clock_;
  std::vector<model::NotificationRequest> pending_;
  std::vector<json> sources_;
};

}  // namespace

TimePoint ParseWhen(const std::string& text, TimePoint now) {
  if (text == "now") return now;
  if (auto t = ParseRfc3339(text)) return *t;
  std::string age = !text.empty() && text.front() == '-' ? text.substr(1) : text;
  if (!age.empty() && std::isdigit(static_cast<unsigned char>(age.front())) &&
      !std::isdigit(static_cast<unsigned char>(age.back()))) {
    try {
      return now - config::ParseDuration(age);
    } catch (const ConfigError&) {
    }
  }
  throw InvalidInput("'" + text + "' is not a time: use RFC 3339 (2026-11-21T10:00:00Z), now, or an age such as 15m, 2h, 7d");
}

Filter ParseFilter(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw InvalidInput("--where expects field=value, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

bool Matches(const kafka::StoredRecord& record, const json& value, const std::vector<Filter>& filters) {
  for (const auto& f : filters) {
    bool ok = false;
    if (f.path == "key") {
      ok = record.key && *record.key == f.value;
    } else if (f.path.starts_with("header.")) {
      auto name = Lower(f.path.substr(7));
      for (const auto& h : record.headers) ok = ok || (Lower(h.key) == name && h.value == f.value);
    } else {
      std::vector<std::string> paths = {f.path};
      if (f.path.find('.') == std::string::npos) {
        paths.push_back("payload." + f.path);
        paths.push_back("request." + f.path);
        if (f.path == "user_id") paths.push_back("payload.user");
      }
      for (const auto& p : paths) {
        const json* v = Lookup(value, p);
        if (v && ValueMatches(*v, f.value)) {
          ok = true;
          break;
        }
      }
    }
    if (!ok) return false;
  }
  return true;
}

json RecordJson(const kafka::StoredRecord& r, const json& value) {
  json headers = json::object();
  for (const auto& h : r.headers) headers[h.key] = h.value;
  json row = {{"topic", r.topic},
              {"partition", r.partition},
              {"offset", r.offset},
              {"timestamp", FormatRfc3339(TimePoint(std::chrono::milliseconds(r.timestamp_ms)))},
              {"timestamp_ms", r.timestamp_ms},
              {"key", r.key ? json(*r.key) : json(nullptr)},
              {"headers", headers}};
  row["value"] = value.is_discarded() ? json(r.value) : value;
  return row;
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

int Run(const config::Config& config, const Options& o, std::ostream& out, std::ostream& err) {
  std::vector<Filter> filters;
  TimePoint from;
  TimePoint to;
  try {
    if (o.topic.empty()) throw InvalidInput("--topic is required");
    if (o.from.empty()) throw InvalidInput("--from is required");
    if (o.format != "jsonl" && o.format != "csv") throw InvalidInput("--format must be jsonl or csv, not '" + o.format + "'");
    if (o.dry_run && !o.publish.empty()) throw InvalidInput("--dry-run and --publish exclude each other");
    if (!o.publish.empty()) {
      if (o.publish == o.topic) throw InvalidInput("--publish " + o.publish + " is the topic being replayed");
      if (topics::Catalog().Find(o.publish) && !o.allow_live) {
        throw InvalidInput("--publish " + o.publish + " is one of Herald's live topics; a sandbox topic is safer. "
                           "Add --allow-live to publish there: notification ids are deterministic, so nobody is sent a "
                           "message twice, but every record is processed again");
      }
    }
    auto now = NowMs();
    from = ParseWhen(o.from, now);
    to = ParseWhen(o.to, now);
    if (from >= to) throw InvalidInput("--from " + FormatRfc3339(from) + " is not before --to " + FormatRfc3339(to));
    for (const auto& w : o.where) filters.push_back(ParseFilter(w));
  } catch (const InvalidInput& e) {
    err << "herald replay: " << e.what() << "\n";
    return 2;
  }

  std::ofstream file;
  std::ostream* sink_stream = &out;
  if (o.out != "-") {
    file.open(o.out, std::ios::out | std::ios::trunc | std::ios::binary);
    if (!file) {
      err << "herald replay: cannot write " << o.out << "\n";
      return 1;
    }
    sink_stream = &file;
  }
  bool write_rows = o.publish.empty() || o.out != "-";
  bool live = !o.publish.empty() && topics::Catalog().Find(o.publish) != nullptr;
  RowWriter writer(*sink_stream, o.format == "csv", o.dry_run ? kDryRunColumns : kRecordColumns);

  std::unique_ptr<kafka::Producer> producer;
  std::vector<kafka::OutRecord> outbox;
  std::size_t published = 0;
  auto flush_outbox = [&] {
    if (outbox.empty()) return;
    producer->ProduceAll(outbox, config.drain_timeout + std::chrono::seconds(2));
    published += outbox.size();
    outbox.clear();
  };

  try {
    std::unique_ptr<DryRun> dry;
    if (o.dry_run) dry = std::make_unique<DryRun>(config, writer);
    if (!o.publish.empty()) {
      kafka::Producer::Options po;
      po.brokers = config.brokers;
      po.settings = config.kafka;
      po.client_id = "herald-replay";
      producer = std::make_unique<kafka::Producer>(po);
    }
    kafka::TopicReader reader(config.brokers, config.kafka);
    kafka::TopicReader::ScanOptions so;
    so.partitions = o.partitions;
    so.from_ms = std::chrono::duration_cast<std::chrono::milliseconds>(from.time_since_epoch()).count();
    so.to_ms = std::chrono::duration_cast<std::chrono::milliseconds>(to.time_since_epoch()).count();
    so.force_scan = o.scan;
    std::size_t matched = 0;
    auto started = std::chrono::steady_clock::now();
    auto progress = [&](std::int64_t read, std::int64_t to_read) {
      if (o.quiet) return;
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      err << "replay: " << read << "/" << to_read << " records read, " << matched << " matched, "
          << static_cast<std::int64_t>(secs) << " s\n";
    };
    kafka::TopicReader::ScanResult result;
    bool limited = false;
    try {
      result = reader.Scan(o.topic, so, [&](kafka::StoredRecord&& r) {
        auto value = json::parse(r.value, nullptr, false);
        if (!Matches(r, value, filters)) return;
        ++matched;
        if (dry) {
          dry->Feed(r, value);
        } else {
          if (write_rows) writer.Write(RecordJson(r, value));
          if (producer) {
            kafka::OutRecord rec{o.publish, r.key.value_or(""), r.value, r.headers};
            // A sandbox keeps the original times, so it replays by the same range; into a live
            // topic the records are a new publication, stamped now.
            if (!live) rec.timestamp_ms = r.timestamp_ms;
            rec.headers.push_back({"herald-replayed-from", r.topic + "/" + std::to_string(r.partition) + "/" + std::to_string(r.offset)});
            outbox.push_back(std::move(rec));
            if (outbox.size() >= 1000) flush_outbox();
          }
        }
        if (o.limit && matched >= o.limit) throw LimitReached{};
      }, progress);
    } catch (const LimitReached&) {
      limited = true;
    }
    if (dry) dry->Finish();
    flush_outbox();
    sink_stream->flush();
    std::size_t indexed = 0;
    for (const auto& p : result.plan) indexed += p.time_index ? 1 : 0;
    if (!o.quiet) {
      err << "replay: " << o.topic << " " << FormatRfc3339(from) << " .. " << FormatRfc3339(to) << ": ";
      if (limited) {
        err << "stopped at --limit " << o.limit << ", " << matched << " matched";
      } else {
        err << result.read << " records read, " << result.in_range << " in the range, " << matched << " matched";
      }
      if (write_rows) err << ", " << writer.Rows() << " rows written";
      if (producer) err << ", " << published << " published to " << o.publish;
      err << "; " << (indexed == result.plan.size() && !result.plan.empty() ? "time index used"
                      : indexed == 0 ? "no usable time index: scanned by timestamp"
                                     : std::to_string(indexed) + " of " + std::to_string(result.plan.size()) +
                                           " partitions by time index, the rest scanned")
          << "\n";
    }
  } catch (const ConfigError& e) {
    err << "herald replay: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    err << "herald replay: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace herald::producers::replay
