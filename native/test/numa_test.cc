// NUMA placement of a pipeline's host memory (pipeline/numa.h): the sysfs parse, the placement
// decision, the per-stage byte ranges of a layer-major pool, the tensor → stage rule, and a real
// mbind on this machine's node 0.
#include <unistd.h>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include "pipeline/numa.h"
#include "test.h"

using namespace hs::pipeline;
using namespace hs::pipeline::numa;

HS_TEST(numa_parse_sysfs_node) {
  HS_CHECK_EQ(ParseNumaNode("0\n"), 0);
  HS_CHECK_EQ(ParseNumaNode("1\n"), 1);
  HS_CHECK_EQ(ParseNumaNode(" 7 "), 7);
  HS_CHECK_EQ(ParseNumaNode("-1\n"), -1);  // no NUMA information
  HS_CHECK_EQ(ParseNumaNode(""), -1);      // missing / empty file
  HS_CHECK_EQ(ParseNumaNode("node1"), -1);
  HS_CHECK_EQ(ParseNumaNode("1x"), -1);
  HS_CHECK_EQ(ParseNumaNode("99999"), -1);
  HS_CHECK_EQ(ReadNumaNode("/nonexistent/numa_node"), -1);
  HS_CHECK_EQ(ReadNumaNode(""), -1);
}

HS_TEST(numa_reads_a_numa_node_file) {
  const std::string path = "/tmp/hs_numa_test_" + std::to_string(::getpid());
  std::ofstream(path) << "1\n";
  HS_CHECK_EQ(ReadNumaNode(path), 1);
  std::ofstream(path) << "-1\n";
  HS_CHECK_EQ(ReadNumaNode(path), -1);
  std::remove(path.c_str());
}

HS_TEST(numa_pci_path_from_cuda_bus_id) {
  HS_CHECK_EQ(PciNumaNodePath("0000:3B:00.0"), std::string("/sys/bus/pci/devices/0000:3b:00.0/numa_node"));
  HS_CHECK_EQ(PciNumaNodePath("00000000:DB:00.0"), std::string("/sys/bus/pci/devices/0000:db:00.0/numa_node"));
  HS_CHECK_EQ(PciNumaNodePath("0001:1a:1f.7\n"), std::string("/sys/bus/pci/devices/0001:1a:1f.7/numa_node"));
  HS_CHECK_EQ(PciNumaNodePath(""), std::string());
  HS_CHECK_EQ(PciNumaNodePath("3b:00.0"), std::string());
  HS_CHECK_EQ(PciNumaNodePath("0000:3b:00.8"), std::string());
  HS_CHECK_EQ(PciNumaNodePath("0000:../..:00.0"), std::string());
  HS_CHECK_EQ(PciNumaNodePath("zzzz:3b:00.0"), std::string());
}

HS_TEST(numa_plan_places_each_stage_on_its_gpu_node) {
  const auto split = SplitLayers(48, 2);
  const auto p = PlanPlacement(split, {0, 1}, 2, 2);
  HS_CHECK_EQ(p.size(), (size_t)2);
  HS_CHECK_EQ(p[0].node, 0);
  HS_CHECK_EQ(p[1].node, 1);
  HS_CHECK_EQ(p[1].layers.first, 24);
  HS_CHECK_EQ(p[1].layers.last, 48);
  // Both GPUs on socket 1: both stages there (not "stage i on node i").
  const auto q = PlanPlacement(split, {1, 1}, 2, 2);
  HS_CHECK(q.size() == 2 && q[0].node == 1 && q[1].node == 1);
  // A GPU without NUMA information leaves its stage alone; the other one is still placed.
  const auto r = PlanPlacement(split, {-1, 1}, 2, 2);
  HS_CHECK(r.size() == 2 && r[0].node == -1 && r[1].node == 1);
  // A rank of a 2-process pipeline: its own layers only.
  const auto k = PlanPlacement({split[1]}, {1}, 2, 2);
  HS_CHECK(k.size() == 1 && k[0].node == 1 && k[0].layers.first == 24);
}

HS_TEST(numa_plan_keeps_todays_path_when_nothing_to_place) {
  const auto split = SplitLayers(48, 2);
  HS_CHECK(PlanPlacement(split, {0, 0}, 1, 2).empty());             // one NUMA node
  HS_CHECK(PlanPlacement({LayerRange{0, 48}}, {1}, 2, 1).empty());  // one stage
  HS_CHECK(PlanPlacement(split, {-1, -1}, 2, 2).empty());           // no NUMA information
  HS_CHECK(PlanPlacement(split, {3, 5}, 2, 2).empty());             // nodes the host does not have
  HS_CHECK(PlanPlacement(split, {0}, 2, 2).empty());                // mismatched lists
}

// The exact byte span of stage s's layers in a pool of `held` layers from `first`.
static ByteRange Exact(size_t lb, int first, const LayerRange& s) {
  return {(size_t)(s.first - first) * lb, (size_t)(s.last - first) * lb};
}

