#include "pipeline/socket_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/errors.h"
#include "pipeline/token.h"

namespace hs::pipeline {
namespace {

constexpr uint32_t kDataMagic = 0x31445348;  // "HSD1"
using Clock = std::chrono::steady_clock;

Clock::time_point Deadline(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// False when the connection ended (or failed) before `n` bytes went.
bool SendAll(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    n -= (size_t)w;
  }
  return true;
}

// False when the connection ended (or failed) before `n` bytes came.
bool RecvAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t r = ::recv(fd, b, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= (size_t)r;
  }
  return true;
}

void TuneDataSocket(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

DataListener::DataListener() {
  fd_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("data listener: socket failed");
  int zero = 0;
  ::setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 too
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  socklen_t len = sizeof a;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd_);
    throw std::runtime_error(std::string("data listener: cannot listen: ") + std::strerror(errno));
  }
  port_ = ntohs(a.sin6_port);
}

DataListener::~DataListener() {
  if (fd_ >= 0) ::close(fd_);
}

// The introduction: magic, channel, rank (i32 each), token length (u16), token.
static bool ReadIntro(int fd, DataChannel channel, const std::vector<int>& peers, const std::string& token, int* rank) {
  int32_t intro[3] = {0, 0, 0};
  uint16_t n = 0;
  if (!RecvAll(fd, intro, sizeof intro) || !RecvAll(fd, &n, sizeof n) || n > kMaxTokenBytes) return false;
  std::string said(n, '\0');
  if (n && !RecvAll(fd, said.data(), n)) return false;
  *rank = intro[2];
  return SameToken(said, token) && (uint32_t)intro[0] == kDataMagic && intro[1] == (int32_t)channel &&
         std::find(peers.begin(), peers.end(), intro[2]) != peers.end();
}

std::map<int, int> DataListener::AcceptPeers(DataChannel channel, const std::vector<int>& peers, double timeout_s,
                                             const std::string& token) {
  const auto deadline = Deadline(timeout_s);
  std::map<int, int> got;
  while (got.size() < peers.size()) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    const int ready = left > 0 ? ::poll(&p, 1, (int)(left * 1000) + 1) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      for (auto& [rank, fd] : got) ::close(fd);
      throw std::runtime_error("pipeline data connections: timed out with " + std::to_string(got.size()) + " of " +
                               std::to_string(peers.size()) + " peers connected");
    }
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{1, 0};  // the introduction is small: a peer that stalls in it is dropped
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rank = -1;
    if (!ReadIntro(fd, channel, peers, token, &rank) || got.count(rank)) {
      ::close(fd);
      continue;
    }
    tv = timeval{0, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    TuneDataSocket(fd);
    got[rank] = fd;
  }
  return got;
}

int DialPeer(const std::string& host, int port, DataChannel channel, int from_rank, double timeout_s,
             const std::string& token) {
  if (token.size() > kMaxTokenBytes) throw std::invalid_argument("the pipeline token is too long");
  const auto deadline = Deadline(timeout_s);
  for (;;) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    int fd = -1;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) == 0) {
      for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
          ::close(fd);
          fd = -1;
        }
      }
      ::freeaddrinfo(res);
    }
    if (fd >= 0) {
      TuneDataSocket(fd);
      const int32_t intro[3] = {(int32_t)kDataMagic, (int32_t)channel, from_rank};
      const uint16_t n = (uint16_t)token.size();
      if (SendAll(fd, intro, sizeof intro) && SendAll(fd, &n, sizeof n) && SendAll(fd, token.data(), n)) return fd;
      ::close(fd);
    }
    if (Clock::now() >= deadline)
      throw std::runtime_error("pipeline data connections: cannot reach " + host + ":" + std::to_string(port));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

SocketTransport::SocketTransport(int rank, int world_size, std::map<int, int> peers)
    : rank_(rank), world_(world_size), peers_(std::move(peers)) {}

SocketTransport::~SocketTransport() {
  for (auto& [peer, fd] : peers_) ::close(fd);
}

int SocketTransport::Fd(int peer) const {
  const auto it = peers_.find(peer);
  if (it == peers_.end())
    throw std::invalid_argument("socket transport: rank " + std::to_string(rank_) + " has no connection to rank " +
                                std::to_string(peer));
  return it->second;
}

void SocketTransport::Lost(int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  throw PeerLostError(lost_.empty() ? "pipeline rank " + std::to_string(peer) + " disconnected" : lost_);
}

void SocketTransport::Send(int peer, const void* buf, size_t bytes, void*) {
  const int fd = Fd(peer);
  const uint64_t n = bytes;
  if (!SendAll(fd, &n, sizeof n) || !SendAll(fd, buf, bytes)) Lost(peer);
}

void SocketTransport::Recv(int peer, void* buf, size_t bytes, void*) {
  const int fd = Fd(peer);
  uint64_t n = 0;
  if (!RecvAll(fd, &n, sizeof n)) Lost(peer);
  if (n != bytes)
    throw std::logic_error("socket transport: message of " + std::to_string(n) + " bytes, receiver expected " +
                           std::to_string(bytes));
  if (!RecvAll(fd, buf, bytes)) Lost(peer);
}

// shutdown() (not close) ends a send or recv blocked in another thread and keeps the fd valid.
void SocketTransport::Abort(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!lost_.empty()) return;
  lost_ = why.empty() ? "a pipeline rank is gone" : why;
  for (auto& [peer, fd] : peers_) ::shutdown(fd, SHUT_RDWR);
}

std::unique_ptr<LinkedRemoteRanks> RemoteRanksWithSocketLogits(std::unique_ptr<LeaderLink> link, DataListener& data,
                                                               const RankOptions& r, int vocab) {
  const int last = r.world_size - 1;
  auto logits = std::make_unique<SocketTransport>(0, r.world_size,
                                                  data.AcceptPeers(DataChannel::Logits, {last}, r.timeout_s, r.token));
  return std::make_unique<LinkedRemoteRanks>(std::move(link), HostLogitsChannel(std::move(logits), last), vocab);
}

std::unique_ptr<LogitsChannel> DialSocketLogits(const std::string& host, int port, const RankOptions& r) {
  const int fd = DialPeer(host, port, DataChannel::Logits, r.rank, r.timeout_s, r.token);
  return HostLogitsChannel(std::make_unique<SocketTransport>(r.rank, r.world_size, std::map<int, int>{{0, fd}}), 0);
}

}  // namespace hs::pipeline
