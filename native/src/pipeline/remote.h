// Stages in several processes (one per GPU or pod). The leader (rank 0) runs the engine core and
// its own stage inside a PipelineBackend whose RemoteRanks is a LinkedRemoteRanks: each step's plan
// goes to the other ranks over the rendezvous link (pipeline/rendezvous.h), the activations between
// ranks over the Transport (NCCL between GPUs, TCP between CPU stages), and the last rank's logits
// back over a LogitsChannel (TCP in both cases: pipeline/socket_transport.h; cuda_ranks.cc says why
// not a second NCCL communicator). Every other rank runs ServeRank until the leader stops.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/pipeline_backend.h"
#include "pipeline/rendezvous.h"
#include "pipeline/stage.h"
#include "pipeline/transport.h"

namespace hs::pipeline {

// Host logits between the last rank and the leader. The message is the [seqs, vocab] floats plus
// one status float (0: the step ran; 1: it failed on that rank).
class LogitsChannel {
 public:
  virtual ~LogitsChannel() = default;
  virtual void Send(const float* host, size_t floats) = 0;
  virtual void Recv(float* host, size_t floats) = 0;
  // Aborts the transport under it (Transport::Abort).
  virtual void Abort(const std::string& why) = 0;
};

// Over a Transport of host memory (the loopback), to/from `peer`.
std::unique_ptr<LogitsChannel> HostLogitsChannel(std::unique_ptr<Transport> tr, int peer);

class LinkedRemoteRanks : public RemoteRanks {
 public:
  LinkedRemoteRanks(std::unique_ptr<LeaderLink> link, std::unique_ptr<LogitsChannel> logits, int vocab);
  void Submit(const BatchPlan& plan) override;
  void CollectLogits(const BatchPlan& plan, float* logits) override;
  void Watch(std::function<void(const std::string& why)> abort_local) override;

 private:
  void ThrowIfLost();
  std::unique_ptr<LeaderLink> link_;
  std::unique_ptr<LogitsChannel> logits_;
  int vocab_;
  std::vector<float> buf_;
  std::mutex lost_mu_;
  std::string lost_;                  // why, once a rank is gone
  std::unique_ptr<LinkWatch> watch_;  // last: stopped before the link and channel it uses go
};

// The leader's backend: its own stage (the first), its transport to rank 1, and the other ranks.
std::unique_ptr<Backend> LeaderBackend(std::unique_ptr<Stage> stage, std::unique_ptr<Transport> to_next,
                                       std::unique_ptr<RemoteRanks> remote);

// A rank other than the leader: for each plan from the leader, receive the hidden state from rank
// r-1, run the stage, and hand on the hidden state to rank r+1 or (the last rank) the logits to the
// leader. Returns when the leader stops. A step that fails on the last rank is reported to the
// leader; on a middle rank it ends the rank (rethrown: its neighbours cannot be kept in step
// without a status on the activations), which the leader sees as a lost rank. While it runs it
// watches the leader's connection: when the leader is gone, `tr` and `logits_out` are aborted and
// ServeRank throws PeerLostError instead of waiting forever.
void ServeRank(Stage& stage, Transport& tr, WorkerLink& link, LogitsChannel* logits_out, int vocab);

}  // namespace hs::pipeline
