// Issue 15: the parts of a pipeline over several processes that run without GPUs. The plan codec
// (round trip, malformed bytes refused), the rendezvous over loopback TCP (ids handed out, plans in
// order, a stop at the end, bad hellos refused) and a leader + a "remote" rank, here a thread with
// its own rendezvous link and loopback transports, giving one backend's logits.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>

#include <unistd.h>

#include "core/errors.h"
#include "cpu/cpu_backend.h"
#include "pipeline/cpu_ranks.h"
#include "pipeline/layer_split.h"
#include "pipeline/loopback_transport.h"
#include "pipeline/plan_codec.h"
#include "pipeline/ranks.h"
#include "pipeline/remote.h"
#include "pipeline/rendezvous.h"
#include "pipeline/socket_transport.h"
#include "test.h"
#include "test_util.h"

using namespace hs;
using namespace hs::pipeline;

namespace {

BatchPlan SamplePlan(std::vector<int32_t>& t0, std::vector<int32_t>& t1, std::vector<BlockRef>& b0,
                     std::vector<BlockRef>& b1) {
  t0 = {3, 4, 5};
  t1 = {9};
  b0 = {{CacheKind::KV, 2, Tier::Host}};
  b1 = {{CacheKind::ACT, 7, Tier::Host}, {CacheKind::KV, 1, Tier::Device}};
  BatchPlan p;
  p.seqs.push_back({11, t0.data(), 3, 0, b0.data(), 1});
  p.seqs.push_back({-5, t1.data(), 1, 17, b1.data(), 2});
  p.mini_batches = {{1}, {0}};
  return p;
}

template <class F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A tiny Llama of `layers` layers, its weight source and pools of `blocks` KV and ACT blocks of 4 tokens.
struct Tiny {
  ModelConfig cfg;
  WeightSource src;
  PoolConfig pc;
};
Tiny TinyModel(int layers, uint64_t seed, int blocks) {
  Tiny t{test::TinyLlama(2), {}, {}};
  t.cfg.num_layers = layers;
  t.src.seed = seed;
  t.pc.block_tokens = 4;
  t.pc.kv_blocks = t.pc.act_blocks = blocks;
  return t;
}

// Only `r`'s layers of the weights or the cache, as a pod of a multi-node group holds them.
WeightSource SliceOf(WeightSource src, LayerRange r) {
  src.first_layer = r.first;
  src.last_layer = r.last;
  return src;
}
PoolConfig SliceOf(PoolConfig pc, LayerRange r) {
  pc.first_layer = r.first;
  pc.last_layer = r.last;
  return pc;
}

// Rank 0 of a 2-rank pipeline over the loopback hubs: its CPU stage and the remote rank 1.
std::unique_ptr<PipelineBackend> LoopbackLeader(const Tiny& t, const HostWeights& w, CachePools& pools,
                                                std::unique_ptr<LeaderLink> link, LoopbackHub& acts,
                                                LoopbackHub& logits) {
  std::vector<std::unique_ptr<Stage>> stages;
  stages.push_back(std::make_unique<cpu::CpuBackend>(t.cfg, w, pools, 1, SplitLayers(t.cfg.num_layers, 2)[0]));
  std::vector<std::unique_ptr<Transport>> eps;
  eps.push_back(acts.Endpoint(0));
  auto remote =
      std::make_unique<LinkedRemoteRanks>(std::move(link), HostLogitsChannel(logits.Endpoint(0), 1), t.cfg.vocab_size);
  return std::make_unique<PipelineBackend>(std::move(stages), std::move(eps), nullptr, nullptr, std::move(remote));
}

}  // namespace

HS_TEST(pipeline_plan_codec_round_trip) {
  std::vector<int32_t> t0, t1;
  std::vector<BlockRef> b0, b1;
  const BatchPlan p = SamplePlan(t0, t1, b0, b1);
  const auto bytes = EncodePlan(p);
  const auto got = DecodePlan(bytes.data(), bytes.size());
  HS_CHECK_EQ(got->plan.seqs.size(), (size_t)2);
  const SeqPlan& s = got->plan.seqs[1];
  HS_CHECK_EQ(s.id, (int64_t)-5);
  HS_CHECK_EQ(s.start_pos, 17);
  HS_CHECK_EQ(s.num_new, 1);
  HS_CHECK_EQ(s.tokens[0], 9);
  HS_CHECK_EQ(s.num_blocks, 2);
  HS_CHECK(s.blocks[0].kind == CacheKind::ACT && s.blocks[0].index == 7 && s.blocks[1].tier == Tier::Device);
  HS_CHECK(std::vector<int32_t>(got->plan.seqs[0].tokens, got->plan.seqs[0].tokens + 3) == t0);
  HS_CHECK(got->plan.mini_batches == p.mini_batches);
  // Every truncation, a trailing byte, a bad kind and a mini-batch naming no sequence are refused.
  for (size_t n = 0; n < bytes.size(); ++n) HS_CHECK(!ErrorOf([&] { DecodePlan(bytes.data(), n); }).empty());
  auto longer = bytes;
  longer.push_back(0);
  HS_CHECK(ErrorOf([&] { DecodePlan(longer.data(), longer.size()); }).find("trailing") != std::string::npos);
  auto bad = bytes;
  bad[bad.size() - 4] = 5;  // the last mini-batch index
  HS_CHECK(ErrorOf([&] { DecodePlan(bad.data(), bad.size()); }).find("mini-batch") != std::string::npos);
}

