#include "pipeline/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/errors.h"
#include "pipeline/token.h"

namespace hs::pipeline {
namespace {

// "HSR4": magic, rank, world size, data port (i32 each), model key (u64), token length (u16), token.
constexpr uint32_t kHelloMagic = 0x34525348;
enum Frame : uint32_t { kData = 1, kStop = 2, kRefused = 3 };

using Clock = std::chrono::steady_clock;

// A rank whose hello contradicts the group: fatal for the rendezvous.
struct RankError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double Left(Clock::time_point deadline) { return std::chrono::duration<double>(deadline - Clock::now()).count(); }

void WriteAll(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::runtime_error(std::string("rendezvous: send failed: ") + std::strerror(errno));
    b += w;
    n -= (size_t)w;
  }
}

// False on a clean end of stream before any byte; throws on an error or a partial read.
bool ReadAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, b + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && got == 0) return false;
    if (r <= 0) throw std::runtime_error("rendezvous: connection closed mid-message");
    got += (size_t)r;
  }
  return true;
}

template <class T>
T Read(int fd) {
  T v{};
  if (!ReadAll(fd, &v, sizeof v)) throw std::runtime_error("rendezvous: connection closed");
  return v;
}

void SendFrame(int fd, uint32_t type, const std::vector<uint8_t>& payload) {
  const uint64_t n = payload.size();
  WriteAll(fd, &type, sizeof type);
  WriteAll(fd, &n, sizeof n);
  if (n) WriteAll(fd, payload.data(), n);
}

// Lets the kernel notice a peer whose node vanished (no FIN ever comes): see rendezvous.h.
void KeepAlive(int fd) {
  int one = 1, idle = kKeepAliveIdleS, interval = kKeepAliveIntervalS, probes = kKeepAliveProbes;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

// Waits until fd is readable (accept or hello) or the deadline passes.
bool Readable(int fd, Clock::time_point deadline) {
  for (;;) {
    const double left = Left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, (int)(left * 1000) + 1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

}  // namespace

void SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    throw std::invalid_argument("leader address must be HOST:PORT, got '" + address + "'");
  std::string h = address.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string p = address.substr(colon + 1);
  int v = 0;
  for (char c : p) {
    if (c < '0' || c > '9' || v > 65535) throw std::invalid_argument("leader address port is not a number");
    v = v * 10 + (c - '0');
  }
  if (v < 0 || v > 65535) throw std::invalid_argument("leader address port out of range");
  *host = h;
  *port = v;
}

std::unique_ptr<LeaderLink> LeaderLink::Listen(const std::string& address, int world_size, GroupCheck check) {
  std::string host;
  int port = 0;
  SplitHostPort(address, &host, &port);
  if (world_size < 2) throw std::invalid_argument("a rendezvous needs a world size of at least 2");
  const int lfd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (lfd < 0) throw std::runtime_error("rendezvous: socket failed");
  int one = 1, zero = 0;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 too
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  a.sin6_port = htons((uint16_t)port);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, world_size) != 0) {
    ::close(lfd);
    throw std::runtime_error("rendezvous: cannot listen on port " + std::to_string(port));
  }
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  std::unique_ptr<LeaderLink> link(new LeaderLink());
  link->listen_fd_ = lfd;
  link->world_size_ = world_size;
  link->check_ = std::move(check);
  link->port_ = ntohs(a.sin6_port);
  link->fds_.assign(world_size - 1, -1);
  return link;
}

// The peer's numeric address ("10.0.0.7", "::1"; IPv4-mapped IPv6 shown as IPv4).
std::string PeerHost(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  char host[NI_MAXHOST] = {0};
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0)
    return "";
  std::string h = host;
  if (h.rfind("::ffff:", 0) == 0 && h.find('.') != std::string::npos) h = h.substr(7);
  return h;
}

void LeaderLink::AcceptRanks(const std::vector<uint8_t>& reply, double timeout_s) {
  AcceptRanksReplying([&reply](const std::vector<RankHello>&, int) { return reply; }, timeout_s);
}

