// The gateway's HTTP layer (Fastify): OpenAI-compatible routes that forward to the pod the routing
// functions choose, SSE and JSON passed through with backpressure (pipe), a retry on
// another pod when an attempt fails before the first byte, and requests held while no pod is ready.
import * as http from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { PodTable } from './endpoints.js';
import { HoldError, type HoldQueue } from './hold.js';
import type { GatewayMetrics } from './metrics.js';
import { choosePod, prefixHashes, promptOf, type RoutingOptions } from './routing.js';
import { ConnectError, FORWARDED_REQUEST_HEADERS, pickHeaders, responseHeaders, send } from './upstream.js';

export interface ProxyOptions {
  routing: RoutingOptions;
  blockChars: number;
  blockTokens: number;
  /** Attempts per request (the first and the retries on other pods). */
  maxAttempts: number;
  headersTimeoutMs: number;
  bodyLimitBytes: number;
  /** Remembered prefix hashes (an LRU); each full block of a routed prompt is one entry. */
  affinityEntries: number;
}

export interface ProxyDeps {
  table: PodTable;
  hold: HoldQueue;
  metrics: GatewayMetrics;
  /** Called for every inference request (the activity stamp); undefined without Kubernetes. */
  touch?: (now: number) => void;
  /** Called when a request must wait for a pod (asks for a replica); undefined: answer 503 at once. */
  wake?: () => void;
  log: (line: string) => void;
}

/** A prefix-hash → pod map that forgets the least recently used entries beyond `max`. */
export class AffinityTable extends Map<number, string> {
  constructor(private readonly max: number) {
    super();
  }
  remember(hashes: readonly number[], id: string): void {
    for (const h of hashes) {
      this.delete(h);
      super.set(h, id);
    }
    while (this.size > this.max) this.delete(this.keys().next().value as number);
  }
}

function openAiError(reply: FastifyReply, status: number, message: string, code: string) {
  reply.code(status);
  const type = status >= 500 ? 'server_error' : status === 404 ? 'not_found_error' : 'invalid_request_error';
  return { error: { message, type, param: null, code } };
}

const AnyObject = Type.Object({}, { additionalProperties: true });