static void CheckTiling(size_t lb, int layers, int stages, size_t page) {
  const auto split = SplitLayers(layers, stages);
  const auto r = StageByteRanges(lb, 0, layers, split, page);
  HS_CHECK_EQ(r.size(), split.size());
  const size_t total = (size_t)layers * lb, end_all = (total + page - 1) / page * page;
  HS_CHECK_EQ(r.front().begin, (size_t)0);
  HS_CHECK_EQ(r.back().end, end_all);
  for (size_t s = 0; s < r.size(); ++s) {
    HS_CHECK_EQ(r[s].begin % page, (size_t)0);  // mbind needs page-aligned starts
    HS_CHECK(r[s].end % page == 0);
    HS_CHECK(r[s].begin <= r[s].end);
    if (s + 1 < r.size()) HS_CHECK_EQ(r[s].end, r[s + 1].begin);  // no gap, no overlap
    const ByteRange e = Exact(lb, 0, split[s]);
    // Within a page of the exact layer boundaries, and every whole page of the stage's own layers in it.
    HS_CHECK(r[s].begin <= e.begin && e.begin - r[s].begin < page);
    HS_CHECK(r[s].end >= e.end || e.end - r[s].end < page);
    const size_t first_whole = (e.begin + page - 1) / page * page, last_whole = e.end / page * page;
    if (first_whole < last_whole) HS_CHECK(r[s].begin <= first_whole && last_whole <= r[s].end);
  }
}

HS_TEST(numa_stage_byte_ranges_follow_the_layer_split) {
  const size_t page = 4096;
  // Layers of whole pages: the ranges are exactly the layers' bytes.
  const auto split = SplitLayers(7, 2);  // [0,4) [4,7)
  const auto r = StageByteRanges(3 * page, 0, 7, split, page);
  HS_CHECK_EQ(r[0].begin, (size_t)0);
  HS_CHECK_EQ(r[0].end, 4 * 3 * page);
  HS_CHECK_EQ(r[1].begin, 4 * 3 * page);
  HS_CHECK_EQ(r[1].end, 7 * 3 * page);
  // Odd layer sizes (a pool of 13 blocks of 4.1 KB, tiny layers, huge ones), 2..5 stages.
  for (size_t lb : {(size_t)1000, (size_t)4100 * 13, (size_t)3 * page + 1, (size_t)(64u << 20) + 12})
    for (int stages = 2; stages <= 5; ++stages) CheckTiling(lb, 11, stages, page);
}

HS_TEST(numa_stage_byte_ranges_of_a_rank_holding_some_layers) {
  const size_t page = 4096, lb = 5000;
  const auto split = SplitLayers(10, 3);  // [0,4) [4,7) [7,10)
  // A rank holding layers [4,7): its stage covers its whole pool, the others nothing.
  const auto r = StageByteRanges(lb, 4, 3, split, page);
  HS_CHECK_EQ(r[1].begin, (size_t)0);
  HS_CHECK_EQ(r[1].end, (3 * lb + page - 1) / page * page);
  HS_CHECK_EQ(r[0].size(), (size_t)0);
  HS_CHECK_EQ(r[2].size(), (size_t)0);
}

HS_TEST(numa_tensor_stage_by_name) {
  const auto split = SplitLayers(10, 3);  // [0,4) [4,7) [7,10)
  HS_CHECK_EQ(TensorStage("embed_tokens.weight", split), 0);
  HS_CHECK_EQ(TensorStage("embed_positions.weight", split), 0);
  HS_CHECK_EQ(TensorStage("layers.0.q_proj.weight", split), 0);
  HS_CHECK_EQ(TensorStage("layers.3.fc2.bias", split), 0);
  HS_CHECK_EQ(TensorStage("layers.4.attn_norm.weight", split), 1);
  HS_CHECK_EQ(TensorStage("layers.6.down_proj.weight", split), 1);
  HS_CHECK_EQ(TensorStage("layers.7.q_proj.weight", split), 2);
  HS_CHECK_EQ(TensorStage("final_norm.weight", split), 2);
  HS_CHECK_EQ(TensorStage("final_norm.bias", split), 2);
  HS_CHECK_EQ(TensorStage("lm_head.weight", split), 2);
  HS_CHECK_EQ(TensorStage("layers.10.q_proj.weight", split), -1);  // no stage holds it
  HS_CHECK_EQ(TensorStage("lm_head.weight", {}), -1);
}

#ifdef __linux__
HS_TEST(numa_prefer_node_zero_places_touched_pages_there) {
  HS_CHECK(CountNumaNodes() >= 1 || CountNumaNodes("/nonexistent") == 0);
  HS_CHECK_EQ(CountNumaNodes("/nonexistent"), 0);
  const size_t page = PageSize(), len = 8 * page;
  auto* p = static_cast<uint8_t*>(MapUntouched(len));
  HS_CHECK(p != nullptr);
  if (!p) return;
  HS_CHECK_EQ(reinterpret_cast<uintptr_t>(p) % page, (uintptr_t)0);
  HS_CHECK_EQ(MappedBytes(p), len);
  HS_CHECK_EQ(PreferredNodeAt(p), -1);  // the default policy before the bind
  std::string why;
  HS_CHECK(PreferNode(p + 2 * page, 4 * page, 0, &why));
  HS_CHECK(why.empty());
  HS_CHECK_EQ(PreferredNodeAt(p + 2 * page), 0);
  HS_CHECK_EQ(PreferredNodeAt(p + 5 * page), 0);
  HS_CHECK_EQ(PreferredNodeAt(p + 6 * page), -1);  // only the range asked for
  std::memset(p, 1, len);                          // fault the pages in
  HS_CHECK_EQ(NodeOfPage(p + 3 * page), 0);
  // A node this machine does not have, an unaligned start: refused with a reason, not fatal.
  HS_CHECK(!PreferNode(p, page, 1000, &why));
  HS_CHECK(!why.empty());
  HS_CHECK(!PreferNode(p + 1, page, 0, &why));
  HS_CHECK(!PreferNode(p, page, -1, &why));
  PreferNodeOrWarn(p, page, 1000);  // warns once on stderr, returns
  Unmap(p);
}
#endif
