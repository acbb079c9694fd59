// Pure helpers for the serving pod template: merging the user's affinity with the node group's,
// and a startupProbe sized for the model load.
type Obj = Record<string, unknown>;
interface Term {
  matchExpressions?: unknown[];
  matchFields?: unknown[];
}

/**
 * The user's affinity with the group's required node affinity ANDed in. Required nodeSelectorTerms
 * are ORed by Kubernetes, so every user term gets the group's requirements added (a cross product);
 * preferred terms, pod (anti-)affinity and everything else of the user's are kept as given.
 */
export function mergeAffinity(
  user: Obj | undefined,
  group: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: Term[] } } },
): Obj {
  const u = (user ?? {}) as Obj & {
    nodeAffinity?: Obj & { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: Term[] } };
  };
  const groupTerms = group.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  const userTerms = u.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const terms =
    userTerms.length === 0
      ? groupTerms
      : userTerms.flatMap((ut) =>
          groupTerms.map((gt) => {
            const matchExpressions = [...(ut.matchExpressions ?? []), ...(gt.matchExpressions ?? [])];
            const matchFields = [...(ut.matchFields ?? []), ...(gt.matchFields ?? [])];
            return { ...(matchExpressions.length ? { matchExpressions } : {}), ...(matchFields.length ? { matchFields } : {}) };
          }),
        );
  return {
    ...u,
    nodeAffinity: { ...(u.nodeAffinity ?? {}), requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } },
  };
}

const PROBE_PERIOD_SECONDS = 10;
/** Floor of the load time: process start, tokenizer, engine init. */
const BASE_STARTUP_SECONDS = 120;
/** A conservative read-and-pin rate for the weights (network volumes are often this slow). */
const LOAD_BYTES_PER_SECOND = 100e6;

/** Seconds the server may take to start: the spec's, else sized from the weight bytes. */
export function startupSeconds(explicit: number | undefined, weightBytes: number | undefined): number {
  if (explicit !== undefined) return explicit;
  return BASE_STARTUP_SECONDS + Math.ceil((weightBytes ?? 0) / LOAD_BYTES_PER_SECOND);
}

export function startupProbe(explicit: number | undefined, weightBytes: number | undefined): Obj {
  const seconds = startupSeconds(explicit, weightBytes);
  return {
    httpGet: { path: '/healthz', port: 'http' },
    periodSeconds: PROBE_PERIOD_SECONDS,
    failureThreshold: Math.ceil(seconds / PROBE_PERIOD_SECONDS),
  };
}