export function buildProxy(o: ProxyOptions, d: ProxyDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: o.bodyLimitBytes, keepAliveTimeout: 65_000 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
  const affinity = new AffinityTable(o.affinityEntries);
  let rr = 0;
  app.addHook('onClose', async () => {
    agent.destroy();
  });

  // Keep the raw bytes: they are forwarded as received (no re-serialisation), the parse is for routing.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    (req as unknown as { rawBody: Buffer }).rawBody = body as Buffer;
    try {
      done(null, JSON.parse((body as Buffer).toString('utf8')));
    } catch {
      done(Object.assign(new Error('the body is not valid JSON'), { statusCode: 400 }), undefined);
    }
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    d.metrics.requests.inc({ code: String(status) });
    reply.send(
      openAiError(
        reply,
        status,
        status === 500 ? 'internal gateway error' : err.message,
        status === 413 ? 'body_too_large' : 'invalid_request',
      ),
    );
  });

  /** Waits for a ready pod when there is none; false when the wait failed (the reply is sent). */
  async function awaitPod(reply: FastifyReply): Promise<boolean> {
    if (d.table.readyCount() > 0) return true;
    if (!d.wake) {
      reply.send(openAiError(reply, 503, 'no ready pod behind the gateway', 'no_ready_pod'));
      return false;
    }
    const t0 = process.hrtime.bigint();
    d.wake();
    d.metrics.wakeups.inc();
    d.metrics.held.inc();
    try {
      await d.hold.wait();
      return true;
    } catch (e) {
      const he = e as HoldError;
      reply.header('retry-after', '5');
      reply.send(openAiError(reply, 503, he.message, he.reason === 'full' ? 'gateway_queue_full' : 'no_ready_pod'));
      return false;
    } finally {
      d.metrics.held.dec();
      d.metrics.holdSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  async function forward(req: FastifyRequest, reply: FastifyReply, inference: boolean): Promise<void> {
    const now = Date.now();
    if (inference) d.touch?.(now);
    const body = (req as unknown as { rawBody?: Buffer }).rawBody;
    const prompt = inference ? promptOf(req.body) : undefined;
    const hashes = prompt === undefined ? [] : prefixHashes(prompt, o.blockChars, o.blockTokens);
    const headers = pickHeaders(req.headers, FORWARDED_REQUEST_HEADERS);
    const tried = new Set<string>();
    let lastError = 'no pod answered';
    for (let attempt = 0; attempt < o.maxAttempts;) {
      if (!(await awaitPod(reply))) return;
      if (reply.raw.destroyed || req.raw.socket?.destroyed) return; // the client left while held (req.raw itself ends once its body is read)
      const pick = choosePod(d.table.views(), hashes, affinity, o.routing, Date.now(), tried, rr++);
      if (!pick) break; // every ready pod was tried
      const pod = d.table.get(pick.id)!;
      attempt++;
      tried.add(pick.id);
      d.table.begin(pick.id);
      const t0 = process.hrtime.bigint();
      let up: Awaited<ReturnType<typeof send>>;
      try {
        up = await send(pod.url, { method: req.method, path: req.url, headers, body }, agent, o.headersTimeoutMs);
      } catch (e) {
        d.table.end(pick.id);
        lastError = (e as Error).message;
        if (d.table.outcome(pick.id, false, Date.now())) d.metrics.ejections.inc();
        d.metrics.upstreamErrors.inc({ stage: e instanceof ConnectError ? 'connect' : 'other' });
        if (attempt < o.maxAttempts) d.metrics.retries.inc();
        continue;
      }
      d.metrics.upstreamSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      const status = up.res.statusCode ?? 502;
      if (status === 503 && attempt < o.maxAttempts) {
        // Draining or not ready: nothing reached the client, so another pod may take it.
        up.res.resume();
        d.table.end(pick.id);
        lastError = `pod ${pick.id} answered 503`;
        d.metrics.upstreamErrors.inc({ stage: 'unavailable' });
        d.metrics.retries.inc();
        continue;
      }
      d.table.outcome(pick.id, true, Date.now());
      if (inference && status < 400) {
        affinity.remember(hashes, pick.id);
        d.metrics.routed.inc({ reason: pick.reason });
        d.metrics.promptBlocks.inc(hashes.length);
        d.metrics.prefixBlocks.inc(pick.matchedBlocks);
      }
      d.metrics.requests.inc({ code: String(status) });
      reply.hijack();
      const out = reply.raw;
      out.writeHead(status, { ...responseHeaders(up.res.headers), 'x-hybridserve-pod': pick.id });
      // SSE: headers at once (clients wait for them); otherwise they leave with the first body bytes.
      if (String(up.res.headers['content-type'] ?? '').startsWith('text/event-stream')) out.flushHeaders();
      // pipe() carries backpressure (a slow client pauses the pod's response); stream.pipeline would
      // too, but costs an AbortController and a DOMException per request on this hot path.
      await new Promise<void>((resolve) => {
        let settled = false;
        const settle = (failed: boolean) => {
          if (settled) return;
          settled = true;
          d.table.end(pick.id);
          if (failed) {
            up.req.destroy();
            out.destroy();
            d.metrics.upstreamErrors.inc({ stage: 'stream' });
          }
          resolve();
        };
        out.on('finish', () => settle(false));
        out.on('close', () => settle(!out.writableFinished)); // the client left mid-response: cancel upstream
        up.res.on('error', () => settle(true));
        up.res.on('aborted', () => settle(true));
        up.res.pipe(out);
      });
      return;
    }
    reply.header('retry-after', '1');
    d.metrics.requests.inc({ code: '502' });
    reply.send(openAiError(reply, 502, `no pod could take the request: ${lastError}`, 'upstream_unavailable'));
  }

  const inference = { schema: { body: AnyObject } };
  app.post('/v1/completions', inference, (req, reply) => forward(req, reply, true));
  app.post('/v1/chat/completions', inference, (req, reply) => forward(req, reply, true));
  app.post('/tokenize', inference, (req, reply) => forward(req, reply, false));
  app.post('/detokenize', inference, (req, reply) => forward(req, reply, false));
  app.get('/v1/models', (req, reply) => forward(req, reply, false));
  // A wildcard, as the server's route: model ids may hold slashes ("pvc://models/opt-125m").
  app.get('/v1/models/*', (req, reply) => forward(req, reply, false));

  // Clients of the OpenAI API read every error in its shape, an unknown route's too.
  app.setNotFoundHandler((req, reply) => {
    d.metrics.requests.inc({ code: '404' });
    reply.send(openAiError(reply, 404, `no route ${req.method} ${req.url.split('?')[0]}`, 'not_found'));
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  // vLLM's liveness route, as the pods serve it: 200 with an empty body.
  app.get('/health', async (_req, reply) => reply.code(200).send());
  app.get('/readyz', async () => ({ status: 'ready', readyPods: d.table.readyCount(), held: d.hold.size }));
  app.get('/metrics', async (_req, reply) => {
    const views = d.table.views();
    const now = Date.now();
    d.metrics.endpoints.set({ state: 'ready' }, views.filter((v) => v.ready && (v.ejectedUntil ?? 0) <= now).length);
    d.metrics.endpoints.set({ state: 'ejected' }, views.filter((v) => v.ready && (v.ejectedUntil ?? 0) > now).length);
    d.metrics.endpoints.set({ state: 'not_ready' }, views.filter((v) => !v.ready).length);
    reply.header('content-type', d.metrics.registry.contentType);
    return d.metrics.registry.metrics();
  });
  return app;
}
