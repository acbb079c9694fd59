#include "core/types.h"

namespace hs {

StepCounters& StepCounters::operator+=(const StepCounters& o) {
  steps += o.steps;
  prefill_tokens += o.prefill_tokens;
  decode_tokens += o.decode_tokens;
  weight_bytes_h2d += o.weight_bytes_h2d;
  kv_bytes_h2d += o.kv_bytes_h2d;
  act_bytes_h2d += o.act_bytes_h2d;
  kv_bytes_d2h += o.kv_bytes_d2h;
  act_bytes_d2h += o.act_bytes_d2h;
  transfer_seconds += o.transfer_seconds;
  compute_seconds += o.compute_seconds;
  recompute_seconds += o.recompute_seconds;
  idle_seconds += o.idle_seconds;
  wall_seconds += o.wall_seconds;
  recomputed_tokens += o.recomputed_tokens;
  return *this;
}

}  // namespace hs
