// Issue 15: a lost pipeline rank (the addon's HS_PEER_LOST) is fatal for the server, not one more
// failed step: the requests in flight get 503 engine_unavailable, liveness and readiness fail, new
// requests are refused at once, and the owner hears it once (`serve` then exits non-zero so that
// the pod and its LeaderWorkerSet group restart). Any other engine failure stays a 500 for the
// requests it hit, and the server keeps serving.
import { afterEach, describe, expect, test } from '@jest/globals';
import { NativeErrorCode } from '../../native/ts/addon-types.js';
import { createServing, type Serving } from '../../server/serving.js';
import { byteTokenizer, FakeEngine } from './server-fake-engine.js';

const LOST = 'pipeline rank 1 disconnected';

async function start(engine: FakeEngine, onFatal: (err: Error) => void): Promise<{ s: Serving; base: string }> {
  const s = await createServing({
    modelName: 'fake',
    device: 'cpu',
    engine,
    tokenizer: byteTokenizer,
    maxPositions: 256,
    processMetrics: false,
    onFatal,
  });
  return { s, base: await s.app.listen({ host: '127.0.0.1', port: 0 }) };
}

const complete = (base: string, stream = false) =>
  fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake', prompt: 'hello', max_tokens: 4, stream }),
  });

let serving: Serving | null = null;
afterEach(async () => {
  await serving?.shutdown(0);
  serving = null;
});

describe('a lost pipeline rank', () => {
  test('fails the requests in flight with 503, then health, readiness and new requests', async () => {
    const engine = new FakeEngine({ kvBlocks: 64, actBlocks: 0, vocab: 120, stepDelayMs: 5 });
    const fatal: Error[] = [];
    const { s, base } = await start(engine, (err) => fatal.push(err));
    serving = s;
    expect((await complete(base)).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);

    engine.failSteps = { code: NativeErrorCode.PeerLost, message: LOST };
    const inFlight = await Promise.all([complete(base), complete(base)]);
    for (const r of inFlight) {
      expect(r.status).toBe(503);
      const body = (await r.json()) as { error: { code: string; type: string; message: string } };
      expect(body.error).toMatchObject({ code: 'engine_unavailable', type: 'service_unavailable' });
      expect(body.error.message).toContain(LOST);
    }
    expect(fatal).toHaveLength(1);
    expect(fatal[0].message).toBe(LOST);

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'failing', reason: expect.stringContaining(LOST) });
    expect((await fetch(`${base}/health`)).status).toBe(503);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ reason: expect.stringContaining(LOST) });

    // Refused before the engine is asked: no further step runs.
    const steps = engine.stepLog.length;
    for (const stream of [false, true]) {
      const r = await complete(base, stream);
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('engine_unavailable');
    }
    expect(engine.stepLog.length).toBe(steps);
    expect(fatal).toHaveLength(1);
  });

  test('another engine failure fails its requests with 500 and the server keeps serving', async () => {
    const engine = new FakeEngine({ kvBlocks: 64, actBlocks: 0, vocab: 120 });
    const fatal: Error[] = [];
    const { s, base } = await start(engine, (err) => fatal.push(err));
    serving = s;
    engine.failSteps = { code: NativeErrorCode.Internal, message: 'cuda: an illegal memory access' };
    expect((await complete(base)).status).toBe(500);
    engine.failSteps = null;
    expect((await complete(base)).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(fatal).toHaveLength(0);
  });
});
