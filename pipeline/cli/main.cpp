// The `herald` binary: every stage, the producers and the operator tools behind one CLI.
// main only parses flags and wires components; the logic lives in pipeline/, consumers/
// and producers/.

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/config/config.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/dev/mail.hpp"
#include "herald/dev/stack.hpp"
#include "herald/http/client.hpp"
#include "herald/kafka/embedded_broker.hpp"
#include "herald/kafka/topic_admin.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/schema/registry.hpp"
#include "herald/stage/stage.hpp"
#include "herald/template/store.hpp"
#include "herald/topics/catalog.hpp"
#include "producers.hpp"
#include "replay/replay.hpp"
#include "stages.hpp"

namespace {

using herald::config::Config;

int WaitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

int TopicsList() {
  std::printf("%-28s %-9s %5s %4s %10s %-8s %s\n", "TOPIC", "FAMILY", "PARTS", "REPL", "RETENTION", "CLEANUP",
              "KEY");
  for (const auto& t : herald::topics::Catalog().All()) {
    std::printf("%-28s %-9s %5d %4d %9lldh %-8s %s\n", t.name.c_str(), t.family.c_str(), t.partitions,
                t.replication, static_cast<long long>(t.retention_ms / 3'600'000), t.cleanup.c_str(),
                t.key.c_str());
  }
  return 0;
}

// `topics plan` exits 2 for "changes pending" (like terraform's detailed exit code), so its
// failures are caught here and exit 1 rather than main's 2 for configuration errors.
int TopicsPlan(const Config& config, bool json) {
  try {
    auto desired = herald::kafka::DeclaredTopics();
    herald::kafka::TopicAdmin admin({config.brokers, config.kafka});
    auto plan = herald::kafka::ComputePlan(desired, admin.Observe(desired));
    if (json) {
      std::cout << herald::kafka::PlanToJson(plan).dump(2) << "\n";
    } else {
      std::cout << herald::kafka::FormatPlan(plan);
    }
    return plan.ExitCode();
  } catch (const herald::Error& e) {
    std::cerr << "herald: " << e.what() << "\n";
    return 1;
  }
}

int TopicsApply(const Config& config) {
  try {
    auto desired = herald::kafka::DeclaredTopics();
    herald::kafka::TopicAdmin admin({config.brokers, config.kafka});
    auto observed = admin.Observe(desired);
    auto report = admin.Apply(herald::kafka::ComputePlan(desired, observed), observed);
    std::cout << herald::kafka::FormatApplyReport(report);
    return report.ExitCode();
  } catch (const herald::Error& e) {
    std::cerr << "herald: " << e.what() << "\n";
    return 1;
  }
}

int Migrate(const Config& config) {
  auto conn = herald::pg::Connect(config.pg_url);
  auto applied = herald::pg::Migrate(*conn);
  if (applied.empty()) std::cout << "database is up to date\n";
  for (const auto& m : applied) std::cout << "applied " << m << "\n";
  // Silent when every default is already in place, so an idempotent rerun prints one line.
  auto loaded = herald::templates::LoadDefaultTemplates(*conn, *herald::schema::Registry::Load(config.schema_dir));
  for (const auto& line : loaded) std::cout << "default template: " << line << "\n";
  return 0;
}

int TemplatesList(const Config& config) {
  auto conn = herald::pg::Connect(config.pg_url);
  std::printf("%-22s %-9s %-6s %7s %-24s %s\n", "EVENT_TYPE", "CHANNEL", "LOCALE", "VERSION", "CREATED_AT",
              "CREATED_BY");
  for (const auto& s : herald::templates::ListTemplates(*conn)) {
    std::printf("%-22s %-9s %-6s %7d %-24s %s\n", s.tmpl.event_type.c_str(), s.tmpl.channel.c_str(),
                s.tmpl.locale.c_str(), s.tmpl.version, s.created_at.c_str(), s.created_by.c_str());
  }
  return 0;
}

// Prints the template as JSON in the format `templates save` reads, plus who saved it when.
int TemplatesShow(const Config& config, const std::vector<std::string>& key, int version) {
  auto conn = herald::pg::Connect(config.pg_url);
  auto s = herald::templates::GetTemplate(*conn, key.at(0), key.at(1), key.at(2),
                                          version > 0 ? std::optional<int>(version) : std::nullopt);
  if (!s) {
    std::cerr << "herald: no template " << key[0] << "/" << key[1] << "/" << key[2]
              << (version > 0 ? " version " + std::to_string(version) : std::string()) << "\n";
    return 1;
  }
  nlohmann::json j = {{"event_type", s->tmpl.event_type}, {"channel", s->tmpl.channel}, {"locale", s->tmpl.locale},
                      {"version", s->tmpl.version},       {"subject", s->tmpl.subject}, {"text", s->tmpl.text}};
  if (!s->tmpl.html.empty()) j["html"] = s->tmpl.html;
  if (s->deleted) j["deleted"] = true;
  j["created_at"] = s->created_at;
  j["created_by"] = s->created_by;
  std::cout << j.dump(2) << "\n";
  return 0;
}

int TemplatesSave(const Config& config, const std::string& file, std::string author) {
  std::ifstream in(file);
  if (!in) throw herald::InvalidInput("cannot read " + file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw herald::InvalidInput(file + " is not JSON: " + e.what());
  }
  auto t = herald::templates::TemplateFromJson(j);
  if (author.empty()) author = std::getenv("USER") ? std::getenv("USER") : "cli";
  auto registry = herald::schema::Registry::Load(config.schema_dir);
  herald::templates::ValidateTemplate(t, *registry);  // before connecting: a bad file needs no database
  auto conn = herald::pg::Connect(config.pg_url);
  int version = herald::templates::SaveTemplate(*conn, *registry, t, author);
  std::cout << "saved " << t.event_type << "/" << t.channel << "/" << t.locale << " as version " << version << "\n";
  return 0;
}

// Fault injection from outside the process: SIGUSR1 takes every mock broker down (clients
// see disconnects and refused connections), SIGUSR2 brings them back up. The two signals are
// blocked before the cluster's threads start and taken with sigwait() on this thread, so no
// work runs in a signal handler and no other thread dies of their default action.
int DevBroker(const std::string& host, int port, int brokers, int partitions) {
  sigset_t faults;
  sigemptyset(&faults);
  sigaddset(&faults, SIGUSR1);
  sigaddset(&faults, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &faults, nullptr);
  herald::kafka::EmbeddedBroker broker({host, port, brokers, partitions});
  std::cout << "embedded Kafka broker listening on " << broker.Bootstrap() << " (mock brokers "
            << broker.DirectBootstraps() << ")\n"
            << "topics from topics/topics.json are created; try: kcat -b " << broker.Bootstrap() << " -L\n"
            << "kill -USR1 " << ::getpid() << " takes the brokers down, kill -USR2 " << ::getpid() << " brings them up\n"
            << std::flush;
  sigset_t set = faults;
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  auto& log = *herald::Logger("broker");
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGUSR1 && sig != SIGUSR2) break;
    const bool down = sig == SIGUSR1;
    for (int id = 1; id <= brokers; ++id) {
      if (down) {
        broker.SetBrokerDown(id);
      } else {
        broker.SetBrokerUp(id);
      }
    }
    log.warn("{}: {} mock broker(s) {}", down ? "SIGUSR1" : "SIGUSR2", brokers, down ? "down" : "up");
  }
  return 0;
}

