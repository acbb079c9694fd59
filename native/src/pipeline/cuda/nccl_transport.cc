#include "pipeline/cuda/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <stdexcept>
#include <string>

static_assert(NCCL_UNIQUE_ID_BYTES == hs::pipeline::kNcclIdBytes, "NCCL unique id size");

namespace hs::pipeline {
namespace {

void Check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}
void Check(cudaError_t r, const char* what) {
  if (r != cudaSuccess) throw std::runtime_error(std::string("nccl transport: ") + what + ": " + cudaGetErrorString(r));
}

class NcclTransport : public Transport {
 public:
  NcclTransport(ncclComm_t comm, int rank, int world, int device)
      : comm_(comm), rank_(rank), world_(world), device_(device) {}
  ~NcclTransport() override { ncclCommDestroy(comm_); }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void Send(int peer, const void* buf, size_t bytes, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    Check(cudaSetDevice(device_), "cudaSetDevice");
    Check(ncclSend(buf, bytes, ncclUint8, CheckPeer(peer), comm_, s), "ncclSend");
    Check(cudaStreamSynchronize(s), "send");
  }
  void Recv(int peer, void* buf, size_t bytes, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    Check(cudaSetDevice(device_), "cudaSetDevice");
    Check(ncclRecv(buf, bytes, ncclUint8, CheckPeer(peer), comm_, s), "ncclRecv");
    Check(cudaStreamSynchronize(s), "recv");
  }

 private:
  int CheckPeer(int peer) const {
    if (peer < 0 || peer >= world_ || peer == rank_)
      throw std::invalid_argument("nccl peer " + std::to_string(peer) + " is not another rank");
    return peer;
  }
  ncclComm_t comm_;
  int rank_, world_, device_;
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
