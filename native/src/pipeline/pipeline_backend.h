// A Backend made of pipeline stages, each on its own thread with its own Transport endpoint.
//
// Forward may be called from several threads at once (one per step in flight, on disjoint
// sequences): each call becomes a job that enters every stage's FIFO in the same order, so that
// while stage s runs step g, stage s-1 already runs step g+1 (FlexGen's pipeline: every stage
// streams its own layers once per step, and with S steps in flight every stage is busy). With one
// step in flight the stages simply take turns.
//
// A stage that fails still hands a buffer of the right size on (its content unused), so that the
// later stages stay in step with the transport; the job then fails with the first error.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "pipeline/stage.h"
#include "pipeline/transport.h"

namespace hs::pipeline {

// The ranks of a pipeline that run in other processes, seen from the leader (pipeline/remote.h).
class RemoteRanks {
 public:
  virtual ~RemoteRanks() = default;
  // Sends the step's plan to every other rank; called in submission order.
  virtual void Submit(const BatchPlan& plan) = 0;
  // Receives the step's logits ([seqs, vocab]) from the last rank; called in submission order, from
  // one thread. Throws when that rank reports a failed step.
  virtual void CollectLogits(const BatchPlan& plan, float* logits) = 0;
  // Starts watching the other ranks. When one is gone, `abort_local(why)` runs (on the watch's
  // thread: it aborts the local stages' transports) and Submit/CollectLogits fail with
  // PeerLostError from then on, so that no step waits forever for a rank that is not there.
  virtual void Watch(std::function<void(const std::string& why)> abort_local) = 0;
};

class PipelineBackend : public Backend {
 public:
  // stages[i] talks through endpoints[i] (rank i); their layer ranges must tile [0, numLayers) in
  // order. `keep_alive` holds what the endpoints need (e.g. the LoopbackHub); `on_close` runs
  // before the threads are joined (e.g. closing the hub so that no Recv blocks forever).
  // With `remote`, the local stages are the first ranks only (the leader's); the later ranks run in
  // other processes, and a collector thread takes each step's logits from the last of them.
  PipelineBackend(std::vector<std::unique_ptr<Stage>> stages, std::vector<std::unique_ptr<Transport>> endpoints,
                  std::shared_ptr<void> keep_alive = nullptr, std::function<void()> on_close = nullptr,
                  std::unique_ptr<RemoteRanks> remote = nullptr);
  ~PipelineBackend() override;
  void Forward(const BatchPlan& plan, float* logits, StepCounters& counters) override;
  bool concurrent_forward() const override { return true; }
  BackendInfo Info() const override;
  int num_stages() const { return (int)stages_.size(); }

 private:
  struct Job;
  struct Worker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job*> queue;  // nullptr: stop
    std::thread thread;
  };
  void RunWorker(int s);  // s == stages_.size(): the collector
  void RunJob(int s, Job& job);
  void Collect(Job& job);
  static void Complete(Job& job);
  static void Fail(Job& job);  // call from a catch block

  std::shared_ptr<void> keep_alive_;  // first: outlives the endpoints
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<std::unique_ptr<Transport>> endpoints_;
  std::function<void()> on_close_;
  std::unique_ptr<RemoteRanks> remote_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex submit_mu_;  // one submission order for every stage
};

}  // namespace hs::pipeline