HS_TEST(pipeline_rendezvous_hands_out_ids_and_frames) {
  std::string host;
  int port = -1;
  SplitHostPort("[::1]:29500", &host, &port);
  HS_CHECK(host == "::1" && port == 29500);
  HS_CHECK(!ErrorOf([&] { SplitHostPort("nohost", &host, &port); }).empty());
  HS_CHECK(!ErrorOf([&] { SplitHostPort("h:99999", &host, &port); }).empty());

  auto leader = LeaderLink::Listen("127.0.0.1:0", 3);
  const std::string at = "127.0.0.1:" + std::to_string(leader->port());
  std::vector<std::vector<uint8_t>> got[3];
  std::vector<uint8_t> reply[3];
  auto worker = [&](int rank) {
    auto link = WorkerLink::Connect(at, rank, 3, 5.0, &reply[rank]);
    std::vector<uint8_t> f;
    while (link->Receive(&f)) got[rank].push_back(f);
  };
  std::thread w2(worker, 2), w1(worker, 1);  // any join order
  leader->AcceptRanks({1, 2, 3}, 5.0);
  leader->Broadcast({7});
  leader->Broadcast({});
  leader->Broadcast({8, 9});
  leader.reset();  // the stop frame ends both workers
  w1.join();
  w2.join();
  for (int r : {1, 2}) {
    HS_CHECK(reply[r] == std::vector<uint8_t>({1, 2, 3}));
    HS_CHECK_EQ(got[r].size(), (size_t)3);
    if (got[r].size() == 3)
      HS_CHECK(got[r][0] == std::vector<uint8_t>{7} && got[r][1].empty() && got[r][2].size() == 2);
  }
}

HS_TEST(pipeline_rendezvous_refuses_bad_ranks_and_times_out) {
  // A rank with another world size, or another model, ends the rendezvous with a message naming
  // the difference, on the leader and on that rank.
  const ModelConfig cfg = test::TinyLlama(2);
  ModelConfig other = cfg;
  other.ffn_size += 8;
  const uint64_t key = ModelKey(cfg, WeightFormat::Native);
  HS_CHECK(key != ModelKey(other, WeightFormat::Native) && key != ModelKey(cfg, WeightFormat::FP8));
  auto refused = [&](int world, uint64_t worker_key, const std::string& token = "s3cret") {
    auto leader = LeaderLink::Listen("127.0.0.1:0", 2, GroupCheck{key, "s3cret"});
    const std::string at = "127.0.0.1:" + std::to_string(leader->port());
    std::string at_worker;
    std::thread w([&] {
      std::vector<uint8_t> r;
      at_worker = ErrorOf([&] { WorkerLink::Connect(at, 1, world, 2.0, &r, 0, GroupCheck{worker_key, token}); });
    });
    const std::string at_leader = ErrorOf([&] { leader->AcceptRanks({}, 0.5); });
    w.join();
    return std::make_pair(at_leader, at_worker);
  };
  const auto [e, ew] = refused(3, key);
  HS_CHECK(e.find("world size 3") != std::string::npos);
  HS_CHECK(ew.find("the leader refused this rank: rank 1 says world size 3") != std::string::npos);
  const auto [m, mw] = refused(2, ModelKey(other, WeightFormat::Native));
  HS_CHECK(m.find("rank 1 loaded another model than rank 0") != std::string::npos);
  HS_CHECK(mw.find("refused this rank: rank 1 loaded another model") != std::string::npos);
  // A peer without the token is refused before anything else it says counts: its (wrong) world size
  // does not end the rendezvous, which times out waiting for a real rank; the token is never echoed.
  const auto [t, tw] = refused(3, key, "guess");
  HS_CHECK(t.find("timed out with 0 of 1 ranks joined") != std::string::npos);
  HS_CHECK(tw.find("wrong pipeline token") != std::string::npos);
  HS_CHECK(tw.find("s3cret") == std::string::npos && t.find("s3cret") == std::string::npos);
  // Nobody joins: a timeout, within the bound.
  auto lonely = LeaderLink::Listen("127.0.0.1:0", 2);
  const auto t0 = std::chrono::steady_clock::now();
  HS_CHECK(ErrorOf([&] { lonely->AcceptRanks({}, 0.2); }).find("timed out") != std::string::npos);
  HS_CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  // A worker with no leader gives up.
  std::vector<uint8_t> r;
  HS_CHECK(ErrorOf([&] { WorkerLink::Connect("127.0.0.1:1", 1, 2, 0.3, &r); }).find("cannot reach") !=
           std::string::npos);
}

