#include "pipeline/cuda/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/errors.h"

static_assert(NCCL_UNIQUE_ID_BYTES == hs::pipeline::kNcclIdBytes, "NCCL unique id size");

namespace hs::pipeline {
namespace {

void Check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}
void Check(cudaError_t r, const char* what) {
  if (r != cudaSuccess) throw std::runtime_error(std::string("nccl transport: ") + what + ": " + cudaGetErrorString(r));
}

// Abort (from the link watch's thread) and the stage thread's Send/Recv: the enqueue holds mu_,
// so ncclCommAbort never frees the communicator under an ncclSend/ncclRecv call; the wait for the
// stream does not, so that ncclCommAbort can end it (NCCL's kernels poll the communicator's abort
// flag, which is how a blocked transfer to a dead peer returns).
class NcclTransport : public Transport {
 public:
  NcclTransport(ncclComm_t comm, int rank, int world, int device)
      : comm_(comm), rank_(rank), world_(world), device_(device) {}
  ~NcclTransport() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (lost_.empty()) ncclCommDestroy(comm_);  // an aborted communicator is freed already
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void Send(int peer, const void* buf, size_t bytes, void* stream) override {
    Transfer(
        peer, stream, [&](cudaStream_t s) { return ncclSend(buf, bytes, ncclUint8, peer, comm_, s); }, "ncclSend");
  }
  void Recv(int peer, void* buf, size_t bytes, void* stream) override {
    Transfer(
        peer, stream, [&](cudaStream_t s) { return ncclRecv(buf, bytes, ncclUint8, peer, comm_, s); }, "ncclRecv");
  }
  void Abort(const std::string& why) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_.empty()) return;
    lost_ = why.empty() ? "a pipeline rank is gone" : why;
    ncclCommAbort(comm_);
  }

 private:
  template <class Enqueue>
  void Transfer(int peer, void* stream, Enqueue enqueue, const char* what) {
    auto s = static_cast<cudaStream_t>(stream);
    CheckPeer(peer);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ThrowIfLost();
      Check(cudaSetDevice(device_), "cudaSetDevice");
      Check(enqueue(s), what);
    }
    const cudaError_t waited = cudaStreamSynchronize(s);
    std::lock_guard<std::mutex> lock(mu_);
    ThrowIfLost();  // aborted while waiting: the transfer did not happen
    Check(waited, what);
  }
  void ThrowIfLost() const {
    if (!lost_.empty()) throw PeerLostError(lost_);
  }
  int CheckPeer(int peer) const {
    if (peer < 0 || peer >= world_ || peer == rank_)
      throw std::invalid_argument("nccl peer " + std::to_string(peer) + " is not another rank");
    return peer;
  }
  ncclComm_t comm_;
  int rank_, world_, device_;
  std::mutex mu_;
  std::string lost_;  // why, once aborted
};

}  // namespace

std::vector<std::unique_ptr<Transport>> NcclLocalEndpoints(const std::vector<int>& devices) {
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n);
  Check(ncclCommInitAll(comms.data(), n, devices.data()), "ncclCommInitAll");
  std::vector<std::unique_ptr<Transport>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<NcclTransport>(comms[i], i, n, devices[i]));
  return out;
}

NcclId NcclNewUniqueId() {
  ncclUniqueId id;
  Check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  NcclId out;
  std::memcpy(out.data(), id.internal, kNcclIdBytes);
  return out;
}

std::unique_ptr<Transport> NcclRankEndpoint(const NcclId& id, int rank, int world_size, int device) {
  ncclUniqueId nid;
  std::memcpy(nid.internal, id.data(), kNcclIdBytes);
  Check(cudaSetDevice(device), "cudaSetDevice");
  ncclComm_t comm;
  Check(ncclCommInitRank(&comm, world_size, nid, rank), "ncclCommInitRank");
  return std::make_unique<NcclTransport>(comm, rank, world_size, device);
}

}  // namespace hs::pipeline
