#include "pipeline/cpu_ranks.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/cpu_backend.h"
#include "pipeline/pipeline_backend.h"
#include "pipeline/remote.h"
#include "pipeline/rendezvous.h"
#include "pipeline/socket_transport.h"

namespace hs::pipeline {
namespace {

struct DataAddress {
  std::string host;
  int port = 0;
};

// The transport part of the rendezvous reply: every rank's data listener, by rank. Rank 0's host
// is left empty: each rank reaches the leader at the host of --leader-address.
std::vector<uint8_t> AddressTail(int leader_port, const std::vector<RankHello>& hellos) {
  std::vector<uint8_t> v;
  auto put = [&v](const std::string& host, int port) {
    const uint16_t p = (uint16_t)port, n = (uint16_t)host.size();
    v.insert(v.end(), reinterpret_cast<const uint8_t*>(&p), reinterpret_cast<const uint8_t*>(&p) + 2);
    v.insert(v.end(), reinterpret_cast<const uint8_t*>(&n), reinterpret_cast<const uint8_t*>(&n) + 2);
    v.insert(v.end(), host.begin(), host.end());
  };
  put("", leader_port);
  for (const RankHello& h : hellos) put(h.host, h.data_port);
  return v;
}

std::vector<DataAddress> DecodeAddresses(const std::vector<uint8_t>& tail, int world_size, const std::string& leader) {
  std::vector<DataAddress> out;
  size_t at = 0;
  auto bad = [] { return std::runtime_error("rendezvous: the leader's reply is not a CPU pipeline join"); };
  for (int r = 0; r < world_size; ++r) {
    uint16_t port = 0, n = 0;
    if (at + 4 > tail.size()) throw bad();
    std::memcpy(&port, tail.data() + at, 2);
    std::memcpy(&n, tail.data() + at + 2, 2);
    at += 4;
    if (at + n > tail.size() || port == 0 || (r > 0 && n == 0)) throw bad();
    out.push_back({r == 0 ? leader : std::string(tail.begin() + at, tail.begin() + at + n), port});
    at += n;
  }
  if (at != tail.size()) throw bad();
  return out;
}

}  // namespace

std::unique_ptr<Backend> MakeCpuLeader(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                       int threads, const RankOptions& r) {
  CheckRank(cfg, r);
  if (r.rank != 0) throw std::invalid_argument("the leader is rank 0");
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[0];
  auto stage = std::make_unique<cpu::CpuBackend>(cfg, weights, pools, threads, mine);
  DataListener data;  // the last rank's logits come here
  auto link = LeaderLink::Listen(r.leader_address, r.world_size, GroupCheck{ModelKey(cfg, weights.format()), r.token});
  std::vector<RankHello> ranks;
  link->AcceptRanksReplying(
      [&](const std::vector<RankHello>& hellos, int) {
        ranks = hellos;
        return EncodeJoin(pools.config(), AddressTail(data.port(), hellos));
      },
      r.timeout_s);
  std::map<int, int> to_next{
      {1, DialPeer(ranks[0].host, ranks[0].data_port, DataChannel::Activations, 0, r.timeout_s, r.token)}};
  auto tr = std::make_unique<SocketTransport>(0, r.world_size, std::move(to_next));
  auto remote = RemoteRanksWithSocketLogits(std::move(link), data, r, cfg.vocab_size);
  return LeaderBackend(std::move(stage), std::move(tr), std::move(remote));
}

void RunCpuRank(const ModelConfig& cfg, const HostWeights& weights, int threads, const RankOptions& r) {
  CheckRank(cfg, r);
  if (r.rank == 0) throw std::invalid_argument("rank 0 leads: use MakeCpuLeader");
  DataListener data;  // rank r - 1's activations come here
  std::vector<uint8_t> blob, tail;
  auto link = WorkerLink::Connect(r.leader_address, r.rank, r.world_size, r.timeout_s, &blob, data.port(),
                                  GroupCheck{ModelKey(cfg, weights.format()), r.token});
  const LayerRange mine = SplitLayers(cfg.num_layers, r.world_size)[r.rank];
  const PoolConfig pc = DecodeJoin(blob, mine, DType::F32, &tail);
  const std::vector<DataAddress> at = DecodeAddresses(tail, r.world_size, LeaderHost(r));
  CachePools pools(cfg, pc);
  cpu::CpuBackend stage(cfg, weights, pools, threads, mine);
  const bool last = r.rank == r.world_size - 1;
  std::map<int, int> peers;
  if (!last)
    peers[r.rank + 1] =
        DialPeer(at[r.rank + 1].host, at[r.rank + 1].port, DataChannel::Activations, r.rank, r.timeout_s, r.token);
  std::unique_ptr<LogitsChannel> out;
  if (last) out = DialSocketLogits(at[0].host, at[0].port, r);
  for (auto& [peer, fd] : data.AcceptPeers(DataChannel::Activations, {r.rank - 1}, r.timeout_s, r.token))
    peers[peer] = fd;
  SocketTransport tr(r.rank, r.world_size, std::move(peers));
  ServeRank(stage, tr, *link, out.get(), cfg.vocab_size);
}

}  // namespace hs::pipeline