// The leader (stage 0 in a PipelineBackend with LinkedRemoteRanks) and rank 1 (a thread running
// ServeRank with its own rendezvous link, and only its layers' weights and cache) give the single
// backend's logits, with two steps in flight.
HS_TEST(pipeline_remote_rank_matches_one_backend) {
  const Tiny t = TinyModel(4, 7, 16);
  const ModelConfig& cfg = t.cfg;
  HostWeights w(cfg, t.src, DType::F32);
  CachePools pools(cfg, t.pc);
  const auto split = SplitLayers(cfg.num_layers, 2);
  auto acts = std::make_shared<LoopbackHub>(2), logits_hub = std::make_shared<LoopbackHub>(2);
  auto link = LeaderLink::Listen("127.0.0.1:0", 2);
  const std::string at = "127.0.0.1:" + std::to_string(link->port());
  // Rank 1 holds only its layers' weights and cache, as a pod of a multi-node group does.
  HostWeights w1(cfg, SliceOf(t.src, split[1]), DType::F32);
  CachePools pools1(cfg, SliceOf(t.pc, split[1]));
  HS_CHECK(w1.find("layers.0.q_proj.weight") == nullptr && w1.find("layers.3.q_proj.weight") != nullptr);
  HS_CHECK(w1.total_bytes() < w.total_bytes());
  HS_CHECK(pools1.layer_base(CacheKind::KV, 0) == nullptr && pools1.layer_base(CacheKind::KV, 2) != nullptr);
  HS_CHECK_EQ(2 * pools1.block_bytes_all_layers(CacheKind::KV), pools.block_bytes_all_layers(CacheKind::KV));
  std::thread rank1([&] {
    std::vector<uint8_t> hello;
    auto wl = WorkerLink::Connect(at, 1, 2, 5.0, &hello);
    cpu::CpuBackend stage(cfg, w1, pools1, 1, split[1]);
    auto tr = acts->Endpoint(1);
    auto out = HostLogitsChannel(logits_hub->Endpoint(1), 0);
    ServeRank(stage, *tr, *wl, out.get(), cfg.vocab_size);
  });
  link->AcceptRanks({}, 5.0);
  auto pipe = LoopbackLeader(t, w, pools, std::move(link), *acts, *logits_hub);
  cpu::CpuBackend one(cfg, w, pools, 1);

  // Two sequences in two groups; each group steps in its own thread on the pipeline.
  const int32_t ta[4] = {5, 6, 7, 8}, tb[2] = {40, 41};
  // The leader allocates; rank 1's pools have the same ids (its allocator is not used).
  const BlockRef ba{CacheKind::KV, pools.Allocate(CacheKind::KV), Tier::Host};
  const BlockRef bb{CacheKind::ACT, pools.Allocate(CacheKind::ACT), Tier::Host};
  BatchPlan pa, pb;
  pa.seqs.push_back({1, ta, 4, 0, &ba, 1});
  pb.seqs.push_back({2, tb, 2, 0, &bb, 1});
  std::vector<float> la(cfg.vocab_size), lb(cfg.vocab_size), ra(cfg.vocab_size), rb(cfg.vocab_size);
  StepCounters c;
  std::thread tbth([&] { pipe->Forward(pb, lb.data(), c); });
  StepCounters c2;
  pipe->Forward(pa, la.data(), c2);
  tbth.join();
  pipe.reset();  // stops rank 1
  rank1.join();
  one.Forward(pa, ra.data(), c);
  one.Forward(pb, rb.data(), c);
  HS_CHECK(test::RelError(la.data(), ra.data(), ra.size()) < 1e-6);
  HS_CHECK(test::RelError(lb.data(), rb.data(), rb.size()) < 1e-6);
}

namespace {

using Clock = std::chrono::steady_clock;

// Records what a LinkWatch reports, for a test thread to wait on.
struct LostBox {
  std::mutex mu;
  std::condition_variable cv;
  std::string why;
  void Set(const std::string& w) {
    std::lock_guard<std::mutex> lock(mu);
    if (why.empty()) why = w;
    cv.notify_all();
  }
  std::string Wait(double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return !why.empty(); });
    return why;
  }
};

template <class F>
ErrorCode CodeOfCall(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return CodeOf(e);
  }
  return ErrorCode::Internal;
}

}  // namespace

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
