#include "herald/dev/stack.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <pqxx/pqxx>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/dev/fake_servers.hpp"
#include "herald/http/client.hpp"
#include "herald/pg/migrate.hpp"
#include "herald/schema/registry.hpp"
#include "herald/template/store.hpp"

extern char** environ;

namespace herald::dev {
namespace fs = std::filesystem;
namespace {

bool PortAnswers(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool PortFree(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string PgBinDir() {
  glob_t g{};
  std::string found;
  if (::glob("/usr/lib/postgresql/*/bin/initdb", 0, nullptr, &g) == 0 && g.gl_pathc > 0) {
    found = fs::path(g.gl_pathv[g.gl_pathc - 1]).parent_path().string();
  }
  globfree(&g);
  if (found.empty()) {
    throw ConfigError("PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/bootstrap.sh)");
  }
  return found;
}

std::string Which(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin"}) {
    auto p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  throw ConfigError(name + " not found (run scripts/bootstrap.sh)");
}

// Runs a command to completion (as `user` when set); throws with its output on failure.
void RunSync(const std::vector<std::string>& argv, const std::string& user, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (!user.empty()) {
      passwd* pw = ::getpwnam(user.c_str());
      if (!pw || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0) ::_exit(126);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw TransientError(argv[0] + " failed (see " + log + ")");
  }
}

}  // namespace

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

DevStack::DevStack(StackOptions options) : options_(std::move(options)) {
  if (options_.herald_binary.empty()) options_.herald_binary = fs::read_symlink("/proc/self/exe").string();
  options_.state_dir = fs::absolute(options_.state_dir).lexically_normal().string();
}

DevStack::~DevStack() { Down(); }

std::string DevStack::LogFile(const std::string& name) const {
  return options_.state_dir + "/logs/" + name + ".log";
}

void DevStack::Spawn(Child& c) {
  std::string log = LogFile(c.name);
  std::vector<std::string> envs;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, "HERALD_", 7) != 0) envs.emplace_back(*e);
  }
  for (const auto& [k, v] : c.env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (auto& a : c.argv) args.push_back(a.data());
  args.push_back(nullptr);
  passwd* pw = c.run_as.empty() ? nullptr : ::getpwnam(c.run_as.c_str());
  if (!c.run_as.empty() && !pw) throw ConfigError("user " + c.run_as + " does not exist");

  pid_t pid = ::fork();
  if (pid < 0) throw TransientError(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (pw && (::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0)) ::_exit(126);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // after setuid, which clears it
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  c.pid = pid;
  std::ofstream(options_.state_dir + "/pids/" + c.name + ".pid") << pid << "\n";
}

void DevStack::WaitReady(Child& c) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.pid = -1;
      throw TransientError(c.name + " exited during start-up (see " + LogFile(c.name) + ")");
    }
    if (c.ready_http.empty()) {
      if (PortAnswers(c.ready_port)) return;
    } else {
      try {
        http::Client client({std::chrono::milliseconds(200), std::chrono::milliseconds(1000), "herald-dev", ""});
        if (client.Get("http://127.0.0.1:" + std::to_string(c.ready_port) + c.ready_http).status == 200) return;
      } catch (const TransientError&) {
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw TransientError(c.name + " did not become ready within 60 s (see " + LogFile(c.name) + ")");
}

void DevStack::StopChild(Child& c) noexcept {
  if (c.pid <= 0) return;
  ::kill(-c.pid, c.stop_signal);
  ::kill(c.pid, c.stop_signal);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int status = 0;
  while (::waitpid(c.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(-c.pid, SIGKILL);
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  c.pid = -1;
  std::error_code ec;
  fs::remove(options_.state_dir + "/pids/" + c.name + ".pid", ec);
}

void DevStack::StartPostgres() {
  std::string bin = PgBinDir();
  bool root = ::geteuid() == 0;
  std::string user = root ? "postgres" : "";
  if (root) {
    char tmpl[] = "/tmp/herald-pg-XXXXXX";
    if (!::mkdtemp(tmpl)) throw TransientError("mkdtemp failed");
    pg_data_ = tmpl;
    pg_data_is_temp_ = true;
    passwd* pw = ::getpwnam("postgres");
    if (!pw) throw ConfigError("the postgres user does not exist (install postgresql)");
    if (::chown(pg_data_.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw TransientError("chown " + pg_data_);
    std::ofstream(options_.state_dir + "/pg.path") << pg_data_ << "\n";
  } else {
    pg_data_ = options_.state_dir + "/pg";
    fs::create_directories(pg_data_);
  }
  std::string data = pg_data_ + "/data";
  RunSync({bin + "/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
           "--no-instructions"},
          user, LogFile("postgres"));
  int port = FreePort();
  Child c;
  c.name = "postgres";
  c.argv = {bin + "/postgres", "-D", data, "-p", std::to_string(port), "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=" + pg_data_, "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200"};
  c.run_as = user;
  c.ready_port = port;
  c.stop_signal = SIGINT;  // fast shutdown
  children_.push_back(c);
  Spawn(children_.back());
  WaitReady(children_.back());
  std::string admin_url = "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/postgres";
  // The port answers before the server accepts logins; retry briefly while it starts.
  for (int attempt = 0;; ++attempt) {
    try {
      pqxx::connection conn(admin_url);
      pqxx::nontransaction tx(conn);
      tx.exec("CREATE DATABASE herald");
      break;
    } catch (const pqxx::broken_connection&) {
      if (attempt > 100) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  env_["HERALD_PG_URL"] = "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/herald";
  auto conn = pg::Connect(env_["HERALD_PG_URL"]);
  pg::Migrate(*conn);
  templates::LoadDefaultTemplates(*conn, *schema::Registry::Load());
}

void DevStack::Up() {
  fs::create_directories(options_.state_dir + "/logs");
  fs::create_directories(options_.state_dir + "/pids");
  std::string mail = options_.state_dir + "/mail";
  fs::create_directories(mail);
  auto& log = *Logger("dev");
  try {
    // Broker.
    int broker_port = options_.broker_port;
    if (broker_port == 0 || !PortFree(broker_port)) broker_port = FreePort();
    Child broker{"broker", {options_.herald_binary, "dev", "broker", "--port", std::to_string(broker_port)}};
    broker.ready_port = broker_port;
    children_.push_back(broker);
    Spawn(children_.back());
    WaitReady(children_.back());
    env_["HERALD_BROKERS"] = "127.0.0.1:" + std::to_string(broker_port);

    StartPostgres();

    int redis_port = FreePort();
    fs::create_directories(options_.state_dir + "/redis");
    // An append-only file in the state directory (fsync every second; a SIGTERM shutdown
    // writes it out), so a restarted Redis comes back with its delivery claims, parked
    // notifications and leases: losing the claims would let redeliveries send twice.
    Child redis{"redis", {Which("redis-server"), "--port", std::to_string(redis_port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
                          "--dir", options_.state_dir + "/redis"}};
    redis.ready_port = redis_port;
    children_.push_back(redis);
    Spawn(children_.back());
    WaitReady(children_.back());
    env_["HERALD_REDIS_URL"] = "redis://127.0.0.1:" + std::to_string(redis_port) + "/0";

    std::string sink = options_.state_dir + "/smtp_sink.py";
    for (const auto& f : embedded::DevScripts()) {
      if (f.path == "smtp_sink.py") std::ofstream(sink) << f.content;
    }
    int smtp_port = FreePort();
    Child smtp{"smtp", {Which("python3"), sink, "--port", std::to_string(smtp_port), "--dir", mail}};
    smtp.ready_port = smtp_port;
    children_.push_back(smtp);
    Spawn(children_.back());
    WaitReady(children_.back());
    env_["HERALD_SMTP_URL"] = "smtp://127.0.0.1:" + std::to_string(smtp_port);
    env_["HERALD_SMTP_DIR"] = mail;

    std::map<std::string, int> fake_ports;
    Child fakes{"fakes", {options_.herald_binary, "dev", "fakes", "--users", std::to_string(options_.fake_users)}};
    // The fake sms and push providers require a bearer token, as real ones do, so the stack
    // exercises HERALD_SMS_TOKEN / HERALD_PUSH_TOKEN end to end.
    env_["HERALD_SMS_TOKEN"] = "dev-sms-" + RandomUuid().substr(0, 8);
    env_["HERALD_PUSH_TOKEN"] = "dev-push-" + RandomUuid().substr(0, 8);
    fakes.env[kFakeSmsTokenEnv] = env_["HERALD_SMS_TOKEN"];
    fakes.env[kFakePushTokenEnv] = env_["HERALD_PUSH_TOKEN"];
    for (const char* role : {"auth", "ugc", "movies", "sms", "telegram", "push"}) {
      fake_ports[role] = FreePort();
      fakes.argv.push_back(std::string("--") + role + "-port");
      fakes.argv.push_back(std::to_string(fake_ports[role]));
    }
    fakes.ready_port = fake_ports["push"];
    fakes.ready_http = "/_fake/health";
    children_.push_back(fakes);
    Spawn(children_.back());
    WaitReady(children_.back());
    env_["HERALD_AUTH_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["auth"]);
    env_["HERALD_UGC_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["ugc"]);
    env_["HERALD_MOVIES_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["movies"]);
    env_["HERALD_SMS_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["sms"]);
    env_["HERALD_TELEGRAM_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["telegram"]);
    env_["HERALD_PUSH_URL"] = "http://127.0.0.1:" + std::to_string(fake_ports["push"]);
    env_["HERALD_INGEST_TOKEN"] = "dev-ingest-" + RandomUuid().substr(0, 8);
    // The admin API's tokens: one with the write scope, one read-only.
    env_["HERALD_ADMIN_TOKEN"] = "write:dev-admin-" + RandomUuid().substr(0, 8) + ",read:dev-read-" + RandomUuid().substr(0, 8);

    if (options_.with_stages) {
      for (const std::vector<std::string>& stage :
           {std::vector<std::string>{"ingest"}, {"admin"}, {"plan"}, {"enrich"}, {"deliver", "--channel", "email"},
            {"deliver", "--channel", "sms"}, {"deliver", "--channel", "telegram"}, {"deliver", "--channel", "push"},
            {"ledger"}, {"retry"}, {"scheduler"}}) {
        Child c;
        c.name = stage.size() == 1 ? stage[0] : stage[0] + "-" + stage[2];
        c.argv = {options_.herald_binary};
        c.argv.insert(c.argv.end(), stage.begin(), stage.end());
        c.env = env_;
        for (const auto& [k, v] : options_.stage_env) c.env[k] = v;
        c.ready_port = FreePort();
        c.env["HERALD_HTTP_HOST"] = "127.0.0.1";
        c.env["HERALD_HTTP_PORT"] = std::to_string(c.ready_port);
        c.ready_http = "/healthz";
        NoteApiUrl(c);
        children_.push_back(c);
      }
      for (auto& c : children_) {
        if (c.pid > 0) continue;
        for (const char* k : {"HERALD_INGEST_URL", "HERALD_ADMIN_URL", "HERALD_UNSUBSCRIBE_URL"}) c.env[k] = env_[k];
        Spawn(c);
      }
      for (auto& c : children_) {
        if (c.ready_http.empty() || c.name == "fakes") continue;
        // A stage's HTTP port comes from FreePort(): another process may take it before the
        // stage binds it (outgoing connections use the same ephemeral range). A stage that
        // exits during start-up is started again on a fresh port, twice at most.
        for (int attempt = 1;; ++attempt) {
          try {
            WaitReady(c);
            break;
          } catch (const TransientError&) {
            if (c.pid > 0 || attempt == 3 || c.env.count("HERALD_HTTP_PORT") == 0) throw;
            c.ready_port = FreePort();
            c.env["HERALD_HTTP_PORT"] = std::to_string(c.ready_port);
            NoteApiUrl(c);
            Spawn(c);
          }
        }
      }
    }
    env_["HERALD_STATE_DIR"] = options_.state_dir;
    WriteEnvFile();
  } catch (...) {
    log.error("start-up failed; stopping what was started");
    Down();
    throw;
  }
}

void DevStack::NoteApiUrl(const Child& c) {
  std::string url = "http://127.0.0.1:" + std::to_string(c.ready_port);
  if (c.name == "ingest") env_["HERALD_INGEST_URL"] = url;
  if (c.name == "admin") {
    env_["HERALD_ADMIN_URL"] = url;
    env_["HERALD_UNSUBSCRIBE_URL"] = url + "/v1/unsubscribe";
  }
}

void DevStack::WriteEnvFile() {
  std::ofstream out(options_.state_dir + "/dev.env");
  out << "# Herald development stack: source this file (. dev.env) to use it.\n";
  for (const auto& [k, v] : env_) out << "export " << k << "='" << v << "'\n";
}

void DevStack::Down() noexcept {
  // Stages first (they drain into the services), then the services in reverse start order.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) StopChild(*it);
  children_.clear();
  if (pg_data_is_temp_ && !pg_data_.empty()) {
    std::error_code ec;
    fs::remove_all(pg_data_, ec);
    fs::remove(options_.state_dir + "/pg.path", ec);
    pg_data_.clear();
  }
}

std::string DevStack::Summary() const {
  std::ostringstream s;
  auto get = [&](const char* k) {
    auto it = env_.find(k);
    return it == env_.end() ? std::string("-") : it->second;
  };
  s << "Herald development stack is up (state in " << options_.state_dir << ")\n"
    << "  Kafka (embedded broker)  " << get("HERALD_BROKERS") << "\n"
    << "  ingest API               " << get("HERALD_INGEST_URL") << "/v1/events  (token " << get("HERALD_INGEST_TOKEN") << ")\n"
    << "  admin API                " << get("HERALD_ADMIN_URL") << "  (tokens " << get("HERALD_ADMIN_TOKEN") << ")\n"
    << "  manager console          " << get("HERALD_ADMIN_URL") << "/console/  (API docs at /docs)\n"
    << "  PostgreSQL               " << get("HERALD_PG_URL") << "\n"
    << "  Redis                    " << get("HERALD_REDIS_URL") << "\n"
    << "  SMTP sink                " << get("HERALD_SMTP_URL") << "  -> mail in " << get("HERALD_SMTP_DIR") << "\n"
    << "  fake auth / ugc / movies " << get("HERALD_AUTH_URL") << " " << get("HERALD_UGC_URL") << " " << get("HERALD_MOVIES_URL") << "\n"
    << "  fake sms / telegram / push " << get("HERALD_SMS_URL") << " " << get("HERALD_TELEGRAM_URL") << " " << get("HERALD_PUSH_URL") << "\n"
    << "  logs                     " << options_.state_dir << "/logs/\n"
    << "  environment              " << options_.state_dir << "/dev.env\n";
  return s.str();
}

void DevStack::Kill(const std::string& name, int signal) {
  for (auto& c : children_) {
    if (c.name != name || c.pid <= 0) continue;
    // SIGTERM means "stop cleanly": a child that stops promptly on another signal gets that
    // one (PostgreSQL's SIGTERM is a smart shutdown, which waits for every client to leave).
    const bool stop = signal == SIGTERM || signal == SIGINT;
    ::kill(c.pid, signal == SIGTERM ? c.stop_signal : signal);
    int status = 0;
    if (signal == SIGKILL) {
      ::waitpid(c.pid, &status, 0);
      c.pid = -1;
    } else if (stop) {
      c.stopping = true;
    }
    return;
  }
  throw InvalidInput("no running process named " + name);
}

bool DevStack::IsRunning(const std::string& name) {
  for (auto& c : children_) {
    if (c.name != name || c.pid <= 0) continue;
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.pid = -1;
      return false;
    }
    return true;
  }
  return false;
}

void DevStack::Start(const std::string& name) {
  for (auto& c : children_) {
    if (c.name != name) continue;
    if (c.stopping && c.pid > 0) {
      // Asked to stop and not gone yet: wait for its exit (it may be writing its data out),
      // as StopChild() would, rather than take it for running.
      StopChild(c);
    }
    c.stopping = false;
    if (IsRunning(name)) return;
    Spawn(c);
    WaitReady(c);
    return;
  }
  throw InvalidInput("no process named " + name);
}

int DevStack::Port(const std::string& name) const {
  for (const auto& c : children_) {
    if (c.name == name) return c.ready_port;
  }
  throw InvalidInput("no process named " + name);
}

pid_t DevStack::Pid(const std::string& name) const {
  for (const auto& c : children_) {
    if (c.name == name) return c.pid;
  }
  return -1;
}

std::vector<std::string> DevStack::Names() const {
  std::vector<std::string> out;
  for (const auto& c : children_) out.push_back(c.name);
  return out;
}

int StopDetached(const std::string& state_dir) {
  std::string dir = fs::absolute(state_dir).lexically_normal().string();
  std::ifstream in(dir + "/supervisor.pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) {
    Logger("dev")->error("no stack is running from {} (no supervisor.pid)", dir);
    return 1;
  }
  if (::kill(pid, SIGTERM) != 0) {
    Logger("dev")->warn("supervisor {} is not running", pid);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Anything the supervisor could not stop (it was killed) is stopped here.
  std::error_code ec;
  if (fs::is_directory(dir + "/pids", ec)) {
    for (const auto& e : fs::directory_iterator(dir + "/pids", ec)) {
      std::ifstream p(e.path());
      pid_t child = 0;
      if (p >> child && child > 0) {
        ::kill(-child, SIGKILL);
        ::kill(child, SIGKILL);
      }
      fs::remove(e.path(), ec);
    }
  }
  std::ifstream pg(dir + "/pg.path");
  std::string pg_path;
  if (pg >> pg_path && pg_path.rfind("/tmp/herald-pg-", 0) == 0) fs::remove_all(pg_path, ec);
  fs::remove(dir + "/pg.path", ec);
  fs::remove(dir + "/supervisor.pid", ec);
  return ::kill(pid, 0) == 0 ? 1 : 0;
}

}  // namespace herald::dev
