// The small TCP rendezvous of a pipeline whose stages run in several processes (one per GPU or
// pod). Rank 0, the leader, listens at --leader-address; every other rank connects, says who it is
// (rank, world size, the key of the model it loaded, and the port of its own data listener, if it
// has one) and, once every rank has joined, gets a reply blob (the NCCL unique ids, or the data
// addresses of the other ranks). A rank that contradicts the group is refused with a reason it
// reports (another world size or model, a rank out of range or taken). The connections then
// stay open as the control channel: the leader sends each step's plan as a frame, in step order, to every rank. Only
// plans and ids go over the socket; activations go over NCCL. Bounded: connecting and accepting give up after
// `timeout_s`; frames are at most kMaxFrameBytes. A lost rank is noticed on these connections (LinkWatch): a process
// that exits closes them at once; a node that vanishes is found by TCP keepalive (kKeepAliveIdleS + kKeepAliveProbes ×
// kKeepAliveIntervalS, about 25 s).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/link_watch.h"

namespace hs::pipeline {

constexpr uint64_t kMaxFrameBytes = uint64_t{1} << 30;
constexpr int kKeepAliveIdleS = 10, kKeepAliveIntervalS = 5, kKeepAliveProbes = 3;

// "host:port" or "[v6]:port"; throws std::invalid_argument otherwise.
void SplitHostPort(const std::string& address, std::string* host, int* port);

// What a rank said when it joined, and where the leader saw it come from.
// What the leader and every rank must agree on (0 / empty: not checked). The token is a secret:
// it is compared, never logged or echoed.
struct GroupCheck {
  uint64_t model_key = 0;  // pipeline/ranks.h ModelKey
  std::string token;       // pipeline/token.h
};

struct RankHello {
  int rank = 0;
  std::string host;   // the rank's address as the leader's socket sees it (numeric)
  int data_port = 0;  // 0: none
};

class LeaderLink {
 public:
  // Listens on the address's port on all interfaces (port 0: one the kernel picks, see port()).
  // Every rank's hello must carry `check`: a wrong token is refused (that connection only, so a
  // stranger cannot end the rendezvous); another model key ends it.
  static std::unique_ptr<LeaderLink> Listen(const std::string& address, int world_size, GroupCheck check = {});
  // Accepts one connection per rank 1..world_size-1 and, once all have joined, answers rank r with
  // reply_for(hellos, r) (hellos by rank - 1). A connection that is not a rank's hello is dropped;
  // throws std::runtime_error on timeout, a duplicate or out-of-range rank, or a rank with another
  // world size.
  using ReplyFor = std::function<std::vector<uint8_t>(const std::vector<RankHello>& hellos, int rank)>;
  void AcceptRanksReplying(const ReplyFor& reply_for, double timeout_s);
  // The same reply for every rank.
  void AcceptRanks(const std::vector<uint8_t>& reply, double timeout_s);
  ~LeaderLink();  // sends every rank the stop frame
  // Sends `frame` to every rank (rank order). Throws PeerLostError when a rank is gone.
  void Broadcast(const std::vector<uint8_t>& frame);
  // Watches every rank's connection (they send nothing after their hello, so any input is the end
  // of one). When one ends, on_lost("pipeline rank N ...") runs and every other rank's connection
  // is shut down, so that the whole group learns at once. After AcceptRanks only.
  std::unique_ptr<LinkWatch> Watch(LinkWatch::OnLost on_lost);
  int port() const { return port_; }

 private:
  LeaderLink() = default;
  int listen_fd_ = -1;
  int world_size_ = 1;
  GroupCheck check_;
  std::vector<int> fds_;  // by rank - 1
  int port_ = 0;
};

class WorkerLink {
 public:
  // Connects to the leader (retrying until `timeout_s`), says hello (with this rank's data listener
  // port, 0 for none, and its GroupCheck), returns the leader's reply. Throws std::runtime_error with
  // the leader's reason when it refuses this rank.
  static std::unique_ptr<WorkerLink> Connect(const std::string& address, int rank, int world_size, double timeout_s,
                                             std::vector<uint8_t>* reply, int data_port = 0,
                                             const GroupCheck& check = {});
  ~WorkerLink();
  // The next frame; false once the leader stopped (its stop frame). A connection that ends without
  // one is a lost leader: PeerLostError.
  bool Receive(std::vector<uint8_t>* frame);
  // Watches the leader's connection: on_lost("pipeline rank 0 ...") runs when it ends. It also
  // ends after a normal stop, so on_lost must be harmless once this rank's steps are over.
  std::unique_ptr<LinkWatch> Watch(LinkWatch::OnLost on_lost);

 private:
  WorkerLink() = default;
  int fd_ = -1;
};

}  // namespace hs::pipeline
