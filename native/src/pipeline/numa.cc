#include "pipeline/numa.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#ifdef __linux__
#include <dirent.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace hs::pipeline::numa {

namespace {

// Nodes a mask here can name (the kernel's own limit is usually 1024 too).
constexpr int kMaxNodes = 1024;
constexpr size_t kMaskWords = kMaxNodes / (8 * sizeof(unsigned long));

// From <linux/mempolicy.h>, spelled out so that nothing here depends on kernel headers.
constexpr int kMpolPreferred = 1;
constexpr unsigned long kMpolFNode = 1, kMpolFAddr = 2;
constexpr int kMpolModeMask = 0xff;  // the mode without MPOL_F_STATIC_NODES and friends

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool AllHex(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit((unsigned char)c) != 0; });
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int ParseNumaNode(const std::string& text) {
  const std::string t = Trim(text);
  if (t.empty() || t.size() > 4) return -1;
  if (!std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  const int node = std::atoi(t.c_str());
  return node < kMaxNodes ? node : -1;
}

std::string PciNumaNodePath(const std::string& bus_id) {
  // domain:bus:device.function, e.g. 0000:3B:00.0; sysfs prints the domain with 4 hex digits.
  const std::string id = Lower(Trim(bus_id));
  const size_t c1 = id.find(':'), c2 = c1 == std::string::npos ? c1 : id.find(':', c1 + 1);
  if (c2 == std::string::npos) return "";
  const size_t dot = id.find('.', c2 + 1);
  if (dot == std::string::npos) return "";
  const std::string domain = id.substr(0, c1), bus = id.substr(c1 + 1, c2 - c1 - 1);
  const std::string dev = id.substr(c2 + 1, dot - c2 - 1), fn = id.substr(dot + 1);
  if (!AllHex(domain) || domain.size() > 8 || !AllHex(bus) || bus.size() != 2 || !AllHex(dev) || dev.size() != 2 ||
      fn.size() != 1 || fn[0] < '0' || fn[0] > '7')
    return "";
  char dom[16];
  std::snprintf(dom, sizeof dom, "%04lx", std::strtoul(domain.c_str(), nullptr, 16));
  return "/sys/bus/pci/devices/" + std::string(dom) + ":" + bus + ":" + dev + "." + fn + "/numa_node";
}

std::vector<StagePlacement> PlanPlacement(const std::vector<LayerRange>& stages, const std::vector<int>& gpu_nodes,
                                          int host_nodes, int pipeline_stages) {
  if (pipeline_stages < 2 || host_nodes < 2 || stages.size() != gpu_nodes.size()) return {};
  if (std::none_of(gpu_nodes.begin(), gpu_nodes.end(), [&](int n) { return n >= 0 && n < host_nodes; })) return {};
  std::vector<StagePlacement> out;
  for (size_t i = 0; i < stages.size(); ++i) {
    const int n = gpu_nodes[i];
    out.push_back({stages[i], n >= 0 && n < host_nodes ? n : -1});
  }
  return out;
}

std::vector<ByteRange> StageByteRanges(size_t layer_bytes, int first_held, int held,
                                       const std::vector<LayerRange>& stages, size_t page) {
  const size_t total = (size_t)std::max(held, 0) * layer_bytes;
  const size_t end_all = (total + page - 1) / page * page;
  // Byte offset of the held-layer boundary k (0..held), page-rounded: down, except the pool's end.
  auto bound = [&](int k) { return k >= held ? end_all : (size_t)k * layer_bytes / page * page; };
  std::vector<ByteRange> out;
  for (const LayerRange& s : stages) {
    const int lo = std::clamp(s.first - first_held, 0, std::max(held, 0));
    const int hi = std::clamp(s.last - first_held, lo, std::max(held, 0));
    out.push_back({bound(lo), bound(hi)});
  }
  return out;
}

int TensorStage(const std::string& name, const std::vector<LayerRange>& stages) {
  if (stages.empty()) return -1;
  if (name.compare(0, 7, "layers.") == 0) {
    const int layer = std::atoi(name.c_str() + 7);
    for (size_t i = 0; i < stages.size(); ++i)
      if (layer >= stages[i].first && layer < stages[i].last) return (int)i;
    return -1;
  }
  if (name.compare(0, 11, "final_norm.") == 0 || name.compare(0, 8, "lm_head.") == 0) return (int)stages.size() - 1;
  return 0;  // embed_tokens, embed_positions: the first stage embeds
}

int ReadNumaNode(const std::string& path) {
  if (path.empty()) return -1;
  std::ifstream f(path);
  if (!f) return -1;
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseNumaNode(ss.str());
}

void PreferNodeOrWarn(void* addr, size_t len, int node) {
  static std::atomic<bool> warned{false};
  std::string why;
  if (PreferNode(addr, len, node, &why) || warned.exchange(true)) return;
  std::fprintf(stderr, "hybridserve: cannot bind host memory to NUMA node %d (%s); leaving it where it lands\n", node,
               why.c_str());
}

#ifdef __linux__

size_t PageSize() {
  const long p = ::sysconf(_SC_PAGESIZE);
  return p > 0 ? (size_t)p : 4096;
}

int CountNumaNodes(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    const char* s = e->d_name;
    if (std::strncmp(s, "node", 4) != 0 || !s[4]) continue;
    bool digits = true;
    for (const char* c = s + 4; *c; ++c) digits = digits && *c >= '0' && *c <= '9';
    n += digits ? 1 : 0;
  }
  ::closedir(d);
  return n;
}

