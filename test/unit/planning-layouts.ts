// Shared by the planning tests (not a test file): GPU layouts that force a placement.
import type { GpuLayout } from '../../planning/index.js';

/** Every layer and every cached token on the host: no resident layer, no GPU cache tier, no buffer limits. */
export function streamAll(): GpuLayout {
  return {
    budgetBytes: 0,
    reserveBytes: 0,
    headBytes: 0,
    residentLayers: 0,
    layerBufferBytes: 0,
    cacheBufferBytes: 1e15,
    miniBatchTokens: 1e12,
    usedBytes: 0,
  };
}
