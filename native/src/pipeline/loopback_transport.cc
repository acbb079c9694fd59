#include "pipeline/loopback_transport.h"

#include "core/errors.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace hs::pipeline {

class LoopbackEndpoint : public Transport {
 public:
  LoopbackEndpoint(LoopbackHub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return hub_.world_size(); }
  void Send(int peer, const void* buf, size_t bytes, void*) override { hub_.Push(rank_, Check(peer), buf, bytes); }
  void Recv(int peer, void* buf, size_t bytes, void*) override { hub_.Pop(Check(peer), rank_, buf, bytes); }
  void Abort(const std::string& why) override { hub_.Abort(why); }

 private:
  int Check(int peer) const {
    if (peer < 0 || peer >= hub_.world_size() || peer == rank_)
      throw std::invalid_argument("loopback peer " + std::to_string(peer) + " is not another rank");
    return peer;
  }
  LoopbackHub& hub_;
  int rank_;
};

LoopbackHub::LoopbackHub(int world_size) : world_size_(world_size) {
  if (world_size < 1) throw std::invalid_argument("a loopback hub needs at least one rank");
  channels_.resize((size_t)world_size * world_size);
}

std::unique_ptr<Transport> LoopbackHub::Endpoint(int rank) {
  if (rank < 0 || rank >= world_size_) throw std::invalid_argument("rank out of range");
  return std::make_unique<LoopbackEndpoint>(*this, rank);
}

void LoopbackHub::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

void LoopbackHub::Abort(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  if (abort_why_.empty()) abort_why_ = why.empty() ? "a pipeline rank is gone" : why;
  cv_.notify_all();
}

void LoopbackHub::ThrowClosed() const {
  if (!abort_why_.empty()) throw PeerLostError(abort_why_);
  throw std::runtime_error("loopback transport is closed");
}

void LoopbackHub::Push(int from, int to, const void* buf, size_t bytes) {
  std::vector<uint8_t> msg(bytes);
  if (bytes) std::memcpy(msg.data(), buf, bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) ThrowClosed();
  At(from, to).messages.push_back(std::move(msg));
  cv_.notify_all();
}

void LoopbackHub::Pop(int from, int to, void* buf, size_t bytes) {
  std::unique_lock<std::mutex> lock(mu_);
  Channel& ch = At(from, to);
  cv_.wait(lock, [&] { return closed_ || !ch.messages.empty(); });
  if (ch.messages.empty() || !abort_why_.empty()) ThrowClosed();
  std::vector<uint8_t> msg = std::move(ch.messages.front());
  ch.messages.pop_front();
  lock.unlock();
  if (msg.size() != bytes)
    throw std::logic_error("loopback message of " + std::to_string(msg.size()) + " bytes, receiver expected " +
                           std::to_string(bytes));
  if (bytes) std::memcpy(buf, msg.data(), bytes);
}

}  // namespace hs::pipeline
