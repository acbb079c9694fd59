#include "pipeline/cuda/cuda_ranks.h"

#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "pipeline/cuda/cuda_stage.h"
#include "pipeline/cuda/nccl_transport.h"
#include "pipeline/cuda/numa_placement.h"
#include "pipeline/remote.h"

namespace hs::pipeline {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("cuda ranks: ") + what + ": " + cudaGetErrorString(e));
}

// Logits through NCCL: host → a device staging buffer → ncclSend; ncclRecv → staging → host.
class NcclLogits : public LogitsChannel {
 public:
  NcclLogits(std::unique_ptr<Transport> tr, int peer, int device) : tr_(std::move(tr)), peer_(peer), device_(device) {
    Check(cudaSetDevice(device_), "cudaSetDevice");
    Check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  }
  ~NcclLogits() override {
    cudaSetDevice(device_);
    if (buf_) cudaFree(buf_);
    cudaStreamDestroy(stream_);
  }
  void Send(const float* host, size_t floats) override {
    Grow(floats);
    Check(cudaMemcpyAsync(buf_, host, floats * 4, cudaMemcpyHostToDevice, stream_), "logits to device");
    tr_->Send(peer_, buf_, floats * 4, stream_);  // ordered after the copy on the same stream
  }
  void Recv(float* host, size_t floats) override {
    Grow(floats);
    tr_->Recv(peer_, buf_, floats * 4, stream_);
    Check(cudaMemcpyAsync(host, buf_, floats * 4, cudaMemcpyDeviceToHost, stream_), "logits to host");
    Check(cudaStreamSynchronize(stream_), "logits");
  }
  void Abort(const std::string& why) override { tr_->Abort(why); }

 private:
  void Grow(size_t floats) {
    Check(cudaSetDevice(device_), "cudaSetDevice");
    if (floats <= cap_) return;
    if (buf_) Check(cudaFree(buf_), "cudaFree");
    buf_ = nullptr;
    Check(cudaMalloc(reinterpret_cast<void**>(&buf_), floats * 4), "cudaMalloc logits");
    cap_ = floats;
  }
  std::unique_ptr<Transport> tr_;
  int peer_, device_;
  cudaStream_t stream_ = nullptr;
  float* buf_ = nullptr;
  size_t cap_ = 0;
};

// The transport part of the rendezvous reply: the two NCCL ids.
struct NcclIds {
  NcclId acts, logits;
};

std::vector<uint8_t> IdsTail(const NcclId& a, const NcclId& b) {
  const NcclIds ids{a, b};
  std::vector<uint8_t> v(sizeof ids);
  std::memcpy(v.data(), &ids, sizeof ids);
  return v;
}

}  // namespace

std::unique_ptr<Backend> MakeCudaLeader(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                        const cuda::CudaOptions& o, const RankOptions& r) {
  CheckRank(cfg, r);
  if (r.rank != 0) throw std::invalid_argument("the leader is rank 0");
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[0];
  auto stage = MakeCudaStage(cfg, weights, pools, mine, o);  // before the rendezvous: fail early, alone
  auto link = LeaderLink::Listen(r.leader_address, r.world_size, GroupCheck{ModelKey(cfg, weights.format()), r.token});
  const NcclId acts = NcclNewUniqueId(), logits = NcclNewUniqueId();
  link->AcceptRanks(EncodeJoin(pools.config(), IdsTail(acts, logits)), r.timeout_s);
  auto tr = NcclRankEndpoint(acts, 0, r.world_size, o.device);
  auto ltr = NcclRankEndpoint(logits, 0, r.world_size, o.device);
  auto remote = std::make_unique<LinkedRemoteRanks>(
      std::move(link), std::make_unique<NcclLogits>(std::move(ltr), r.world_size - 1, o.device), cfg.vocab_size);
  std::vector<std::unique_ptr<Stage>> stages;
  stages.push_back(std::move(stage));
  std::vector<std::unique_ptr<Transport>> eps;
  eps.push_back(std::move(tr));
  return std::make_unique<PipelineBackend>(std::move(stages), std::move(eps), nullptr, nullptr, std::move(remote));
}

void RunCudaRank(const ModelConfig& cfg, const HostWeights& weights, const cuda::CudaOptions& o, const RankOptions& r,
                 const std::vector<numa::StagePlacement>& placement) {
  CheckRank(cfg, r);
  if (r.rank == 0) throw std::invalid_argument("rank 0 leads: use MakeCudaLeader");
  std::vector<uint8_t> blob, tail;
  auto link = WorkerLink::Connect(r.leader_address, r.rank, r.world_size, r.timeout_s, &blob, 0,
                                  GroupCheck{ModelKey(cfg, weights.format()), r.token});
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[r.rank];
  // Only this rank's layers' cache (the block ids are the leader's).
  const PoolConfig pc = DecodeJoin(blob, mine, DType::F16, &tail);
  NcclIds j;
  if (tail.size() != sizeof j) throw std::runtime_error("rendezvous: the leader's reply is not a GPU pipeline join");
  std::memcpy(&j, tail.data(), sizeof j);
  std::unique_ptr<CachePools> pools = placement.empty()
                                          ? std::make_unique<CachePools>(cfg, pc, cuda::PinnedAlloc, cuda::PinnedFree)
                                          : PlacedPools(cfg, pc, placement);
  cuda::CudaOptions so = o;
  if (!placement.empty()) so.numa_node = placement[0].node;
  auto stage = MakeCudaStage(cfg, weights, *pools, mine, so);
  auto tr = NcclRankEndpoint(j.acts, r.rank, r.world_size, o.device);
  auto ltr = NcclRankEndpoint(j.logits, r.rank, r.world_size, o.device);
  std::unique_ptr<LogitsChannel> out;
  if (stage->last()) out = std::make_unique<NcclLogits>(std::move(ltr), 0, o.device);
  ServeRank(*stage, *tr, *link, out.get(), cfg.vocab_size);
}

}  // namespace hs::pipeline
