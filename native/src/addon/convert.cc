#include "addon/convert.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hs::addon {

namespace {

Napi::Object ToObject(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsObject() || v.IsArray()) throw ArgTypeError(env, what + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Value Field(Napi::Object o, const char* key) { return o.Get(key); }

bool Present(Napi::Value v) { return !v.IsUndefined() && !v.IsNull(); }

std::string ToString(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsString()) throw ArgTypeError(env, what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

bool ToBool(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsBoolean()) throw ArgTypeError(env, what + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

DType ParseDType(Napi::Env env, Napi::Value v, const std::string& what) {
  const std::string s = ToString(env, v, what);
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  throw ArgRangeError(env, what + " must be 'F32', 'F16' or 'BF16', got '" + s + "'");
}

constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxSafe = 9007199254740991LL;  // 2^53 - 1

ModelConfig ParseConfig(Napi::Env env, Napi::Value v) {
  Napi::Object o = ToObject(env, v, "config");
  ModelConfig c;
  const std::string arch = ToString(env, Field(o, "arch"), "config.arch");
  if (arch == "opt")
    c.arch = Arch::OPT;
  else if (arch == "llama")
    c.arch = Arch::LLAMA;
  else
    throw ArgRangeError(env, "config.arch must be 'opt' or 'llama', got '" + arch + "'");
  auto pos = [&](const char* key) {
    return (int)ToInteger(env, Field(o, key), std::string("config.") + key, 1, kMaxInt);
  };
  c.vocab_size = pos("vocabSize");
  c.hidden_size = pos("hiddenSize");
  c.num_layers = pos("numLayers");
  c.num_heads = pos("numHeads");
  c.num_kv_heads = pos("numKvHeads");
  c.head_dim = pos("headDim");
  c.ffn_size = pos("ffnSize");
  c.max_positions = pos("maxPositions");
  c.norm_eps = (float)ToNumber(env, Field(o, "normEps"), "config.normEps");
  c.rope_theta = (float)ToNumber(env, Field(o, "ropeTheta"), "config.ropeTheta");
  c.tie_embeddings = ToBool(env, Field(o, "tieEmbeddings"), "config.tieEmbeddings");
  if (!(c.norm_eps > 0)) throw ArgRangeError(env, "config.normEps must be > 0");
  if (!(c.rope_theta > 0)) throw ArgRangeError(env, "config.ropeTheta must be > 0");
  if (c.num_heads % c.num_kv_heads)
    throw ArgRangeError(env, "config.numHeads (" + std::to_string(c.num_heads) +
                                 ") must be a multiple of config.numKvHeads (" + std::to_string(c.num_kv_heads) + ")");
  if (c.arch == Arch::OPT && c.num_heads != c.num_kv_heads)
    throw ArgRangeError(env, "config.numKvHeads must equal config.numHeads for OPT");
  if (c.arch == Arch::LLAMA && c.head_dim % 2) throw ArgRangeError(env, "config.headDim must be even for RoPE");
  const std::string products = ConfigProductsProblem(c);
  if (!products.empty())
    throw ArgRangeError(env, "config: " + products + " (the engine's int arithmetic would overflow)");
  return c;
}

WeightSource ParseWeights(Napi::Env env, Napi::Value v) {
  Napi::Object o = ToObject(env, v, "weights");
  WeightSource w;
  const std::string kind = ToString(env, Field(o, "kind"), "weights.kind");
  if (kind == "synthetic") {
    w.synthetic = true;
    w.seed = (uint64_t)ToInteger(env, Field(o, "seed"), "weights.seed", 0, kMaxSafe);
    return w;
  }
  if (kind != "files") throw ArgRangeError(env, "weights.kind must be 'synthetic' or 'files', got '" + kind + "'");
  w.synthetic = false;
  Napi::Value tv = Field(o, "tensors");
  if (!tv.IsArray()) throw ArgTypeError(env, "weights.tensors must be an array");
  Napi::Array arr = tv.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string at = "weights.tensors[" + std::to_string(i) + "]";
    Napi::Object t = ToObject(env, arr.Get(i), at);
    TensorRef r;
    r.name = ToString(env, Field(t, "name"), at + ".name");
    r.path = ToString(env, Field(t, "path"), at + ".path");
    r.offset = (uint64_t)ToInteger(env, Field(t, "offset"), at + ".offset", 0, kMaxSafe);
    r.byte_length = (uint64_t)ToInteger(env, Field(t, "byteLength"), at + ".byteLength", 0, kMaxSafe);
    r.dtype = ParseDType(env, Field(t, "dtype"), at + ".dtype");
    Napi::Value sv = Field(t, "shape");
    if (!sv.IsArray()) throw ArgTypeError(env, at + ".shape must be an array");
    Napi::Array sa = sv.As<Napi::Array>();
    for (uint32_t k = 0; k < sa.Length(); ++k)
      r.shape.push_back(ToInteger(env, sa.Get(k), at + ".shape[" + std::to_string(k) + "]", 0, kMaxSafe));
    w.tensors.push_back(std::move(r));
  }
  return w;
}

// The optional logit processors and logprobs of sampling params (absent = off).
void ParseLogitProcessors(Napi::Env env, Napi::Object sp, SamplingParams& p) {
  auto num = [&](const char* key, float& out) {
    if (Present(Field(sp, key))) out = (float)ToNumber(env, Field(sp, key), std::string("sampling.") + key);
  };
  num("minP", p.min_p);
  num("presencePenalty", p.presence_penalty);
  num("frequencyPenalty", p.frequency_penalty);
  num("repetitionPenalty", p.repetition_penalty);
  if (!(p.min_p >= 0 && p.min_p <= 1)) throw ArgRangeError(env, "sampling.minP must be in [0, 1]");
  if (!(p.repetition_penalty > 0)) throw ArgRangeError(env, "sampling.repetitionPenalty must be > 0");
  if (Present(Field(sp, "minTokens")))
    p.min_tokens = (int)ToInteger(env, Field(sp, "minTokens"), "sampling.minTokens", 0, kMaxInt);
  if (Present(Field(sp, "logprobs")))
    p.logprobs = (int)ToInteger(env, Field(sp, "logprobs"), "sampling.logprobs", -1, kMaxLogprobs);
  Napi::Value stops = Field(sp, "stopTokenIds");
  if (Present(stops)) {
    if (!stops.IsArray()) throw ArgTypeError(env, "sampling.stopTokenIds must be an array");
    Napi::Array a = stops.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i)
      p.stop_token_ids.push_back(
          (int32_t)ToInteger(env, a.Get(i), "sampling.stopTokenIds[" + std::to_string(i) + "]", 0, kMaxInt));
  }
  Napi::Value bias = Field(sp, "logitBias");
  if (Present(bias)) {  // [[tokenId, bias], ...]
    if (!bias.IsArray()) throw ArgTypeError(env, "sampling.logitBias must be an array of [tokenId, bias] pairs");
    Napi::Array a = bias.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const std::string at = "sampling.logitBias[" + std::to_string(i) + "]";
      Napi::Value pair = a.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2)
        throw ArgTypeError(env, at + " must be a [tokenId, bias] pair");
      Napi::Array pa = pair.As<Napi::Array>();
      p.logit_bias.emplace_back((int32_t)ToInteger(env, pa.Get(0u), at + "[0]", 0, kMaxInt),
                                (float)ToNumber(env, pa.Get(1u), at + "[1]"));
    }
  }
}

}  // namespace

