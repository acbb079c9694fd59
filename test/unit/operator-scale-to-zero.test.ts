// Scale to zero (pure): idleness from the gateway's last-request stamp, busy measurements and creation.
import { describe, test, expect } from '@jest/globals';
import { LAST_REQUEST_ANNOTATION, lastActivityMs, parseDurationSeconds, scaleToZero } from '../../operator/desired/scale-to-zero.js';
import type { HybridServeDeployment } from '../../operator/api/types.js';
import { advertisedGatewayUrl } from '../../operator/desired/gateway-url.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
function hsd(
  autoscaling: Record<string, unknown> | undefined,
  annotations: Record<string, string> = {},
  measured?: Record<string, unknown>,
): HybridServeDeployment {
  return {
    apiVersion: 'hybridserve.io/v1alpha1',
    kind: 'HybridServeDeployment',
    metadata: { name: 'x', creationTimestamp: new Date(T0).toISOString(), annotations },
    spec: { model: { uri: 'synthetic:opt-tiny' }, autoscaling },
    ...(measured ? { status: { nodeGroups: [{ measured }] } } : {}),
  } as unknown as HybridServeDeployment;
}

describe('parseDurationSeconds', () => {
  test.each([
    [90, 90],
    ['90', 90],
    ['90s', 90],
    ['15m', 900],
    ['1h30m', 5400],
    ['500ms', 0.5],
    ['1.5s', 1.5],
  ])('%p → %p', (v, s) => {
    expect(parseDurationSeconds(v)).toBe(s);
  });
  test.each([['15 minutes'], [''], ['m'], [-1], ['1d'], [null]])('%p is refused', (v) => {
    expect(parseDurationSeconds(v)).toBeUndefined();
  });
});

describe('scaleToZero', () => {
  const on = { minReplicas: 0, scaleToZeroAfter: '60s' };
  test('not configured (minReplicas ≠ 0 or no window): the wanted replicas pass through, even 0', () => {
    expect(scaleToZero(hsd({ minReplicas: 1, scaleToZeroAfter: '1s' }), 2, T0 + 1e9)).toEqual({ replicas: 2, enabled: false, idle: false });
    expect(scaleToZero(hsd({ minReplicas: 0 }), 0, T0 + 1e9).replicas).toBe(0);
    expect(scaleToZero(hsd(undefined), 3, T0 + 1e9).replicas).toBe(3);
  });
  test('idle for the window (from creation when nothing else happened) → 0; before that ≥ 1 and a recheck at the window end', () => {
    const early = scaleToZero(hsd(on), 0, T0 + 20_000);
    expect(early).toEqual({ replicas: 1, enabled: true, idle: false, recheckAfterMs: 40_000 });
    expect(scaleToZero(hsd(on), 3, T0 + 20_000).replicas).toBe(3);
    expect(scaleToZero(hsd(on), 3, T0 + 60_000)).toEqual({ replicas: 0, enabled: true, idle: true });
  });
  test('a fresh gateway stamp wakes an idle HSD; the window restarts from the stamp', () => {
    const stamped = hsd(on, { [LAST_REQUEST_ANNOTATION]: new Date(T0 + 100_000).toISOString() });
    expect(scaleToZero(stamped, 0, T0 + 100_500).replicas).toBe(1);
    expect(scaleToZero(stamped, 1, T0 + 159_999).replicas).toBe(1);
    expect(scaleToZero(stamped, 1, T0 + 160_000).replicas).toBe(0);
  });
  test('busy pods (tokens/s or queue > 0 in the last measurement) count as activity; idle ones do not', () => {
    const at = new Date(T0 + 100_000).toISOString();
    expect(lastActivityMs(hsd(on, {}, { tokensPerSecond: 5, queueDepth: 0, at }))).toBe(T0 + 100_000);
    expect(lastActivityMs(hsd(on, {}, { tokensPerSecond: 0, queueDepth: 0, at }))).toBe(T0);
    expect(lastActivityMs(hsd(on, { [LAST_REQUEST_ANNOTATION]: 'garbage' }))).toBe(T0);
  });
});

describe('advertisedGatewayUrl', () => {
  test.each([
    ['http://chat-gateway.serving.svc:80', 'http://chat-gateway.serving.svc:80'],
    ['https://gw.example.com/', 'https://gw.example.com/'],
    ['ftp://x', undefined],
    ['not a url', undefined],
    ['http://user:pw@x', undefined],
    [undefined, undefined],
  ])('%p → %p', (annotation, url) => {
    const h = hsd(undefined, annotation === undefined ? {} : { 'hybridserve.io/gateway-url': annotation });
    expect(advertisedGatewayUrl(h)).toBe(url);
  });
});
