#include "pipeline/remote.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "core/errors.h"
#include "pipeline/plan_codec.h"

namespace hs::pipeline {
namespace {

class HostChannel : public LogitsChannel {
 public:
  HostChannel(std::unique_ptr<Transport> tr, int peer) : tr_(std::move(tr)), peer_(peer) {}
  void Send(const float* host, size_t floats) override { tr_->Send(peer_, host, floats * sizeof(float)); }
  void Recv(float* host, size_t floats) override { tr_->Recv(peer_, host, floats * sizeof(float)); }
  void Abort(const std::string& why) override { tr_->Abort(why); }

 private:
  std::unique_ptr<Transport> tr_;
  int peer_;
};

}  // namespace

std::unique_ptr<LogitsChannel> HostLogitsChannel(std::unique_ptr<Transport> tr, int peer) {
  return std::make_unique<HostChannel>(std::move(tr), peer);
}

std::unique_ptr<Backend> LeaderBackend(std::unique_ptr<Stage> stage, std::unique_ptr<Transport> to_next,
                                       std::unique_ptr<RemoteRanks> remote) {
  std::vector<std::unique_ptr<Stage>> stages;
  stages.push_back(std::move(stage));
  std::vector<std::unique_ptr<Transport>> eps;
  eps.push_back(std::move(to_next));
  return std::make_unique<PipelineBackend>(std::move(stages), std::move(eps), nullptr, nullptr, std::move(remote));
}

LinkedRemoteRanks::LinkedRemoteRanks(std::unique_ptr<LeaderLink> link, std::unique_ptr<LogitsChannel> logits, int vocab)
    : link_(std::move(link)), logits_(std::move(logits)), vocab_(vocab) {}

void LinkedRemoteRanks::Watch(std::function<void(const std::string& why)> abort_local) {
  if (watch_) throw std::logic_error("the remote ranks are watched already");
  watch_ = link_->Watch([this, abort_local](const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(lost_mu_);
      lost_ = why;
    }
    std::fprintf(stderr, "[pipeline rank 0] %s: aborting the pipeline's transfers\n", why.c_str());
    abort_local(why);
    logits_->Abort(why);
  });
}

void LinkedRemoteRanks::ThrowIfLost() {
  std::lock_guard<std::mutex> lock(lost_mu_);
  if (!lost_.empty()) throw PeerLostError(lost_);
}

void LinkedRemoteRanks::Submit(const BatchPlan& plan) {
  ThrowIfLost();
  link_->Broadcast(EncodePlan(plan));
}

void LinkedRemoteRanks::CollectLogits(const BatchPlan& plan, float* logits) {
  ThrowIfLost();
  const size_t n = plan.seqs.size() * (size_t)vocab_;
  buf_.resize(n + 1);
  logits_->Recv(buf_.data(), n + 1);
  if (buf_[n] != 0.f) throw std::runtime_error("the pipeline's last rank failed this step (see its log)");
  if (logits) std::memcpy(logits, buf_.data(), n * sizeof(float));
}

void ServeRank(Stage& stage, Transport& tr, WorkerLink& link, LogitsChannel* logits_out, int vocab) {
  const int rank = tr.rank();
  if (rank == 0) throw std::invalid_argument("rank 0 is the leader: it does not serve a rank");
  if (stage.last() != (logits_out != nullptr)) throw std::invalid_argument("the last rank sends logits, no other");
  // Stopped when ServeRank returns, while `tr` and `logits_out` (the caller's) still exist.
  const auto watch = link.Watch([&tr, logits_out](const std::string& why) {
    tr.Abort(why);
    if (logits_out) logits_out->Abort(why);
  });
  std::vector<uint8_t> frame;
  std::vector<float> logits;
  while (link.Receive(&frame)) {
    const auto owned = DecodePlan(frame.data(), frame.size());
    const BatchPlan& plan = owned->plan;
    const int tokens = PlanTokens(plan);
    const size_t bytes = stage.hidden_bytes(tokens);
    tr.Recv(rank - 1, stage.hidden_in(tokens), bytes, stage.stream());
    StepCounters c;
    if (!stage.last()) {
      stage.RunStage(plan, nullptr, c);  // a failure ends this rank (see the header)
      tr.Send(rank + 1, stage.hidden_out(), bytes, stage.stream());
      continue;
    }
    const size_t n = plan.seqs.size() * (size_t)vocab;
    logits.assign(n + 1, 0.f);
    try {
      stage.RunStage(plan, logits.data(), c);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[pipeline rank %d] step failed: %s\n", rank, e.what());
      logits[n] = 1.f;
    }
    logits_out->Send(logits.data(), n + 1);
  }
}

}  // namespace hs::pipeline
