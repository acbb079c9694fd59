// NUMA placement of a pipeline's host memory (issue 15): each stage's weights and its layers' slice
// of the KV/ACT pools go to the NUMA node of the stage's GPU, so that its host-to-device stream
// does not cross the inter-socket link. No libnuma: the mbind/get_mempolicy syscalls (Linux only;
// elsewhere every call here reports "no NUMA information" and binds nothing).
//
// Decisions are pure functions (ParseNumaNode, PlanPlacement, StageByteRanges, TensorStage); the
// side effects (sysfs reads, mmap, mbind) are thin and never fatal: a failed bind warns once and
// leaves the memory where the kernel puts it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "pipeline/layer_split.h"

namespace hs::pipeline::numa {

// ---- pure ------------------------------------------------------------------------------------------

// The text of a sysfs numa_node file ("1\n") → the node, or -1 for "-1", empty, garbage or a
// number out of range (no NUMA information: place nothing).
int ParseNumaNode(const std::string& text);

// The sysfs numa_node path of a PCI device from its CUDA bus id ("0000:3B:00.0", or with an
// 8-digit domain "00000000:3B:00.0"): "/sys/bus/pci/devices/0000:3b:00.0/numa_node"; "" when the
// id does not look like domain:bus:device.function.
std::string PciNumaNodePath(const std::string& bus_id);

// One stage's placement: its layers and the NUMA node of its GPU (-1: leave it where it lands).
struct StagePlacement {
  LayerRange layers;
  int node = -1;
};

// The placement of a pipeline's stages, or empty when there is nothing to place: a single-stage
// pipeline (`pipeline_stages` < 2), a host with one NUMA node, or no GPU with NUMA information.
// `stages` are the layer ranges this process holds (all of them for one process with several
// GPUs, the rank's own for a pipeline over processes), `gpu_nodes[i]` the node of stage i's GPU.
std::vector<StagePlacement> PlanPlacement(const std::vector<LayerRange>& stages, const std::vector<int>& gpu_nodes,
                                          int host_nodes, int pipeline_stages);

// Byte range [begin, end) of a layer-major pool.
struct ByteRange {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

// Each stage's byte range of a layer-major pool that holds layers [first_held, first_held + held)
// of `layer_bytes` each, starting page-aligned: the stage's layers' bytes with both ends rounded
// down to a page (the last end up), so that the ranges are page-aligned for mbind, tile the pool
// without gap or overlap, and a page that straddles two stages goes to the later one. A stage
// outside the held layers gets an empty range at the nearest end.
std::vector<ByteRange> StageByteRanges(size_t layer_bytes, int first_held, int held,
                                       const std::vector<LayerRange>& stages, size_t page);

// Which stage a weight tensor belongs to: "layers.<i>.…" to the stage holding layer i; the
// embeddings (and anything else before the layers) to the first stage; the final norm and the LM
// head to the last. -1 when `stages` is empty or a layer is in none of them.
int TensorStage(const std::string& name, const std::vector<LayerRange>& stages);

// ---- side effects (Linux) --------------------------------------------------------------------------

size_t PageSize();
// NUMA nodes of this host (entries nodeN of /sys/devices/system/node, or `dir`); 0 when unknown.
int CountNumaNodes(const std::string& dir = "/sys/devices/system/node");
// Reads the node of a sysfs numa_node file (-1 when absent or unreadable).
int ReadNumaNode(const std::string& path);

// An anonymous mapping of `bytes` whose pages are not touched yet (so that a bind decides where
// they are faulted in); page-aligned; its size is kept in a header page before it. Null on failure
// (always off Linux, where PlanPlacement never places anything since no node is counted).
void* MapUntouched(size_t bytes);
// Frees a MapUntouched mapping (null: nothing).
void Unmap(void* p);
// The usable bytes of a MapUntouched mapping (its request rounded up to pages).
size_t MappedBytes(const void* p);

// Sets the policy of [addr, addr + len) (addr page-aligned) to prefer `node`: MPOL_PREFERRED, not
// MPOL_BIND, because placement is about speed, not correctness: when the node runs out of memory
// the pages go elsewhere instead of the allocation (or a later page fault) failing. Returns false
// with `why` set when the kernel refuses (or off Linux); pages already faulted in do not move.
bool PreferNode(void* addr, size_t len, int node, std::string* why);
// The node that holds the (faulted-in) page at `addr`, -1 when unknown.
int NodeOfPage(const void* addr);
// The preferred node of the policy covering `addr` (MPOL_PREFERRED), -1 for any other policy.
int PreferredNodeAt(const void* addr);

// PreferNode that warns once per process on stderr when it fails, then carries on.
void PreferNodeOrWarn(void* addr, size_t len, int node);

}  // namespace hs::pipeline::numa