void LeaderLink::AcceptRanksReplying(const ReplyFor& reply_for, double timeout_s) {
  const int world_size = world_size_, lfd = listen_fd_, one = 1;
  if (lfd < 0) throw std::logic_error("rendezvous: ranks were accepted already");
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  auto fail = [&](const std::string& why) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    throw std::runtime_error("rendezvous: " + why);
  };
  int joined = 0;
  std::vector<RankHello> hellos(world_size - 1);
  while (joined < world_size - 1) {
    if (!Readable(lfd, deadline))
      fail("timed out with " + std::to_string(joined) + " of " + std::to_string(world_size - 1) + " ranks joined");
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    // A connection that is not a rank's hello (or says nothing in time) is dropped; the others go
    // on. A rank that contradicts the group (world size, duplicate, range) ends the rendezvous.
    try {
      if (!Readable(fd, deadline)) throw std::runtime_error("no hello");
      timeval tv{1, 0};  // a hello is small: a peer that stalls inside it is dropped, not waited for
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const uint32_t magic = Read<uint32_t>(fd);
      if (magic != kHelloMagic) throw std::runtime_error("not a rank");
      const int32_t rank = Read<int32_t>(fd), world = Read<int32_t>(fd), data_port = Read<int32_t>(fd);
      const uint64_t key = Read<uint64_t>(fd);
      const uint16_t token_bytes = Read<uint16_t>(fd);
      if (token_bytes > kMaxTokenBytes) throw std::runtime_error("not a rank");
      std::string token(token_bytes, '\0');
      if (token_bytes && !ReadAll(fd, token.data(), token_bytes)) throw std::runtime_error("not a rank");
      // First: what a stranger says must not count (it could end the rendezvous for everyone).
      if (!SameToken(token, check_.token)) {
        const std::string why = "wrong pipeline token (HYBRIDSERVE_PIPELINE_TOKEN differs from rank 0's)";
        SendFrame(fd, kRefused, std::vector<uint8_t>(why.begin(), why.end()));
        throw std::runtime_error(why);
      }
      if (world != world_size)
        throw RankError("rank " + std::to_string(rank) + " says world size " + std::to_string(world) +
                        ", the leader has " + std::to_string(world_size));
      if (rank < 1 || rank >= world_size || fds_[rank - 1] >= 0)
        throw RankError("rank " + std::to_string(rank) + " is out of range or joined twice");
      if (check_.model_key != 0 && key != check_.model_key)
        throw RankError("rank " + std::to_string(rank) +
                        " loaded another model than rank 0 (its model config differs: every rank needs the same "
                        "model and weight format)");
      if (data_port < 0 || data_port > 65535) throw std::runtime_error("not a rank");
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      KeepAlive(fd);
      tv = timeval{0, 0};  // the hello is in: the connection blocks normally from now on
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      hellos[rank - 1] = RankHello{rank, PeerHost(fd), data_port};
      fds_[rank - 1] = fd;
      ++joined;
    } catch (const RankError& e) {
      try {
        SendFrame(fd, kRefused, std::vector<uint8_t>(e.what(), e.what() + std::strlen(e.what())));
      } catch (...) {  // the rank is gone already: it learns nothing, the leader still fails
      }
      ::close(fd);
      fail(e.what());
    } catch (const std::runtime_error&) {
      ::close(fd);
    }
  }
  ::close(listen_fd_);
  listen_fd_ = -1;
  for (int r = 1; r < world_size; ++r) SendFrame(fds_[r - 1], kData, reply_for(hellos, r));
}

LeaderLink::~LeaderLink() {
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : fds_) {
    if (fd < 0) continue;
    try {
      SendFrame(fd, kStop, {});
    } catch (...) {
    }
    ::close(fd);
  }
}

void LeaderLink::Broadcast(const std::vector<uint8_t>& frame) {
  for (size_t i = 0; i < fds_.size(); ++i) {
    try {
      SendFrame(fds_[i], kData, frame);
    } catch (const std::runtime_error& e) {
      throw PeerLostError("pipeline rank " + std::to_string(i + 1) + " is gone (" + e.what() + ")");
    }
  }
}

