#include "pipeline/link_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace hs::pipeline {

LinkWatch::LinkWatch(std::vector<int> fds, std::vector<std::string> names, short events, OnLost on_lost)
    : fds_(std::move(fds)), names_(std::move(names)), events_(events), on_lost_(std::move(on_lost)) {
  if (names_.size() != fds_.size()) throw std::invalid_argument("link watch: one name per connection");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("link watch: eventfd failed: ") + std::strerror(errno));
  thread_ = std::thread([this] { Run(); });
}

LinkWatch::~LinkWatch() {
  const uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
  thread_.join();
  ::close(wake_fd_);
}

void LinkWatch::Run() {
  std::vector<pollfd> p;
  for (int fd : fds_) p.push_back({fd, events_, 0});
  p.push_back({wake_fd_, POLLIN, 0});
  for (;;) {
    for (pollfd& x : p) x.revents = 0;
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      on_lost_(std::string("link watch: poll failed: ") + std::strerror(errno));
      return;
    }
    if (p.back().revents) return;  // stopped
    for (size_t i = 0; i + 1 < p.size(); ++i) {
      if (!p[i].revents) continue;
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
      on_lost_(names_[i] + (err ? std::string(" is unreachable (") + std::strerror(err) + ")" : " disconnected"));
      return;
    }
  }
}

}  // namespace hs::pipeline
