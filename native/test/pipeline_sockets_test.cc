// Issue 15: CPU stages in several processes over the socket transport (pipeline/cpu_ranks.h,
// pipeline/socket_transport.h), here as threads; test/integration/pipeline-processes.test.ts runs
// them as real processes.
#include <chrono>
#include <thread>
#include <tuple>

#include <unistd.h>

#include "pipeline/cpu_ranks.h"
#include "pipeline/socket_transport.h"
#include "pipeline_remote_util.h"
#include "test.h"

using namespace hs;
using namespace hs::pipeline;
using namespace hs::pipeline::testing;

// CPU stages in three "processes" (threads here; test/integration/pipeline-processes.test.ts runs
// real ones) over the socket transport: the rendezvous hands out the data listeners, every rank
// loads only its layers, and the leader's logits equal one backend's; stopping the leader ends
// every rank without an error.
HS_TEST(pipeline_cpu_ranks_over_sockets_match_one_backend) {
  const Tiny t = TinyModel(5, 11, 16);
  const ModelConfig& cfg = t.cfg;
  HostWeights all(cfg, t.src, DType::F32);
  CachePools one_pools(cfg, t.pc);
  cpu::CpuBackend one(cfg, all, one_pools, 1);

  auto probe = LeaderLink::Listen("127.0.0.1:0", 2);  // a free port for the leader
  const int port = probe->port();
  probe.reset();
  RankOptions ro;
  ro.world_size = 3;
  ro.leader_address = "127.0.0.1:" + std::to_string(port);
  ro.timeout_s = 10;
  ro.token = "group-secret";  // the hellos and every data connection carry it
  const auto split = SplitLayers(cfg.num_layers, 3);
  ErrorCode rank_code[3] = {ErrorCode::Internal, ErrorCode::Internal, ErrorCode::Internal};
  auto rank_thread = [&](int r) {
    HostWeights w(cfg, SliceOf(t.src, split[r]), DType::F32);
    RankOptions me = ro;
    me.rank = r;
    try {
      RunCpuRank(cfg, w, 1, me);
    } catch (const std::exception& e) {
      rank_code[r] = CodeOf(e);
      std::fprintf(stderr, "rank %d: %s\n", r, e.what());  // shown when the test fails
    }
  };
  std::thread rank1(rank_thread, 1), rank2(rank_thread, 2);
  HostWeights w0(cfg, SliceOf(t.src, split[0]), DType::F32);
  CachePools pools0(cfg, SliceOf(t.pc, split[0]));
  RankOptions lead = ro;  // the rank threads read `ro`
  lead.rank = 0;
  auto leader = MakeCpuLeader(cfg, w0, pools0, 1, lead);

  const int32_t toks[4] = {9, 8, 7, 6};
  const BlockRef b0{CacheKind::KV, pools0.Allocate(CacheKind::KV), Tier::Host};
  const BlockRef b1{CacheKind::KV, one_pools.Allocate(CacheKind::KV), Tier::Host};
  HS_CHECK_EQ(b0.index, b1.index);
  BatchPlan p;
  p.seqs.push_back({1, toks, 4, 0, &b0, 1});
  std::vector<float> got(cfg.vocab_size), want(cfg.vocab_size);
  StepCounters c;
  std::string failed;
  try {
    leader->Forward(p, got.data(), c);
  } catch (const std::exception& e) {
    failed = e.what();
  }
  HS_CHECK(failed.empty());
  one.Forward(p, want.data(), c);
  HS_CHECK(test::RelError(got.data(), want.data(), want.size()) < 1e-6);
  leader.reset();  // a normal stop: every rank returns
  rank1.join();
  rank2.join();
  HS_CHECK(rank_code[1] == ErrorCode::Internal && rank_code[2] == ErrorCode::Internal);  // no error at all
}

// A data listener takes only the expected peers with the group's token: a stranger's connection
// (wrong token, or another rank or channel) is dropped and the real peer still gets in.
HS_TEST(pipeline_data_listener_refuses_strangers) {
  DataListener data;
  std::thread peers([&] {
    for (const auto& [rank, token, channel] :
         std::vector<std::tuple<int, std::string, DataChannel>>{{1, "guess", DataChannel::Activations},
                                                                {2, "tok", DataChannel::Activations},
                                                                {1, "tok", DataChannel::Logits},
                                                                {1, "tok", DataChannel::Activations}}) {
      const int fd = DialPeer("127.0.0.1", data.port(), channel, rank, 2.0, token);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ::close(fd);  // its introduction is in the listener's socket already
    }
  });
  const auto got = data.AcceptPeers(DataChannel::Activations, {1}, 5.0, "tok");
  peers.join();
  HS_CHECK_EQ(got.size(), (size_t)1);
  HS_CHECK(got.count(1) == 1);
  SocketTransport owner(0, 2, got);
  HS_CHECK(ErrorOf([&] { data.AcceptPeers(DataChannel::Activations, {1}, 0.2, "tok"); }).find("timed out") !=
           std::string::npos);
}