std::unique_ptr<LinkWatch> LeaderLink::Watch(LinkWatch::OnLost on_lost) {
  if (listen_fd_ >= 0) throw std::logic_error("rendezvous: watch the ranks after accepting them");
  std::vector<std::string> names;
  for (size_t i = 0; i < fds_.size(); ++i) names.push_back("pipeline rank " + std::to_string(i + 1));
  const std::vector<int> fds = fds_;
  return std::make_unique<LinkWatch>(fds, names, POLLIN | POLLRDHUP, [fds, on_lost](const std::string& why) {
    on_lost(why);
    for (int fd : fds) ::shutdown(fd, SHUT_RDWR);  // the other ranks see the leader go
  });
}

std::unique_ptr<WorkerLink> WorkerLink::Connect(const std::string& address, int rank, int world_size, double timeout_s,
                                                std::vector<uint8_t>* reply, int data_port, const GroupCheck& check) {
  std::string host;
  int port = 0;
  SplitHostPort(address, &host, &port);
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  std::unique_ptr<WorkerLink> link(new WorkerLink());
  for (;;) {  // the leader may not listen yet: retry until the deadline
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) == 0) {
      for (addrinfo* ai = res; ai && link->fd_ < 0; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
          link->fd_ = fd;
        else
          ::close(fd);
      }
      ::freeaddrinfo(res);
    }
    if (link->fd_ >= 0) break;
    if (Left(deadline) <= 0) throw std::runtime_error("rendezvous: cannot reach the leader at " + address);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int one = 1;
  ::setsockopt(link->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  KeepAlive(link->fd_);
  const uint32_t magic = kHelloMagic;
  const int32_t hello[3] = {rank, world_size, data_port};
  WriteAll(link->fd_, &magic, sizeof magic);
  WriteAll(link->fd_, hello, sizeof hello);
  if (check.token.size() > kMaxTokenBytes)
    throw std::invalid_argument("the pipeline token is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  const uint16_t token_bytes = (uint16_t)check.token.size();
  WriteAll(link->fd_, &check.model_key, sizeof check.model_key);
  WriteAll(link->fd_, &token_bytes, sizeof token_bytes);
  if (token_bytes) WriteAll(link->fd_, check.token.data(), token_bytes);
  bool answered = false;
  try {
    answered = Readable(link->fd_, deadline) && link->Receive(reply);
  } catch (const PeerLostError&) {  // the leader dropped this hello
  }
  if (!answered) throw std::runtime_error("rendezvous: the leader did not answer rank " + std::to_string(rank));
  return link;
}

WorkerLink::~WorkerLink() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<LinkWatch> WorkerLink::Watch(LinkWatch::OnLost on_lost) {
  return std::make_unique<LinkWatch>(std::vector<int>{fd_}, std::vector<std::string>{"pipeline rank 0 (the leader)"},
                                     POLLRDHUP, std::move(on_lost));
}

bool WorkerLink::Receive(std::vector<uint8_t>* frame) {
  uint32_t type = 0;
  if (!ReadAll(fd_, &type, sizeof type))
    throw PeerLostError("pipeline rank 0 (the leader) disconnected without stopping the pipeline");
  const uint64_t n = Read<uint64_t>(fd_);
  if (type == kStop) return false;
  if (type == kRefused && n <= 4096) {
    std::string why(n, '\0');
    if (n && !ReadAll(fd_, why.data(), n)) why = "(no reason)";
    throw std::runtime_error("rendezvous: the leader refused this rank: " + why);
  }
  if (type != kData || n > kMaxFrameBytes) throw std::runtime_error("rendezvous: malformed frame from the leader");
  frame->resize(n);
  if (n && !ReadAll(fd_, frame->data(), n)) throw std::runtime_error("rendezvous: connection closed mid-frame");
  return true;
}

}  // namespace hs::pipeline
