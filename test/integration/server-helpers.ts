// Starts a real server for the integration tests: the real native engine with synthetic:opt-tiny on
// CPU, the real app, listening on a loopback port. Not a test file itself.
import { openRuntime } from '../../server/runtime.js';
import { createServing, type Serving, type ServingOptions } from '../../server/serving.js';
import type { ServerLimits } from '../../server/options.js';

export interface TestServer {
  url: string;
  serving: Serving;
  close(): Promise<void>;
}

export async function startServer(
  o: {
    model?: string;
    actFraction?: number;
    limits?: Partial<ServerLimits>;
    apiKeys?: string[];
    planFile?: string;
    planPollMs?: number;
    maxBatch?: number;
    kvBlocks?: number;
    actBlocks?: number;
    prefixCaching?: boolean;
    /** CPU pipeline stages (engine option stages): the scheduler keeps one step in flight per stage. */
    stages?: number;
    /** Fastify's logger (e.g. { level: 'info', stream } to read the request log). */
    logger?: ServingOptions['logger'];
  } = {},
): Promise<TestServer> {
  const limits = { maxPromptTokens: 256, maxTotalTokens: 512, ...o.limits };
  const rt = await openRuntime({
    model: o.model ?? 'synthetic:opt-tiny',
    device: 'cpu',
    actFraction: o.actFraction ?? 0,
    plan: o.kvBlocks !== undefined ? { actFraction: o.actFraction ?? 0, kvBlocks: o.kvBlocks, actBlocks: o.actBlocks ?? 0 } : null,
    maxBatch: o.maxBatch ?? 64,
    maxTotalTokens: limits.maxTotalTokens,
    threads: 2,
    prefixCaching: o.prefixCaching,
    ...(o.stages !== undefined && o.stages > 1 ? { stages: o.stages } : {}),
  });
  const opts: ServingOptions = {
    modelName: rt.model.spec,
    device: 'cpu',
    engine: rt.engine,
    tokenizer: rt.tokenizer,
    maxPositions: rt.model.config.maxPositions,
    prefixCaching: rt.prefixCaching,
    limits,
    apiKeys: o.apiKeys,
    planFile: o.planFile,
    planPollMs: o.planPollMs,
    maxBatch: o.maxBatch ?? 64,
    processMetrics: false,
    logger: o.logger,
  };
  const serving = await createServing(opts);
  const url = await serving.app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    serving,
    async close() {
      await serving.shutdown(2000);
      await rt.engine.close();
    },
  };
}

/** Reads one metric's value (first series matching the label text) from the /metrics page. */
export async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith(`${name}${labels ? `{${labels}}` : ''} `) ||
        (labels === '' && l.startsWith(`${name}{`) === false && l.startsWith(`${name} `)),
    );
  if (!line) throw new Error(`metric ${name}{${labels}} not found`);
  return Number(line.split(' ').at(-1));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function stats(url: string, key?: string): Promise<Record<string, any>> {
  const r = await fetch(`${url}/v1/hybridserve/stats`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return r.json() as Promise<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
}
