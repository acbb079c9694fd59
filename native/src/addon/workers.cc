#include "addon/workers.h"

#include <cstring>

#include "addon/engine_wrap.h"
#include "core/errors.h"

namespace hs::addon {

void PromiseWorker::Fail(const std::exception& e) {
  range_error_ = dynamic_cast<const RangeErrorEx*>(&e) != nullptr;
  code_ = CodeOf(e);
  SetError(e.what());
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(Resolve());
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const std::exception& e) {
    deferred_.Reject(ToJsError(env, e.what(), CodeOf(e), false).Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  Cleanup();
  deferred_.Reject(ToJsError(env, e.Message(), code_, range_error_).Value());
}

// ---- createEngine ------------------------------------------------------------------------------
void CreateEngineWorker::Execute() {
  try {
    EngineParts parts = MakeEngineParts(opts_.config, opts_.weights, opts_.pools, opts_.device);
    engine_ = std::make_unique<Engine>(opts_.config, std::move(parts), opts_.act_fraction, opts_.prefix_caching);
    engine_->SetMiniBatchTokens(opts_.mini_batch_tokens);
  } catch (const std::exception& e) {
    Fail(e);
  }
}

Napi::Value CreateEngineWorker::Resolve() { return EngineWrap::New(Env(), std::move(engine_)); }

// ---- step --------------------------------------------------------------------------------------
StepWorker::StepWorker(Napi::Env env, Napi::Object wrap_obj, Engine* engine, int slot)
    : PromiseWorker(env), wrap_(Napi::Persistent(wrap_obj)), engine_(engine), slot_(slot) {}

StepWorker::~StepWorker() = default;

void StepWorker::Execute() {
  try {
    engine_->RunStep(slot_);
  } catch (const std::exception& e) {
    Fail(e);
  }
}

void StepWorker::Cleanup() {
  if (!finished_) engine_->FinishStep(false, slot_);
  finished_ = true;
}

Napi::Value StepWorker::Resolve() {
  Napi::Env env = Env();
  result_ = engine_->FinishStep(true, slot_);
  finished_ = true;
  const size_t n = result_.tokens.size();
  Napi::Object o = Napi::Object::New(env);
  Napi::Int32Array tokens = Napi::Int32Array::New(env, n);
  Napi::Int32Array status = Napi::Int32Array::New(env, n);
  for (size_t i = 0; i < n; ++i) {
    tokens[i] = result_.tokens[i];
    status[i] = result_.status[i];
  }
  o.Set("tokens", tokens);
  o.Set("status", status);
  if (!result_.logits.empty()) {
    Napi::Float32Array logits = Napi::Float32Array::New(env, result_.logits.size());
    std::memcpy(logits.Data(), result_.logits.data(), result_.logits.size() * sizeof(float));
    o.Set("logits", logits);
  }
  if (result_.top_n >= 0) {
    Napi::Float32Array lp = Napi::Float32Array::New(env, n);
    std::memcpy(lp.Data(), result_.logprobs.data(), n * sizeof(float));
    Napi::Int32Array ids = Napi::Int32Array::New(env, result_.top_ids.size());
    if (!result_.top_ids.empty())
      std::memcpy(ids.Data(), result_.top_ids.data(), result_.top_ids.size() * sizeof(int32_t));
    Napi::Float32Array lps = Napi::Float32Array::New(env, result_.top_logprobs.size());
    if (!result_.top_logprobs.empty())
      std::memcpy(lps.Data(), result_.top_logprobs.data(), result_.top_logprobs.size() * sizeof(float));
    o.Set("logprobs", lp);
    o.Set("topN", result_.top_n);
    o.Set("topTokenIds", ids);
    o.Set("topLogprobs", lps);
  }
  o.Set("counters", CountersToJs(env, result_.counters));
  return o;
}

// ---- runRank -----------------------------------------------------------------------------------
void RankWorker::Execute() {
  try {
    RunRank(opts_.config, opts_.weights, opts_.device);
  } catch (const std::exception& e) {
    Fail(e);
  }
}

// ---- close -------------------------------------------------------------------------------------
void CloseWorker::Execute() {
  try {
    engine_.reset();  // frees weights and pools off the main thread
  } catch (const std::exception& e) {
    Fail(e);
  }
}

Napi::Value CloseWorker::Resolve() { return Env().Undefined(); }

// ---- probe -------------------------------------------------------------------------------------
void ProbeWorker::Execute() {
  try {
    result_ = ProbeDevice(device_, threads_);
  } catch (const std::exception& e) {
    Fail(e);
  }
}

Napi::Value ProbeWorker::Resolve() {
  Napi::Object o = Napi::Object::New(Env());
  o.Set("gemmFlops", result_.gemm_flops);
  o.Set("h2dBytesPerSecond", result_.h2d_bytes_per_second);
  o.Set("d2hBytesPerSecond", result_.d2h_bytes_per_second);
  return o;
}

}  // namespace hs::addon
