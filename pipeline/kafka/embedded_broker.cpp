#include "herald/kafka/embedded_broker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/topics/catalog.hpp"
#include "kafka/rdkafka_util.hpp"

namespace herald::kafka {
namespace {

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  void Reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int Get() const { return fd_; }

 private:
  int fd_ = -1;
};

sockaddr_in Loopback(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw ConfigError("embedded broker: '" + host + "' is not an IPv4 address");
  }
  return addr;
}

// Copies bytes both ways between two sockets until either side closes or `stop` is set.
void Pump(Fd a, Fd b, const std::atomic<bool>& stop) {
  char buf[64 * 1024];
  pollfd fds[2] = {{a.Get(), POLLIN, 0}, {b.Get(), POLLIN, 0}};
  while (!stop.load()) {
    int n = ::poll(fds, 2, 200);
    if (n < 0 && errno != EINTR) return;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = ::recv(fds[i].fd, buf, sizeof buf, 0);
      if (r <= 0) return;
      ssize_t off = 0;
      while (off < r) {
        ssize_t w = ::send(fds[1 - i].fd, buf + off, static_cast<size_t>(r - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

}  // namespace

struct EmbeddedBroker::Impl {
  Options options;
  detail::KafkaHandle rk;  // hosts the mock cluster; must outlive it
  rd_kafka_mock_cluster_t* cluster = nullptr;  // owned, destroyed in ~Impl
  std::string direct;
  std::string target_host;
  int target_port = 0;
  Fd listener;
  int port = 0;
  std::atomic<bool> stop{false};
  std::mutex mu;
  struct PumpThread {
    std::atomic<bool> done{false};
    std::thread thread;
  };
  std::list<PumpThread> pumps;
  std::thread acceptor;

  ~Impl() {
    stop.store(true);
    if (listener.Get() >= 0) ::shutdown(listener.Get(), SHUT_RDWR);
    if (acceptor.joinable()) acceptor.join();
    {
      std::lock_guard lock(mu);
      for (auto& p : pumps) p.thread.join();
    }
    if (cluster) rd_kafka_mock_cluster_destroy(cluster);
  }

  void AcceptLoop() {
    while (!stop.load()) {
      pollfd pfd{listener.Get(), POLLIN, 0};
      int n = ::poll(&pfd, 1, 200);
      if (n <= 0) continue;
      Fd client{::accept(listener.Get(), nullptr, nullptr)};
      if (client.Get() < 0) continue;
      Fd upstream{::socket(AF_INET, SOCK_STREAM, 0)};
      auto addr = Loopback(target_host, target_port);
      if (::connect(upstream.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        Logger("broker")->warn("relay: cannot reach mock broker {}: {}", direct, strerror(errno));
        continue;
      }
      int one = 1;
      setsockopt(client.Get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(upstream.Get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(mu);
      // Reap relays whose connection ended, so a long-lived broker does not accumulate them.
      for (auto it = pumps.begin(); it != pumps.end();) {
        if (it->done.load()) {
          it->thread.join();
          it = pumps.erase(it);
        } else {
          ++it;
        }
      }
      auto& slot = pumps.emplace_back();
      slot.thread = std::thread([&slot, &stop = stop, c = std::move(client),
                                 u = std::move(upstream)]() mutable {
        Pump(std::move(c), std::move(u), stop);
        slot.done.store(true);
      });
    }
  }
};

EmbeddedBroker::EmbeddedBroker(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  auto conf = detail::BuildConf({{"client.id", "herald-embedded-broker"}}, {});
  impl_->rk = detail::CreateHandle(RD_KAFKA_PRODUCER, std::move(conf));
  impl_->cluster = rd_kafka_mock_cluster_new(impl_->rk.get(), options.brokers);
  if (!impl_->cluster) throw TransientError("cannot start the mock Kafka cluster");
  impl_->direct = rd_kafka_mock_cluster_bootstraps(impl_->cluster);

  // Relay the first mock broker's port on the stable port.
  std::string first = impl_->direct.substr(0, impl_->direct.find(','));
  auto colon = first.rfind(':');
  impl_->target_host = first.substr(0, colon);
  impl_->target_port = std::stoi(first.substr(colon + 1));

  impl_->listener = Fd{::socket(AF_INET, SOCK_STREAM, 0)};
  int one = 1;
  setsockopt(impl_->listener.Get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto addr = Loopback(options.host, options.port);
  if (::bind(impl_->listener.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw ConfigError("embedded broker: cannot listen on " + options.host + ":" +
                      std::to_string(options.port) + ": " + strerror(errno) +
                      " (choose another --port)");
  }
  ::listen(impl_->listener.Get(), 64);
  socklen_t len = sizeof addr;
  getsockname(impl_->listener.Get(), reinterpret_cast<sockaddr*>(&addr), &len);
  impl_->port = ntohs(addr.sin_port);

  for (const auto& t : topics::Catalog().All()) {
    CreateTopic(t.name, std::max(t.partitions, options.min_partitions),
                std::min(t.replication, options.brokers));
  }
  impl_->acceptor = std::thread([impl = impl_.get()] { impl->AcceptLoop(); });
}

EmbeddedBroker::~EmbeddedBroker() = default;

std::string EmbeddedBroker::Bootstrap() const {
  return impl_->options.host + ":" + std::to_string(impl_->port);
}

std::string EmbeddedBroker::DirectBootstraps() const { return impl_->direct; }

void EmbeddedBroker::CreateTopic(const std::string& name, int partitions, int replication) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(impl_->cluster, name.c_str(), partitions, replication);
  if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    throw TransientError("cannot create topic " + name + ": " + rd_kafka_err2str(err));
  }
}

void EmbeddedBroker::SetBrokerDown(int id) { rd_kafka_mock_broker_set_down(impl_->cluster, id); }
void EmbeddedBroker::SetBrokerUp(int id) { rd_kafka_mock_broker_set_up(impl_->cluster, id); }

}  // namespace herald::kafka
