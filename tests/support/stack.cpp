#include "support/stack.hpp"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "herald/dev/fake_servers.hpp"
#include "herald/dev/mail.hpp"
#include "herald/http/client.hpp"

namespace herald::test {

TestStack::TestStack(std::uint64_t fake_users, std::map<std::string, std::string> extra_env) {
  dev::StackOptions o;
  o.state_dir = dir_.Path();
  o.herald_binary = HERALD_BINARY;
  o.broker_port = 0;
  o.fake_users = fake_users;
  // Short leases and retry delays so tests exercise them quickly; the SMTP rate limit out of
  // the way (100,000-email runs), except in tests that set it.
  o.stage_env = {{"HERALD_CLAIM_LEASE", "2s"},
                 {"HERALD_RETRY_DELAYS", "1s,2s,3s"},
                 {"HERALD_BREAKER_OPEN_FOR", "1s"},
                 {"HERALD_SMTP_RATE", "100000"},
                 {"HERALD_BUILTIN_SCHEDULES", "off"}};
  clock_file_ = dir_.Path() + "/clock";
  SetClock(*ParseRfc3339(kStartClock));
  o.stage_env["HERALD_CLOCK"] = "file:" + clock_file_;
  for (auto& [k, v] : extra_env) o.stage_env[k] = v;
  stack = std::make_unique<dev::DevStack>(o);
  stack->Up();
  // Up() waits for liveness; tests publish at once, so also wait until every consumer stage
  // is ready (has joined its group and been assigned partitions).
  http::Client client;
  for (const auto& name : stack->Names()) {
    bool consumer_stage = name == "admin" || name == "plan" || name == "enrich" || name == "ledger" || name == "retry" ||
                          name == "scheduler" || name.rfind("deliver-", 0) == 0;
    if (!consumer_stage) continue;
    std::string url = "http://127.0.0.1:" + std::to_string(stack->Port(name)) + "/readyz";
    bool ready = WaitUntil(
        [&] {
          try {
            return client.Get(url).status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        std::chrono::seconds(60), std::chrono::milliseconds(50));
    if (!ready) throw std::runtime_error(name + " did not become ready within 60 s (" + url + ")");
  }
}

ServicesStack::ServicesStack() {
  dev::StackOptions o;
  o.state_dir = dir.Path();
  o.herald_binary = HERALD_BINARY;
  o.broker_port = 0;
  o.with_stages = false;
  o.quiet = true;
  stack = std::make_unique<dev::DevStack>(o);
  stack->Up();
  pg_url = stack->Env().at("HERALD_PG_URL");
}

std::string TestStack::AdminToken(bool write) const {
  std::string spec = Env("HERALD_ADMIN_TOKEN");
  std::string prefix = write ? "write:" : "read:";
  auto at = spec.find(prefix);
  if (at == std::string::npos) throw std::runtime_error("HERALD_ADMIN_TOKEN has no " + prefix + " token: " + spec);
  auto start = at + prefix.size();
  return spec.substr(start, spec.find(',', start) - start);
}

TestStack::ApiResponse TestStack::AdminRaw(const std::string& method, const std::string& path, const std::string& body,
                                           std::optional<std::string> token, const std::string& content_type) const {
  http::Client::Options o;
  o.timeout = std::chrono::seconds(30);
  o.bearer_token = token.value_or(AdminToken(true));
  http::Client client(o);
  auto r = client.Request(method, Env("HERALD_ADMIN_URL") + path, body, content_type);
  ApiResponse out;
  out.status = r.status;
  out.raw = r.body;
  out.headers = r.headers;
  out.body = nlohmann::json::parse(r.body, nullptr, false);
  if (out.body.is_discarded()) out.body = nullptr;
  return out;
}

TestStack::ApiResponse TestStack::Admin(const std::string& method, const std::string& path, const nlohmann::json& body,
                                        std::optional<std::string> token) const {
  return AdminRaw(method, path, body.is_null() ? std::string() : body.dump(), std::move(token));
}

TestStack::~TestStack() {
  stack->Down();
  // KEEP_TEST_LOGS=DIR keeps every process's log for a post-mortem.
  if (const char* keep = std::getenv("KEEP_TEST_LOGS")) {
    std::error_code ec;
    std::filesystem::create_directories(keep, ec);
    auto target = std::string(keep) + "/" + std::filesystem::path(dir_.Path()).filename().string();
    std::filesystem::create_directories(target, ec);
    for (const char* sub : {"logs", "mail"}) {
      std::filesystem::copy(dir_.Path() + "/" + sub, target + "/" + sub, std::filesystem::copy_options::recursive, ec);
    }
  }
}

std::map<std::string, int> TestStack::MailCounts() const {
  std::map<std::string, int> counts;
  for (const auto& m : dev::ReadMailDir(Env("HERALD_SMTP_DIR"))) ++counts[m.rcpt];
  return counts;
}

int TestStack::MailsTo(const std::string& address) const {
  auto counts = MailCounts();
  auto it = counts.find(address);
  return it == counts.end() ? 0 : it->second;
}

std::size_t TestStack::MailFiles() const {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(Env("HERALD_SMTP_DIR"), ec)) {
    if (e.path().extension() == ".eml") ++n;
  }
  return n;
}

std::vector<std::string> TestStack::Publish(const std::vector<nlohmann::json>& events) const {
  TempDir tmp;
  std::string file = tmp.Path() + "/events.jsonl";
  {
    std::ofstream out(file);
    for (const auto& e : events) out << e.dump() << "\n";
  }
  std::string out;
  int rc = Run("HERALD_BROKERS=" + Env("HERALD_BROKERS") + " " HERALD_BINARY " publish --file " + file + " 2>&1", &out);
  if (rc != 0) throw std::runtime_error("herald publish failed: " + out);
  std::vector<std::string> ids;
  std::size_t start = 0;
  while (start < out.size()) {
    auto nl = out.find('\n', start);
    ids.push_back(out.substr(start, nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return ids;
}

double TestStack::Metric(const std::string& stage, const std::string& series) const {
  http::Client c;
  auto body = c.Get("http://127.0.0.1:" + std::to_string(stack->Port(stage)) + "/metrics").body;
  auto pos = body.find("\n" + series + " ");
  if (pos == std::string::npos) return 0;
  return std::stod(body.substr(pos + series.size() + 2));
}

namespace {

// HERALD_<ROLE>_URL of a fake ("auth" -> HERALD_AUTH_URL).
std::string FakeUrl(const TestStack& s, std::string role) {
  for (auto& ch : role) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s.Env("HERALD_" + role + "_URL");
}

}  // namespace

void TestStack::SetFault(const std::string& role, const nlohmann::json& fault) const {
  http::Client c;
  auto r = c.Request("PUT", FakeUrl(*this, role) + "/_fake/faults", fault.dump());
  if (r.status != 200) throw std::runtime_error("setting a fault failed: " + r.body);
}

void TestStack::ClearFaults(const std::string& role) const {
  http::Client c;
  c.Request("DELETE", FakeUrl(*this, role) + "/_fake/faults", "");
}

nlohmann::json TestStack::FakeRequests(const std::string& role, const std::string& path_prefix) const {
  http::Client c;
  return nlohmann::json::parse(c.Get(FakeUrl(*this, role) + "/_fake/requests?path=" + http::UrlEncode(path_prefix)).body)["requests"];
}

TimePoint TestStack::Now() const {
  std::ifstream in(clock_file_);
  std::string text;
  std::getline(in, text);
  return *ParseRfc3339(text);
}

void TestStack::SetClock(TimePoint t) const {
  // Written whole and renamed, so a stage never reads a half-written instant.
  std::string tmp = clock_file_ + ".tmp";
  std::ofstream(tmp) << FormatRfc3339(t) << "\n";
  std::filesystem::rename(tmp, clock_file_);
}

std::string EmailOf(int user) { return "u-" + std::to_string(user) + "@example.test"; }

nlohmann::json SyntheticUser(int i) { return dev::SyntheticUser(42, static_cast<std::uint64_t>(i)); }

int FindUser(int from, const std::function<bool(const nlohmann::json&)>& pred) {
  for (int i = from;; ++i) {
    if (pred(SyntheticUser(i))) return i;
  }
}

bool FirstChannelWorks(const nlohmann::json& u) {
  auto c = u["channels"][0].get<std::string>();
  if (c == "push" && u["push_tokens"][0].get<std::string>().rfind("dead-", 0) == 0) return false;
  if (c == "telegram" && u["telegram_chat_id"].get<long>() % 100 == 13) return false;
  return true;
}

}  // namespace herald::test
