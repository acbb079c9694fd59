#include "pipeline/plan_codec.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace hs::pipeline {
namespace {

constexpr uint32_t kMagic = 0x31505348;  // "HSP1"

class Writer {
 public:
  template <class T>
  void Put(T v) {
    const size_t at = out.size();
    out.resize(at + sizeof v);
    std::memcpy(out.data() + at, &v, sizeof v);
  }
  std::vector<uint8_t> out;
};

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  template <class T>
  T Get() {
    if (n_ - at_ < sizeof(T)) throw std::invalid_argument("step plan bytes end early");
    T v;
    std::memcpy(&v, d_ + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  // A count of items of `item_bytes` each that must still fit in the bytes left.
  uint32_t Count(size_t item_bytes) {
    const uint32_t c = Get<uint32_t>();
    if ((uint64_t)c * item_bytes > n_ - at_) throw std::invalid_argument("step plan count beyond its bytes");
    return c;
  }
  bool done() const { return at_ == n_; }

 private:
  const uint8_t* d_;
  size_t n_, at_ = 0;
};

}  // namespace

std::vector<uint8_t> EncodePlan(const BatchPlan& plan) {
  Writer w;
  w.Put(kMagic);
  w.Put((uint32_t)plan.seqs.size());
  for (const SeqPlan& s : plan.seqs) {
    w.Put(s.id);
    w.Put((int32_t)s.start_pos);
    w.Put((uint32_t)s.num_new);
    for (int i = 0; i < s.num_new; ++i) w.Put(s.tokens[i]);
    w.Put((uint32_t)s.num_blocks);
    for (int b = 0; b < s.num_blocks; ++b) {
      w.Put((uint8_t)s.blocks[b].kind);
      w.Put((uint8_t)s.blocks[b].tier);
      w.Put(s.blocks[b].index);
    }
  }
  w.Put((uint32_t)plan.mini_batches.size());
  for (const auto& mb : plan.mini_batches) {
    w.Put((uint32_t)mb.size());
    for (int i : mb) w.Put((int32_t)i);
  }
  return std::move(w.out);
}

std::unique_ptr<OwnedPlan> DecodePlan(const uint8_t* data, size_t size) {
  Reader r(data, size);
  if (r.Get<uint32_t>() != kMagic) throw std::invalid_argument("not a step plan");
  auto out = std::make_unique<OwnedPlan>();
  const uint32_t n = r.Count(20);
  out->tokens.resize(n);
  out->blocks.resize(n);
  out->plan.seqs.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    SeqPlan& s = out->plan.seqs[i];
    s.id = r.Get<int64_t>();
    s.start_pos = r.Get<int32_t>();
    if (s.start_pos < 0) throw std::invalid_argument("step plan has a negative position");
    out->tokens[i].resize(r.Count(4));
    for (int32_t& t : out->tokens[i]) t = r.Get<int32_t>();
    out->blocks[i].resize(r.Count(6));
    for (BlockRef& b : out->blocks[i]) {
      const uint8_t kind = r.Get<uint8_t>(), tier = r.Get<uint8_t>();
      if (kind > 1 || tier > 1) throw std::invalid_argument("step plan has an unknown block kind or tier");
      b = {(CacheKind)kind, r.Get<int32_t>(), (Tier)tier};
    }
    s.num_new = (int)out->tokens[i].size();
    s.tokens = out->tokens[i].data();
    s.num_blocks = (int)out->blocks[i].size();
    s.blocks = out->blocks[i].data();
  }
  out->plan.mini_batches.resize(r.Count(4));
  for (auto& mb : out->plan.mini_batches) {
    mb.resize(r.Count(4));
    for (int& i : mb) {
      i = r.Get<int32_t>();
      if (i < 0 || (uint32_t)i >= n) throw std::invalid_argument("step plan mini-batch names no sequence");
    }
  }
  if (!r.done()) throw std::invalid_argument("step plan has trailing bytes");
  return out;
}

}  // namespace hs::pipeline
