// Point-to-point transport of hidden-state tensors between pipeline stages. One endpoint per rank
// (stage); messages between a pair of ranks arrive in the order they were sent, which is all the
// pipeline needs: every stage handles steps in the same (submission) order.
//   LoopbackTransport (loopback_transport.h): in-process queues, for CPU stages.
//   NcclTransport (nccl_transport.h): ncclSend/ncclRecv over one communicator, for GPU stages.
#pragma once
#include <cstddef>
#include <string>

namespace hs::pipeline {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Blocks until `bytes` of `buf` are handed over (Send) or have arrived (Recv). `stream` is the
  // device stream the buffer is ordered on (a cudaStream_t for NCCL; ignored by the loopback).
  // A size mismatch between a Send and its Recv throws std::logic_error.
  virtual void Send(int peer, const void* buf, size_t bytes, void* stream = nullptr) = 0;
  virtual void Recv(int peer, void* buf, size_t bytes, void* stream = nullptr) = 0;
  // Ends this endpoint because a rank is gone: a Send or Recv blocked in it returns with
  // PeerLostError(why) (core/errors.h), and so does every later one. Safe from any thread (the link
  // watch of pipeline/rendezvous.h calls it); later calls keep the first reason.
  virtual void Abort(const std::string& why) = 0;
};

}  // namespace hs::pipeline