double ToNumber(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) throw ArgTypeError(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw ArgRangeError(env, what + " must be finite");
  return d;
}

int64_t ToInteger(Napi::Env env, Napi::Value v, const std::string& what, int64_t lo, int64_t hi) {
  const double d = ToNumber(env, v, what);
  if (d != std::floor(d)) throw ArgRangeError(env, what + " must be an integer, got " + std::to_string(d));
  if (d < (double)lo || d > (double)hi)
    throw ArgRangeError(env, what + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                 std::to_string((int64_t)d));
  return (int64_t)d;
}

// Pipeline stages (issue 15): `stages` in-process CPU stages, `gpus` CUDA stages (one per GPU).
static void ParsePipeline(Napi::Env env, Napi::Object o, CreateOptions& c) {
  const int layers = c.config.num_layers;
  if (Present(Field(o, "stages")))
    c.device.stages = (int)ToInteger(env, Field(o, "stages"), "options.stages", 1, std::max(1, layers));
  if (Present(Field(o, "gpus")))
    c.device.gpus = (int)ToInteger(env, Field(o, "gpus"), "options.gpus", 1, std::max(1, std::min(layers, 64)));
  if (c.device.stages > 1 && c.device.device != "cpu")
    throw ArgRangeError(env, "options.stages is for the cpu device; use options.gpus on cuda");
  if (c.device.gpus > 1 && c.device.device != "cuda") throw ArgRangeError(env, "options.gpus is for the cuda device");
  if (Present(Field(o, "worldSize")))
    c.device.world_size = (int)ToInteger(env, Field(o, "worldSize"), "options.worldSize", 1, std::max(1, layers));
  if (Present(Field(o, "rank")))
    c.device.rank = (int)ToInteger(env, Field(o, "rank"), "options.rank", 0, c.device.world_size - 1);
  if (Present(Field(o, "leaderAddress")))
    c.device.leader_address = ToString(env, Field(o, "leaderAddress"), "options.leaderAddress");
  if (Present(Field(o, "pipelineToken"))) {
    c.device.pipeline_token = ToString(env, Field(o, "pipelineToken"), "options.pipelineToken");
    if (c.device.pipeline_token.size() > 256)
      throw ArgRangeError(env, "options.pipelineToken is longer than 256 bytes");
  }
  if (c.device.world_size > 1) {
    if (c.device.stages > 1) throw ArgRangeError(env, "options.worldSize > 1 runs one stage per process (stages 1)");
    if (c.device.gpus > 1) throw ArgRangeError(env, "options.worldSize > 1 runs one GPU per process (gpus 1)");
    if (c.device.leader_address.empty()) throw ArgRangeError(env, "options.worldSize > 1 needs options.leaderAddress");
    // The core's copy-on-write of a shared prompt block copies this process's pools only.
    if (c.prefix_caching) throw ArgRangeError(env, "options.prefixCaching is not supported with worldSize > 1 yet");
  }
}

