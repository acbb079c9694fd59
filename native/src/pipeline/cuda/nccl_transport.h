// The GPU Transport: ncclSend/ncclRecv of device buffers over one communicator whose ranks are the
// pipeline stages (compiled only with NCCL: HS_WITH_NCCL). Calls are enqueued on the stage's compute
// stream and waited for, so a Send returns when its buffer may be reused and a Recv when the data
// is there. One process × N GPUs: NcclLocalEndpoints (ncclCommInitAll). Several processes: the
// leader makes an id (NcclNewUniqueId), hands it to every rank over the rendezvous
// (pipeline/rendezvous.h), and each rank joins with NcclRankEndpoint (ncclCommInitRank).
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "pipeline/transport.h"

namespace hs::pipeline {

constexpr size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
using NcclId = std::array<char, kNcclIdBytes>;

// One endpoint per device, rank i on devices[i].
std::vector<std::unique_ptr<Transport>> NcclLocalEndpoints(const std::vector<int>& devices);
NcclId NcclNewUniqueId();
std::unique_ptr<Transport> NcclRankEndpoint(const NcclId& id, int rank, int world_size, int device);

}  // namespace hs::pipeline
