// Issue 15: a lost rank ends the group instead of hanging it (pipeline/link_watch.h): the watches
// on both ends of the rendezvous, the leader's step in flight, and a middle rank blocked in
// ServeRank, each over loopback TCP and loopback transports.
#include <atomic>
#include <chrono>
#include <thread>

#include "pipeline/plan_codec.h"
#include "pipeline_remote_util.h"
#include "test.h"

using namespace hs;
using namespace hs::pipeline;
using namespace hs::pipeline::testing;

// A rank whose process ends closes its connection: the leader's watch names it and shuts the
// others down, each other rank's watch then sees the leader go, and the leader's next broadcast
// and that rank's next receive fail with PeerLostError instead of blocking.
HS_TEST(pipeline_link_watch_sees_a_rank_go) {
  auto leader = LeaderLink::Listen("127.0.0.1:0", 3);
  const std::string at = "127.0.0.1:" + std::to_string(leader->port());
  std::unique_ptr<WorkerLink> w1, w2;
  std::thread t1([&] {
    std::vector<uint8_t> r;
    w1 = WorkerLink::Connect(at, 1, 3, 5.0, &r);
  });
  std::thread t2([&] {
    std::vector<uint8_t> r;
    w2 = WorkerLink::Connect(at, 2, 3, 5.0, &r);
  });
  leader->AcceptRanks({}, 5.0);
  t1.join();
  t2.join();
  LostBox at_leader, at_rank1;
  auto watch0 = leader->Watch([&](const std::string& why) { at_leader.Set(why); });
  auto watch1 = w1->Watch([&](const std::string& why) { at_rank1.Set(why); });
  HS_CHECK(at_leader.Wait(0.2).empty());  // nothing lost yet: no spurious report
  HS_CHECK(at_rank1.Wait(0.01).empty());
  const auto t0 = Clock::now();
  w2.reset();  // rank 2's process ends
  HS_CHECK(at_leader.Wait(5.0).find("pipeline rank 2 disconnected") != std::string::npos);
  HS_CHECK(at_rank1.Wait(5.0).find("pipeline rank 0 (the leader)") != std::string::npos);
  HS_CHECK(Clock::now() - t0 < std::chrono::seconds(3));
  HS_CHECK(CodeOfCall([&] { leader->Broadcast({1}); }) == ErrorCode::PeerLost);
  std::vector<uint8_t> f;
  HS_CHECK(CodeOfCall([&] { w1->Receive(&f); }) == ErrorCode::PeerLost);
  watch1.reset();
  watch0.reset();
}

// The leader of a 2-rank pipeline (its stage and a collector thread) with rank 1 taking one plan
// and then dying: the step in flight fails with PeerLostError naming rank 1 within seconds, the
// next step fails at once, and the backend closes without hanging.
HS_TEST(pipeline_remote_rank_loss_fails_the_step) {
  const Tiny t = TinyModel(2, 3, 8);
  const ModelConfig& cfg = t.cfg;
  HostWeights w(cfg, t.src, DType::F32);
  CachePools pools(cfg, t.pc);
  auto acts = std::make_shared<LoopbackHub>(2), logits_hub = std::make_shared<LoopbackHub>(2);
  auto link = LeaderLink::Listen("127.0.0.1:0", 2);
  const std::string at = "127.0.0.1:" + std::to_string(link->port());
  std::atomic<bool> took_plan{false};
  std::thread rank1([&] {
    std::vector<uint8_t> hello, plan;
    auto wl = WorkerLink::Connect(at, 1, 2, 5.0, &hello);
    if (wl->Receive(&plan)) took_plan = true;
    // Dies a little later, so that the leader's collector is already blocked on the logits.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  });  // returns: its link closes as a dying process's would, with no logits sent
  link->AcceptRanks({}, 5.0);
  auto pipe = LoopbackLeader(t, w, pools, std::move(link), *acts, *logits_hub);
  const int32_t toks[3] = {5, 6, 7};
  const BlockRef b{CacheKind::KV, pools.Allocate(CacheKind::KV), Tier::Host};
  BatchPlan p;
  p.seqs.push_back({1, toks, 3, 0, &b, 1});
  std::vector<float> logits(cfg.vocab_size);
  StepCounters c;
  const auto t0 = Clock::now();
  std::string why;
  try {
    pipe->Forward(p, logits.data(), c);
  } catch (const std::exception& e) {
    HS_CHECK(CodeOf(e) == ErrorCode::PeerLost);
    why = e.what();
  }
  rank1.join();
  HS_CHECK(took_plan.load());
  HS_CHECK(why.find("pipeline rank 1") != std::string::npos);
  HS_CHECK(Clock::now() - t0 < std::chrono::seconds(5));
  HS_CHECK(CodeOfCall([&] { pipe->Forward(p, logits.data(), c); }) == ErrorCode::PeerLost);
  pipe.reset();  // joins its threads: none is left blocked
}

// A middle rank (1 of 3) blocked in ServeRank on the activations of rank 0 when rank 2 dies: the
// leader's watch shuts the group's connections, rank 1's watch aborts its transport, and
// ServeRank throws PeerLostError instead of waiting forever.
HS_TEST(pipeline_serve_rank_ends_when_the_group_loses_a_rank) {
  const Tiny t = TinyModel(3, 0, 4);
  const ModelConfig& cfg = t.cfg;
  HostWeights w(cfg, t.src, DType::F32);
  CachePools pools(cfg, t.pc);
  const auto split = SplitLayers(cfg.num_layers, 3);
  auto acts = std::make_shared<LoopbackHub>(3);
  auto leader = LeaderLink::Listen("127.0.0.1:0", 3);
  const std::string at = "127.0.0.1:" + std::to_string(leader->port());
  ErrorCode rank1_code = ErrorCode::Internal;
  std::string rank1_why;
  std::thread rank1([&] {
    std::vector<uint8_t> hello;
    auto wl = WorkerLink::Connect(at, 1, 3, 5.0, &hello);
    cpu::CpuBackend stage(cfg, w, pools, 1, split[1]);
    auto tr = acts->Endpoint(1);
    try {
      ServeRank(stage, *tr, *wl, nullptr, cfg.vocab_size);
    } catch (const std::exception& e) {
      rank1_code = CodeOf(e);
      rank1_why = e.what();
    }
  });
  std::thread rank2([&] {
    std::vector<uint8_t> hello, plan;
    auto wl = WorkerLink::Connect(at, 2, 3, 5.0, &hello);
    wl->Receive(&plan);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 1 is blocked by then
  });                                                             // takes one plan, then its process "ends"
  leader->AcceptRanks({}, 5.0);
  LostBox lost;
  auto watch = leader->Watch([&](const std::string& why) { lost.Set(why); });
  std::vector<int32_t> t0, t1;
  std::vector<BlockRef> b0, b1;
  leader->Broadcast(EncodePlan(SamplePlan(t0, t1, b0, b1)));  // rank 1 now waits for rank 0's activations
  HS_CHECK(lost.Wait(5.0).find("pipeline rank 2") != std::string::npos);
  rank2.join();
  rank1.join();
  HS_CHECK(rank1_code == ErrorCode::PeerLost);
  HS_CHECK(rank1_why.find("pipeline rank 0") != std::string::npos);
  watch.reset();
}