CreateOptions ParseCreateOptions(Napi::Env env, Napi::Value v) {
  Napi::Object o = ToObject(env, v, "options");
  CreateOptions c;
  c.device.device = ToString(env, Field(o, "device"), "options.device");
  if (c.device.device != "cpu" && c.device.device != "cuda")
    throw ArgRangeError(env, "options.device must be 'cpu' or 'cuda', got '" + c.device.device + "'");
  c.config = ParseConfig(env, Field(o, "config"));
  c.weights = ParseWeights(env, Field(o, "weights"));
  if (Present(Field(o, "weightDtype"))) {  // issue 14: both backends read every format
    const std::string f = ToString(env, Field(o, "weightDtype"), "options.weightDtype");
    if (!ParseWeightFormat(f, &c.weights.format))
      throw Napi::RangeError::New(env, "options.weightDtype must be 'fp16', 'fp8', 'int8' or 'int4', got '" + f + "'");
  }
  c.pools.block_tokens = (int)ToInteger(env, Field(o, "blockTokens"), "options.blockTokens", 1, 4096);
  c.pools.kv_blocks = (int)ToInteger(env, Field(o, "kvBlocks"), "options.kvBlocks", 0, kMaxInt);
  c.pools.act_blocks = (int)ToInteger(env, Field(o, "actBlocks"), "options.actBlocks", 0, kMaxInt);
  if (Present(Field(o, "gpuKvBlocks")))
    c.pools.gpu_kv_blocks = (int)ToInteger(env, Field(o, "gpuKvBlocks"), "options.gpuKvBlocks", 0, kMaxInt);
  c.act_fraction = ToNumber(env, Field(o, "actFraction"), "options.actFraction");
  if (c.act_fraction < 0 || c.act_fraction > 1)
    throw ArgRangeError(env, "options.actFraction must be in [0, 1], got " + std::to_string(c.act_fraction));
  if (Present(Field(o, "threads")))
    c.device.threads = (int)ToInteger(env, Field(o, "threads"), "options.threads", 0, 1024);
  if (Present(Field(o, "gpuMemoryBytes")))
    c.device.gpu_memory_bytes = ToInteger(env, Field(o, "gpuMemoryBytes"), "options.gpuMemoryBytes", 0, kMaxSafe);
  if (Present(Field(o, "prefixCaching")))
    c.prefix_caching = ToBool(env, Field(o, "prefixCaching"), "options.prefixCaching");
  if (Present(Field(o, "residentLayers")))
    c.device.resident_layers = (int)ToInteger(env, Field(o, "residentLayers"), "options.residentLayers", -1, kMaxInt);
  if (Present(Field(o, "miniBatchTokens")))
    c.mini_batch_tokens = (int)ToInteger(env, Field(o, "miniBatchTokens"), "options.miniBatchTokens", 0, kMaxInt);
  ParsePipeline(env, o, c);
  return c;
}

