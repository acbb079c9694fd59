// The in-process Transport: one FIFO of byte messages per ordered pair of ranks, shared by the
// endpoints that a LoopbackHub hands out. Send copies, so the sender may reuse its buffer at once.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/transport.h"

namespace hs::pipeline {

class LoopbackHub {
 public:
  explicit LoopbackHub(int world_size);
  int world_size() const { return world_size_; }
  // The endpoint of `rank` (the hub must outlive it).
  std::unique_ptr<Transport> Endpoint(int rank);
  // Wakes every blocked Recv with an error (used when the pipeline shuts down).
  void Close();
  // Close, as a lost rank does it: every blocked and later Send/Recv throws PeerLostError(why).
  void Abort(const std::string& why);

 private:
  friend class LoopbackEndpoint;
  struct Channel {
    std::deque<std::vector<uint8_t>> messages;
  };
  Channel& At(int from, int to) { return channels_[(size_t)from * world_size_ + to]; }
  void Push(int from, int to, const void* buf, size_t bytes);
  void Pop(int from, int to, void* buf, size_t bytes);
  [[noreturn]] void ThrowClosed() const;  // under mu_

  int world_size_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  std::string abort_why_;  // non-empty once aborted
  std::vector<Channel> channels_;
};

}  // namespace hs::pipeline