void* MapUntouched(size_t bytes) {
  const size_t page = PageSize(), len = (std::max<size_t>(bytes, 1) + page - 1) / page * page + page;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  *static_cast<size_t*>(m) = len;  // the header page: only it is touched here
  return static_cast<uint8_t*>(m) + page;
}

void Unmap(void* p) {
  if (!p) return;
  uint8_t* m = static_cast<uint8_t*>(p) - PageSize();
  ::munmap(m, *reinterpret_cast<size_t*>(m));
}

size_t MappedBytes(const void* p) {
  if (!p) return 0;
  return *reinterpret_cast<const size_t*>(static_cast<const uint8_t*>(p) - PageSize()) - PageSize();
}

bool PreferNode(void* addr, size_t len, int node, std::string* why) {
  if (node < 0 || node >= kMaxNodes) {
    if (why) *why = "node " + std::to_string(node) + " is out of range";
    return false;
  }
  unsigned long mask[kMaskWords] = {};
  mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
  // maxnode is one more than the mask's bits: the kernel drops one (as libnuma passes it).
  if (::syscall(SYS_mbind, addr, len, kMpolPreferred, mask, (unsigned long)kMaxNodes + 1, 0u) == 0) return true;
  if (why) *why = std::string("mbind: ") + std::strerror(errno);
  return false;
}

int NodeOfPage(const void* addr) {
  int node = -1;
  if (::syscall(SYS_get_mempolicy, &node, nullptr, 0UL, addr, kMpolFNode | kMpolFAddr) != 0) return -1;
  return node;
}

int PreferredNodeAt(const void* addr) {
  int mode = -1;
  unsigned long mask[kMaskWords] = {};
  if (::syscall(SYS_get_mempolicy, &mode, mask, (unsigned long)kMaxNodes + 1, addr, kMpolFAddr) != 0) return -1;
  if ((mode & kMpolModeMask) != kMpolPreferred) return -1;
  for (int n = 0; n < kMaxNodes; ++n)
    if (mask[n / (8 * sizeof(unsigned long))] >> (n % (8 * sizeof(unsigned long))) & 1UL) return n;
  return -1;
}

#else  // no NUMA placement off Linux

size_t PageSize() { return 4096; }
int CountNumaNodes(const std::string&) { return 0; }
void* MapUntouched(size_t) { return nullptr; }  // callers fall back to their ordinary allocation
void Unmap(void*) {}
size_t MappedBytes(const void*) { return 0; }
bool PreferNode(void*, size_t, int, std::string* why) {
  if (why) *why = "NUMA placement needs Linux";
  return false;
}
int NodeOfPage(const void*) { return -1; }
int PreferredNodeAt(const void*) { return -1; }

#endif

}  // namespace hs::pipeline::numa