SequenceOptions ParseSequenceOptions(Napi::Env env, Napi::Value v) {
  Napi::Object o = ToObject(env, v, "options");
  SequenceOptions s;
  Napi::Object sp = ToObject(env, Field(o, "sampling"), "options.sampling");
  s.sampling.temperature = (float)ToNumber(env, Field(sp, "temperature"), "sampling.temperature");
  if (s.sampling.temperature < 0) throw ArgRangeError(env, "sampling.temperature must be >= 0");
  s.sampling.top_k = (int)ToInteger(env, Field(sp, "topK"), "sampling.topK", 0, kMaxInt);
  s.sampling.top_p = (float)ToNumber(env, Field(sp, "topP"), "sampling.topP");
  if (!(s.sampling.top_p > 0 && s.sampling.top_p <= 1)) throw ArgRangeError(env, "sampling.topP must be in (0, 1]");
  s.sampling.seed = (uint64_t)ToInteger(env, Field(sp, "seed"), "sampling.seed", 0, kMaxSafe);
  ParseLogitProcessors(env, sp, s.sampling);
  if (Present(Field(o, "promptTokens")))
    s.prompt_tokens = (int)ToInteger(env, Field(o, "promptTokens"), "options.promptTokens", 0, kMaxInt);
  if (Present(Field(o, "actFraction"))) {
    s.act_fraction = ToNumber(env, Field(o, "actFraction"), "options.actFraction");
    if (s.act_fraction < 0 || s.act_fraction > 1)
      throw ArgRangeError(env, "options.actFraction must be in [0, 1], got " + std::to_string(s.act_fraction));
  }
  return s;
}

Napi::Object CountersToJs(Napi::Env env, const StepCounters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("steps", (double)c.steps);
  o.Set("prefillTokens", (double)c.prefill_tokens);
  o.Set("decodeTokens", (double)c.decode_tokens);
  o.Set("weightBytesH2D", (double)c.weight_bytes_h2d);
  o.Set("kvBytesH2D", (double)c.kv_bytes_h2d);
  o.Set("actBytesH2D", (double)c.act_bytes_h2d);
  o.Set("kvBytesD2H", (double)c.kv_bytes_d2h);
  o.Set("actBytesD2H", (double)c.act_bytes_d2h);
  o.Set("transferSeconds", c.transfer_seconds);
  o.Set("computeSeconds", c.compute_seconds);
  o.Set("recomputeSeconds", c.recompute_seconds);
  o.Set("idleSeconds", c.idle_seconds);
  o.Set("wallSeconds", c.wall_seconds);
  o.Set("recomputedTokens", (double)c.recomputed_tokens);
  return o;
}

}  // namespace hs::addon