int DevFakes(const std::map<std::string, int>& ports, std::uint64_t seed, std::uint64_t users) {
  std::vector<std::unique_ptr<herald::dev::FakeServer>> servers;
  for (const auto& [role, port] : ports) {
    if (port < 0) continue;
    herald::dev::FakeServerOptions o;
    o.port = port;
    o.seed = seed;
    o.user_count = users;
    servers.push_back(std::make_unique<herald::dev::FakeServer>(*herald::dev::ParseFakeRole(role), o));
    servers.back()->Start();
    std::cout << "fake " << role << " on " << servers.back()->BaseUrl() << "\n" << std::flush;
  }
  WaitForSignal();
  return 0;
}

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("export ", 0) != 0) continue;
    auto eq = line.find('=');
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'') value = value.substr(1, value.size() - 2);
    env[line.substr(7, eq - 7)] = value;
  }
  return env;
}

int DevUp(herald::dev::StackOptions options, bool detach) {
  namespace fs = std::filesystem;
  fs::create_directories(options.state_dir);
  std::string state = fs::absolute(options.state_dir).string();
  std::string pidfile = state + "/supervisor.pid";
  if (std::ifstream in(pidfile); in) {
    pid_t old = 0;
    if (in >> old && old > 0 && ::kill(old, 0) == 0) {
      std::cerr << "a stack is already running from " << state << " (pid " << old
                << "); stop it with: herald dev down --state-dir " << options.state_dir << "\n";
      return 1;
    }
  }
  std::error_code ec;
  fs::remove(state + "/ready", ec);
  fs::remove(state + "/failed", ec);
  if (detach) {
    pid_t pid = ::fork();
    if (pid < 0) throw herald::TransientError("fork failed");
    if (pid > 0) {
      // Parent: wait for the supervisor to report.
      for (int i = 0; i < 2400; ++i) {
        if (fs::exists(state + "/ready")) {
          std::ifstream in(state + "/ready");
          std::cout << in.rdbuf();
          std::cout << "Stop it with: herald dev down --state-dir " << options.state_dir << "\n";
          return 0;
        }
        if (fs::exists(state + "/failed")) {
          std::ifstream in(state + "/failed");
          std::cerr << "the development stack failed to start: " << in.rdbuf() << "\n";
          return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      std::cerr << "the development stack did not start within 120 s; see " << state << "/logs/\n";
      return 1;
    }
    ::setsid();
    std::string log = state + "/logs";
    fs::create_directories(log);
    std::freopen((log + "/supervisor.log").c_str(), "a", stdout);
    std::freopen((log + "/supervisor.log").c_str(), "a", stderr);
  }
  std::ofstream(pidfile) << ::getpid() << "\n";
  herald::dev::DevStack stack(options);
  try {
    stack.Up();
  } catch (const std::exception& e) {
    std::ofstream(state + "/failed") << e.what();
    fs::remove(pidfile, ec);
    if (!detach) std::cerr << "the development stack failed to start: " << e.what() << "\n";
    return 1;
  }
  {
    std::ofstream(state + "/ready.tmp") << stack.Summary();
    fs::rename(state + "/ready.tmp", state + "/ready");
  }
  if (!detach) {
    std::cout << stack.Summary() << "Press Ctrl-C to stop everything.\n" << std::flush;
  }
  WaitForSignal();
  std::cout << "stopping the development stack...\n" << std::flush;
  stack.Down();
  fs::remove(pidfile, ec);
  fs::remove(state + "/ready", ec);
  std::cout << "stopped\n";
  return 0;
}

// Sends welcome events through the ingest API and prints the emails as the SMTP sink
// receives them.
int Demo(const std::string& state_dir, int count, int timeout_s) {
  namespace fs = std::filesystem;
  auto env = ReadEnvFile(fs::absolute(state_dir).string() + "/dev.env");
  for (const char* k : {"HERALD_INGEST_URL", "HERALD_INGEST_TOKEN", "HERALD_SMTP_DIR"}) {
    if (env[k].empty()) {
      std::cerr << "no running stack in " << state_dir << " (missing " << k << " in dev.env); start one with: herald dev up --detach\n";
      return 1;
    }
  }
  auto before = herald::dev::ReadMailDir(env["HERALD_SMTP_DIR"]).size();
  herald::http::Client client({std::chrono::milliseconds(1000), std::chrono::milliseconds(15000), "herald-demo",
                               env["HERALD_INGEST_TOKEN"]});
  std::set<std::string> users;
  for (int i = 0; i < count; ++i) {
    std::string user = "u-" + std::to_string(1 + i);
    nlohmann::json event = {{"event_type", "user.registered"},
                            {"created_dt", herald::FormatRfc3339(herald::NowMs())},
                            {"priority", 0},
                            {"payload", {{"user", {user}}}}};
    auto res = client.Post(env["HERALD_INGEST_URL"] + "/v1/events", event.dump());
    std::cout << "POST /v1/events user.registered for " << user << " -> " << res.status << " " << res.body << "\n";
    if (res.status != 202) return 1;
  }
  std::cout << "waiting for the welcome emails...\n" << std::flush;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::size_t shown = before;
  while (std::chrono::steady_clock::now() < deadline && shown < before + static_cast<std::size_t>(count)) {
    auto mails = herald::dev::ReadMailDir(env["HERALD_SMTP_DIR"]);
    for (; shown < mails.size(); ++shown) {
      const auto& m = mails[shown];
      std::cout << "\n==================== delivered email ====================\n"
                << "From:    " << m.from << "\nTo:      " << m.to << "\nSubject: " << m.subject << "\n\n"
                << m.text << "=========================================================\n"
                << "(saved as " << m.file << ")\n"
                << std::flush;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (shown < before + static_cast<std::size_t>(count)) {
    std::cerr << "only " << shown - before << " of " << count << " emails arrived within " << timeout_s
              << " s; see " << state_dir << "/logs/\n";
    return 1;
  }
  std::cout << "\n" << count << " welcome email(s) delivered end to end.\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  herald::stage::BlockSignals();
  CLI::App app{"Herald: a Kafka-native notification pipeline"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "All subcommands' options");

  // Every setting is a flag too; flags override environment variables.
  std::map<std::string, std::vector<std::string>> flag_values;
  for (const auto& key : herald::config::Keys()) {
    auto* opt = app.add_option("--" + key.flag, flag_values[key.flag], key.description + " [" + key.env + "]");
    opt->group("Settings");
    if (key.flag == "kafka") opt->take_all();
  }

  auto* cfg_cmd = app.add_subcommand("config", "Print every setting with its environment variable and default");
  auto* plan = app.add_subcommand("plan", "Plan stage: validate events and fan out to recipients");
  auto* enrich = app.add_subcommand("enrich", "Enrich stage: user data, channel choice, routing");
  auto* deliver = app.add_subcommand("deliver", "Delivery stage for one channel");
  std::string channel = "email";
  deliver->add_option("--channel", channel, "email | sms | telegram | push")->capture_default_str();
  auto* ledger = app.add_subcommand("ledger", "Ledger stage: statuses into PostgreSQL");
  auto* retry = app.add_subcommand("retry", "Retry stage: re-produce delayed retries to their origin when due");
  auto* scheduler = app.add_subcommand("scheduler", "Scheduler: release parked notifications when due, fire recurring schedules");
  auto* ingest = app.add_subcommand("ingest", "Ingest HTTP API: POST /v1/events");
  auto* admin = app.add_subcommand("admin", "Admin HTTP API: templates, campaigns, preferences, statistics, unsubscribe");
  auto* apikey = app.add_subcommand("apikey", "Admin API keys stored in PostgreSQL");
  apikey->require_subcommand(1);
  auto* apikey_create = apikey->add_subcommand("create", "Create a key and print its token (shown once)");
  std::string apikey_name, apikey_scope = "read";
  apikey_create->add_option("--name", apikey_name, "Who or what uses the key")->required();
  apikey_create->add_option("--scope", apikey_scope, "read | write")->capture_default_str();
  auto* publish = app.add_subcommand("publish", "Publish events from a file or stdin");
  herald::producers::PublishOptions publish_opts;
  bool no_validate = false;
  publish->add_option("--file,-f", publish_opts.file, "JSON file (default: stdin)");
  publish->add_option("--topic", publish_opts.topic, "Override the topic");
  publish->add_flag("--no-validate", no_validate, "Send as is (for testing dead letters; needs --topic)");
  auto* replay = app.add_subcommand("replay", "Records of a topic over a time range: to a file, to another topic, or a dry run of the pipeline");
  herald::producers::replay::Options replay_opts;
  replay->add_option("--topic", replay_opts.topic, "Topic to read")->required();
  replay->add_option("--from", replay_opts.from, "Start (inclusive): RFC 3339, now, or an age such as 2h")->required();
  replay->add_option("--to", replay_opts.to, "End (exclusive): RFC 3339, now, or an age")->capture_default_str();
  replay->add_option("--partition", replay_opts.partitions, "Only this partition (repeatable)");
  replay->add_option("--where", replay_opts.where, "field=value filter, e.g. event_type=episode.released or user_id=u-1 (repeatable, all must match)");
  replay->add_option("--format", replay_opts.format, "jsonl or csv")->capture_default_str();
  replay->add_option("--out,-o", replay_opts.out, "Output file (- = stdout)")->capture_default_str();
  replay->add_option("--publish", replay_opts.publish, "Re-produce the records to this topic (a sandbox)");
  replay->add_flag("--allow-live", replay_opts.allow_live, "Let --publish target one of Herald's own topics");
  replay->add_flag("--dry-run", replay_opts.dry_run, "Plan, enrich and render the records; write what would be sent, send nothing");
  replay->add_flag("--scan", replay_opts.scan, "Find the range by scanning timestamps, not the broker's time index");
  replay->add_option("--limit", replay_opts.limit, "Stop after this many matching records (0 = all)")->capture_default_str();
  replay->add_flag("--quiet,-q", replay_opts.quiet, "No progress or summary on stderr");
  auto* topics = app.add_subcommand("topics", "Kafka topics declared in topics/topics.json");
  auto* topics_list = topics->add_subcommand("list", "Print every declared topic");
  auto* topics_plan = topics->add_subcommand(
      "plan", "Compare the cluster with the declarations; exit 0 in sync, 2 changes pending, 1 error");
  bool topics_json = false;
  topics_plan->add_flag("--json", topics_json, "Machine-readable plan");
  topics_plan->fallthrough();
  auto* topics_apply = topics->add_subcommand(
      "apply", "Create missing topics and align their configs; never deletes or repartitions");
  topics_apply->fallthrough();
  topics->require_subcommand(1);
  auto* migrate = app.add_subcommand("migrate", "Apply the PostgreSQL migrations and load the default templates");
  auto* tmpl = app.add_subcommand("templates", "Notification templates stored in PostgreSQL");
  tmpl->require_subcommand(1);
  auto* tmpl_list = tmpl->add_subcommand("list", "Print the latest version of every template");
  auto* tmpl_show = tmpl->add_subcommand("show", "Print one template as JSON (the format `save` reads)");
  std::vector<std::string> tmpl_key;
  int tmpl_version = 0;
  tmpl_show->add_option("key", tmpl_key, "TYPE CHANNEL LOCALE")->required()->expected(3);
  tmpl_show->add_option("--version", tmpl_version, "A specific version (default: the latest)");
  auto* tmpl_save = tmpl->add_subcommand("save", "Validate a template JSON file and save it as the next version");
  std::string tmpl_file, tmpl_author;
  tmpl_save->add_option("file", tmpl_file, "JSON like schemas/templates/*.json")->required();
  tmpl_save->add_option("--author", tmpl_author, "Recorded as created_by (default: $USER)");
  auto* demo = app.add_subcommand("demo", "Send welcome events to a running dev stack and show the emails");
  std::string state_dir = ".herald";
  int demo_count = 2, demo_timeout = 60;
  demo->add_option("--state-dir", state_dir, "State directory of the dev stack")->capture_default_str();
  demo->add_option("--count", demo_count, "How many users to welcome")->capture_default_str();
  demo->add_option("--timeout", demo_timeout, "Seconds to wait for the emails")->capture_default_str();

  auto* dev = app.add_subcommand("dev", "Local development stack");
  dev->require_subcommand(1);
  auto* dev_broker = dev->add_subcommand(
      "broker",
      "Embedded Kafka broker (librdkafka mock cluster) over TCP. Fault injection: SIGUSR1 takes every mock "
      "broker down, SIGUSR2 brings them back up");
  std::string broker_host = "127.0.0.1";
  int broker_port = 39092, broker_count = 1, broker_partitions = 0;
  dev_broker->add_option("--host", broker_host)->capture_default_str();
  dev_broker->add_option("--port", broker_port, "Stable bootstrap port (0 = any free)")->capture_default_str();
  dev_broker->add_option("--brokers", broker_count, "Mock brokers in the cluster")->capture_default_str();
  dev_broker->add_option("--min-partitions", broker_partitions, "Raise every topic to at least this many partitions");
  auto* dev_fakes = dev->add_subcommand("fakes", "Fake auth/ugc/movies APIs and sms/telegram/push providers");
  std::map<std::string, int> fake_ports = {{"auth", -1}, {"ugc", -1}, {"movies", -1}, {"sms", -1}, {"telegram", -1}, {"push", -1}};
  for (auto& [role, port] : fake_ports) dev_fakes->add_option("--" + role + "-port", port, "Port of the fake " + role + " (0 = any)");
  std::uint64_t seed = 42, user_count = 1'000'000;
  dev_fakes->add_option("--seed", seed)->capture_default_str();
  dev_fakes->add_option("--users", user_count, "Synthetic users u-1..u-N")->capture_default_str();
  auto* dev_up = dev->add_subcommand("up", "Start broker, PostgreSQL, Redis, SMTP sink, fakes and every stage");
  herald::dev::StackOptions stack_opts;
  bool detach = false;
  dev_up->add_option("--state-dir", stack_opts.state_dir, "Where state, logs and mail go")->capture_default_str();
  dev_up->add_option("--broker-port", stack_opts.broker_port, "Bootstrap port of the embedded broker")->capture_default_str();
  dev_up->add_flag("--detach", detach, "Run in the background");
  dev_up->add_option("--users", stack_opts.fake_users, "Synthetic users served by the fake auth API")->capture_default_str();
  std::vector<std::string> stage_settings;
  dev_up->add_option("--stage-env", stage_settings, "Extra HERALD_X=value settings for the stages (repeatable)");
  auto* dev_down = dev->add_subcommand("down", "Stop a detached stack");
  std::string down_dir = ".herald";
  dev_down->add_option("--state-dir", down_dir)->capture_default_str();

  for (auto* sub : {cfg_cmd, plan, enrich, deliver, ledger, retry, scheduler, ingest, admin, apikey, publish, replay, topics, migrate, tmpl, demo, dev}) sub->fallthrough();
  for (auto* sub : {apikey_create, topics_list, tmpl_list, tmpl_show, tmpl_save, dev_broker, dev_fakes, dev_up, dev_down}) sub->fallthrough();

  CLI11_PARSE(app, argc, argv);

  try {
    Config config = herald::config::FromEnvironment(herald::config::ProcessEnvironment());
    for (const auto& [flag, values] : flag_values) {
      for (const auto& v : values) herald::config::Apply(config, flag, v);
    }
    herald::ConfigureLogging(config.log_level, config.log_format);

    if (*cfg_cmd) { std::cout << herald::config::Describe(); return 0; }
    if (*plan) return herald::consumers::RunPlan(config);
    if (*enrich) return herald::consumers::RunEnrich(config);
    if (*deliver) return herald::consumers::RunDeliver(config, channel);
    if (*ledger) return herald::consumers::RunLedger(config);
    if (*retry) return herald::consumers::RunRetry(config);
    if (*scheduler) return herald::consumers::RunScheduler(config);
    if (*ingest) return herald::producers::RunIngest(config);
    if (*admin) return herald::producers::RunAdmin(config);
    if (*apikey_create) {
      std::cout << herald::producers::CreateApiKey(config, apikey_name, apikey_scope) << "\n";
      return 0;
    }
    if (*publish) {
      publish_opts.validate = !no_validate;
      return herald::producers::RunPublish(config, publish_opts, std::cout);
    }
    if (*replay) return herald::producers::replay::Run(config, replay_opts, std::cout, std::cerr);
    if (*topics_list) return TopicsList();
    if (*topics_plan) return TopicsPlan(config, topics_json);
    if (*topics_apply) return TopicsApply(config);
    if (*migrate) return Migrate(config);
    if (*tmpl_list) return TemplatesList(config);
    if (*tmpl_show) return TemplatesShow(config, tmpl_key, tmpl_version);
    if (*tmpl_save) return TemplatesSave(config, tmpl_file, tmpl_author);
    if (*demo) return Demo(state_dir, demo_count, demo_timeout);
    if (*dev_broker) return DevBroker(broker_host, broker_port, broker_count, broker_partitions);
    if (*dev_fakes) return DevFakes(fake_ports, seed, user_count);
    if (*dev_up) {
      for (const auto& kv : stage_settings) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || kv.rfind("HERALD_", 0) != 0) {
          throw herald::InvalidInput("--stage-env expects HERALD_NAME=value, got '" + kv + "'");
        }
        stack_opts.stage_env[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      return DevUp(stack_opts, detach);
    }
    if (*dev_down) return herald::dev::StopDetached(down_dir);
  } catch (const herald::InvalidInput& e) {
    std::cerr << "herald: " << e.what() << "\n";
    return 2;
  } catch (const herald::ConfigError& e) {
    std::cerr << "herald: configuration error: " << e.what() << "\n";
    // `topics plan` exits 2 for "changes pending"; an error must not look like that.
    return *topics_plan ? 1 : 2;
  } catch (const std::exception& e) {
    std::cerr << "herald: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
