// `hybridserve operator`: runs the Kubernetes controller (in-cluster config, else KUBECONFIG). It
// watches all namespaces and keeps its leader-election Lease in POD_NAMESPACE (else --namespace,
// else the kubeconfig's namespace). SIGTERM/SIGINT shut it down gracefully (Lease released).
import { parseCli, parseIntOption } from './args.js';
import { CliError } from './errors.js';

const HELP = `usage: hybridserve operator [--metrics-port N] [--metrics-host H] [--namespace NS] [--server URL]

Reconciles HybridServeDeployment resources (hybridserve.io/v1alpha1) in all namespaces, or in
those listed in WATCH_NAMESPACES (comma-separated). HSD policy (docs/operator.md "Operator policy"):
HYBRIDSERVE_POLICY_ALLOWED_IMAGES (patterns; default the project's images), HYBRIDSERVE_POLICY_ALLOW_PVC,
HYBRIDSERVE_POLICY_ALLOW_SECRETS (true|false, default true).

options:
  --metrics-port N   port of /metrics, /healthz and /readyz (default 8080; 0 picks a free port)
  --metrics-host H   address to bind (default 0.0.0.0)
  --namespace NS     namespace of the leader-election Lease when POD_NAMESPACE is unset (POD_NAMESPACE wins;
                     neither: the kubeconfig's)
  --server URL       talk to this API server with no auth (testing against a local API double)
  -h, --help         show this help`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCli(
    argv,
    {
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      namespace: { type: 'string' },
      server: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'operator',
  );
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const metricsPort = parseIntOption(v['metrics-port'] as string | undefined, '--metrics-port', 0, 65535, 8080);
  const { Operator } = await import('../operator/operator.js');
  let op;
  try {
    op = new Operator({
      server: v.server as string | undefined,
      metricsPort,
      metricsHost: v['metrics-host'] as string | undefined,
      leaseNamespace: process.env.POD_NAMESPACE ?? (v.namespace as string | undefined),
    });
  } catch (e) {
    throw new CliError(`operator: cannot start (Kubernetes configuration or policy settings): ${(e as Error).message}`, 1);
  }
  await op.start();
  console.log(`${new Date().toISOString()} hybridserve operator ${op.identity} started; metrics on :${op.healthPort}`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      console.log(`${new Date().toISOString()} received ${sig}; shutting down`);
      const force = setTimeout(() => process.exit(1), 20_000);
      force.unref();
      op.stop()
        .catch((e: unknown) => console.error(`operator: shutdown failed: ${(e as Error).message}`))
        .finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
