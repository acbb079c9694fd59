// The gateway's HTTP layer against stub upstreams on loopback (no Kubernetes: --upstream mode):
// SSE passed through as it is produced, backpressure from a slow client to the pod, cancellation
// on client disconnect, retries on another pod before the first byte, outlier ejection, the hold
// queue's bounds, and OpenAI-shaped errors.
import { describe, test, expect, afterEach } from '@jest/globals';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway } from '../../gateway/gateway.js';
import { HoldError, HoldQueue } from '../../gateway/hold.js';
import { fetchCapped } from '../../gateway/stats.js';
import { freePort } from '../k8s/kubelet.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function stub(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}
async function gateway(upstreams: string[], statsIntervalMs = 60_000): Promise<Gateway> {
  const gw = new Gateway({ port: 0, host: '127.0.0.1', upstreams, statsIntervalMs, log: () => undefined });
  await gw.start();
  closers.push(() => gw.stop());
  return gw;
}
const post = (gw: Gateway, body: unknown) =>
  fetch(`http://127.0.0.1:${gw.port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

describe('gateway proxy', () => {
  test('SSE events reach the client as the pod produces them, ending with [DONE]', async () => {
    const up = await stub((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: {"n":1}\n\n');
      setTimeout(() => {
        res.write('data: {"n":2}\n\n');
        res.end('data: [DONE]\n\n');
      }, 400);
    });
    const gw = await gateway([up]);
    const t0 = Date.now();
    const res = await post(gw, { prompt: 'x', stream: true });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('"n":1');
    expect(Date.now() - t0).toBeLessThan(300); // not buffered until the end
    let rest = '';
    for (;;) {
      const c = await reader.read();
      if (c.done) break;
      rest += new TextDecoder().decode(c.value);
    }
    expect(rest).toContain('data: [DONE]');
  });

  test("backpressure: a client that does not read stops the pod's writes; disconnecting cancels the upstream request", async () => {
    let written = 0;
    let upstreamClosed = false;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const up = await stub((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.on('close', () => {
        upstreamClosed = true;
      });
      const pump = () => {
        while (written < 512 * 2 ** 20 && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    const gw = await gateway([up]);
    const req = http.request(`http://127.0.0.1:${gw.port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    const res = await new Promise<http.IncomingMessage>((resolve) => {
      req.on('response', resolve);
      req.end('{"prompt":"x","stream":true}');
    });
    res.pause();
    await new Promise((r) => setTimeout(r, 800));
    const stalled = written;
    await new Promise((r) => setTimeout(r, 400));
    expect(written).toBe(stalled); // the pod is held back, not drained into gateway memory
    expect(written).toBeLessThan(64 * 2 ** 20);
    res.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(upstreamClosed).toBe(true);
  });

  test('a pod that refuses connections is retried elsewhere, then ejected; a 503 answer is retried too', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    let draining = 0;
    const busy = await stub((req, res) => {
      req.resume();
      draining++;
      json(res, 503, { error: { message: 'draining' } });
    });
    const good = await stub((req, res) => {
      let b = '';
      req.on('data', (c) => {
        b += c;
      });
      req.on('end', () => json(res, 200, { echo: JSON.parse(b) }));
    });
    const gw = await gateway([dead, busy, good]);
    for (let i = 0; i < 20; i++) {
      const res = await post(gw, { prompt: `request ${i} `.repeat(10) });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { echo: { prompt: string } }).echo.prompt).toBe(`request ${i} `.repeat(10)); // body forwarded as sent
      expect(res.headers.get('x-hybridserve-pod')).toBe('upstream-2');
    }
    expect(draining).toBeGreaterThan(0);
    const views = gw.table.views();
    expect(views.find((v) => v.id === 'upstream-0')!.ejectedUntil).toBeGreaterThan(Date.now());
    expect((await gw.metrics.retries.get()).values[0].value).toBeGreaterThan(0);
    expect((await gw.metrics.ejections.get()).values[0].value).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
    expect(metrics).toMatch(/hybridserve_gateway_endpoints\{state="ejected"\} 1/);
  });

  test('no pod can take it: 502 in the OpenAI error shape; bad JSON: 400', async () => {
    const gw = await gateway([`http://127.0.0.1:${await freePort()}`]);
    const res = await post(gw, { prompt: 'x' });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_unavailable');
    const bad = await fetch(`http://127.0.0.1:${gw.port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{nope',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/JSON/);
  });
});

describe('hold queue', () => {
  test('model ids with slashes reach the pod; an unknown route is a 404 in the OpenAI error shape; /health answers', async () => {
    const paths: string[] = [];
    const up = await stub((req, res) => {
      paths.push(req.url ?? '');
      json(res, 200, { id: 'm', object: 'model' });
    });
    const gw = await gateway([up]);
    const base = `http://127.0.0.1:${gw.port}`;
    expect((await fetch(`${base}/v1/models/pvc://models/opt-125m`)).status).toBe(200);
    expect(paths).toEqual(['/v1/models/pvc://models/opt-125m']);
    const missing = await fetch(`${base}/v1/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: { message: 'no route GET /v1/nope', type: 'not_found_error', param: null, code: 'not_found' },
    });
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
  });

  test('bounded in size and in time; release lets every waiter go', async () => {
    const q = new HoldQueue(2, 150);
    const a = q.wait();
    const b = q.wait();
    await expect(q.wait()).rejects.toMatchObject({ reason: 'full' });
    q.release();
    await expect(Promise.all([a, b])).resolves.toEqual([undefined, undefined]);
    const t0 = Date.now();
    await expect(q.wait()).rejects.toBeInstanceOf(HoldError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(q.size).toBe(0);
  });
});

describe('stats polling', () => {
  test("a pod's stats body is read with a size cap and a timeout", async () => {
    const up = await stub((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200);
        res.end(Buffer.alloc(200_000, 'x'));
        return;
      }
      if (req.url === '/slow') {
        setTimeout(() => {
          res.writeHead(200);
          res.end('{}');
        }, 1000);
        return;
      }
      res.writeHead(200);
      res.end('{"queueDepth":2}');
    });
    await expect(fetchCapped(`${up}/ok`, 500, 1024)).resolves.toBe('{"queueDepth":2}');
    await expect(fetchCapped(`${up}/big`, 500, 64 * 1024)).rejects.toThrow(/over 65536 bytes/);
    const t0 = Date.now();
    await expect(fetchCapped(`${up}/slow`, 200, 1024)).rejects.toThrow(/timed out/);
    expect(Date.now() - t0).toBeLessThan(900);
  });
});

describe('load-aware routing', () => {
  test('a pod whose polled stats show a long queue gets no new prompts while another is free', async () => {
    const pod = (queueDepth: number) =>
      stub((req, res) => {
        if (req.url === '/v1/hybridserve/stats') {
          json(res, 200, { queueDepth, pools: { kvBlocksFree: 10, actBlocksFree: 10 } });
          return;
        }
        req.resume();
        req.on('end', () => json(res, 200, { ok: true }));
      });
    const gw = await gateway([await pod(50), await pod(0)], 50);
    await new Promise((r) => setTimeout(r, 300));
    expect(gw.table.views().map((v) => v.queueDepth)).toEqual([50, 0]);
    for (let i = 0; i < 12; i++) {
      const res = await post(gw, { prompt: `distinct conversation number ${i} `.repeat(4) });
      expect(res.headers.get('x-hybridserve-pod')).toBe('upstream-1');
    }
  });
});
