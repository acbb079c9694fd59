// `hybridserve gateway`: the OpenAI-compatible routing proxy in front of one
// HybridServeDeployment's pods (prefix- and load-aware routing, requests held while the HSD scales
// from zero). Kubernetes configuration comes from the operator's loader (in-cluster, else
// KUBECONFIG); --upstream URLs bypass Kubernetes (local use, benches). SIGTERM/SIGINT stop it.
import { parseCli, parseIntOption, parseNumberOption } from './args.js';
import { CliError } from './errors.js';

const HELP = `usage: hybridserve gateway --deployment NAME [--namespace NS] [--port N] [--host H] [options]
       hybridserve gateway --upstream URL [--upstream URL ...] [--port N] [--host H] [options]

Routes OpenAI-compatible requests to the pods of one HybridServeDeployment, found through the
EndpointSlices of its Service (label kubernetes.io/service-name), by prompt-prefix affinity and load.
While no pod is ready it holds requests and asks the HSD for a replica (scale from zero).

options:
  --deployment NAME        the HybridServeDeployment (its Service has the same name unless --service)
  --namespace NS           its namespace when POD_NAMESPACE is unset (POD_NAMESPACE wins; neither: the
                           kubeconfig's)
  --service NAME           the Service whose EndpointSlices list the pods (default: the HSD's name)
  --port N                 listening port (default 8080; 0 picks a free port)
  --host H                 address to bind (default 0.0.0.0)
  --routing P              prefix (default) or round-robin
  --block-chars N          prompt characters per prefix block (default 64; token-id prompts: 16 ids)
  --load-epsilon X         bounded-load slack: no pod above (1+X) x the mean in-flight (default 0.25)
  --max-held N             requests held while no pod is ready (default 256; more get 503)
  --max-hold-seconds S     longest hold (default 300; then 503)
  --activity-interval S    least seconds between last-request stamps on the HSD (default 10)
  --stats-interval S       seconds between polls of each pod's /v1/hybridserve/stats (default 1)
  --advertise-url URL      record this URL on the HSD (annotation hybridserve.io/gateway-url) for status.url
  --upstream URL           a fixed pod URL instead of Kubernetes (repeatable; no scale from zero)
  --server URL             talk to this API server with no auth (testing against a local API double)
  -h, --help               show this help`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCli(
    argv,
    {
      deployment: { type: 'string' },
      namespace: { type: 'string' },
      service: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      routing: { type: 'string' },
      'block-chars': { type: 'string' },
      'load-epsilon': { type: 'string' },
      'max-held': { type: 'string' },
      'max-hold-seconds': { type: 'string' },
      'activity-interval': { type: 'string' },
      'stats-interval': { type: 'string' },
      upstream: { type: 'string', multiple: true },
      'advertise-url': { type: 'string' },
      server: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'gateway',
  );
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const upstreams = (v.upstream as string[] | undefined) ?? [];
  for (const u of upstreams) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new CliError(`gateway: --upstream must be an http:// URL, got '${u}'`);
    }
    if (url.protocol !== 'http:') throw new CliError(`gateway: --upstream must be an http:// URL, got '${u}'`);
  }
  const advertise = v['advertise-url'] as string | undefined;
  if (advertise !== undefined && !/^https?:\/\/[^\s@]+$/.test(advertise))
    throw new CliError(`gateway: --advertise-url must be an http(s):// URL, got '${advertise}'`);
  if (!v.deployment && upstreams.length === 0) throw new CliError('gateway: --deployment NAME (or --upstream URL) is required');
  const routing = (v.routing as string | undefined) ?? 'prefix';
  if (routing !== 'prefix' && routing !== 'round-robin')
    throw new CliError(`gateway: --routing must be prefix or round-robin, got '${routing}'`);
  const opts = {
    port: parseIntOption(v.port as string | undefined, '--port', 0, 65535, 8080),
    host: (v.host as string | undefined) ?? '0.0.0.0',
    namespace: process.env.POD_NAMESPACE ?? (v.namespace as string | undefined),
    deployment: v.deployment as string | undefined,
    service: v.service as string | undefined,
    server: v.server as string | undefined,
    upstreams,
    advertiseUrl: advertise,
    routing: {
      policy: routing as 'prefix' | 'round-robin',
      loadEpsilon: parseNumberOption(v['load-epsilon'] as string | undefined, '--load-epsilon', 0, 100, 0.25),
    },
    proxy: { blockChars: parseIntOption(v['block-chars'] as string | undefined, '--block-chars', 1, 1 << 20, 64) },
    maxHeld: parseIntOption(v['max-held'] as string | undefined, '--max-held', 0, 1 << 20, 256),
    maxHoldMs: parseNumberOption(v['max-hold-seconds'] as string | undefined, '--max-hold-seconds', 0.001, 86_400, 300) * 1000,
    activityIntervalMs: parseNumberOption(v['activity-interval'] as string | undefined, '--activity-interval', 0.01, 86_400, 10) * 1000,
    statsIntervalMs: parseNumberOption(v['stats-interval'] as string | undefined, '--stats-interval', 0.01, 3600, 1) * 1000,
  };
  const { Gateway } = await import('../gateway/gateway.js');
  let gw;
  try {
    gw = new Gateway(opts);
  } catch (e) {
    throw new CliError(`gateway: cannot load Kubernetes configuration: ${(e as Error).message}`, 1);
  }
  try {
    await gw.start();
  } catch (e) {
    await gw.stop().catch(() => undefined);
    throw new CliError(`gateway: cannot start: ${(e as Error).message}`, 1);
  }
  const target = opts.deployment
    ? `HybridServeDeployment ${opts.namespace ?? '(kubeconfig namespace)'}/${opts.deployment}`
    : `${upstreams.length} upstream(s)`;
  console.log(`${new Date().toISOString()} hybridserve gateway listening on ${opts.host}:${gw.port} for ${target} (routing ${routing})`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      console.log(`${new Date().toISOString()} received ${sig}; shutting down`);
      const force = setTimeout(() => process.exit(1), 20_000);
      force.unref();
      gw.stop().then(resolve, (err: unknown) => {
        console.error(`${new Date().toISOString()} gateway stop failed: ${err instanceof Error ? err.message : String(err)}`);
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
