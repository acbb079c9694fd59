// AsyncWorkers behind every blocking call. Execute() touches no Napi value; failures go through
// SetError and reject the promise (RangeError when the engine said the input was out of range).
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "addon/convert.h"
#include "core/engine.h"

namespace hs::addon {

// A worker that settles a promise; subclasses fill Execute and Resolve.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  // Call from Execute with a caught exception.
  void Fail(const std::exception& e);
  virtual Napi::Value Resolve() = 0;
  virtual void Cleanup() {}  // main thread, after success or failure
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Napi::Promise::Deferred deferred_;
  bool range_error_ = false;
  ErrorCode code_ = ErrorCode::Internal;
};

class CreateEngineWorker : public PromiseWorker {
 public:
  CreateEngineWorker(Napi::Env env, CreateOptions opts) : PromiseWorker(env), opts_(std::move(opts)) {}
  void Execute() override;

 protected:
  Napi::Value Resolve() override;

 private:
  CreateOptions opts_;
  std::unique_ptr<Engine> engine_;
};

class StepWorker : public PromiseWorker {
 public:
  StepWorker(Napi::Env env, Napi::Object wrap_obj, Engine* engine, int slot);
  ~StepWorker() override;
  void Execute() override;

 protected:
  Napi::Value Resolve() override;
  void Cleanup() override;

 private:
  Napi::ObjectReference wrap_;
  Engine* engine_;
  int slot_;
  bool finished_ = false;
  StepResult result_;
};

class CloseWorker : public PromiseWorker {
 public:
  CloseWorker(Napi::Env env, std::unique_ptr<Engine> engine) : PromiseWorker(env), engine_(std::move(engine)) {}
  void Execute() override;

 protected:
  Napi::Value Resolve() override;

 private:
  std::unique_ptr<Engine> engine_;
};

// runRank: a rank > 0 of a pipeline over processes, until the leader stops.
class RankWorker : public PromiseWorker {
 public:
  RankWorker(Napi::Env env, CreateOptions opts) : PromiseWorker(env), opts_(std::move(opts)) {}
  void Execute() override;

 protected:
  Napi::Value Resolve() override { return Env().Undefined(); }

 private:
  CreateOptions opts_;
};

class ProbeWorker : public PromiseWorker {
 public:
  ProbeWorker(Napi::Env env, std::string device, int threads)
      : PromiseWorker(env), device_(std::move(device)), threads_(threads) {}
  void Execute() override;

 protected:
  Napi::Value Resolve() override;

 private:
  std::string device_;
  int threads_;
  ProbeResult result_;
};

}  // namespace hs::addon
