// Issue 15: the parts of a pipeline over several processes that run without GPUs. The plan codec
// (round trip, malformed bytes refused), the rendezvous over loopback TCP (ids handed out, plans in
// order, a stop at the end, bad hellos, models and tokens refused) and a leader + a "remote" rank,
// here a thread with its own rendezvous link and loopback transports, giving one backend's logits.
#include <cstring>
#include <thread>

#include "pipeline/plan_codec.h"
#include "pipeline/ranks.h"
#include "pipeline_remote_util.h"
#include "test.h"

using namespace hs;
using namespace hs::pipeline;
using namespace hs::pipeline::testing;

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
