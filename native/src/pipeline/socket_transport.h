// The Transport of CPU stages in several processes: host buffers over TCP, one connection per
// neighbouring pair (rank r to r+1 for the activations; the last rank to rank 0 for the logits, on
// a Transport of its own). Each message is its byte length (8 bytes) and the bytes. GPU stages use
// NCCL instead (pipeline/cuda/nccl_transport.h); this one exists so that the pipeline over
// processes runs, and is tested, without GPUs.
//
// Wiring (pipeline/cpu_ranks.cc): every rank opens a DataListener before the rendezvous and says
// its port in its hello; the leader's reply tells each rank where the others listen. Each rank
// then connects where it sends (DialPeer) and accepts where it receives (AcceptPeers): connects
// complete in the listener's backlog, so the order cannot deadlock.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/ranks.h"
#include "pipeline/remote.h"
#include "pipeline/transport.h"

namespace hs::pipeline {

// What a data connection carries: the activations of the pipeline, or the last rank's logits.
enum class DataChannel : int32_t { Activations = 1, Logits = 2 };

class DataListener {
 public:
  DataListener();  // all interfaces, a port the kernel picks
  ~DataListener();
  DataListener(const DataListener&) = delete;
  DataListener& operator=(const DataListener&) = delete;
  int port() const { return port_; }
  // Accepts the connections of `peers` (each says its channel, rank and the pipeline token first,
  // pipeline/token.h); a connection from anyone else is dropped. Returns peer rank → connected fd.
  // Throws std::runtime_error on timeout.
  std::map<int, int> AcceptPeers(DataChannel channel, const std::vector<int>& peers, double timeout_s,
                                 const std::string& token);

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Connects to host:port (retrying until timeout_s) and introduces itself as `from_rank` on
// `channel` with the pipeline token. Returns the connected fd.
int DialPeer(const std::string& host, int port, DataChannel channel, int from_rank, double timeout_s,
             const std::string& token);

// The last rank's logits, host memory at both ends, over one TCP connection (the CPU and the GPU
// ranks alike). The leader: the other ranks behind `link`, their logits accepted on `data` from the
// last rank. The last rank: its channel to the leader's data listener at host:port.
std::unique_ptr<LinkedRemoteRanks> RemoteRanksWithSocketLogits(std::unique_ptr<LeaderLink> link, DataListener& data,
                                                               const RankOptions& r, int vocab);
std::unique_ptr<LogitsChannel> DialSocketLogits(const std::string& host, int port, const RankOptions& r);

class SocketTransport : public Transport {
 public:
  // `peers`: rank → connected fd (owned from now on).
  SocketTransport(int rank, int world_size, std::map<int, int> peers);
  ~SocketTransport() override;
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void Send(int peer, const void* buf, size_t bytes, void* stream = nullptr) override;
  void Recv(int peer, void* buf, size_t bytes, void* stream = nullptr) override;
  void Abort(const std::string& why) override;

 private:
  int Fd(int peer) const;
  [[noreturn]] void Lost(int peer);
  int rank_, world_;
  std::map<int, int> peers_;
  std::mutex mu_;
  std::string lost_;  // why, once aborted
};

}  // namespace hs::pipeline
