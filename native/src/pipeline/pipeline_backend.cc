#include "pipeline/pipeline_backend.h"

#include <atomic>
#include <exception>
#include <stdexcept>
#include <string>

namespace hs::pipeline {

struct PipelineBackend::Job {
  const BatchPlan* plan = nullptr;
  float* logits = nullptr;
  int tokens = 0;
  std::vector<StepCounters> counters;  // per stage, summed by the caller (no shared writes)
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // the first failure (under mu), set before `failed`
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

PipelineBackend::PipelineBackend(std::vector<std::unique_ptr<Stage>> stages,
                                 std::vector<std::unique_ptr<Transport>> endpoints, std::shared_ptr<void> keep_alive,
                                 std::function<void()> on_close, std::unique_ptr<RemoteRanks> remote)
    : keep_alive_(std::move(keep_alive)),
      stages_(std::move(stages)),
      endpoints_(std::move(endpoints)),
      on_close_(std::move(on_close)),
      remote_(std::move(remote)) {
  if (stages_.empty() || stages_.size() != endpoints_.size())
    throw std::invalid_argument("a pipeline needs one transport endpoint per stage");
  int next = 0;
  for (size_t s = 0; s < stages_.size(); ++s) {
    const LayerRange r = stages_[s]->layers();
    if (r.first != next || r.count() <= 0 || endpoints_[s]->rank() != (int)s)
      throw std::invalid_argument("pipeline stage " + std::to_string(s) + " does not continue the layer split");
    next = r.last;
  }
  if (stages_.back()->last() == (remote_ != nullptr))
    throw std::invalid_argument(remote_ ? "a pipeline with remote ranks cannot hold its last stage locally"
                                        : "the pipeline's last stage does not end the model");
  // Every Worker exists before any thread starts: a running thread reads workers_, which must not
  // be reallocated under it.
  const size_t threads = stages_.size() + (remote_ ? 1 : 0);
  for (size_t s = 0; s < threads; ++s) workers_.push_back(std::make_unique<Worker>());
  for (size_t s = 0; s < threads; ++s) workers_[s]->thread = std::thread([this, s] { RunWorker((int)s); });
  // remote_ is destroyed before endpoints_ (declaration order), and its watch with it.
  if (remote_)
    remote_->Watch([this](const std::string& why) {
      for (auto& e : endpoints_) e->Abort(why);
    });
}

PipelineBackend::~PipelineBackend() {
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->queue.push_back(nullptr);
    w->cv.notify_one();
  }
  if (on_close_) on_close_();
  for (auto& w : workers_) w->thread.join();
}

BackendInfo PipelineBackend::Info() const {
  BackendInfo bi = stages_.front()->Info();
  bi.device_name += " x " + std::to_string(stages_.size()) + " pipeline stages";
  return bi;
}

void PipelineBackend::Forward(const BatchPlan& plan, float* logits, StepCounters& counters) {
  if (plan.seqs.empty()) return;
  Job job;
  job.plan = &plan;
  job.logits = logits;
  job.tokens = PlanTokens(plan);
  job.counters.resize(stages_.size());
  {
    std::lock_guard<std::mutex> order(submit_mu_);
    if (remote_) remote_->Submit(plan);  // throws before any stage took the job
    for (auto& w : workers_) {
      std::lock_guard<std::mutex> lock(w->mu);
      w->queue.push_back(&job);
      w->cv.notify_one();
    }
  }
  {
    std::unique_lock<std::mutex> lock(job.mu);
    job.cv.wait(lock, [&] { return job.done; });
  }
  if (job.error) std::rethrow_exception(job.error);
  for (const StepCounters& c : job.counters) counters += c;
}

void PipelineBackend::RunWorker(int s) {
  Worker& w = *workers_[s];
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return !w.queue.empty(); });
      job = w.queue.front();
      w.queue.pop_front();
    }
    if (!job) return;
    if (s == (int)stages_.size())
      Collect(*job);
    else
      RunJob(s, *job);
  }
}

// Recv from the previous stage, run, Send to the next; the last stage completes the job. Only the
// first error is kept; later stages skip their compute once a job failed.
void PipelineBackend::RunJob(int s, Job& job) {
  Stage& stage = *stages_[s];
  Transport& tr = *endpoints_[s];
  const size_t bytes = stage.hidden_bytes(job.tokens);
  auto fail = [&job] { Fail(job); };
  try {
    if (!stage.first()) tr.Recv(s - 1, stage.hidden_in(job.tokens), bytes, stage.stream());
    if (!job.failed.load()) stage.RunStage(*job.plan, stage.last() ? job.logits : nullptr, job.counters[s]);
  } catch (...) {
    fail();
  }
  if (!stage.last()) {
    try {
      const void* out = job.failed.load() ? stage.hidden_in(job.tokens) : stage.hidden_out();
      tr.Send(s + 1, out, bytes, stage.stream());
    } catch (...) {
      fail();
    }
    return;
  }
  Complete(job);
}

// The leader's collector: the last (remote) rank's logits, in step order.
void PipelineBackend::Collect(Job& job) {
  try {
    remote_->CollectLogits(*job.plan, job.logits);
  } catch (...) {
    Fail(job);
  }
  Complete(job);
}

// Keeps the first error (the collector and a local stage may fail at once).
void PipelineBackend::Fail(Job& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  if (!job.error) job.error = std::current_exception();
  job.failed.store(true);
}

void PipelineBackend::Complete(Job& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  job.done = true;
  job.cv.notify_all();
}

}  // namespace hs::pipeline
