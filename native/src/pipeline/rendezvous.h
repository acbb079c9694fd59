// The small TCP rendezvous of a pipeline whose stages run in several processes (one per GPU or
// pod). Rank 0, the leader, listens at --leader-address; every other rank connects, says who it is
// (rank, world size) and gets a reply blob (the NCCL unique ids). The connections then stay open
// as the control channel: the leader sends each step's plan as a frame, in step order, to every
// rank. Only plans and ids go over the socket; activations go over NCCL.
// Bounded: connecting and accepting give up after `timeout_s`; frames are at most kMaxFrameBytes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hs::pipeline {

constexpr uint64_t kMaxFrameBytes = uint64_t{1} << 30;

// "host:port" or "[v6]:port"; throws std::invalid_argument otherwise.
void SplitHostPort(const std::string& address, std::string* host, int* port);

class LeaderLink {
 public:
  // Listens on the address's port on all interfaces (port 0: one the kernel picks, see port()).
  static std::unique_ptr<LeaderLink> Listen(const std::string& address, int world_size);
  // Accepts one connection per rank 1..world_size-1, each answered with `reply`. A connection that
  // is not a rank's hello is dropped; throws std::runtime_error on timeout, a duplicate or
  // out-of-range rank, or a rank with another world size.
  void AcceptRanks(const std::vector<uint8_t>& reply, double timeout_s);
  ~LeaderLink();  // sends every rank the stop frame
  // Sends `frame` to every rank (rank order). Throws std::runtime_error when a rank is gone.
  void Broadcast(const std::vector<uint8_t>& frame);
  int port() const { return port_; }

 private:
  LeaderLink() = default;
  int listen_fd_ = -1;
  int world_size_ = 1;
  std::vector<int> fds_;  // by rank - 1
  int port_ = 0;
};

class WorkerLink {
 public:
  // Connects to the leader (retrying until `timeout_s`), says hello, returns the leader's reply.
  static std::unique_ptr<WorkerLink> Connect(const std::string& address, int rank, int world_size, double timeout_s,
                                             std::vector<uint8_t>* reply);
  ~WorkerLink();
  // The next frame; false once the leader stopped (stop frame or closed connection).
  bool Receive(std::vector<uint8_t>* frame);

 private:
  WorkerLink() = default;
  int fd_ = -1;
};

}  // namespace hs::pipeline
