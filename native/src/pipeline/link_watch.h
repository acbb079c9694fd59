// A watch over connections whose peers must stay (the control connections of a pipeline over
// processes, pipeline/rendezvous.h): a thread of its own polls them and reports the first one that
// ends, so that nothing waits for ever on a peer that is gone.
#pragma once
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace hs::pipeline {

// Watches control connections from a thread of its own and runs `on_lost(why)` once, on that
// thread, when one of them ends. Destroying the watch stops the thread (joined), so whatever
// on_lost touches only needs to outlive the watch.
class LinkWatch {
 public:
  using OnLost = std::function<void(const std::string& why)>;
  // fds[i] is named names[i] in `why`; `events` is what counts as the end of a connection besides
  // POLLHUP/POLLERR (POLLRDHUP; plus POLLIN where the peer never sends).
  LinkWatch(std::vector<int> fds, std::vector<std::string> names, short events, OnLost on_lost);
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

 private:
  void Run();
  std::vector<int> fds_;
  std::vector<std::string> names_;
  short events_;
  OnLost on_lost_;
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace hs::pipeline
