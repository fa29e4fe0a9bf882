#pragma once
// The embedded development stack: broker, PostgreSQL, Redis, SMTP sink, fake upstreams and
// providers, and every stage, as supervised child processes on free loopback ports, with all
// state in one directory. Children die with the supervisor (PR_SET_PDEATHSIG), so nothing is
// left behind even if the supervisor is killed.
//
// Not thread-safe; call from the thread that created it (the parent-death signal is tied to it).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <sys/types.h>

namespace herald::dev {

struct StackOptions {
  std::string state_dir = ".herald";
  std::string herald_binary;   // path of the herald executable (default: this process)
  int broker_port = 39092;     // stable bootstrap port; falls back to a free one if taken; 0 = any
  bool with_stages = true;
  std::map<std::string, std::string> stage_env;  // extra HERALD_* settings for the stages
  std::uint64_t fake_users = 1'000'000;  // synthetic users u-1..u-N served by the fake auth API
  bool quiet = false;
};

class DevStack {
 public:
  explicit DevStack(StackOptions options);
  ~DevStack();  // Down()
  DevStack(const DevStack&) = delete;
  DevStack& operator=(const DevStack&) = delete;

  /// Starts everything and waits until each part answers; writes <state>/dev.env.
  /// On failure stops what was started and throws, naming the part and its log file.
  void Up();
  /// Stops stages first, then the services; idempotent.
  void Down() noexcept;

  /// Every address and credential, as written to dev.env (HERALD_BROKERS, HERALD_PG_URL, ...).
  const std::map<std::string, std::string>& Env() const { return env_; }
  /// A human summary of where everything listens.
  std::string Summary() const;

  /// Process control for tests and operators: signal a child by name ("deliver-email", ...).
  /// SIGKILL waits for the child to die. SIGTERM asks it to stop the way it stops cleanly
  /// and promptly (PostgreSQL gets SIGINT, its fast shutdown: SIGTERM would wait for every
  /// client to disconnect). Other signals are just delivered (the broker takes its mock
  /// brokers down on SIGUSR1 and up on SIGUSR2).
  void Kill(const std::string& name, int signal);
  /// Starts a stopped (or killed) child again and waits until it answers. A child told to
  /// stop with SIGTERM/SIGINT is first waited for (15 s, then SIGKILL), so Kill(name,
  /// SIGTERM) followed by Start(name) restarts it; PostgreSQL and Redis come back with their
  /// data (Redis keeps an append-only file in the state directory).
  void Start(const std::string& name);
  bool IsRunning(const std::string& name);
  std::vector<std::string> Names() const;
  std::string LogFile(const std::string& name) const;
  /// The port a child answers on (a stage's HTTP port).
  int Port(const std::string& name) const;
  /// The process id of a running child (-1 when not running).
  pid_t Pid(const std::string& name) const;

  struct Child {
    std::string name;
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;
    std::string run_as;   // user name to drop to (postgres when root)
    int ready_port = 0;   // TCP port that answers when ready
    std::string ready_http;  // or an HTTP path on ready_port that must answer 200
    int stop_signal = 15;
    pid_t pid = -1;
    bool stopping = false;  // sent SIGTERM/SIGINT by Kill(), may not have exited yet
  };

 private:
  void Spawn(Child& c);
  void WaitReady(Child& c);
  void StopChild(Child& c) noexcept;
  void StartPostgres();
  void WriteEnvFile();
  /// Records the URL of an API stage (ingest, admin) for the others and dev.env.
  void NoteApiUrl(const Child& c);
  StackOptions options_;
  std::vector<Child> children_;
  std::map<std::string, std::string> env_;
  std::string pg_data_;
  bool pg_data_is_temp_ = false;
};

/// Stops a detached stack running from `state_dir`. Returns 0 when everything stopped.
int StopDetached(const std::string& state_dir);

/// A free TCP port on 127.0.0.1.
int FreePort();

}  // namespace herald::dev
